"""GoogLeNet training loss and classification metrics (all in float32)."""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array, *,
                  label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy, float32.

    Args:
      logits: (N, num_classes), any float dtype; cast to at least float32 first
        (bfloat16 -> float32; float64 stays float64 for exact parity checks).
      labels: (N,) integer class ids.
      label_smoothing: weight moved uniformly over all classes.
    Returns:
      (N,) float32 losses.
    """
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    return optax.softmax_cross_entropy(logits, targets)


def googlenet_loss(logits: jax.Array, aux_logits: Sequence[Optional[jax.Array]],
                   labels: jax.Array, *, aux_weight: float,
                   label_smoothing: float = 0.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean of CE(main) + aux_weight * sum(CE(aux)) over the batch.

    Args:
      logits: (N, C) main head.
      aux_logits: the auxiliary heads' (N, C) logits (aux1 on 4a, aux2 on 4d); None entries
        (no auxiliary heads) are skipped.
      labels: (N,) int.
    Returns:
      (total loss, {"loss_main", "loss_aux1", "loss_aux2"...}) float32 scalars.
    """
    parts = {"loss_main": cross_entropy(logits, labels, label_smoothing=label_smoothing).mean()}
    total = parts["loss_main"]
    for i, aux in enumerate(aux_logits, start=1):
        if aux is None:
            continue
        parts[f"loss_aux{i}"] = cross_entropy(aux, labels, label_smoothing=label_smoothing).mean()
        total = total + aux_weight * parts[f"loss_aux{i}"]
    return total, parts


def eval_sums(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
    """Masked sums over a batch: loss, top-1 and top-5 hits, and the example count.

    Padded examples (mask False) contribute nothing. Divide the sums by "count" after
    accumulating over the whole split.
    """
    logits = logits.astype(jnp.float32)
    weights = mask.astype(jnp.float32)
    loss = cross_entropy(logits, labels)
    # Rank of the true class = number of classes scoring strictly higher.
    true_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)
    rank = (logits > true_logit).sum(axis=-1)
    return {
        "loss": (loss * weights).sum(),
        "top1": ((rank < 1) * weights).sum(),
        "top5": ((rank < 5) * weights).sum(),
        "count": weights.sum(),
    }
