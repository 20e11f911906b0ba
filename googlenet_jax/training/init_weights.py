"""`config.init_weights`: start training from existing weights (fine-tuning).

Any source `googlenet_jax.load` reads works. Every array whose name and shape match the
new model is copied; the classifiers (main `fc` and the aux heads' `fc2`) are freshly
initialised when the class count differs, and so is anything the weights lack (e.g. the
aux heads of a torchvision `.pth` saved without them). Any other mismatch is an error.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import optax
from flax import traverse_util

from googlenet_jax import weights as weights_lib
from googlenet_jax.training.config import ConfigError
from googlenet_jax.training.train_state import TrainState

# The layers whose shape follows the class count.
CLASSIFIERS = (("fc",), ("aux1", "fc2"), ("aux2", "fc2"))


def load(path: str, *, variant: str) -> weights_lib.LoadedModel:
    """Reads the weights, as a one-line ConfigError if they cannot serve `variant`."""
    try:
        loaded = weights_lib.load(path)
    except ValueError as error:
        raise ConfigError(f"config.init_weights: {error}") from None
    if loaded.info.variant != variant:
        raise ConfigError(f"config.init_weights={path} holds {loaded.info.variant}-variant weights "
                          f"but config.model.variant={variant!r}")
    return loaded


def _is_classifier(key: tuple[str, ...]) -> bool:
    return any(key[:len(prefix)] == prefix for prefix in CLASSIFIERS)


def _merge(fresh: Any, loaded: Any, collection: str, path: str) -> tuple[Any, list[str], list[str]]:
    """(merged tree, names re-initialised for the class count, names absent from the weights)."""
    fresh_flat = traverse_util.flatten_dict(dict(fresh)) if fresh else {}
    loaded_flat = traverse_util.flatten_dict(dict(loaded)) if loaded else {}
    merged, resized, absent = {}, [], []
    for key, value in fresh_flat.items():
        name = "/".join(key)
        source = loaded_flat.get(key)
        if source is None:
            absent.append(name)
            merged[key] = value
        elif np.shape(source) == np.shape(value):
            merged[key] = np.asarray(source, dtype=value.dtype)
        elif _is_classifier(key):
            resized.append(name)
            merged[key] = value
        else:
            raise ConfigError(f"config.init_weights={path}: {collection}/{name} has shape "
                              f"{tuple(np.shape(source))}, the model needs {tuple(np.shape(value))}")
    return traverse_util.unflatten_dict(merged), resized, absent


def _layers(names: list[str]) -> str:
    """'fc, aux1/fc2, aux2/fc2' from parameter names (one entry per layer)."""
    return ", ".join(dict.fromkeys(name.rsplit("/", 1)[0] for name in names))


def apply(state: TrainState, loaded: weights_lib.LoadedModel, *, tx: optax.GradientTransformation,
          use_ema: bool) -> tuple[TrainState, list[str]]:
    """A fresh TrainState (step 0, new optimizer state) holding the loaded weights.

    Returns (state, log lines naming what was loaded and what was freshly initialised).
    """
    path = loaded.info.path
    params, resized, absent = _merge(state.params, loaded.variables["params"], "params", path)
    batch_stats, _, absent_stats = _merge(state.batch_stats, loaded.variables.get("batch_stats"),
                                          "batch_stats", path)
    lines = [f"init_weights: {path} ({loaded.info.source}, {loaded.info.num_classes} classes)"]
    if resized:
        lines.append(f"init_weights: freshly initialised for {np.shape(params['fc']['kernel'])[-1]} "
                     f"classes instead of {loaded.info.num_classes}: {_layers(resized)}")
    if absent or absent_stats:
        lines.append("init_weights: not in the weights, freshly initialised: "
                     f"{_layers(absent + absent_stats)}")
    state = state.replace(params=params, batch_stats=batch_stats, opt_state=tx.init(params),
                          ema_params=params if use_ema else {})
    return state, lines
