"""The one tree comparison: which arrays are missing, unexpected or mis-shaped, in one line."""
from __future__ import annotations

from typing import Any, Mapping

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
