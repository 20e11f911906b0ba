"""Preemption: stop at a step boundary, save, exit, so the same command resumes.

One process: SIGTERM (what schedulers send before they kill) and SIGINT (Ctrl-C) set a flag
that the training loop reads after each step. Several processes (`jax.distributed`
initialised): JAX installs its own SIGTERM handler and agrees on one step for every process
(`multihost_utils.reached_preemption_sync_point`); we use that alone, not a second handler
that would replace JAX's. A second signal while saving is reported and otherwise ignored:
the save finishes (and a kill -9 would still leave the previous checkpoint intact).
"""
from __future__ import annotations

import signal
import threading
from typing import Callable, Optional

import jax
from jax.experimental import multihost_utils

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """Raised after the preemption checkpoint is on disk; `exit_code` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class PreemptionWatcher:
    """A context manager: `should_stop(step)` turns True once the run has been asked to stop."""

    def __init__(self, log: Callable[[str], None] = print):
        self._log = log
        self.signal: Optional[int] = None
        self._previous = {}
        self._multihost = False

    def __enter__(self) -> "PreemptionWatcher":
        self._multihost = jax.distributed.is_initialized()
        # Python delivers signals to the main thread only; elsewhere (e.g. a test runner's
        # worker thread) the default handlers stay.
        if not self._multihost and threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal is None:
            self.signal = signum
            self._log(f"received {name}: finishing this step, then saving a checkpoint and exiting")
        else:
            self._log(f"received {name} again: still saving the checkpoint, please wait (a kill -9 now "
                      "loses only this save: the previous checkpoint stays intact)")

    def should_stop(self, step: int) -> bool:
        """Called by every process after every step with the same `step`."""
        if self._multihost:
            if multihost_utils.reached_preemption_sync_point(step):
                self.signal = self.signal or signal.SIGTERM
                return True
            return False
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """128 + signal number (143 for SIGTERM, 130 for SIGINT): the run did not finish."""
        return 128 + int(self.signal or signal.SIGTERM)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal or signal.SIGTERM).name
