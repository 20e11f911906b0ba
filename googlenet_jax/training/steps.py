"""Pure per-device train and eval steps; googlenet_jax/parallel.py decides how they run on devices.

With `axis_name` set (both parallel paths) each call sees one device's shard of the batch and
averages gradients, metrics and (through the model's `bn_axis_name`) BatchNorm statistics
over that axis. With `axis_name=None` (one device) each call sees the whole batch and no
collectives are needed.
"""
from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from googlenet_jax import evaluation
from googlenet_jax.model import losses
from googlenet_jax.training.train_state import TrainState


def _variables(params: Any, batch_stats: Any) -> dict[str, Any]:
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def _split_outputs(outputs: Any) -> tuple[jax.Array, tuple[Optional[jax.Array], ...]]:
    """(main logits, aux logits) from GoogLeNetOutputs or from bare logits."""
    if isinstance(outputs, tuple):
        main, *aux = outputs
        return main, tuple(aux)
    return outputs, ()


def dropout_key(state: TrainState, axis_name: Optional[str]) -> jax.Array:
    """A dropout key that differs by step and, on the pmap path, by device."""
    key = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
        key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
    return key


def _mean_over_devices(grads: Any, axis_name: str, reduce_dtype: str) -> Any:
    """The gradients averaged over `axis_name`, summed in `reduce_dtype` (parallel.GRAD_REDUCE_DTYPES).

    "float32" sums them in their own dtype, the parameters' (float32; float64 in a float64
    run), whatever the compute dtype: the cotangent of each parameter's cast to the compute
    dtype is widened on its device before this explicit reduction. "bfloat16" halves the bytes
    and rounds every partial sum to 8 bits of mantissa.
    """
    if reduce_dtype == "float32":
        return jax.lax.pmean(grads, axis_name)
    return jax.tree.map(lambda g: jax.lax.pmean(g.astype(reduce_dtype), axis_name).astype(g.dtype), grads)


def _at_step(opt_state: Any, step: jax.Array) -> Any:
    """`opt_state` with every optax step count (`count`: the schedule's step) set to `step`."""
    def set_count(path, leaf):
        is_count = getattr(path[-1], "name", None) == "count"
        return jnp.asarray(step, leaf.dtype) if is_count else leaf

    return jax.tree_util.tree_map_with_path(set_count, opt_state)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
               tx: optax.GradientTransformation, learning_rate_fn: optax.Schedule,
               aux_weight: float, label_smoothing: float, ema_decay: float,
               axis_name: Optional[str], grad_reduce_dtype: str = "float32",
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step.

    Args:
      state: the TrainState (donated by the callers in parallel.py).
      batch: {"image": float32 (B, S, S, 3), "label": int32 (B,)}; B is the per-device batch
        when axis_name is set, else the global batch.
      model: GoogLeNet with bn_axis_name == axis_name.
      axis_name: the device axis to average over, or None.
      grad_reduce_dtype: "float32" or "bfloat16", the dtype gradients are summed over the
        devices in (_mean_over_devices).
    Returns:
      (new state, metrics): float32 scalars "loss", "loss_main", "loss_aux1", "loss_aux2",
      "top1" (train batch accuracy), "grad_norm", "learning_rate" (the one applied), and
      "finite" (1.0, or 0.0 when the loss or a gradient is NaN or infinite: then the state
      keeps its values and only `step`, the data position, advances).

    The schedule follows the data position: the optimizer's step count is `state.step`, so
    the rate applied after skipped steps is the schedule's for the step being taken.
    """
    has_bn = bool(state.batch_stats)
    rngs = {"dropout": dropout_key(state, axis_name)}

    def loss_fn(params):
        variables = _variables(params, state.batch_stats)
        if has_bn:
            outputs, updates = model.apply(variables, batch["image"], train=True,
                                           mutable=["batch_stats"], rngs=rngs)
            new_batch_stats = updates["batch_stats"]
        else:
            outputs = model.apply(variables, batch["image"], train=True, rngs=rngs)
            new_batch_stats = state.batch_stats
        logits, aux_logits = _split_outputs(outputs)
        loss, parts = losses.googlenet_loss(logits, aux_logits, batch["label"],
                                            aux_weight=aux_weight,
                                            label_smoothing=label_smoothing)
        top1 = (jnp.argmax(logits, axis=-1) == batch["label"]).mean()
        return loss, (new_batch_stats, dict(parts, loss=loss, top1=top1))

    grads, (new_batch_stats, metrics) = jax.grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
        # Each device's loss is a mean over its equal shard: the mean of the per-device
        # gradients is the gradient of the global mean loss.
        grads = _mean_over_devices(grads, axis_name, grad_reduce_dtype)
        metrics = jax.lax.pmean(metrics, axis_name)
    # A skipped step advances the data position and not the optimizer, whose count would then
    # lag behind: the count is set to the step (older checkpoints' lag included).
    updates, new_opt_state = tx.update(grads, _at_step(state.opt_state, state.step), state.params)
    new_params = optax.apply_updates(state.params, updates)

    new_ema = state.ema_params
    if ema_decay > 0:
        # Debiased early on (TF's num_updates rule) so short runs still average sensibly.
        # e + (1 - d)(p - e) is d e + (1 - d) p, and exactly e where p == e (frozen stages).
        step = state.step.astype(jnp.float32)
        decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
        new_ema = jax.tree.map(lambda e, p: e + (1.0 - decay) * (p - e), state.ema_params, new_params)

    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["learning_rate"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
    # A non-finite gradient norm covers every gradient entry (and a non-finite loss makes one).
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
    metrics["finite"] = finite.astype(jnp.float32)
    updated = (new_params, new_batch_stats, new_opt_state, new_ema)
    kept = (state.params, state.batch_stats, _at_step(state.opt_state, state.step + 1), state.ema_params)
    new_params, new_batch_stats, new_opt_state, new_ema = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old), updated, kept)
    new_state = state.replace(step=state.step + 1, params=new_params,
                              batch_stats=new_batch_stats, opt_state=new_opt_state,
                              ema_params=new_ema)
    return new_state, metrics


def eval_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
              axis_name: Optional[str]) -> dict[str, jax.Array]:
    """evaluation.eval_step on the state's evaluation parameters (the Polyak average when on)."""
    return evaluation.eval_step(_variables(state.eval_params(), state.batch_stats), batch,
                                model=model, axis_name=axis_name)
