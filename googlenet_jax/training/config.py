"""Checks a training config before anything is compiled: fields, types, values, devices.

The fields and their types come from configs/default.py (the one place a field is born); the
allowed values from the tables that define them (the model's variants and stages, the
normalisations, the schedules, the device strategies, the NaN policies). Every problem is a
one-line `ConfigError` (a ValueError) that `train.py` prints before exiting.
"""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections

from googlenet_jax import parallel
from googlenet_jax.configs import default
from googlenet_jax.model import architecture
from googlenet_jax.model.input_spec import NORMALIZATIONS
from googlenet_jax.training import nonfinite, optim, profiling

# config.model.dtype. float64 trains every parameter, statistic and sum in float64 (JAX's 64-bit
# mode, turned on by the trainer): slow, for exact checks on CPU, e.g. that a run on 2 processes
# trains as one process does.
COMPUTE_DTYPES = ("float32", "bfloat16", "float64")

_CHOICES: Mapping[str, tuple[Any, ...]] = {
    "normalization": NORMALIZATIONS,
    "model.variant": tuple(architecture.VARIANTS),
    "model.dtype": COMPUTE_DTYPES,
    "optimizer.name": optim.OPTIMIZERS,
    "optimizer.weight_decay_params": optim.WEIGHT_DECAY_PARAMS,
    "model.bn_running_var": architecture.BN_RUNNING_VARS,
    "model.inception_block": tuple(architecture.INCEPTION_BLOCKS),
    "optimizer.schedule": optim.SCHEDULES,
    "parallel": parallel.KINDS,
    "grad_reduce_dtype": parallel.GRAD_REDUCE_DTYPES,
    "nan_policy": nonfinite.POLICIES,
}
# Accepted, but not offered in error messages: the tiny network the tests train.
_UNLISTED_CHOICES = {"model.variant": tuple(architecture.TEST_VARIANTS)}
_POSITIVE = ("num_classes", "image_size", "eval_crop_fraction", "batch_size", "eval_batch_size", "num_epochs",
             "shuffle_buffer", "optimizer.lr_reference_batch_size", "optimizer.decay_epochs",
             "log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "nan_max_consecutive_skips",
             "heartbeat_timeout_seconds", "optimizer.poly_power", "optimizer.trust_coefficient")
_UNIT_INTERVAL = ("eval_crop_fraction", "augment.min_area", "augment.max_area", "model.aux_dropout_rate",
                  "label_smoothing", "optimizer.momentum", "ema_decay", "optimizer.decay_factor")
_NON_NEGATIVE = ("aux_weight", "optimizer.learning_rate", "optimizer.warmup_epochs",
                 "optimizer.weight_decay", "optimizer.grad_clip_norm", "eval_every_steps",
                 "optimizer.end_learning_rate")


class ConfigError(ValueError):
    """A config that cannot be trained; the message is one line."""


def default_config() -> ml_collections.ConfigDict:
    """configs/default.py's config (googlenet_jax/configs/default.py, shipped with the package)."""
    return default.get_config()


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _accepted_types(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, tuple[type, ...]]:
    """{field: accepted types} from a config's values: a float field takes ints too, and a
    placeholder (None) field its declared type or None."""
    types = {}
    for key in config.keys():
        value, name = config[key], f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            types.update(_accepted_types(value, f"{name}."))
            continue
        kind = config.get_ref(key).get_type() if value is None else type(value)
        accepted = (int, float) if kind is float else (kind,)
        types[name] = accepted + ((type(None),) if value is None else ())
    return types


def schema() -> dict[str, tuple[type, ...]]:
    """Every field the trainer reads, with its accepted types (configs/default.py's)."""
    return _accepted_types(default_config())


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks field names, types and value ranges; raises ConfigError (one line)."""
    fields = schema()
    flat = _flatten(config)
    unknown = sorted(set(flat) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    missing = sorted(set(fields) - set(flat))
    if missing:
        raise ConfigError(f"missing config field(s): {', '.join(missing)}")
    for name, types in fields.items():
        value = flat[name]
        # bool is an int subclass: accept it only where bool is expected.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            raise ConfigError(f"config.{name} must be {expected}, got {type(value).__name__} {value!r}")
    for name, choices in _CHOICES.items():
        if flat[name] not in choices + _UNLISTED_CHOICES.get(name, ()):
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
    peak = optim.learning_rate(config)
    if flat["optimizer.schedule"] in ("cosine", "polynomial") and flat["optimizer.end_learning_rate"] > peak:
        raise ConfigError(f"config.optimizer.end_learning_rate={flat['optimizer.end_learning_rate']!r} is above "
                          f"the peak learning rate {peak:g} (learning_rate scaled to batch_size)")
    dropout = flat["model.dropout_rate"]
    if dropout is not None and not 0 <= dropout < 1:
        raise ConfigError(f"config.model.dropout_rate must be in [0, 1) or None, got {dropout!r}")
    variant = flat["model.variant"]
    smallest = architecture.min_input_size(variant)
    if flat["image_size"] < smallest:
        raise ConfigError(f"config.image_size must be at least {smallest} for the {variant} variant, "
                          f"got {flat['image_size']}")
    stages = architecture.backbone_stages(variant)
    if flat["freeze_up_to"] not in ("", *stages):
        raise ConfigError(f"config.freeze_up_to must be '' or a backbone stage of the {variant} variant "
                          f"({', '.join(stages)}), got {flat['freeze_up_to']!r}")
    if flat["augment.min_area"] > flat["augment.max_area"]:
        raise ConfigError("config.augment.min_area must not exceed config.augment.max_area")
    if not 0 < flat["augment.min_aspect"] <= flat["augment.max_aspect"]:
        raise ConfigError("config.augment needs 0 < min_aspect <= max_aspect")
    try:
        profiling.parse_steps(flat["profile_steps"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if flat["dataset"] == "image_folder" and not flat["data_dir"]:
        raise ConfigError("config.dataset='image_folder' needs config.data_dir (a folder)")


def validate_devices(config: ml_collections.ConfigDict, *, device_count: int, process_count: int) -> None:
    """Checks that both global batch sizes split evenly over processes and devices."""
    for name in ("batch_size", "eval_batch_size"):
        size = config[name]
        if size % process_count:
            raise ConfigError(f"config.{name}={size} does not divide over {process_count} processes")
        if size % device_count:
            raise ConfigError(f"config.{name}={size} does not divide over {device_count} devices "
                              f"(use a multiple of {device_count})")


def validate_num_classes(config: ml_collections.ConfigDict, dataset_classes: int) -> None:
    """Checks the config's class count against the dataset's."""
    if config.num_classes != dataset_classes:
        raise ConfigError(f"config.num_classes={config.num_classes} but dataset {config.dataset!r} has "
                          f"{dataset_classes} classes")
