"""Weights on disk as orbax checkpoints: the workdir layout and reading them anywhere.

A train.py workdir keeps its checkpoints as WORKDIR/CHECKPOINT_DIR/<step>/ITEM_DIR (orbax's
item folder), beside CONFIG_FILE and MODEL_INFO_FILE; `python -m googlenet_jax.convert
to-flax` writes one orbax folder of variables. Every path may be local or gs:// (paths.py).

When a step is finished: on a local disk orbax writes a step into a temporary name and
renames it when complete, so a folder named by a step number is a finished save. Object
storage cannot rename a folder atomically, so there orbax writes the step in place and
writes COMMIT_FILE into it last: a step folder is finished only when it holds that marker.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, Iterator, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from googlenet_jax.weights import paths

CHECKPOINT_DIR = "checkpoints"
ITEM_DIR = "default"
CONFIG_FILE = "config.json"
MODEL_INFO_FILE = "model_info.json"
COMMIT_FILE = "commit_success.txt"  # orbax's last write into a step on object storage


def _epath(directory: str):
    return epath.Path(paths.absolute(directory))


def _numbered_folders(directory: str) -> list[int]:
    if not paths.isdir(directory):
        return []
    return sorted(int(name) for name in paths.listdir(directory)
                  if name.isdigit() and paths.isdir(os.path.join(directory, name)))


def step_folders(directory: str) -> list[int]:
    """The finished steps in a checkpoints folder, oldest first: its subfolders named by a
    step number, on object storage only those holding COMMIT_FILE."""
    steps = _numbered_folders(directory)
    if paths.is_url(directory):
        steps = [step for step in steps if paths.exists(os.path.join(directory, str(step), COMMIT_FILE))]
    return steps


def unfinished_steps(directory: str) -> list[int]:
    """Step folders without COMMIT_FILE on object storage: a save or a delete that was
    interrupted. Always empty on a local disk, where such a folder never has a step's name."""
    if not paths.is_url(directory):
        return []
    return sorted(set(_numbered_folders(directory)) - set(step_folders(directory)))


class _QuietAfterFailureLoop(asyncio.SelectorEventLoop):
    """An event loop that stays quiet about the reads a failed read leaves behind.

    When one array of a damaged checkpoint fails to read, orbax raises that error and closes
    its event loop while the reads of the other arrays are still in flight (on object storage
    they finish later). Nobody waits for them any more, but each of tensorstore's completion
    callbacks would print a 'RuntimeError: Event loop is closed' traceback, and asyncio would
    log every other failed read as 'Task exception was never retrieved'."""

    def call_soon_threadsafe(self, callback, *args, context=None):
        try:
            return super().call_soon_threadsafe(callback, *args, context=context)
        except RuntimeError:
            if self.is_closed():
                return None
            raise

    def call_exception_handler(self, context):
        if "exception was never retrieved" not in context.get("message", ""):
            super().call_exception_handler(context)


@contextlib.contextmanager
def _quiet_after_failure_loops() -> Iterator[None]:
    """The event loops orbax creates meanwhile are _QuietAfterFailureLoop."""
    policy = asyncio.get_event_loop_policy()

    class Policy(type(policy)):
        def new_event_loop(self):
            return _QuietAfterFailureLoop()

    asyncio.set_event_loop_policy(Policy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(policy)


def read_metadata(item_dir: str) -> Any:
    """The array metadata tree of an orbax item folder (raises for a missing or damaged one)."""
    handler = ocp.StandardCheckpointHandler()
    try:
        with _quiet_after_failure_loops():
            return handler.metadata(_epath(item_dir)).tree
    finally:
        handler.close()


def restore(item_dir: str, target: Any) -> Any:
    """Restores an item folder into `target` (numpy arrays or jax.ShapeDtypeStructs)."""
    handler = ocp.StandardCheckpointHandler()
    try:
        with _quiet_after_failure_loops():
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
    return any(paths.exists(os.path.join(path, f)) for f in ("_CHECKPOINT_METADATA", "_METADATA"))


def save_variables(path: str, variables: Mapping[str, Any]) -> None:
    """Writes variables as an orbax checkpoint directory (it must not exist yet)."""
    path = paths.absolute(path)
    if paths.exists(path):
        raise ValueError(f"{path}: already exists; refusing to overwrite it")
    paths.check_bucket(path)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, dict(variables))


def load_variables(path: str) -> dict:
    """Reads variables written by save_variables, as numpy arrays (ValueError naming the path)."""
    path = paths.absolute(path)
    if not paths.isdir(path):
        raise ValueError(f"{path}: no such checkpoint directory")
    try:
        return restore_as_numpy(path)
    except Exception as error:  # orbax raises many types for a damaged checkpoint
        raise ValueError(f"{path}: not a readable orbax checkpoint ({type(error).__name__})") from None
