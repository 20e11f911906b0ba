"""Pure per-device train and eval steps; googlenet_jax/parallel.py decides how they run on devices.

With `axis_name` set (the pmap path) each call sees one device's shard of the batch and
averages gradients, metrics and (through the model's `bn_axis_name`) BatchNorm statistics
over that axis. With `axis_name=None` (one device, or jit over a mesh with global arrays)
each call sees the global batch and no collectives are needed.
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


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: nn.Module,
               tx: optax.GradientTransformation, learning_rate_fn: optax.Schedule,
               aux_weight: float, label_smoothing: float, ema_decay: float,
               axis_name: Optional[str]) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step.

    Args:
      state: the TrainState (donated by the callers in parallel.py).
      batch: {"image": float32 (B, S, S, 3), "label": int32 (B,)}; B is the per-device batch
        when axis_name is set, else the global batch.
      model: GoogLeNet with bn_axis_name == axis_name.
      axis_name: the pmap axis to average over, or None.
    Returns:
      (new state, metrics): float32 scalars "loss", "loss_main", "loss_aux1", "loss_aux2",
      "top1" (train batch accuracy), "grad_norm", "learning_rate", and "finite" (1.0, or 0.0
      when the loss or a gradient is NaN or infinite: then the state keeps its values and
      only `step`, the data position, advances).
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
        grads = jax.lax.pmean(grads, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
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
    kept = (state.params, state.batch_stats, state.opt_state, state.ema_params)
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
