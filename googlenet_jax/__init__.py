"""GoogLeNet (Inception v1) in JAX/Flax: the paper's network and torchvision's, exactly.

    GoogLeNet, GoogLeNetOutputs   the flax.linen network (googlenet_jax.model)
    load                          weights from any source -> (model, variables, info)
    Classifier, Prediction        the jitted image classifier (googlenet_jax.inference)

The package, one folder or module per job (arrows point one way: commands -> inference,
training, evaluation -> weights, data, parallel -> model):

    model/        the network, its table and stage names, layers, loss, Table 1
    weights/      every weights source, the torchvision layout, orbax files, model info
    data/         tfds, image folders and the demo; augmentation; evaluation crops
    parallel.py   every device, mesh and sharding decision
    evaluation.py the crop-averaged eval step and the masked loop over a split
    inference/    image preprocessing, the Classifier, jax.export artifacts and ONNX files
    training/     the trainer and its parts (steps, optimizer, checkpoints, config checks)
    parity/       comparisons with PyTorch (torch is imported here, and to read or write a .pth)
    configs/      the training configs: default.py defines every field, the others override it
    commands/     the commands, one thin module each (`python -m googlenet_jax COMMAND`,
                  `googlenet-jax COMMAND`), and common.py, what they share; predict.py ...
                  aot.py here are aliases for `python -m googlenet_jax.<command>`
    errors.py     the one line of an error, for every layer

Attributes are imported on first use, so a command can set up logging before JAX and
TensorFlow load, and `--help` answers quickly.
"""
import importlib

_EXPORTS = {
    "GoogLeNet": "googlenet_jax.model.network",
    "GoogLeNetOutputs": "googlenet_jax.model.network",
    "load": "googlenet_jax.weights",
    "LoadedModel": "googlenet_jax.weights",
    "ModelInfo": "googlenet_jax.weights",
    "Classifier": "googlenet_jax.inference",
    "Prediction": "googlenet_jax.inference",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'googlenet_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
