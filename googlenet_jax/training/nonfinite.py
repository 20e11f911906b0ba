"""Non-finite loss or gradient at any step, found without a host round-trip per step.

The train step computes a `finite` flag and never applies a non-finite update (the state
keeps its values; only the step, i.e. the data position, advances). The trainer hands
each step's loss, gradient norm and flag to a `NonFiniteGuard`, which reads them from the
devices only when the trainer syncs anyway (log and checkpoint steps), and then:
- policy "stop": raises NonFiniteLossError naming the first bad step and the quantity;
  the trainer checks before every checkpoint, so the newest checkpoint is the last good state;
- policy "skip": counts the skipped steps, and raises after `max_consecutive` in a row.
"""
from __future__ import annotations

import math
from typing import Any, Callable

POLICIES = ("stop", "skip")


class NonFiniteLossError(FloatingPointError):
    """The training loss or gradient became NaN or infinite; the message is one line."""


class NonFiniteGuard:
    """Collects per-step health on the devices; `check()` reads and judges it."""

    def __init__(self, policy: str, max_consecutive: int, to_host: Callable[[Any], dict[str, float]]):
        if policy not in POLICIES:
            raise ValueError(f"nan_policy must be one of {POLICIES}, got {policy!r}")
        self.policy, self.max_consecutive = policy, max_consecutive
        self._to_host = to_host
        self._pending: list[tuple[int, Any]] = []
        self.skipped = 0  # non-finite steps skipped so far (policy "skip")
        self._consecutive = 0

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        """Keeps references to step `step`'s device scalars (no transfer, no wait)."""
        self._pending.append((step, {k: metrics[k] for k in ("loss", "grad_norm", "finite")}))

    def check(self) -> None:
        """Reads every pending step (waiting for them) and applies the policy."""
        pending, self._pending = self._pending, []
        for step, health in pending:
            host = self._to_host(health)
            if host["finite"] >= 0.5:
                self._consecutive = 0
                continue
            quantity = ("loss", host["loss"]) if not math.isfinite(host["loss"]) else (
                "gradient norm", host["grad_norm"])
            if self.policy == "stop":
                raise NonFiniteLossError(
                    f"training {quantity[0]} is {quantity[1]} at step {step}; stopped without applying "
                    "it (the newest checkpoint is the last good state; try a lower "
                    "optimizer.learning_rate, model.dtype='float32' or nan_policy='skip')")
            self.skipped += 1
            self._consecutive += 1
            if self._consecutive >= self.max_consecutive:
                raise NonFiniteLossError(
                    f"training {quantity[0]} is {quantity[1]} at step {step}, non-finite for "
                    f"{self._consecutive} steps in a row (nan_max_consecutive_skips={self.max_consecutive}); stopped")
