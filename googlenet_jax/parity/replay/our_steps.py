"""Our side of `parity --train_steps`: the trainer's own programs (googlenet_jax/training/programs.py,
the model, optimizer, schedule and jitted train step that train.py builds from a config) run
on given weights and batches on one device.

    run = train(config, variables, images, labels, steps_per_epoch=N, dtype="float64")
    run.losses, run.learning_rates, run.variables, run.momentum, run.ema, run.eval_logits(x)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from googlenet_jax import parallel
from googlenet_jax.parity import models
from googlenet_jax.training import programs
from googlenet_jax.training.train_state import TrainState


@dataclasses.dataclass
class OurRun:
    losses: list[float]  # metrics["loss"] of each step: the weighted loss before its update
    learning_rates: list[float]  # the rate each step applied (the optimizer's schedule at its count)
    first_update: tuple[int, Any]  # (step, params after it): the first step with a learning rate > 0
    variables: dict[str, Any]  # {"params", "batch_stats"} after the last step
    momentum: Any  # the optimizer's momentum buffers, a params-shaped tree, or None without momentum
    ema: Any  # the Polyak average of the params, or {} when off
    eval_logits: Callable[[np.ndarray], np.ndarray]  # the trained model in eval mode


def parity_config(config: ml_collections.ConfigDict, *, batch_size: int, image_size: int, num_classes: int,
                  dtype: str) -> ml_collections.ConfigDict:
    """`config` as both sides run it: this batch, size, class count and dtype, dropout off."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.batch_size, config.image_size, config.num_classes = batch_size, image_size, num_classes
        config.model.dtype = dtype  # float64 too: the trainer's model takes any JAX dtype
        config.model.dropout_rate = 0.0
        config.model.aux_dropout_rate = 0.0
    return config


def train(config: ml_collections.ConfigDict, variables: dict[str, Any], images: np.ndarray, labels: np.ndarray,
          *, steps_per_epoch: float) -> OurRun:
    """len(images) steps of `config` (from parity_config) from `variables`; call inside
    models.precision(config.model.dtype)."""
    dtype = config.model.dtype
    steps = len(images)
    par = parallel.MeshParallel([jax.devices()[0]])
    progs = programs.build(config, par, num_classes=config.num_classes, steps_per_epoch=steps_per_epoch,
                           train_steps=steps)
    variables = models.cast_tree(variables, dtype)
    params = jax.tree.map(jnp.asarray, variables["params"])
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       batch_stats=jax.tree.map(jnp.asarray, variables.get("batch_stats", {})),
                       opt_state=progs.tx.init(params),
                       # its own buffers: the step donates the state, and one buffer cannot be donated twice
                       ema_params=jax.tree.map(jnp.copy, params) if config.ema_decay > 0 else {},
                       rng=jax.random.PRNGKey(config.seed))
    state = par.put_state(state)
    # The rate of step t is the schedule at the optimizer's int32 count t, computed as the step does.
    rate_at = jax.jit(progs.learning_rate_fn)
    learning_rates = [float(rate_at(jnp.asarray(t, jnp.int32))) for t in range(steps)]
    losses, first_update = [], None
    for step, (x, y) in enumerate(zip(images, labels), 1):
        batch = par.put_batch({"image": np.asarray(x, dtype), "label": np.asarray(y, np.int32)})
        state, metrics = progs.train_step(state, batch)
        losses.append(float(metrics["loss"]))
        if first_update is None and learning_rates[step - 1] > 0:
            # A copy: the next step donates (reuses) the state's buffers.
            first_update = (step, jax.tree.map(np.array, state.params))
    apply = jax.jit(lambda v, x: progs.model.apply(v, x, train=False))
    trained = {"params": state.params, "batch_stats": state.batch_stats} if state.batch_stats \
        else {"params": state.params}
    to_numpy = lambda tree: jax.tree.map(np.array, tree)  # noqa: E731
    trace = optax.tree_utils.tree_get(state.opt_state, "trace")
    return OurRun(losses=losses, learning_rates=learning_rates, first_update=first_update,
                  variables=to_numpy(trained),
                  momentum=None if trace is None else to_numpy(trace), ema=to_numpy(state.ema_params),
                  eval_logits=lambda x: np.asarray(apply(trained, jnp.asarray(x, dtype))))
