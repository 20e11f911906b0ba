"""`python -m googlenet_jax.aot`: the trainer's steps compiled by libtpu for a TPU slice, no TPU.

The programs are small (32x32 images, 10 classes, 4 images per chip on a v5e:2x2 slice); the
compiles are shared per module: GoogLeNet's bfloat16 train step once (under a minute on two
cores), the rest on the tiny test network. References are independent of the tool: torchvision's
googlenet and the tiny network's own variables for the convolution, parameter and BatchNorm
counts, jax's own package metadata for the libtpu pin, and the model with its CPU forms switched
off (or lowered for the CPU) for what the TPU program must and must not contain.
"""
import functools
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("libtpu", reason="libtpu (requirements-dev.txt) compiles for TPUs; Linux x86-64 only")

from googlenet_jax import GoogLeNet, parallel  # noqa: E402
from googlenet_jax.commands import aot, common  # noqa: E402
from googlenet_jax.model import ComputeForms  # noqa: E402
from googlenet_jax.training import programs, steps, tpu_compile  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOPOLOGY = "v5e:2x2"  # 4 chips of 16 GiB, one host
CHIPS = 4
SMALL = ["--config.image_size=32", "--config.batch_size=16", "--config.eval_batch_size=16",
         "--config.parallel=mesh"]
NUM_CLASSES = 10  # configs/demo.py's


def small_config(dtype: str, variant: str):
    return common.load_config(str(REPO / "configs" / "demo.py"),
                           [*SMALL, f"--config.model.dtype={dtype}", f"--config.model.variant={variant}"], "aot")


@pytest.fixture(scope="module")
def tpu():
    tpu_compile.prepare_libtpu()
    return tpu_compile.open_slice(TOPOLOGY)


@pytest.fixture(scope="module")
def bf16_train(tpu):
    """The one compile of GoogLeNet's own train step for a TPU slice (what XLA's TPU compiler makes
    of the Inception modules is the subject of some tests). About a minute on 2 cores: the tests
    that read it are in the slow tier."""
    return tpu_compile.compile_step(small_config("bfloat16", "torchvision"), tpu, "train")


@pytest.fixture(scope="module")
def f32_train(tpu):
    """The tiny test network's float32 train step: the collectives' machinery, compiled in seconds."""
    return tpu_compile.compile_step(small_config("float32", "tiny"), tpu, "train")


def tiny_variables() -> dict:
    """The tiny test network's variables as shapes (what f32_train's model holds), from its own init."""
    model = GoogLeNet(num_classes=NUM_CLASSES, variant="tiny")
    return jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), train=False))


def torchvision_googlenet():
    import torchvision

    return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, num_classes=NUM_CLASSES)


def instructions(hlo_text: str) -> dict[str, tuple[str, str, str]]:
    """{name: (result type, opcode, rest of the line)} of every instruction of an HLO module."""
    found = {}
    for name, hlo_type, opcode, rest in re.findall(r"^\s*(?:ROOT )?%(\S+) = (.*?) ([a-z][\w-]*)\((.*)$",
                                                   hlo_text, re.M):
        found[name] = (hlo_type, opcode, rest)
    return found


def conv_and_dot_ops(stablehlo_text: str) -> list[str]:
    """Every convolution and dot_general of a StableHLO module, with its operand types."""
    return sorted(re.findall(r"stablehlo\.(?:convolution|dot_general)\b.*?: \((.*?)\) ->", stablehlo_text))


def test_libtpu_pin_is_the_one_jax_asks_for_and_the_one_tests_install():
    wanted = [r for r in importlib.metadata.requires("jax") if r.startswith("libtpu") and 'extra == "tpu"' in r]
    assert wanted, importlib.metadata.requires("jax")
    pattern = wanted[0].split(";")[0].removeprefix("libtpu==").replace(".", r"\.").replace("*", r".*")
    pin = tpu_compile.LIBTPU_REQUIREMENT
    assert re.fullmatch(pattern, pin.removeprefix("libtpu==")), (wanted, pin)
    dev_requirements = (REPO / "requirements-dev.txt").read_text().splitlines()
    assert any(line.split(";")[0].strip() == pin for line in dev_requirements)
    assert importlib.metadata.version("libtpu") == pin.removeprefix("libtpu==")


