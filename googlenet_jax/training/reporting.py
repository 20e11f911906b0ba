"""What a training run reports: TensorBoard scalars, the progress line, memory in use.

Only process 0 writes event files (into a local folder or a gs:// URL, through TensorFlow's
file system); googlenet_jax/console.py prints the lines.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

import jax

from googlenet_jax.console import format_duration


class MetricWriter:
    """Scalars to TensorBoard event files in `log_dir` (a no-op on processes other than 0)."""

    def __init__(self, log_dir: str, *, enabled: Optional[bool] = None):
        self._enabled = jax.process_index() == 0 if enabled is None else enabled
        self._writer = None
        if self._enabled:
            # TensorFlow's own writer (flax.metrics.tensorboard wraps it, and loads Keras through
            # TensorBoard's hparams plugin, which commands.common.prepare_tensorflow keeps out). Imported
            # here: only the writing process needs TensorFlow.
            import tensorflow as tf

            self._tf = tf
            self._writer = tf.summary.create_file_writer(log_dir)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                self._tf.summary.scalar(name, float(value))
        # One flush per call, not per scalar: on object storage each flush uploads the file again.
        self._writer.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


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
