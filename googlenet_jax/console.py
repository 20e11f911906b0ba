"""Lines for people watching a run: process-prefixed logging, durations, a progress line with ETA."""
from __future__ import annotations

import math
import sys
import time
from typing import TextIO

import jax


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m05s', 65 -> '1m05s', 5 -> '5s'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def process_prefix() -> str:
    """'[process 1/2] ' in a multi-process run, '' otherwise."""
    if jax.process_count() == 1:
        return ""
    return f"[process {jax.process_index()}/{jax.process_count()}] "


def log(line: str, *, stream: TextIO = sys.stdout) -> None:
    """Prints a line on process 0 only (prefixed with its index when there are several)."""
    if jax.process_index() == 0:
        log_every_process(line, stream=stream)


def log_every_process(line: str, *, stream: TextIO = sys.stdout) -> None:
    """Prints a line on every process, prefixed with its index when there are several."""
    # One write of the whole line: processes sharing a terminal or pipe never split each other's.
    stream.write(f"{process_prefix()}{line}\n")
    stream.flush()


class Progress:
    """`label: batch 3/10 | 120.5 img/s | ETA 1m05s` on stderr, at most every few seconds."""

    def __init__(self, label: str, total_batches: int, batch_size: int, every_seconds: float = 5.0):
        self.label, self.total, self.batch_size = label, total_batches, batch_size
        self.every = every_seconds
        self.start = self.last = time.time()

    def __call__(self, done: int) -> None:
        now = time.time()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done * self.batch_size / max(now - self.start, 1e-9)
        eta = (self.total - done) * self.batch_size / rate if rate > 0 else math.inf
        print(f"{self.label}: batch {done}/{self.total} | {rate:.1f} img/s | ETA {format_duration(eta)}",
              file=sys.stderr, flush=True)
