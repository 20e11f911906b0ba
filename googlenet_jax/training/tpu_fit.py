"""Does a training config fit a TPU slice: both steps compiled and reported, the largest batch
that fits, the report as a table and a one-line verdict (`python -m googlenet_jax aot`).

The compiling itself (the slice, the programs, the memory and collectives of one compiled step)
is tpu_compile.py; this module decides and reports. The standard library only until it compiles.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from googlenet_jax.training import tpu_compile
from googlenet_jax.training.tpu_compile import GIB

MAX_BATCH_COMPILES = 4  # the largest batch: train-step compiles beyond the first


# ---- the largest batch that fits -----------------------------------------------------------

def largest_fitting(measure: Callable[[int], tuple[int, bool]], first: int, first_total: int, first_fits: bool,
                    capacity: int, max_compiles: int = MAX_BATCH_COMPILES,
                    margin: float = 0.02) -> tuple[int, int | None, dict]:
    """The largest batch b whose measure(b) -> (total bytes, fits) fits, from a first measurement.

    Memory grows about linearly with the batch, in steps (TPU pads the batch to its tiles): the
    second guess doubles (or halves) the first, the next ones aim `margin` under where the line
    through the measurements crosses `capacity`, twice as far under after each miss. Returns
    (the largest batch measured to fit (0: none), the smallest measured not to (None: none),
    {batch: (bytes, fits)}); the answer is exact when the two are 1 apart.
    """
    probes = {first: (first_total, first_fits)}

    def bounds() -> tuple[int, int | None]:
        lo = max((b for b, (_, ok) in probes.items() if ok), default=0)
        return lo, min((b for b, (_, ok) in probes.items() if not ok), default=None)

    def crossing() -> float | None:
        """Where the line (slope from the two farthest measurements) reaches the capacity."""
        small, large = min(probes), max(probes)
        slope = (probes[large][0] - probes[small][0]) / (large - small) if large > small else 0
        if slope <= 0:
            return None
        anchor = min(probes, key=lambda b: abs(probes[b][0] - capacity))
        return anchor + (capacity - probes[anchor][0]) / slope

    misses = 0
    for _ in range(max_compiles):
        lo, hi = bounds()
        if hi is not None and hi - lo <= 1:
            break
        line = crossing() if len(probes) > 1 else None
        under = None if line is None else int(line * (1 - margin * 2 ** misses))
        if line is None:  # one measurement, or no growth seen yet: double, or halve below a miss
            guess = 2 * max(probes) if hi is None else (lo + hi) // 2 if lo else max(min(probes) // 2, 1)
        elif under > lo + 1:
            guess = under
        else:  # the line is at the largest fit: check the batch above it
            guess = max(lo + 1, min(int(line), (hi or int(line) + 2) - 1))
        guess = max(lo + 1, guess if hi is None else min(guess, hi - 1))
        if guess in probes:
            break
        probes[guess] = measure(guess)
        misses += not probes[guess][1]
    lo, hi = bounds()
    return lo, hi, probes


# ---- both steps -----------------------------------------------------------------------------

@dataclasses.dataclass
class FitReport:
    report: dict[str, Any]  # what --json writes
    steps: dict[str, tpu_compile.CompiledStep]  # "train", "eval": the lowered and compiled programs


def check(config, tpu: tpu_compile.Slice, *, max_batch: bool = False,
          log: Callable[[str], None] = lambda line: None) -> FitReport:
    """Compiles both steps of `config` for `tpu` and reports them (raises ConfigError for a bad config)."""
    from googlenet_jax.training import config as config_lib

    config_lib.validate_config(config)
    config_lib.validate_devices(config, device_count=len(tpu.devices), process_count=tpu.num_hosts)
    steps, report = {}, {
        "topology": tpu.name, "chip": tpu.chip.name, "device_kind": tpu.chip.device_kind,
        "num_chips": tpu.num_chips, "num_hosts": tpu.num_hosts, "devices_per_chip": tpu.chip.devices_per_chip,
        "global_batch": config.batch_size, "per_chip_batch": config.batch_size // tpu.num_chips,
        "eval_global_batch": config.eval_batch_size, "image_size": config.image_size,
        "dtype": config.model.dtype, "num_classes": config.num_classes}
    for which in ("train", "eval"):
        log(f"compiling the {which} step for {tpu.name} ...")
        steps[which] = tpu_compile.compile_step(config, tpu, which)
        report[which] = tpu_compile.step_report(steps[which], tpu)
    if max_batch:
        n = len(tpu.devices)

        def measure(per_device: int) -> tuple[int, bool]:
            log(f"compiling the train step at {per_device * tpu.chip.devices_per_chip} per chip ...")
            bigger = config.copy_and_resolve_references()
            bigger.batch_size = per_device * n
            probe = tpu_compile.step_report(tpu_compile.compile_step(bigger, tpu, "train"), tpu)
            return probe["memory_bytes"]["total"], probe["fits"]

        train = report["train"]
        per_device = config.batch_size // n
        best, fails, probes = largest_fitting(measure, per_device, train["memory_bytes"]["total"], train["fits"],
                                              _capacity(steps["train"], tpu))
        per_chip = tpu.chip.devices_per_chip
        report["max_per_chip_batch"] = best * per_chip  # measured to fit (0: even 1 does not)
        report["max_batch_fails_at"] = None if fails is None else fails * per_chip  # measured not to fit
        report["max_batch_probes"] = [{"per_chip_batch": b * per_chip, "total_bytes": t, "fits": ok}
                                      for b, (t, ok) in sorted(probes.items())]
    return FitReport(report, steps)


def _capacity(step: tpu_compile.CompiledStep, tpu: tpu_compile.Slice) -> int:
    """Bytes per chip a step may use: what XLA's out-of-memory message gave it, else the HBM."""
    available = tpu_compile.available_bytes(step.error) if step.error else None
    return available * tpu.chip.devices_per_chip if available else tpu.hbm_bytes


