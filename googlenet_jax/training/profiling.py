"""config.profile_steps: a jax.profiler trace of a few training steps, for TensorBoard's profile tab.

"100-105" traces steps 100 to 105 (the progress line's step numbers, both included; "100" is
one step); "" is off. The trace goes to WORKDIR/plugins/profile/<time>/<host>.xplane.pb, the
folder TensorBoard's profile plugin reads beside the run's scalars. Each step is annotated as
"train_step" with its number, so the plugin's step view splits the trace per step.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Callable

import jax


def parse_steps(text: str) -> tuple[int, int] | None:
    """'A-B' or 'A' (steps >= 1, A <= B) -> (A, B); '' -> None; anything else is a ValueError."""
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    first, last = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
    if not 1 <= first <= last:
        raise ValueError(f"config.profile_steps must be '' (off), 'A' or 'A-B' with 1 <= A <= B, got {text!r}")
    return first, last


class StepProfiler:
    """Starts a trace before step `first` and stops it once step `last` has run.

        with profiler.step(done):
            state, metrics = train_step(state, next(batches))
        profiler.step_done(done, metrics)

    `close()` stops a trace the run left open (preemption, a NaN stop, or fewer steps than
    `last`)."""

    def __init__(self, window: tuple[int, int] | None, log_dir: str, log: Callable[[str], None]):
        self.window, self.log_dir, self.log = window, log_dir, log
        self.tracing = False

    def _in_window(self, done: int) -> bool:
        return self.window is not None and self.window[0] <= done <= self.window[1]

    def step(self, done: int) -> contextlib.AbstractContextManager:
        """Around step `done` (its input included): the trace starts at the window's first step."""
        if not self._in_window(done):
            return contextlib.nullcontext()
        if not self.tracing:
            jax.profiler.start_trace(self.log_dir)
            self.tracing = True
            self.log(f"profiling steps {self.window[0]}-{self.window[1]}")
        return jax.profiler.StepTraceAnnotation("train_step", step_num=done)

    def step_done(self, done: int, outputs: Any) -> None:
        """After step `done` was dispatched: at the window's last step, waits for `outputs`
        (the step runs asynchronously) and writes the trace."""
        if self.tracing and done == self.window[1]:
            jax.block_until_ready(outputs)
            self.close()

    def close(self) -> None:
        if self.tracing:
            self.tracing = False
            jax.profiler.stop_trace()
            self.log(f"profile written under {self.log_dir}/plugins/profile (TensorBoard's profile tab)")
