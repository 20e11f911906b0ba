"""Weights on disk as orbax checkpoints: the workdir layout and reading them anywhere.

A train.py workdir keeps its checkpoints as WORKDIR/CHECKPOINT_DIR/<step>/ITEM_DIR (orbax's
item folder), beside CONFIG_FILE and MODEL_INFO_FILE; `python -m googlenet_jax.convert
to-flax` writes one orbax folder of variables. Orbax writes a step into a temporary name and
renames it when complete, so a folder named by a step number is a finished save.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

CHECKPOINT_DIR = "checkpoints"
ITEM_DIR = "default"
CONFIG_FILE = "config.json"
MODEL_INFO_FILE = "model_info.json"


def _epath(directory: str):
    return epath.Path(os.path.abspath(directory))


def step_folders(directory: str) -> list[int]:
    """The finished steps in a checkpoints folder (subfolders named by a step number), oldest first."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory)
                  if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def read_metadata(item_dir: str) -> Any:
    """The array metadata tree of an orbax item folder (raises for a missing or damaged one)."""
    handler = ocp.StandardCheckpointHandler()
    try:
        return handler.metadata(_epath(item_dir)).tree
    finally:
        handler.close()


def restore(item_dir: str, target: Any) -> Any:
    """Restores an item folder into `target` (numpy arrays or jax.ShapeDtypeStructs)."""
    handler = ocp.StandardCheckpointHandler()
    try:
        return handler.restore(_epath(item_dir), args=ocp.args.StandardRestore(target))
    finally:
        handler.close()


def restore_as_numpy(directory: str) -> Any:
    """Reads any orbax StandardCheckpointer directory as a pytree of host numpy arrays.

    The arrays are restored into numpy targets built from the checkpoint's metadata, so
    checkpoints written on any device topology (8 GPUs, a mesh, one CPU) read anywhere.
    Raises whatever orbax raises for a missing or damaged checkpoint.
    """
    tree = read_metadata(directory)
    return restore(directory, jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree))


def is_orbax_checkpoint(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("_CHECKPOINT_METADATA", "_METADATA"))


def save_variables(path: str, variables: Mapping[str, Any]) -> None:
    """Writes variables as an orbax checkpoint directory (it must not exist yet)."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        raise ValueError(f"{path}: already exists; refusing to overwrite it")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, dict(variables))


def load_variables(path: str) -> dict:
    """Reads variables written by save_variables, as numpy arrays (ValueError naming the path)."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"{path}: no such checkpoint directory")
    try:
        return restore_as_numpy(path)
    except Exception as error:  # orbax raises many types for a damaged checkpoint
        raise ValueError(f"{path}: not a readable orbax checkpoint ({type(error).__name__})") from None
