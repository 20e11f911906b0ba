"""Parity with PyTorch: the same weights in torch and in ours, compared stage by stage.

    compare       compare(flax_module, variables, torch_module, inputs, ...) -> ParityReport
    report        Row, ParityReport, TOLERANCES: the table and JSON the command prints
    flax_side     our stages through the model's own `capture=`, and the loss gradient
    torch_side    forward hooks on the reference, its BatchNorm records and gradients
    references    the torch references with random or given weights (torchvision, Caffe port)
    caffe_torch   BVLC Caffe's bvlc_googlenet in plain torch.nn (the paper variant's reference)
    tool, command `python -m googlenet_jax.parity`
    train_*       `--train_steps`: the same training run in both (recipe mapping, our side, the
                  torch loop, the comparison, its report)

The only part of the package that imports torch. `from googlenet_jax import parity` is light;
`parity.compare`, `parity.DEFAULT_STAGES`, ... load torch on first use.
"""
import importlib

from googlenet_jax.parity.command import main  # noqa: F401  (the command; imports no torch)
from googlenet_jax.parity.report import TOLERANCES, ParityReport, Row  # noqa: F401

_EXPORTS = {
    **dict.fromkeys(("DEFAULT_STAGES", "LOSS_STAGES", "AUX_WEIGHT", "compare", "insert_after", "random_labels",
                     "torchvision_state_dict"), "googlenet_jax.parity.compare"),
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'googlenet_jax.parity' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
