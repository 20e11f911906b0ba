"""Checks a training config before anything is compiled: fields, types, values, devices.

Every problem is reported as a one-line `ConfigError` (a ValueError) so that `train.py` can
print it and exit without a traceback.
"""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections

from googlenet_jax.model import min_input_size


class ConfigError(ValueError):
    """A config that cannot be trained; the message is one line."""


_OPTIONAL_STR = (str, type(None))
_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))

# Every field the trainer reads, with its accepted types. Unknown fields are errors (they
# are almost always typos that would otherwise be silently ignored).
SCHEMA: Mapping[str, tuple[type, ...]] = {
    "dataset": (str,),
    "data_dir": _OPTIONAL_STR,
    "train_split": (str,),
    "eval_split": (str,),
    "num_classes": (int,),
    "image_size": (int,),
    "eval_crop_fraction": _NUMBER,
    "normalization": (str,),
    "cache": (bool,),
    "shuffle_buffer": (int,),
    "augment.inception_crop": (bool,),
    "augment.min_area": _NUMBER,
    "augment.max_area": _NUMBER,
    "augment.min_aspect": _NUMBER,
    "augment.max_aspect": _NUMBER,
    "augment.flip": (bool,),
    "augment.photometric": (bool,),
    "augment.random_interpolation": (bool,),
    "model.variant": (str,),
    "model.dtype": (str,),
    "model.dropout_rate": _OPTIONAL_NUMBER,
    "model.aux_dropout_rate": _NUMBER,
    "model.transform_input": (bool,),
    "init_weights": _OPTIONAL_STR,
    "aux_weight": _NUMBER,
    "label_smoothing": _NUMBER,
    "batch_size": (int,),
    "eval_batch_size": (int,),
    "num_epochs": _NUMBER,
    "num_train_steps": (int,),
    "optimizer.learning_rate": _NUMBER,
    "optimizer.lr_reference_batch_size": (int,),
    "optimizer.schedule": (str,),
    "optimizer.warmup_epochs": _NUMBER,
    "optimizer.decay_epochs": _NUMBER,
    "optimizer.decay_factor": _NUMBER,
    "optimizer.momentum": _NUMBER,
    "optimizer.nesterov": (bool,),
    "optimizer.weight_decay": _NUMBER,
    "optimizer.grad_clip_norm": _NUMBER,
    "ema_decay": _NUMBER,
    "parallel": (str,),
    "distributed": (bool,),
    "coordinator_address": _OPTIONAL_STR,
    "num_processes": (int, type(None)),
    "process_id": (int, type(None)),
    "heartbeat_timeout_seconds": (int,),
    "seed": (int,),
    "log_every_steps": (int,),
    "eval_every_steps": (int,),
    "checkpoint_every_steps": (int,),
    "keep_checkpoints": (int,),
    "nan_policy": (str,),
    "nan_max_consecutive_skips": (int,),
    "inject_nan_at_step": (int,),
}

_CHOICES: Mapping[str, tuple[Any, ...]] = {
    "normalization": ("torchvision", "paper"),
    "model.variant": ("torchvision", "paper"),
    "model.dtype": ("float32", "bfloat16"),
    "optimizer.schedule": ("cosine", "step", "constant"),
    "parallel": ("pmap", "mesh"),
    "nan_policy": ("stop", "skip"),
}

_POSITIVE = ("num_classes", "image_size", "eval_crop_fraction", "batch_size", "eval_batch_size", "num_epochs",
             "shuffle_buffer", "optimizer.lr_reference_batch_size", "optimizer.decay_epochs",
             "log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "nan_max_consecutive_skips",
             "heartbeat_timeout_seconds")
_UNIT_INTERVAL = ("eval_crop_fraction", "augment.min_area", "augment.max_area",
                  "model.aux_dropout_rate",
                  "label_smoothing", "optimizer.momentum", "ema_decay",
                  "optimizer.decay_factor")
_NON_NEGATIVE = ("aux_weight", "optimizer.learning_rate", "optimizer.warmup_epochs",
                 "optimizer.weight_decay", "optimizer.grad_clip_norm", "eval_every_steps")


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks field names, types and value ranges; raises ConfigError (one line)."""
    flat = _flatten(config)
    unknown = sorted(set(flat) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    missing = sorted(set(SCHEMA) - set(flat))
    if missing:
        raise ConfigError(f"missing config field(s): {', '.join(missing)}")
    for name, types in SCHEMA.items():
        value = flat[name]
        # bool is an int subclass: accept it only where bool is expected.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise ConfigError(
                f"config.{name} must be {expected}, got {type(value).__name__} {value!r}")
    for name, choices in _CHOICES.items():
        if flat[name] not in choices:
            raise ConfigError(f"config.{name} must be one of {list(choices)}, got {flat[name]!r}")
    for name in _POSITIVE:
        if flat[name] <= 0:
            raise ConfigError(f"config.{name} must be positive, got {flat[name]!r}")
    for name in _UNIT_INTERVAL:
        if not 0 <= flat[name] <= 1:
            raise ConfigError(f"config.{name} must be in [0, 1], got {flat[name]!r}")
    for name in _NON_NEGATIVE:
        if flat[name] < 0:
            raise ConfigError(f"config.{name} must be >= 0, got {flat[name]!r}")
    dropout = flat["model.dropout_rate"]
    if dropout is not None and not 0 <= dropout < 1:
        raise ConfigError(f"config.model.dropout_rate must be in [0, 1) or None, got {dropout!r}")
    smallest = min_input_size(flat["model.variant"])
    if flat["image_size"] < smallest:
        raise ConfigError(f"config.image_size must be at least {smallest} for the "
                          f"{flat['model.variant']} variant, got {flat['image_size']}")
    if flat["augment.min_area"] > flat["augment.max_area"]:
        raise ConfigError("config.augment.min_area must not exceed config.augment.max_area")
    if not 0 < flat["augment.min_aspect"] <= flat["augment.max_aspect"]:
        raise ConfigError("config.augment needs 0 < min_aspect <= max_aspect")
    if flat["dataset"] == "image_folder" and not flat["data_dir"]:
        raise ConfigError("config.dataset='image_folder' needs config.data_dir (a folder)")


def validate_devices(config: ml_collections.ConfigDict, *, device_count: int,
                     process_count: int) -> None:
    """Checks that both global batch sizes split evenly over processes and devices."""
    for name in ("batch_size", "eval_batch_size"):
        size = config[name]
        if size % process_count:
            raise ConfigError(
                f"config.{name}={size} does not divide over {process_count} processes")
        if size % device_count:
            raise ConfigError(
                f"config.{name}={size} does not divide over {device_count} devices "
                f"(use a multiple of {device_count})")


def validate_num_classes(config: ml_collections.ConfigDict, dataset_classes: int) -> None:
    """Checks the config's class count against the dataset's."""
    if config.num_classes != dataset_classes:
        raise ConfigError(
            f"config.num_classes={config.num_classes} but dataset {config.dataset!r} has "
            f"{dataset_classes} classes")
