"""Parity with PyTorch, in two parts: the same weights compared stage by stage (layers/), and the
same training run compared step by step (replay/, `--train_steps`).

    layers/       compare(flax_module, variables, torch_module, inputs, ...) -> ParityReport, and
                  the command's layer-by-layer run: args, run, report, flax_side, torch_side
    replay/       the training replay: args, run, report, recipe, our_steps, torch_loop
    models        what both parts share: the model pair built from a .pth or random weights,
                  the input-size check, the reference's name, each side's dtype and layout
    references    the torch references with random or given weights (torchvision, Caffe port)
    caffe_torch   BVLC Caffe's bvlc_googlenet in plain torch.nn (the paper variant's reference)

The command is googlenet_jax/commands/parity.py (`python -m googlenet_jax.parity`). The only part
of the package that imports torch. `from googlenet_jax import parity` is light; `parity.compare`,
`parity.DEFAULT_STAGES`, ... load torch on first use.
"""
import importlib

from googlenet_jax.parity.layers.report import TOLERANCES, ParityReport, Row  # noqa: F401

_EXPORTS = {
    **dict.fromkeys(("DEFAULT_STAGES", "LOSS_STAGES", "AUX_WEIGHT", "compare", "insert_after", "random_labels",
                     "torchvision_state_dict"), "googlenet_jax.parity.layers.compare"),
    "main": "googlenet_jax.commands.parity",  # the command (imports no torch); lazily: it imports this package
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'googlenet_jax.parity' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
