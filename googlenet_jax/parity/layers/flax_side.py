"""Our side of a parity comparison: one jitted apply that captures the stages, and its loss gradient.

Stages are read the one way the model offers, `apply(..., capture=names)`; a fork's model
takes the same argument (GoogLeNet's subclasses inherit it) and may list its names in
`capture_names()`. Dropout is switched off through the model's own fields.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from googlenet_jax.model import losses
from googlenet_jax.parity.models import jnp_dtype

DROPOUT_FIELDS = ("dropout_rate", "aux_dropout_rate")


def _with_fields(module, **values):
    """The module with those of `values` that are fields of it."""
    fields = {field.name for field in dataclasses.fields(module)}
    return module.clone(**{k: v for k, v in values.items() if k in fields})


def ready(module, dtype: str, train: bool):
    """The module computing in `dtype`, its dropout off in train mode (deterministic steps)."""
    module = _with_fields(module, dtype=jnp_dtype(dtype))
    return _with_fields(module, **dict.fromkeys(DROPOUT_FIELDS, 0.0)) if train else module


def check_names(module, paths: Sequence[str]) -> None:
    """A clear error, before anything is traced, for a path the model cannot capture."""
    known = module.capture_names() if hasattr(module, "capture_names") else None
    for path in paths if known is not None else ():
        if path not in known:
            close = difflib.get_close_matches(path, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"stage {path!r}: the Flax model has no stage {path!r}{hint} "
                             f"(its stages: {', '.join(n for n in known if '/' not in n)})")


def _apply(module, variables, x, paths, train):
    """(captured stages, new batch_stats or None) of one apply."""
    if train and "batch_stats" in variables:
        (_, captured), state = module.apply(variables, x, train=True, capture=paths, mutable=["batch_stats"])
        return captured, state["batch_stats"]
    _, captured = module.apply(variables, x, train=train, capture=paths)
    return captured, None


@functools.partial(jax.jit, static_argnames=("module", "paths", "train"))
def _forward(variables, x, *, module, paths, train):
    return _apply(module, variables, x, paths, train)


@functools.partial(jax.jit, static_argnames=("module", "paths", "train", "loss_stages", "aux_weight"))
def _loss_and_grads(variables, x, labels, *, module, paths, train, loss_stages, aux_weight):
    """((loss, (captured, batch_stats)), gradients of the params)."""
    def loss_fn(params):
        captured, batch_stats = _apply(module, {**variables, "params": params}, x, paths, train)
        aux = [captured.get(stage) for stage in loss_stages[1:]]
        total, _ = losses.googlenet_loss(captured[loss_stages[0]], aux, labels, aux_weight=aux_weight)
        return total, (captured, batch_stats)

    return jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])


def run(module, variables: Mapping[str, Any], inputs: np.ndarray, stages: Sequence[str], *, train: bool,
        grads: bool, labels, aux_weight: float, loss_stages: Sequence[str], dtype: str) -> dict:
    """Our stage outputs (numpy), new batch_stats, and with grads the loss and gradients.

    Call inside `models.precision(dtype)`; `module` from `ready`, `variables` from `models.cast_tree`."""
    check_names(module, stages)
    x = jnp.asarray(inputs, jnp_dtype(dtype))
    static = {"module": module, "paths": tuple(stages), "train": train}
    if not grads:
        captured, batch_stats = _forward(variables, x, **static)
        return {"outputs": jax.tree.map(np.asarray, captured), "batch_stats": batch_stats}
    (loss, (captured, batch_stats)), grads_tree = _loss_and_grads(
        variables, x, jnp.asarray(labels), loss_stages=tuple(loss_stages), aux_weight=float(aux_weight),
        **static)
    return {"outputs": jax.tree.map(np.asarray, captured), "batch_stats": batch_stats,
            "loss": np.asarray(loss), "grads": jax.tree.map(np.asarray, grads_tree)}
