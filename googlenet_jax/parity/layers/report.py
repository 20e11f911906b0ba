"""The layer-by-layer report: one row per compared tensor, the header and table the command
prints, its JSON. The training replay's report (replay/report.py) extends ParityReport."""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import numpy as np

# Relative error allowed per row: about ten times the largest rounding error measured on correct
# models, by dtype and mode (the measurements: docs/parity.md, "Tolerances"). float32 gradients
# move by rounding alone, so there only a gross error fails; float64 is the exact verdict.
TOLERANCES = {
    "float32": {"eval": 1e-5, "train": 1e-3, "running statistic": 1e-4, "loss": 1e-3, "gradient": 1e-1},
    "float64": {"eval": 1e-9, "train": 1e-9, "running statistic": 1e-9, "loss": 1e-9, "gradient": 1e-9},
}

SECTION_TITLES = {
    "output": "stage outputs",
    "running statistic": "BatchNorm running statistics after the step",
    "loss": "loss",
    "gradient": "loss gradients, one row per parameter (torch state_dict names)",
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One compared tensor: ours against torch's, both as float64 numpy arrays."""

    kind: str  # "output", "running statistic", "loss" or "gradient"
    name: str  # the stage (Flax path) for outputs, the torch state_dict name otherwise
    shape: tuple
    rel_error: float  # ||ours - torch|| / ||torch||; inf when the shapes differ
    max_abs_error: float
    tolerance: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.rel_error <= self.tolerance)  # False for NaN

    def to_json(self) -> dict:
        finite = lambda value: value if math.isfinite(value) else None  # noqa: E731  (JSON has no inf/NaN)
        return {"name": self.name, "shape": list(self.shape), "rel_error": finite(self.rel_error),
                "max_abs_error": finite(self.max_abs_error), "tolerance": self.tolerance, "ok": self.ok,
                **({"note": self.note} if self.note else {})}


@dataclasses.dataclass
class ParityReport:
    """Rows in network order (outputs, then running statistics, loss and gradients) and notes."""

    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)
    settings: dict = dataclasses.field(default_factory=dict)
    section_titles: ClassVar[dict[str, str]] = SECTION_TITLES  # kind -> title, in table order

    @property
    def first_divergence(self) -> Row | None:
        """The first row over its tolerance, or None."""
        return next((row for row in self.rows if not row.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None

    def table(self) -> str:
        """The text the command prints: one section per kind of row, then notes and the verdict."""
        first = self.first_divergence
        lines = []
        for kind, title in self.section_titles.items():
            rows = [row for row in self.rows if row.kind == kind]
            if not rows:
                continue
            width = max(12, *(len(row.name) for row in rows))
            lines += ["", title,
                      f"{'name':<{width}}  {'shape':<20}  {'rel_error':>9}  {'max_abs_err':>11}  "
                      f"{'tolerance':>9}  status"]
            for row in rows:
                status = "ok" if row.ok else "FAIL"
                if row is first:
                    status += "  <- first divergence"
                if row.note:
                    status += f"  ({row.note})"
                lines.append(f"{row.name:<{width}}  {shape_text(row.shape):<20}  {row.rel_error:>9.2e}  "
                             f"{row.max_abs_error:>11.2e}  {row.tolerance:>9.0e}  {status}")
        lines += [""] + [f"note: {note}" for note in self.notes]
        lines.append(f"first divergence: {_describe(first) if first else 'none'}")
        failed = sum(not row.ok for row in self.rows)
        lines.append("verdict: " + (f"FAIL ({failed} row(s) over tolerance)" if failed
                                    else "PASS (every row within tolerance)"))
        return "\n".join(lines).lstrip("\n")

    def to_json(self) -> dict:
        """{"settings", "stages", "running_statistics", "loss", "gradients", "notes",
        "first_divergence", "verdict"}; each row: name, shape, rel_error, max_abs_error,
        tolerance, ok (and note)."""
        by_kind = lambda kind: [row.to_json() for row in self.rows if row.kind == kind]  # noqa: E731
        first = self.first_divergence
        return {"settings": self.settings, "stages": by_kind("output"),
                "running_statistics": by_kind("running statistic"), "loss": by_kind("loss"),
                "gradients": by_kind("gradient"), "notes": self.notes,
                "first_divergence": first.name if first else None,
                "first_divergence_kind": first.kind if first else None,
                "verdict": "pass" if self.ok else "fail"}


def shape_text(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _describe(row: Row) -> str:
    what = "stage" if row.kind == "output" else row.kind
    return f"{what} {row.name} (relative error {row.rel_error:.2e} > {row.tolerance:.0e})"


def compare_arrays(kind: str, name: str, ours, theirs, tolerance: float, note: str = "") -> Row:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        if ours.size == theirs.size and _squeezed(ours.shape) == _squeezed(theirs.shape):
            theirs = theirs.reshape(ours.shape)  # e.g. torch's (N, C, 1, 1) global pool against (N, C)
        else:
            note = f"shape differs: torch {shape_text(theirs.shape)}" + (f"; {note}" if note else "")
            return Row(kind, name, ours.shape, math.inf, math.inf, tolerance, note)
    difference = np.linalg.norm(ours - theirs)
    scale = np.linalg.norm(theirs)
    rel = float(difference / scale) if scale > 0 else (0.0 if difference == 0 else math.inf)
    max_abs = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    return Row(kind, name, ours.shape, rel, max_abs, tolerance, note)


def _squeezed(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


def header(report: ParityReport) -> str:
    """The lines above the table: the variant and reference, the weights, the inputs."""
    s = report.settings
    return "\n".join([
        f"GoogLeNet parity, {s['variant']} variant: ours (Flax) against {s['reference']}",
        f"weights: {s['weights']}",
        f"inputs: {s['inputs']}; transform_input {'on' if s['transform_input'] else 'off'}",
    ])
