"""The trainer's steps compiled for a TPU slice by libtpu's XLA, without a TPU, and what the
executables say: memory per chip against its HBM, FLOPs, collectives, XLA's time estimate.

`python -m googlenet_jax.aot` is the command in front of it. The programs are the trainer's own
(training/programs.py) on a "mesh" over the slice's devices, lowered from abstract inputs: no
data, no weights. libtpu compiles for any slice it can name (v5e:2x2, v5p:4x4x4 ...) on a
machine without a TPU.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import re
import time
from typing import Any

from googlenet_jax.errors import first_line

# The libtpu that jax[tpu] pins for requirements.txt's jax (jax 0.10.2 asks for libtpu==0.0.42.*);
# requirements-dev.txt installs the same (tests/training/test_tpu_compile.py checks both).
LIBTPU_REQUIREMENT = "libtpu==0.0.42.1"
# Only the schedule's constants depend on the epoch length; the dataset itself is never read.
NOMINAL_TRAIN_EXAMPLES = {"imagenet2012": 1_281_167}
PLACEHOLDER_STEPS_PER_EPOCH = 1000
GIB = 1 << 30
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


@dataclasses.dataclass(frozen=True)
class Chip:
    """A TPU generation as the topology names and JAX's device_kind call it.

    hbm_gib: HBM per chip, from the Google Cloud TPU documentation pages
    (cloud.google.com/tpu/docs/v2 ... /tpu7x: "HBM capacity per chip").
    devices_per_chip: JAX devices per chip: 1 where both TensorCores run as one (megacore) or
    the chip has one; 2 where each TensorCore is its own device (v2, v3, TPU7x).
    """

    name: str
    device_kind: str
    hbm_gib: float
    devices_per_chip: int
    megacore: bool = False


CHIPS = (
    Chip("v2", "TPU v2", 16, 2),
    Chip("v3", "TPU v3", 32, 2),
    Chip("v4", "TPU v4", 32, 1, megacore=True),
    Chip("v5e", "TPU v5 lite", 16, 1),
    Chip("v5p", "TPU v5", 95, 1, megacore=True),
    Chip("v6e", "TPU v6 lite", 32, 1),
    Chip("tpu7x", "TPU7x", 192, 2),
)


def prepare_libtpu() -> None:
    """Checks libtpu is there and sets its environment, before anything loads it."""
    import importlib.util

    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        raise ImportError(f"the TPU compiler is not installed: pip install {LIBTPU_REQUIREMENT}")
    # Compiling runs nothing: no accelerator of this machine is needed (nor JAX's TPU backend).
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # Off a TPU VM libtpu cannot find its workers and logs an error about it.
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    # Every JAX process that loaded libtpu holds /tmp/libtpu_lockfile; a compile-only client
    # touches no chip, so it may share the library with them.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


@dataclasses.dataclass(frozen=True)
class Slice:
    """The devices of a TPU slice (compile-only: nothing runs on them)."""

    name: str
    chip: Chip
    devices: list

    @property
    def num_chips(self) -> int:
        return len(self.devices) // self.chip.devices_per_chip

    @property
    def num_hosts(self) -> int:
        return len({device.process_index for device in self.devices})

    @property
    def hbm_bytes(self) -> int:
        """HBM per chip."""
        return int(self.chip.hbm_gib * GIB)


class TopologyError(ValueError):
    """A topology libtpu cannot name, or one whose chips CHIPS does not know; one line."""




def _chip_named(name: str) -> Chip | None:
    return next((chip for chip in CHIPS if chip.name == name), None)


def _topology_devices(name: str, chip: Chip | None) -> list:
    from jax.experimental import topologies

    options = {"chip_config_name": "megacore"} if chip is not None and chip.megacore else {}
    return topologies.get_topology_desc(platform="tpu", topology_name=name, **options).devices


def known_chips() -> list[str]:
    """The chip kinds of CHIPS that this libtpu accepts."""
    known = []
    for chip in CHIPS:
        try:
            _topology_devices(f"{chip.name}:2x2x1", chip)
            known.append(chip.name)
        except Exception:  # noqa: BLE001  (libtpu raises JaxRuntimeError for unknown names)
            pass
    return known


def open_slice(name: str) -> Slice:
    """The slice `name` ("v5e:2x2"); a TopologyError naming the known chip kinds when libtpu rejects it."""
    chip = _chip_named(name.split(":")[0])
    try:
        devices = _topology_devices(name, chip)
    except Exception as e:  # noqa: BLE001  (libtpu's errors are JaxRuntimeError; its message says why)
        reason = first_line(e).removeprefix("INVALID_ARGUMENT: ")
        raise TopologyError(f"unknown topology {name!r} ({reason}); chip kinds: {', '.join(known_chips())}, "
                             "as KIND:AxB or KIND:AxBxC, e.g. v5e:2x2, v5p:4x4x4") from None
    kind = devices[0].device_kind
    chip = next((c for c in CHIPS if c.device_kind == kind), None)
    if chip is None:
        raise TopologyError(f"topology {name!r} has {kind} chips, whose HBM is not in tpu_compile.CHIPS")
    return Slice(name, chip, list(devices))


# ---- compiling -----------------------------------------------------------------------------

@dataclasses.dataclass
class CompiledStep:
    """One step for the slice: `lowered` (StableHLO) and `compiled` (the TPU executable), or
    `error` instead of `compiled` when it does not fit (XLA's out-of-memory message, or why it
    was not compiled)."""

    name: str
    per_device_batch: int
    lowered: Any
    compiled: Any
    lower_s: float
    compile_s: float
    input_bytes: dict[str, int]  # per device, from the shapes: what arguments and outputs hold
    error: str | None = None


def build_programs(config, tpu: Slice):
    """The trainer's programs for `config` over the slice's devices (parallel="mesh")."""
    from googlenet_jax import parallel
    from googlenet_jax.training import programs

    examples = NOMINAL_TRAIN_EXAMPLES.get(config.dataset, PLACEHOLDER_STEPS_PER_EPOCH * config.batch_size)
    steps_per_epoch = examples / config.batch_size
    return programs.build(config, parallel.MeshParallel(tpu.devices), num_classes=config.num_classes,
                          steps_per_epoch=steps_per_epoch,
                          train_steps=programs.num_train_steps(config, steps_per_epoch))


def _tree_bytes(tree, num_devices: int = 1) -> int:
    import jax
    import numpy as np

    return sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)) // num_devices


def _out_of_memory(error: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(error) or "Ran out of memory" in str(error)


def compile_step(config, tpu: Slice, which: str) -> CompiledStep:
    """Lowers and compiles the "train" or "eval" step for the config's batch of that step.

    A step whose inputs alone (the replicated state and this device's part of the batch) exceed
    the HBM is not compiled: XLA's compile time grows with the batch (at 32x32, 40 s for 4 images
    per chip, 460 s for 8,192), and the answer is known.
    """
    from googlenet_jax.training import programs

    progs = build_programs(config, tpu)
    n = len(tpu.devices)
    if which == "train":
        step, batch = progs.train_step, programs.train_batch_shapes(config.batch_size, config.image_size)
    else:
        step, batch = progs.eval_step, programs.eval_batch_shapes(config.eval_batch_size, config.image_size)
    start = time.perf_counter()
    lowered = step.lower(progs.abstract_state, batch)
    lower_s = time.perf_counter() - start
    input_bytes = {"state": _tree_bytes(progs.abstract_state), "batch": _tree_bytes(batch, n)}
    compiled, error = None, None
    start = time.perf_counter()
    if sum(input_bytes.values()) > tpu.hbm_bytes // tpu.chip.devices_per_chip:
        error = "not compiled: its inputs alone exceed the HBM"
    else:
        try:
            compiled = lowered.compile()
        except Exception as e:  # noqa: BLE001  (XLA raises JaxRuntimeError)
            if not _out_of_memory(e):
                raise
            error = " ".join(str(e).split())
    return CompiledStep(which, batch["image"].shape[0] // n, lowered, compiled, lower_s,
                        time.perf_counter() - start, input_bytes, error)


# ---- reading the compiled program ----------------------------------------------------------

_ARRAY = re.compile(r"\b(pred|bf16|[suf]\d+|f8\w*|c64|c128)\[([\d,]*)\]")
# `%name = TYPE op(` where op is a collective; async pairs appear as op-start / op-done.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%\S+\s*=\s*(.*?)\s(" + "|".join(COLLECTIVES) + r")(-start|-done)?\((.*)$",
                          re.M)


def _element_bytes(dtype: str) -> float:
    if dtype == "pred":
        return 1
    if dtype.startswith("c"):
        return int(dtype[1:]) // 8
    bits = re.match(r"[a-z]+(\d+)", dtype)
    return int(bits.group(1)) / 8 if bits else 1


def _array_bytes(hlo_type: str) -> tuple[int, set[str]]:
    """Bytes and element types of an HLO shape, a tuple's summed over its arrays."""
    total, dtypes = 0.0, set()
    for dtype, dims in _ARRAY.findall(hlo_type):
        count = 1
        for dim in filter(None, dims.split(",")):
            count *= int(dim)
        total += count * _element_bytes(dtype)
        dtypes.add(dtype)
    return int(total), dtypes


