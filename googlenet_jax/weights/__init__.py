"""Weights in one place: every source read by `load`, the torchvision layout, orbax files.

    load(path) -> LoadedModel(model, variables, info)   any source (loader.py)
    ModelInfo                                           metadata that travels with the weights (info.py)
    class_names                                         ImageNet names shipped with the package
    torch_layout                                        torchvision-layout state_dict <-> variables
    conversion                                          .pth <-> orbax checkpoint files (`convert`)
    files                                               orbax checkpoints and the workdir layout
    paths                                               local paths and gs:// URLs alike
    trees                                               the one tree comparison

Imports only the model (torch only to read or write a .pth, TensorFlow only for a gs:// URL).
"""
from googlenet_jax.weights.files import CHECKPOINT_DIR, CONFIG_FILE, ITEM_DIR, MODEL_INFO_FILE
from googlenet_jax.weights.info import (
    ModelInfo,
    WeightsError,
    info_from_config,
    pretrained_info,
    write_model_info,
)
from googlenet_jax.weights.loader import SOURCES_HELP, LoadedModel, load

__all__ = [
    "CHECKPOINT_DIR", "CONFIG_FILE", "ITEM_DIR", "MODEL_INFO_FILE", "SOURCES_HELP", "LoadedModel",
    "ModelInfo", "WeightsError", "info_from_config", "load", "pretrained_info", "write_model_info",
]
