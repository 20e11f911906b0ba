"""TensorBoard event files and the console progress line; only process 0 writes."""
from __future__ import annotations

import math
import os
import sys
from typing import Mapping, Optional, TextIO

import jax


class MetricWriter:
    """Scalars to TensorBoard event files in `log_dir` (a no-op on processes other than 0)."""

    def __init__(self, log_dir: str, *, enabled: Optional[bool] = None):
        self._enabled = jax.process_index() == 0 if enabled is None else enabled
        self._writer = None
        if self._enabled:
            # Imported here: it pulls in TensorFlow, which only the writing process needs.
            from flax.metrics import tensorboard
            self._writer = tensorboard.SummaryWriter(log_dir)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        for name, value in scalars.items():
            self._writer.scalar(name, value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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


def progress_line(*, step: int, total_steps: int, steps_per_epoch: int,
                  metrics: Mapping[str, float], images_per_sec: float,
                  eta_seconds: float, skipped: int = 0) -> str:
    """'step 120/900 (epoch 2.4) | loss 0.5230 | top1 0.812 | lr 0.0500 | 512 img/s | ETA 1m23s'.

    `skipped` non-finite steps (nan_policy "skip") are shown when there are any.
    """
    parts = [f"step {step}/{total_steps} (epoch {step / steps_per_epoch:.1f})"]
    for key, label, fmt in (("loss", "loss", ".4f"), ("top1", "top1", ".3f"),
                            ("learning_rate", "lr", ".4g")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:{fmt}}")
    if images_per_sec > 0:
        parts.append(f"{images_per_sec:.0f} img/s")
    if skipped:
        parts.append(f"{skipped} non-finite step(s) skipped")
    parts.append(f"ETA {format_duration(eta_seconds)}")
    return " | ".join(parts)


def memory_usage() -> dict[str, float]:
    """{"host_rss_mb"[, "device_memory_mb"]}: this process's resident memory, and the first
    local device's memory in use where the backend reports it (GPU, TPU)."""
    usage = {}
    try:
        with open("/proc/self/statm") as f:  # Linux: pages
            usage["host_rss_mb"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    stats = jax.local_devices()[0].memory_stats()
    if stats and "bytes_in_use" in stats:
        usage["device_memory_mb"] = stats["bytes_in_use"] / 2**20
    return usage


def process_prefix() -> str:
    """'[process 1/2] ' in a multi-process run, '' otherwise."""
    if jax.process_count() == 1:
        return ""
    return f"[process {jax.process_index()}/{jax.process_count()}] "


def log(line: str, *, stream: TextIO = sys.stdout) -> None:
    """Prints a progress line on process 0 only (prefixed with its index when there are several)."""
    if jax.process_index() == 0:
        log_every_process(line, stream=stream)


def log_every_process(line: str, *, stream: TextIO = sys.stdout) -> None:
    """Prints a line on every process, prefixed with its index when there are several."""
    # One write of the whole line: processes sharing a terminal or pipe never split each other's.
    stream.write(f"{process_prefix()}{line}\n")
    stream.flush()