def _group_size(attributes: str, num_devices: int) -> int | None:
    """Devices per replica group, in any of the forms XLA prints; None without replica_groups."""
    mesh = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", attributes)
    if mesh:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", mesh.group(1)))
        size = 1
        for axis in re.findall(r"'([^']+)'", mesh.group(2)):
            size *= int(sizes.get(axis, 1))
        return size
    iota = re.search(r"replica_groups=\[(\d+),(\d+)\]<=", attributes)
    if iota:
        return int(iota.group(2))
    listed = re.search(r"replica_groups=\{(\{[\d,]*\}(?:,\{[\d,]*\})*)?\}", attributes)
    if listed:
        if not listed.group(1):
            return num_devices  # {}: one group of every device
        return max(len(group.split(",")) for group in re.findall(r"\{([\d,]+)\}", listed.group(1)))
    return None


def collectives(hlo_text: str, num_devices: int) -> list[dict[str, Any]]:
    """The collectives of a compiled HLO module, by kind: [{"kind", "count", "bytes", "dtypes",
    "group_sizes"}], bytes being each op's result size per device and step. An async pair counts
    once (its -done, whose result is the output; a -start's also holds the operands)."""
    found: dict[str, dict[str, Any]] = {}
    for hlo_type, kind, phase, attributes in _INSTRUCTION.findall(hlo_text):
        entry = found.setdefault(kind, {"kind": kind, "count": 0, "bytes": 0, "dtypes": set(), "group_sizes": set()})
        group = _group_size(attributes, num_devices)  # an async pair names its groups on the -start
        if group is not None:
            entry["group_sizes"].add(group)
        if phase != "-start":
            size, dtypes = _array_bytes(hlo_type)
            entry["count"] += 1
            entry["bytes"] += size
            entry["dtypes"] |= dtypes
    return [dict(e, dtypes=sorted(e["dtypes"]), group_sizes=sorted(e["group_sizes"]))
            for kind in COLLECTIVES if (e := found.get(kind))]


