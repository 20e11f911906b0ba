"""The training replay (`parity --train_steps N`): the same training run in torch and in ours,
from the same weights on the same batches, compared step by step.

    args         its options (--train_steps, --config, ...) and their checks (the standard library only)
    run          what the command runs: the config, both models, the batches, both runs and a baseline
    report       the rows, header, JSON, the replay file (--save_run) and the plot; extends the
                 layer-by-layer report (layers/report.py)
    recipe       a training config as the torch loop follows it (TorchRecipe), or a one-line refusal
    our_steps    our side: the trainer's own programs on given weights and batches
    torch_loop   the torch side: a plain torch training loop following a TorchRecipe
"""
