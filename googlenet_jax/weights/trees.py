"""The one tree comparison: which arrays are missing, unexpected or mis-shaped, in one line; and
the shapes a model's variables have."""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

SHOWN = 4  # names listed per kind of problem before "and N more"


def flat_shapes(tree: Any, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """{"a/b/c": shape} for every leaf of a nested mapping (arrays, ShapeDtypeStructs or orbax
    metadata); `prefix` (e.g. "params") goes in front of every name. Empty subtrees have none."""
    if not tree:
        return {}
    flat = traverse_util.flatten_dict(dict(tree), sep="/")
    start = f"{prefix}/" if prefix else ""
    return {start + name: tuple(leaf.shape) if hasattr(leaf, "shape") else tuple(np.shape(leaf))
            for name, leaf in flat.items()}


def flatten_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """{"collection/module/.../leaf": array} over every collection."""
    return {f"{collection}/{name}": leaf for collection, tree in variables.items() if tree
            for name, leaf in traverse_util.flatten_dict(dict(tree), sep="/").items()}


def variables_shapes(variables: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """flat_shapes of every collection, named "collection/module/.../leaf"."""
    shapes = {}
    for collection, tree in variables.items():
        shapes.update(flat_shapes(tree, collection))
    return shapes


@functools.lru_cache(maxsize=16)
def model_shapes(model) -> dict[str, tuple[int, ...]]:
    """variables_shapes of a freshly initialised GoogLeNet `model`, traced (nothing computed).
    Parameter shapes do not depend on the input size; 224x224 suits every variant's aux heads."""
    image = jnp.zeros((1, 224, 224, 3), jnp.float32)
    return variables_shapes(jax.eval_shape(lambda: model.init(jax.random.key(0), image, train=False)))


def _listed(items: list[str], separator: str = ", ") -> str:
    shown = separator.join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def shape_difference(expected: Mapping[str, tuple], given: Mapping[str, tuple]) -> str | None:
    """"missing: a, b; unexpected: c; d has shape (1, 2), expected (2, 2)", or None when the two
    {name: shape} mappings agree. At most SHOWN names per kind, then a count."""
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    misshaped = [f"{name} has shape {tuple(given[name])}, expected {tuple(expected[name])}"
                 for name in sorted(expected.keys() & given.keys()) if tuple(given[name]) != tuple(expected[name])]
    parts = ([f"missing: {_listed(missing)}"] if missing else []) + (
        [f"unexpected: {_listed(unexpected)}"] if unexpected else []) + (
        [_listed(misshaped, "; ")] if misshaped else [])
    return "; ".join(parts) or None