def custom_calls(hlo_text: str) -> list[str]:
    """The targets of the module's custom-calls, one entry per call."""
    return re.findall(r'custom-call\([^\n]*?custom_call_target="([^"]+)"', hlo_text)


# Custom-calls XLA's TPU cost model was seen to cost (their programs' estimates stay positive and
# match the programs' bytes over the HBM bandwidth); ConcatBitcast was seen to count -1 s each.
COSTED_CUSTOM_CALLS = frozenset({"AllocateBuffer", "GatherScatterIndicesBitpacked"})


def xla_estimate(cost: dict[str, float], hlo_text: str) -> tuple[float | None, str | None]:
    """XLA's TPU time estimate for one step (`optimal_seconds`), or None and why it is not one.

    XLA's TPU cost model sums per-op estimates and counts an op it cannot cost as -1 s: each
    ConcatBitcast custom-call (TPU's own concatenation of weight slices; 14 in GoogLeNet's
    train step on v5e) does, which makes the figure negative. It is reported only for programs
    whose custom-calls are all in COSTED_CUSTOM_CALLS.
    """
    seconds = cost.get("optimal_seconds")
    if seconds is None:
        return None, "XLA gave no estimate"
    calls = collections.Counter(custom_calls(hlo_text))
    uncosted = {target: n for target, n in calls.items() if target not in COSTED_CUSTOM_CALLS}
    if not uncosted and seconds > 0:
        return seconds, None
    if not uncosted:
        return None, f"XLA's figure {seconds:.4g} s is not a time"
    listed = ", ".join(f"{n} {target}" for target, n in sorted(uncosted.items()))
    note = f"XLA's figure {seconds:.4g} s counts each custom-call it cannot cost as -1 s ({listed} here)"
    if set(uncosted) == {"ConcatBitcast"} and seconds + uncosted["ConcatBitcast"] > 0:
        note += f"; {seconds + uncosted['ConcatBitcast']:.2g} s with them added back"
    return None, note


