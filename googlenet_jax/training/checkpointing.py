"""Orbax checkpoints of the TrainState: every N steps and at the end, the last K kept."""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

# A workdir's checkpoints: WORKDIR/CHECKPOINT_DIR/<step>/ITEM_DIR (orbax's item folder).
CHECKPOINT_DIR = "checkpoints"
ITEM_DIR = "default"


def restore_as_numpy(directory: str) -> Any:
    """Reads any orbax StandardCheckpointer directory as a pytree of host numpy arrays.

    The arrays are restored into numpy targets built from the checkpoint's metadata, so
    checkpoints written on any device topology (8 GPUs, a mesh, one CPU) read anywhere.
    Raises whatever orbax raises for a missing or damaged checkpoint.
    """
    from etils import epath

    # The handler itself, not a Checkpointer: a CheckpointManager's item folder has no
    # step metadata file, which a Checkpointer would warn about.
    handler = ocp.StandardCheckpointHandler()
    path = epath.Path(os.path.abspath(directory))
    try:
        tree = handler.metadata(path).tree
        target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree)
        return handler.restore(path, args=ocp.args.StandardRestore(target))
    finally:
        handler.close()


class Checkpointer:
    """Saves and restores TrainStates under `directory` (one subfolder per step)."""

    def __init__(self, directory: str, *, every_steps: int, keep: int):
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, save_interval_steps=every_steps, create=True))

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves when `step` is a multiple of every_steps (always with force). Asynchronous:
        the arrays are copied off the devices before this returns, the files written later."""
        return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def restore(self, step: int, abstract_state: Any) -> Any:
        """Restores `step` into the structure, dtypes and shardings of `abstract_state`
        (a pytree of jax.ShapeDtypeStruct with `sharding` set)."""
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def restore_latest(self, state: Any, shardings: Any) -> Optional[Any]:
        """The latest checkpoint shaped like `state` and placed on `shardings`, or None."""
        step = self.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
        return self.restore(step, abstract)

    def wait(self) -> None:
        """Blocks until every pending save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
