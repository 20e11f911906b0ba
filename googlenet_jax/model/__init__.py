"""The network: GoogLeNet in flax.linen, its layers, its table, its loss.

    architecture   the paper's Table 1, its blocks, the two variants and the stage names, as data
    network        GoogLeNet and Blocks, the module classes it builds its blocks with
    blocks         ConvBlock, Inception, AuxHead (flax.linen), ComputeForms
    stage_info     each stage's shape, channels and stride (timm's feature_info)
    layers         pools and LRN with torchvision's and Caffe's exact semantics
    convolution    conv2d, with CPU forms of its gradients
    folding        BatchNorm folded into the convolutions, for inference
    input_spec     normalisation constants, the eval resize and crop schemes (no JAX)
    losses         the weighted main + aux cross-entropy and the eval metrics
    table1         the paper's Table 1 computed from the model (python -m googlenet_jax.summary)

Nothing here imports another part of the package. The names below are imported on first
use, so that `input_spec` can be read without loading JAX (commands' --help).
"""
import importlib

_EXPORTS = {
    **dict.fromkeys(("AUX_POOLED_SIZE", "AUX_TAPS", "FEATURES_DIM", "INCEPTION_BLOCKS", "INCEPTION_PARTS",
                     "INCEPTION_TABLE", "VARIANTS", "Block", "InceptionChannels", "Part", "Variant",
                     "backbone_stages", "feature_map_size", "min_input_size", "stage_names"), "architecture"),
    **dict.fromkeys(("Blocks", "GoogLeNet", "GoogLeNetOutputs"), "network"),
    **dict.fromkeys(("AuxHead", "ComputeForms", "ConvBlock", "Inception"), "blocks"),
    **dict.fromkeys(("StageInfo", "stage_info"), "stage_info"),
    "fold_batch_norm": "folding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'googlenet_jax.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"googlenet_jax.model.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
