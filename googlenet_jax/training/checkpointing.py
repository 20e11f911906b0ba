"""Orbax checkpoints of the TrainState that survive kills, damage and full disks.

Layout (googlenet_jax/weights/files.py): WORKDIR/checkpoints/<step>/default, on a local disk
or on object storage (gs://). On a local disk orbax writes a step into
`<step>.orbax-checkpoint-tmp-<time>` and renames it when complete; on object storage, where
a folder rename is a copy of every object, it writes `<step>/` in place and writes
`<step>/commit_success.txt` last. Either way files.step_folders lists only finished steps.
On top of that this module:
- removes the partial folders a killed save or delete leaves (`open`): temporary and
  `.deleting` folders, and on object storage step folders without the commit marker;
- resumes from the newest checkpoint that reads, moving unreadable newer ones aside as
  `<step>.unreadable` with a warning, and refuses to start over when none reads;
- tells a checkpoint of another model (other variant or class count) from a damaged one;
- keeps the newest `keep` steps. An old step first leaves the step namespace in one atomic
  operation, so an interrupted delete never looks like a step: a rename to `<step>.deleting`
  on a local disk, the deletion of its commit marker on object storage;
- turns a failed save (disk full, read-only folder) into one line naming what to do, without
  the flood of tracebacks orbax's closed event loop would print around it.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Optional

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from googlenet_jax.errors import first_line
from googlenet_jax.weights import files, paths, trees
from googlenet_jax.weights.files import COMMIT_FILE, ITEM_DIR, step_folders

PARTIAL_SUFFIXES = (".orbax-checkpoint-tmp", ".deleting")  # a killed save / a killed delete
UNREADABLE_SUFFIX = ".unreadable"
# The parts of a TrainState whose shapes say which model it is.
MODEL_PARTS = ("params", "batch_stats", "ema_params")


class CheckpointError(RuntimeError):
    """A checkpoint problem the run cannot continue past; the message is one line."""


# The operating-system causes a failed write reports, as strerror texts inside orbax's messages.
_OS_REASONS = re.compile(r"No space left on device|File too large|Read-only file system|"
                         r"Permission denied|Disk quota exceeded|Input/output error")


def _one_line(error: BaseException) -> str:
    """A short reason: the OS error inside orbax's long message if there is one."""
    text = str(error).strip()
    reason = _OS_REASONS.search(text)
    if reason:
        return reason.group(0)
    return f"{type(error).__name__}: {first_line(error, 200)}" if text else type(error).__name__


