"""GoogLeNet (Inception v1) in JAX/Flax: the paper's network and torchvision's, exactly.

    GoogLeNet, GoogLeNetOutputs   the flax.linen network (googlenet_jax.model)
    load                          weights from any source -> (model, variables, info)
    Classifier, Prediction        the jitted image classifier (googlenet_jax.inference)

Attributes are imported on first use, so `python -m googlenet_jax.<command>` can set up
logging before JAX and TensorFlow load, and `--help` answers at once.
"""
import importlib

_EXPORTS = {
    "GoogLeNet": "googlenet_jax.model",
    "GoogLeNetOutputs": "googlenet_jax.model",
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
