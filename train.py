"""Trains GoogLeNet: `python train.py [--config configs/NAME.py] [--config.FIELD=VALUE ...] [--workdir DIR]`.

Without arguments it trains the demo config (configs/demo.py) into workdir/demo. An existing
workdir resumes from its latest checkpoint. Results land in WORKDIR/final_metrics.json.
The same as `python -m googlenet_jax train` (googlenet_jax/commands/train.py).
"""
import sys

from googlenet_jax.commands import train

if __name__ == "__main__":
    sys.exit(train.main(prog="train.py"))
