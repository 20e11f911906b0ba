"""The programs a config defines: schedule, optimizer, model, initial state and the two steps.

`train.py` runs them and `python -m googlenet_jax.aot` compiles them for a TPU topology without
running them; both build them here, so what aot measures is what the trainer runs.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from googlenet_jax import parallel
from googlenet_jax.model.architecture import stages_up_to
from googlenet_jax.model.network import GoogLeNet
from googlenet_jax.training import optim, steps
from googlenet_jax.training import train_state as train_state_lib
from googlenet_jax.training.config import ConfigError


def create_model(config: ml_collections.ConfigDict, *, num_classes: int,
                 bn_axis_name: str | None) -> GoogLeNet:
    """GoogLeNet(num_classes=..., **config.model): every field of config.model is one of the
    network's; the run adds only what the devices and the frozen stages decide."""
    return GoogLeNet(num_classes=num_classes, **config.model, bn_axis_name=bn_axis_name,
                     freeze_up_to=config.freeze_up_to)


def num_train_steps(config: ml_collections.ConfigDict, steps_per_epoch: float) -> int:
    """config.num_train_steps when set, else num_epochs worth of global batches."""
    if config.num_train_steps > 0:
        return config.num_train_steps
    return math.ceil(config.num_epochs * steps_per_epoch)


@dataclasses.dataclass(frozen=True)
class TrainingPrograms:
    """What one config trains with. `train_step(state, batch) -> (state, metrics)` and
    `eval_step(state, batch) -> sums` are jitted (or pmapped) by the Parallel, not compiled yet;
    `abstract_state` is the TrainState's shapes and dtypes (jax.ShapeDtypeStruct leaves)."""

    model: GoogLeNet
    tx: optax.GradientTransformation
    learning_rate_fn: optax.Schedule
    create_state: Callable[[], train_state_lib.TrainState]
    abstract_state: Any
    train_step: Callable[[Any, Any], Any]
    eval_step: Callable[[Any, Any], Any]


def build(config: ml_collections.ConfigDict, parallel_plan: parallel.Parallel, *, num_classes: int,
          steps_per_epoch: float, train_steps: int) -> TrainingPrograms:
    """The config's programs on `parallel_plan`'s devices. `steps_per_epoch` and `train_steps` only set
    the schedule's constants. Raises ConfigError when the model rejects the input size."""
    learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, train_steps)
    tx = optim.create_optimizer(config, learning_rate_fn,
                                frozen=stages_up_to(config.model.variant, config.freeze_up_to))
    model = create_model(config, num_classes=num_classes, bn_axis_name=parallel_plan.bn_axis_name)
    state_options = dict(seed=config.seed, image_size=config.image_size, use_ema=config.ema_decay > 0,
                         param_dtype=jnp.float64 if config.model.dtype == "float64" else jnp.float32)
    create_state = functools.partial(train_state_lib.create_train_state, model, tx, **state_options)
    try:  # traces only: no compilation yet
        abstract_state = jax.eval_shape(train_state_lib.initial_state_fn(model, tx, **state_options))
    except ValueError as e:  # the model rejects the input size or variant
        raise ConfigError(f"model: {e}") from e
    train_step = parallel_plan.compile_train_step(functools.partial(
        steps.train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn,
        aux_weight=config.aux_weight, label_smoothing=config.label_smoothing,
        ema_decay=config.ema_decay, grad_reduce_dtype=config.grad_reduce_dtype))
    eval_step = parallel_plan.compile_eval_step(functools.partial(steps.eval_step, model=model))
    return TrainingPrograms(model=model, tx=tx, learning_rate_fn=learning_rate_fn, create_state=create_state,
                    abstract_state=abstract_state, train_step=train_step, eval_step=eval_step)


def train_batch_shapes(batch_size: int, image_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """A training batch as the input pipeline yields it (data.train_batches)."""
    return {"image": jax.ShapeDtypeStruct((batch_size, image_size, image_size, 3), jnp.float32),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}


def eval_batch_shapes(batch_size: int, image_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    """A one-crop evaluation batch as the input pipeline yields it (data.eval_batches)."""
    return {**train_batch_shapes(batch_size, image_size),
            "mask": jax.ShapeDtypeStruct((batch_size,), jnp.bool_)}