def _is_callback_into_a_closed_loop(unraisable: Any) -> bool:
    error = unraisable.exc_value
    return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def _drop_callbacks_into_closed_loops() -> None:
    """Silences one kind of noise a failed save makes. When one array write fails, orbax closes
    its asyncio loop while tensorstore is still finishing the other writes; each of those
    completions calls back into the closed loop and tensorstore prints the RuntimeError as an
    unraisable exception: hundreds of identical tracebacks for one full disk, some of them after
    the run's one-line error. They say nothing the first failure did not. Every other unraisable
    exception is printed as before. Installed once per process."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_callbacks_into_closed_loops", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_callback_into_a_closed_loop(unraisable):
            previous(unraisable)

    hook.drops_callbacks_into_closed_loops = True
    sys.unraisablehook = hook


def model_difference(metadata: Any, abstract_state: Any) -> Optional[str]:
    """What makes a checkpoint's model differ from `abstract_state`'s, or None.

    Compares the shapes of params, BatchNorm statistics and the Polyak average; a variant,
    class count or averaging setting that differs shows here.
    """
    problems, saved_shapes, wanted_shapes = [], {}, {}
    for part in MODEL_PARTS:
        saved = trees.flat_shapes(metadata.get(part), part)
        wanted = trees.flat_shapes(getattr(abstract_state, part), part)
        if bool(saved) != bool(wanted):
            problems.append(f"{part} {'present' if saved else 'absent'} in the checkpoint, "
                            f"{'present' if wanted else 'absent'} in this config")
        else:
            saved_shapes.update(saved)
            wanted_shapes.update(wanted)
    difference = trees.shape_difference(wanted_shapes, saved_shapes)  # "missing" from the checkpoint
    return "; ".join(problems + ([f"checkpoint against this config: {difference}"] if difference else [])) or None


class Checkpointer:
    """Saves and restores TrainStates under `directory` (one subfolder per step).

    `log` receives one-line warnings (partial folders removed, unreadable steps skipped).
    File operations happen on process 0 only; the other processes wait for it.
    """

    def __init__(self, directory: str, *, every_steps: int, keep: int,
                 log: Callable[[str], None] = print):
        self.directory = paths.absolute(directory)
        self.every_steps, self.keep, self._log = every_steps, keep, log
        self._is_primary = jax.process_index() == 0
        self._last_saved: Optional[int] = None
        self._manager: Optional[ocp.CheckpointManager] = None

    # ------------------------------------------------------------------ opening and resuming

    def _sync(self, name: str) -> None:
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpointing:{name}")

    def _remove_partial_folders(self) -> None:
        """Deletes what a killed save or a killed delete left behind."""
        if self._is_primary and paths.isdir(self.directory):
            names = [name for name in sorted(paths.listdir(self.directory))
                     if any(suffix in name for suffix in PARTIAL_SUFFIXES)]
            for name in names + [str(step) for step in files.unfinished_steps(self.directory)]:
                paths.rmtree(os.path.join(self.directory, name))
                self._log(f"removed {os.path.join(self.directory, name)}: the remains of an "
                          "interrupted checkpoint save or delete")
        self._sync("partial")

    def _set_aside(self, step: int, reason: str) -> None:
        folder = os.path.join(self.directory, str(step))
        self._log(f"warning: checkpoint step {step} in {self.directory} cannot be read ({reason}); "
                  f"falling back to an older one (kept as {folder}{UNREADABLE_SUFFIX})")
        if self._is_primary:
            target = folder + UNREADABLE_SUFFIX
            paths.rmtree(target)
            if paths.is_url(folder):  # copied whole before the step stops being one, then deleted
                paths.copytree(folder, target)
                paths.remove(os.path.join(folder, COMMIT_FILE))
                paths.rmtree(folder)
            else:
                os.rename(folder, target)

    def _open_manager(self) -> None:
        _drop_callbacks_into_closed_loops()
        try:
            paths.check_bucket(self.directory)  # TensorFlow's makedirs hangs without one
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=None, save_interval_steps=1, create=True))
        except OSError as error:
            raise CheckpointError(f"cannot create {self.directory}: {_one_line(error)}") from None

    def restore_latest(self, state: Any, shardings: Any) -> Optional[Any]:
        """Opens the folder and returns the newest readable checkpoint, or None if it has none.

        The checkpoint is shaped like `state` (arrays or jax.ShapeDtypeStructs) and placed on
        `shardings` (a matching pytree of jax.sharding.Sharding). Unreadable
        newer steps are set aside with a warning. Raises CheckpointError (one line) for a
        checkpoint of another model, or when steps exist and none can be read.
        """
        abstract_state = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
        self._remove_partial_folders()
        failures: dict[int, str] = {}  # step -> why it cannot be read, newest first
        restored = None
        for step in reversed(step_folders(self.directory)):
            item = os.path.join(self.directory, str(step), ITEM_DIR)
            try:
                metadata = files.read_metadata(item)
            except Exception as error:  # orbax raises many types for damaged metadata
                failures[step] = _one_line(error)
                continue
            difference = model_difference(metadata, abstract_state)
            if difference:
                raise CheckpointError(
                    f"{item} is a checkpoint of another model ({difference}); use another --workdir, "
                    "or the config that wrote it")
            try:
                restored = files.restore(item, abstract_state)
                break
            except Exception as error:  # a truncated or deleted array file
                failures[step] = _one_line(error)
        if failures and restored is None:  # nothing is moved: the folder stays as the user left it
            steps = ", ".join(map(str, failures))
            raise CheckpointError(
                f"no checkpoint in {self.directory} can be read (steps {steps}; newest: "
                f"{next(iter(failures.values()))}); refusing to start a new run over them: move the "
                "folder away to start from scratch")
        for step, reason in failures.items():
            self._set_aside(step, reason)
        self._sync("restore")
        self._open_manager()
        return restored

    # ------------------------------------------------------------------ saving

    def latest_step(self) -> Optional[int]:
        steps = step_folders(self.directory)
        return steps[-1] if steps else None

    def _fail(self, step: Optional[int], error: BaseException) -> CheckpointError:
        latest = self.latest_step()
        kept = (f"the newest complete checkpoint is step {latest}" if latest is not None
                else "no checkpoint was completed")
        return CheckpointError(
            f"saving checkpoint step {step} to {self.directory} failed ({_one_line(error)}); {kept}: "
            "fix the folder (free space, permissions) and run the same command to resume")

    def _prune(self) -> None:
        """Keeps the newest `keep` finished steps. A step leaves the step namespace in one atomic
        operation before its files go (a rename; on object storage the deletion of its commit
        marker), so a killed delete never leaves a step that looks whole."""
        if not self._is_primary:
            return
        for step in step_folders(self.directory)[:-self.keep]:
            folder = os.path.join(self.directory, str(step))
            if paths.is_url(folder):
                paths.remove(os.path.join(folder, COMMIT_FILE))
                paths.rmtree(folder)
            else:
                doomed = folder + ".deleting"
                os.rename(folder, doomed)
                paths.rmtree(doomed)

    def save(self, step: int, state: Any, *, force: bool = False) -> bool:
        """Saves when `step` is a multiple of every_steps (always with force). Asynchronous:
        the arrays are copied off the devices before this returns, the files written later.
        Raises CheckpointError (one line) when this or the previous save failed."""
        if not force and step % self.every_steps:
            return False
        if step == self._last_saved:
            return False
        if self._manager is None:  # saving into a folder nobody resumed from
            self._open_manager()
        self.wait()  # the previous save must be on disk before older steps are pruned
        try:
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        except Exception as error:  # disk full, read-only folder, ... (orbax wraps many types)
            raise self._fail(step, error) from None
        self._last_saved = step
        return True

    def wait(self) -> None:
        """Blocks until every pending save is on disk (raises CheckpointError if one failed)."""
        if self._manager is None:
            return
        try:
            self._manager.wait_until_finished()
        except Exception as error:  # the asynchronous write of the last save failed
            raise self._fail(self._last_saved, error) from None
        try:
            self._prune()
        except OSError as error:  # the newest steps are complete: only old ones may be left over
            raise CheckpointError(f"deleting old checkpoints in {self.directory} failed "
                                  f"({_one_line(error)}); the newest ones are complete: run the "
                                  "same command to resume") from None

    def close(self) -> None:
        """Releases orbax's threads. A failed pending save is reported by `wait`, not here (close
        also runs while another error is on its way up)."""
        if self._manager is not None:
            try:
                self._manager.close()
            except Exception:  # noqa: BLE001  (already reported, or about to be)
                pass
            self._manager = None