def _size(n: int | float | None) -> str:
    if n is None:
        return "?"
    for unit, scale in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _collective_line(entry: dict[str, Any], num_devices: int) -> str:
    groups = entry["group_sizes"]
    where = ("over all chips" if groups == [num_devices] else
             f"groups of {','.join(map(str, groups))} devices" if groups else "")
    return f"{entry['kind']} x{entry['count']}: {_size(entry['bytes'])} ({','.join(entry['dtypes'])}) {where}".strip()


def format_report(report: dict[str, Any], num_devices: int) -> str:
    """The report as a short table: one column per step."""
    steps = [report["train"], report["eval"]]
    hosts = "host" if report["num_hosts"] == 1 else "hosts"
    lines = [f"{report['topology']}: {report['num_chips']} {report['device_kind']} chips on {report['num_hosts']} "
             f"{hosts}; {report['image_size']}x{report['image_size']} images, {report['dtype']} compute, "
             f"{report['num_classes']} classes",
             f"{'':24}{'train':>22}{'eval':>22}"]

    def row(label, values):
        lines.append(f"{label:24}" + "".join(f"{v:>22}" for v in values))

    row("global batch", [report["global_batch"], report["eval_global_batch"]])
    row("batch per chip", [s["per_chip_batch"] for s in steps])
    for key in ("arguments", "outputs", "aliased", "temporaries", "code", "total"):
        row(key, [_size(s["memory_bytes"][key]) for s in steps])
    row("HBM per chip", [_size(s["hbm_bytes"]) for s in steps])
    row("fits", [f"yes, {100 * s['headroom_bytes'] / s['hbm_bytes']:.0f}% free" if s["fits"] else "NO"
                 for s in steps])
    row("GFLOP per chip", ["?" if s["flops_per_chip"] is None else f"{s['flops_per_chip'] / 1e9:.1f}"
                           for s in steps])
    row("XLA time estimate", ["n/a" if s["xla_estimate_s"] is None else f"{s['xla_estimate_s'] * 1e3:.2f} ms"
                              for s in steps])
    row("lower + compile", [f"{s['lower_s']:.0f} + {s['compile_s']:.0f} s" for s in steps])
    for name, step in zip(("train", "eval"), steps):
        for entry in step["collectives"]:
            lines.append(f"{name} collectives: {_collective_line(entry, num_devices)}")
        if not step["collectives"] and step["flops_per_chip"] is not None:
            lines.append(f"{name} collectives: none")
        if step.get("out_of_memory"):
            lines.append(f"{name}: {step['out_of_memory'][:300]}")
        elif step["xla_estimate_note"]:
            lines.append(f"{name} XLA time estimate: n/a, {step['xla_estimate_note']}")
    if "max_per_chip_batch" in report:
        fails = report["max_batch_fails_at"]
        lines.append(f"largest train batch per chip that fits: {report['max_per_chip_batch']}"
                     f"{'' if fails is None else f' ({fails} does not)'}, from "
                     f"{len(report['max_batch_probes'])} compiles")
    return "\n".join(lines)


def verdict(report: dict[str, Any]) -> str | None:
    """None when both steps fit, else one line: what does not fit, its need and the capacity."""
    for name in ("train", "eval"):
        step = report[name]
        if not step["fits"]:
            # Not compiled (code unknown): what XLA's message or the inputs alone show, a lower bound.
            bound = "at least " if step["memory_bytes"]["code"] is None else ""
            line = (f"the {name} step at {step['per_chip_batch']} per chip needs {bound}"
                    f"{_size(step['memory_bytes']['total'])} per chip; a {report['chip']} chip has "
                    f"{_size(step['hbm_bytes'])} of HBM")
            if "max_per_chip_batch" in report:
                line += f"; the largest train batch per chip that fits is {report['max_per_chip_batch']}"
            return line
    return None