# Instructions as XLA prints them: a combined (tuple) all-reduce, an async all-gather pair (its
# -start holds the operand and the result), a synchronous reduce-scatter in groups of 2.
HLO = """
  %all-reduce.1 = (f32[64]{0:T(128)S(1)}, /*index=1*/bf16[2,3]{1,0}) all-reduce(%a, %b), channel_id=2, \
replica_groups=mesh['axis_0'=4,'axis_1'=1] {'axis_0','axis_1'}, use_global_device_ids=true, to_apply=%add
  %all-gather-start.2 = (f32[8]{0}, f32[32]{0}) all-gather-start(%c), channel_id=3, replica_groups={{0,1,2,3}}
  %all-gather-done.2 = f32[32]{0} all-gather-done(%all-gather-start.2)
  ROOT %reduce-scatter.3 = s32[5]{0} reduce-scatter(%d), replica_groups=[2,2]<=[4], dimensions={0}
  %custom-call.4 = f32[3]{0} custom-call(%e), custom_call_target="ConcatBitcast"
""".replace("\\\n", "")


def test_collectives_are_counted_once_with_their_result_bytes():
    assert tpu_compile.collectives(HLO, num_devices=4) == [
        {"kind": "all-reduce", "count": 1, "bytes": 64 * 4 + 6 * 2, "dtypes": ["bf16", "f32"], "group_sizes": [4]},
        {"kind": "all-gather", "count": 1, "bytes": 32 * 4, "dtypes": ["f32"], "group_sizes": [4]},
        {"kind": "reduce-scatter", "count": 1, "bytes": 5 * 4, "dtypes": ["s32"], "group_sizes": [2]},
    ]
    assert tpu_compile.custom_calls(HLO) == ["ConcatBitcast"]


@pytest.mark.parametrize("message, temporaries", [
    ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries (18.00G) "
     "exceeds available HBM (15.75G).", 18 * 2**30),
    ("RESOURCE_EXHAUSTED: Ran out of memory in memory space hbm. Used 20.50G of 15.48G hbm. Exceeded hbm "
     "capacity by 5.02G.", int(20.5 * 2**30) - 3 * 2**20),  # "Used" counts the arguments too
])
def test_an_out_of_memory_step_is_sized_from_xla_message_and_its_inputs(message, temporaries):
    step = tpu_compile.CompiledStep("train", 64, None, None, 1.0, 2.0, {"state": 2 * 2**20, "batch": 2**20}, message)
    memory = tpu_compile.memory(step, devices_per_chip=1)
    assert memory["arguments"] == 3 * 2**20 and memory["aliased"] == memory["outputs"] == 2 * 2**20
    assert abs(memory["temporaries"] - temporaries) < 2**20 and memory["code"] is None
    assert memory["total"] == memory["arguments"] + memory["temporaries"]


def test_xla_estimate_is_reported_only_without_uncosted_custom_calls():
    # As v5p's eval step: one custom-call XLA costs, a positive figure.
    costed = 'custom-call(%i), custom_call_target="GatherScatterIndicesBitpacked"'
    assert tpu_compile.xla_estimate({"optimal_seconds": 0.00168}, costed) == (0.00168, None)
    seconds, note = tpu_compile.xla_estimate({"optimal_seconds": -0.9986}, HLO)  # one ConcatBitcast
    assert seconds is None and "1 ConcatBitcast" in note and "0.0014 s with them added back" in note


