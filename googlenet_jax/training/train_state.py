"""The training state: everything a run needs to continue exactly where it stopped."""
from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


class TrainState(flax.struct.PyTreeNode):
    """A pytree of arrays only (no functions), so it checkpoints and shards as it is.

    Attributes:
      step: int32 scalar, the number of optimizer steps taken. It is also the data position:
        the input pipeline restarts at batch `step` (each step consumes one global batch).
      params: model parameters, float32 (float64 in a float64 run).
      batch_stats: BatchNorm running statistics ({} for models without BatchNorm).
      opt_state: optax state (momentum buffers, schedule count).
      ema_params: Polyak (exponential moving) average of `params`, used for evaluation;
        {} when averaging is off.
      rng: uint32 PRNG key data; step and device index are folded in for each step's dropout.
    """
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array

    def eval_params(self) -> Any:
        """The parameters to evaluate: the averaged ones when averaging is on."""
        return self.ema_params if self.ema_params else self.params


# XLA:CPU's optimising passes take ~15-30 s over the threefry random draws of an init (one per
# parameter) and save ~1 s of its single run: the init compiles unoptimised on the CPU.
INIT_COMPILER_OPTIONS = {"cpu": {"xla_backend_optimization_level": 0}}


def initial_state_fn(model: nn.Module, tx: optax.GradientTransformation, *, seed: int, image_size: int,
                     use_ema: bool, param_dtype: Any = jnp.float32) -> Callable[[], TrainState]:
    """The pure function `() -> TrainState` that initializes the model on one
    (1, image_size, image_size, 3) float32 dummy batch: for jax.eval_shape, or create_train_state.

    `seed` drives both the initialization and (through a separate key) dropout. With
    `param_dtype` float64 (under JAX's 64-bit mode) the parameters and BatchNorm statistics are
    the float32 initial values in float64, so such a run starts where a float32 run starts.
    """

    def init():
        init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
        dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
        variables = model.init({"params": init_key}, dummy, train=False)
        variables = jax.tree.map(lambda leaf: leaf.astype(param_dtype), variables)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            ema_params=params if use_ema else {},
            rng=dropout_key,
        )

    return init


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, **kwargs) -> TrainState:
    """The initial TrainState (see initial_state_fn for the arguments), computed by one jitted call."""
    init = initial_state_fn(model, tx, **kwargs)
    return jax.jit(init, compiler_options=INIT_COMPILER_OPTIONS.get(jax.default_backend()))()