_BYTES = r"\(?([\d.]+)([KMGT]?)i?B?\)?"  # XLA's sizes: "18.00G", "(15.75G)"


def _bytes_after(message: str, pattern: str) -> int | None:
    """The size XLA prints after `pattern` in `message` ("... HLO temporaries (18.00G) ...")."""
    match = re.search(pattern + _BYTES, message)
    if not match:
        return None
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": GIB, "T": 1 << 40}
    return int(float(match.group(1)) * units[match.group(2)])


def memory(step: CompiledStep, devices_per_chip: int) -> dict[str, int | None]:
    """Per-chip bytes: arguments, outputs, aliased (the donated state), temporaries, code and total
    (arguments + outputs - aliased + temporaries + code). Out of memory, XLA's message gives the
    temporaries (or the total) and the shapes the rest."""
    if step.compiled is not None:
        stats = step.compiled.memory_analysis()
        per_device = {"arguments": stats.argument_size_in_bytes, "outputs": stats.output_size_in_bytes,
                      "aliased": stats.alias_size_in_bytes, "temporaries": stats.temp_size_in_bytes,
                      "code": stats.generated_code_size_in_bytes}
    else:
        state, batch = step.input_bytes["state"], step.input_bytes["batch"]
        aliased = state if step.name == "train" else 0
        per_device = {"arguments": state + batch, "outputs": aliased, "aliased": aliased,
                      "temporaries": _bytes_after(step.error, r"HLO temporaries\s*"), "code": None}
        used = _bytes_after(step.error, r"[Uu]sed\s*")
        if per_device["temporaries"] is None and used is not None:
            per_device["temporaries"] = max(used - per_device["arguments"], 0)
    parts = [per_device[k] for k in ("arguments", "outputs", "temporaries", "code")]
    total = sum(p or 0 for p in parts) - per_device["aliased"]
    return {k: None if v is None else v * devices_per_chip for k, v in {**per_device, "total": total}.items()}


def available_bytes(error: str) -> int | None:
    """The HBM XLA had for the program, from its out-of-memory message."""
    return _bytes_after(error, r"available HBM\s*") or _bytes_after(error, r"[Uu]sed\s*\S+\s+of\s*")


def step_report(step: CompiledStep, tpu: Slice) -> dict[str, Any]:
    """The JSON report of one compiled step (per chip)."""
    per_chip = tpu.chip.devices_per_chip
    mem = memory(step, per_chip)
    fits = step.compiled is not None and mem["total"] <= tpu.hbm_bytes
    report = {"fits": fits, "per_chip_batch": step.per_device_batch * per_chip, "hbm_bytes": tpu.hbm_bytes,
              "headroom_bytes": tpu.hbm_bytes - mem["total"], "memory_bytes": mem,
              "flops_per_chip": None, "collectives": [], "xla_estimate_s": None, "xla_estimate_note": None,
              "lower_s": round(step.lower_s, 1), "compile_s": round(step.compile_s, 1)}
    if step.compiled is None:
        report["xla_estimate_note"] = "not compiled: out of memory"
        report["out_of_memory"] = step.error
        return report
    text = step.compiled.as_text()
    cost = step.compiled.cost_analysis()
    cost = (cost[0] if cost else {}) if isinstance(cost, list) else (cost or {})
    report["flops_per_chip"] = cost.get("flops", 0.0) * per_chip
    report["collectives"] = collectives(text, len(tpu.devices))
    report["xla_estimate_s"], report["xla_estimate_note"] = xla_estimate(cost, text)
    return report