@pytest.mark.slow  # bf16_train
def test_tpu_program_uses_xla_convolutions_not_the_cpu_forms(tpu, bf16_train):
    # Reference: the same step with the CPU forms switched off, lowered for the same slice.
    config = small_config("bfloat16", "torchvision")
    progs = tpu_compile.build_programs(config, tpu)
    batch = programs.train_batch_shapes(config.batch_size, config.image_size)
    step = functools.partial(
        steps.train_step, tx=progs.tx, learning_rate_fn=progs.learning_rate_fn, aux_weight=config.aux_weight,
        label_smoothing=config.label_smoothing, ema_decay=config.ema_decay)
    xla_own = progs.model.clone(forms=ComputeForms(cpu_conv_gradients=False))
    reference = parallel.MeshParallel(tpu.devices).compile_train_step(functools.partial(step, model=xla_own))
    tpu_ops = conv_and_dot_ops(bf16_train.lowered.as_text())
    assert tpu_ops == conv_and_dot_ops(reference.lower(progs.abstract_state, batch).as_text())
    # The same step lowered for the CPU does take the CPU forms: the comparison can tell them apart.
    cpu = parallel.MeshParallel(jax.devices()[:1]).compile_train_step(functools.partial(step, model=progs.model))
    cpu_ops = conv_and_dot_ops(cpu.lower(progs.abstract_state, batch).as_text())
    assert len(cpu_ops) == len(tpu_ops) and cpu_ops != tpu_ops
    assert sum(op.startswith("tensor<") for op in cpu_ops)  # sanity: operand types were read


@pytest.mark.slow  # bf16_train
def test_bfloat16_convolutions_run_in_bfloat16_on_tpu(bf16_train, f32_train):
    def convolution_operand_types(step):
        ops = instructions(step.compiled.as_text())
        types = []
        for _, opcode, rest in ops.values():
            if opcode == "convolution":
                operands = re.match(r"%([^,\s)]+), %([^,\s)]+)\)", rest).groups()
                types.append(tuple(ops[name][0].split("[")[0] for name in operands))
        return types

    bf16 = convolution_operand_types(bf16_train)
    convolutions = sum(type(m).__name__ == "Conv2d" for m in torchvision_googlenet().modules())
    assert len(bf16) > 2 * convolutions  # forward, input and kernel gradients (some 1x1s merged)
    assert set(bf16) == {("bf16", "bf16")}, sorted(set(bf16))
    # The check tells the two apart: float32 compute keeps float32 operands (XLA's default
    # precision on TPU still feeds some of its convolutions in bfloat16).
    assert ("f32", "f32") in set(convolution_operand_types(f32_train))


def test_gradient_all_reduce_moves_the_float32_parameters(tpu, f32_train):
    variables = tiny_variables()
    parameters = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    bn_channels = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(variables["batch_stats"])) // 2
    report = tpu_compile.step_report(f32_train, tpu)
    # The state is replicated and the batch split: the gradients' all-reduce is the traffic.
    assert [c["kind"] for c in report["collectives"]] == ["all-reduce"], report["collectives"]
    (all_reduce,) = report["collectives"]
    # Every parameter's gradient, 4 bytes each, plus BatchNorm's sums (2 per channel forward, 2
    # backward) and the step's metrics (under 1 KiB).
    assert 4 * parameters <= all_reduce["bytes"] <= 4 * parameters + 4 * 4 * bn_channels + 1024, (
        all_reduce, parameters, bn_channels)
    assert all_reduce["dtypes"] == ["f32"] and all_reduce["group_sizes"] == [CHIPS]


@pytest.mark.slow  # bf16_train
def test_bfloat16_gradients_are_all_reduced_in_float32(tpu, bf16_train):
    # Left to XLA's partitioner, each bfloat16 weight gradient was summed across the chips before
    # it was widened: this compile's all-reduces carried bf16 and f32 (the BatchNorm statistics).
    parameters = sum(p.numel() for p in torchvision_googlenet().parameters())
    (all_reduce,) = tpu_compile.step_report(bf16_train, tpu)["collectives"]
    assert all_reduce["kind"] == "all-reduce" and all_reduce["dtypes"] == ["f32"], all_reduce
    assert all_reduce["bytes"] >= 4 * parameters, (all_reduce, parameters)


