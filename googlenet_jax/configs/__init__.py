"""The training configs, each a Python file with get_config(): default.py defines every field,
the others override a few (`python train.py --config configs/NAME.py`)."""