def test_batch_norm_statistics_are_reduced_over_all_chips(f32_train):
    # Each BatchNorm keeps a running mean and variance of its channels.
    bn_channels = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(tiny_variables()["batch_stats"])) // 2
    ops = instructions(f32_train.compiled.as_text())
    all_reduces = {name: rest for name, (_, opcode, rest) in ops.items() if opcode == "all-reduce"}
    assert all_reduces
    for rest in all_reduces.values():  # every one is a single group of all the chips
        groups = re.search(r"replica_groups=(mesh\[[^]]*\] \{[^}]*\}|\{(?:\{[\d,]*\},?)*\}|\S+?),", rest).group(1)
        assert _one_group_of(groups, CHIPS), rest[:300]
    # The forward BatchNorm statistics (a mean and a mean of squares per channel) are among the
    # reduced values; a combined all-reduce is read part by part through its get-tuple-elements.
    forward_bn = 0
    for hlo_type, opcode, rest in ops.values():
        source = re.match(r"%([^)\s,]+)", rest)
        reduced = (opcode == "all-reduce" and not hlo_type.startswith("(")) or (
            opcode == "get-tuple-element" and source is not None and source.group(1) in all_reduces)
        op_name = re.search(r'op_name="([^"]*)"', rest)
        if reduced and op_name and "/bn/" in op_name.group(1) and "transpose(" not in op_name.group(1):
            forward_bn += _elements(hlo_type)
    assert forward_bn == 2 * bn_channels, (forward_bn, bn_channels)


def _elements(hlo_type: str) -> int:
    count = 0
    for dims in re.findall(r"\[([\d,]*)\]", hlo_type):
        n = 1
        for d in filter(None, dims.split(",")):
            n *= int(d)
        count += n
    return count


def _one_group_of(groups: str, chips: int) -> bool:
    """Whether an HLO replica_groups attribute is a single group of `chips` devices."""
    if groups.startswith("mesh["):  # mesh['axis_0'=4,'axis_1'=1] {'axis_0','axis_1'}: the named axes
        sizes = dict(re.findall(r"'(\w+)'=(\d+)", groups))
        product = 1
        for axis in re.findall(r"'(\w+)'", groups.split("{", 1)[1]):
            product *= int(sizes[axis])
        return product == chips
    return groups in ("{}", "{{" + ",".join(map(str, range(chips))) + "}}", f"[1,{chips}]<=[{chips}]")


@pytest.mark.slow  # bf16_train
def test_xla_time_estimate_is_withheld_when_concat_bitcasts_poison_it(bf16_train):
    text = bf16_train.compiled.as_text()
    cost = bf16_train.compiled.cost_analysis()
    concats = len(re.findall(r'custom-call\(.*custom_call_target="ConcatBitcast"', text))
    assert concats  # what XLA's TPU compiler makes of the Inception weights today
    # Its cost model counts each as -1 s: the sum is negative, the rest a plausible time.
    assert cost["optimal_seconds"] < 0 < cost["optimal_seconds"] + concats < 0.1
    seconds, note = tpu_compile.xla_estimate(cost, text)
    assert seconds is None and f"{concats} ConcatBitcast" in note


@pytest.mark.slow
def test_a_batch_far_beyond_hbm_exits_1_with_one_line(tmp_path):
    out = tmp_path / "aot.json"
    proc = subprocess.run(
        [sys.executable, "-m", "googlenet_jax.aot", "--config", "configs/demo.py", "--topology", TOPOLOGY,
         *SMALL, "--config.model.variant=tiny", "--config.batch_size=8388608", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("aot: the train step at 2097152 per chip needs") and "16.00 GiB" in last, last
    report = json.loads(out.read_text())
    assert report["train"]["fits"] is False and report["per_chip_batch"] == 2097152
    assert report["train"]["memory_bytes"]["total"] > 16 * 2**30


@pytest.mark.parametrize("args, message", [
    (["--topology", "v9z:2x2"], r"unknown topology 'v9z:2x2' .*chip kinds: v2, v3, v4, v5e, v5p, v6e, tpu7x"),
    (["--topology", TOPOLOGY, "--config.batch_size=18"], r"config.batch_size=18 does not divide over 4 devices"),
    (["--topology", TOPOLOGY, "--config.no_such_field=1"], r"--config: .*no_such_field"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, capsys):
    assert aot.main(["--config", str(REPO / "configs" / "demo.py"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(r"aot: error: " + message + ".*", err[-1]), err
