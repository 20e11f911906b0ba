"""Real multi-process training on one machine: train.py as 2 JAX processes x 2 CPU devices.

The processes are started by `python -m googlenet_jax.launch` (a free coordinator port, gloo
collectives between the processes) with a hard deadline; each test kills its whole process
group at the end. The reference is the same training computed in this process on a
single-process mesh of 4 devices, fed global batches built here: batch n is process 0's
local batch n followed by process 1's (`data.train_batches(process_index=i, process_count=2)`),
which is how `make_array_from_process_local_data` lays the two processes' rows out on a mesh
whose devices are ordered by process.

The runs train the tiny test network (architecture.TEST_VARIANTS: the network's code, BatchNorm
synchronised across processes, both aux heads) in float64 (config.model.dtype, JAX's 64-bit
mode) at a learning rate that moves the parameters. In float32 the full GoogLeNet at 32x32 and
batch 8 is so sharp (gradient norm about 400) that rounding differences in one step's gradients
grow by about five orders of magnitude within three SGD steps: 1 device and 4 in one process
differed by 52-63% in the momentum, the 2-process run and its reference by 41%, so a float32
test could only run at learning rate 0. In float64 the same runs differ by about 1e-12, while a
wrong batch, gradient, statistic or update differs by percents.
"""
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from googlenet_jax import data, evaluation, parallel
from googlenet_jax import weights as weights_lib
from googlenet_jax.configs import demo
from googlenet_jax.training import optim, programs, steps
from googlenet_jax.training.checkpointing import Checkpointer
from googlenet_jax.training.distributed import process_environment
from googlenet_jax.training.launcher import free_port
from googlenet_jax.training.train_state import create_train_state
from googlenet_jax.weights.files import restore_as_numpy

from helpers import REPO

pytestmark = pytest.mark.slow  # subprocesses and training runs

STEPS = 3
LEARNING_RATE = 0.1  # 3.1e-3 after the batch scaling (x 8 / 256)
LEAF_TOLERANCE, TOTAL_TOLERANCE = 1e-8, 1e-9  # relative differences: see _assert_same_training
MIN_PARAMETER_CHANGE = 1e-3  # of the parameters' norm over the 3 steps (8e-5 measured at rate 0.004)
# Field -> value, given to train.py as --config.FIELD=VALUE and applied to the reference config.
OVERRIDES = {
    "dataset": "image_folder", "num_classes": 3, "image_size": 32, "batch_size": 8,
    "eval_batch_size": 8, "num_train_steps": STEPS, "checkpoint_every_steps": 2,
    "log_every_steps": 1, "parallel": "mesh", "ema_decay": 0.5, "optimizer.warmup_epochs": 0.0,
    "optimizer.learning_rate": LEARNING_RATE, "model.dtype": "float64", "model.variant": "tiny",
}
DEADLINE_SECONDS = 480


def _args(overrides, data_dir, workdir):
    return ([f"--config.{name}={value}" for name, value in overrides.items()]
            + [f"--config.data_dir={data_dir}", "--workdir", str(workdir)])


def _run(command, *, env=None, timeout=DEADLINE_SECONDS):
    """Runs a command in its own process group with a hard deadline; the group dies at the end."""
    proc = subprocess.Popen(command, cwd=REPO, env=env or dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module", autouse=True)
def float64():
    """JAX's 64-bit mode for this module's reference runs (process-wide, as train.py sets it)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, photo_folder):
    """(workdir, CompletedProcess) of train.py run as 2 processes x 2 devices for STEPS steps."""
    workdir = tmp_path_factory.mktemp("two_processes") / "workdir"
    proc = _run([sys.executable, "-m", "googlenet_jax.launch", "--num_processes", "2",
                 "--devices_per_process", "2", "--", sys.executable, "train.py",
                 *_args(OVERRIDES, photo_folder, workdir)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, proc


def _reference_config(data_dir):
    config = demo.get_config()
    for name, value in {**OVERRIDES, "data_dir": str(data_dir)}.items():
        *parents, leaf = name.split(".")
        functools.reduce(getattr, parents, config)[leaf] = value
    return config


def _global_batches(config, num_devices):
    """Process 0's local batch n, then process 1's: the global batch n of the 2-process run."""
    streams = [data.train_batches(
        dataset=config.dataset, data_dir=config.data_dir, split=config.train_split,
        global_batch_size=config.batch_size, image_size=config.image_size,
        normalization=config.normalization, seed=config.seed,
        augment=data.AugmentConfig(**config.augment.to_dict()), num_devices=num_devices,
        process_index=i, process_count=2, shuffle_buffer=config.shuffle_buffer, cache=config.cache)
        for i in range(2)]
    while True:
        parts = [next(s) for s in streams]
        yield {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


@pytest.fixture(scope="module")
def reference(photo_folder):
    """The state and eval metrics of one process on a 4-device mesh fed the same global batches."""
    config = _reference_config(photo_folder)
    info = data.get_dataset_info(config.dataset, config.data_dir)
    steps_per_epoch = info.num_train_examples / config.batch_size
    learning_rate_fn = optim.create_learning_rate_fn(config, steps_per_epoch, STEPS)
    tx = optim.create_optimizer(config, learning_rate_fn)
    parallel_plan = parallel.MeshParallel(jax.devices()[:4])
    model = programs.create_model(config, num_classes=info.num_classes, bn_axis_name=parallel_plan.bn_axis_name)
    # On the host: the train step donates the state it is given.
    initial = jax.device_get(create_train_state(model, tx, seed=config.seed, image_size=config.image_size,
                                                use_ema=True, param_dtype=np.float64))
    state = parallel_plan.put_state(initial)
    train_step = parallel_plan.compile_train_step(functools.partial(
        steps.train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn,
        aux_weight=config.aux_weight, label_smoothing=config.label_smoothing, ema_decay=config.ema_decay))
    batches = _global_batches(config, parallel_plan.num_devices)
    for _ in range(STEPS):
        state, _ = train_step(state, parallel_plan.put_batch(next(batches)))
    # Every test example once, read by one process: what the 2 processes' halves must add up to.
    resize = weights_lib.info_from_config(config, info.class_names).resize_size
    eval_metrics = evaluation.evaluate(
        parallel_plan.compile_eval_step(functools.partial(steps.eval_step, model=model)), state,
        data.eval_batches(dataset=config.dataset, data_dir=config.data_dir, split=config.eval_split,
                          global_batch_size=config.eval_batch_size, image_size=config.image_size,
                          normalization=config.normalization, resize_size=resize,
                          num_devices=parallel_plan.num_devices, process_index=0, process_count=1),
        parallel_plan)
    return {"state": jax.device_get(state), "initial": initial, "eval": eval_metrics, "info": info,
            "parallel_plan": parallel_plan, "train_step": train_step, "next_batch": next(batches)}


def _leaves(tree):
    return dict(jax.tree_util.tree_leaves_with_path(tree))


def _differences(got, want, start=None):
    """(worst leaf, its ||got - want|| / ||want - start||, the same over all leaves together);
    `start` zeros when None: the relative difference of two states, or with the initial state
    as `start`, of the changes two runs made."""
    got, want = _leaves(got), _leaves(want)
    assert got.keys() == want.keys()
    start = _leaves(start) if start is not None else dict.fromkeys(want, 0.0)
    per_leaf, difference, size = {}, 0.0, 0.0
    for path, value in want.items():
        value = np.asarray(value, np.float64)
        leaf_difference = np.sum((np.asarray(got[path], np.float64) - value) ** 2)
        leaf_size = np.sum((value - start[path]) ** 2)
        per_leaf[jax.tree_util.keystr(path)] = (np.sqrt(leaf_difference / leaf_size) if leaf_size
                                                else 0.0 if leaf_difference == 0 else np.inf)
        difference, size = difference + leaf_difference, size + leaf_size
    worst = max(per_leaf, key=per_leaf.get)
    return worst, float(per_leaf[worst]), float(np.sqrt(difference / size))


def _parts(state):
    """What the runs are compared on, from a TrainState or a checkpoint restored as a dict."""
    get = state.get if isinstance(state, dict) else functools.partial(getattr, state)
    trace = get("opt_state")[1][0]
    return {"batch_stats": get("batch_stats"), "momentum": trace["trace"] if isinstance(trace, dict) else trace.trace,
            "params": get("params"), "ema_params": get("ema_params")}


def _assert_same_training(got, want, initial):
    """The two runs' batch statistics and momentum buffers, and the changes they made to the
    parameters and their average, within float64 rounding (module docstring)."""
    got, want, initial = _parts(got), _parts(want), _parts(initial)
    measured = {what: _differences(got[what], want[what], initial[what] if what.endswith("params") else None)
                for what in got}
    report = "; ".join(f"{what}: worst {leaf} {worst:.1e}, all leaves {overall:.1e}"
                       for what, (leaf, worst, overall) in measured.items())
    assert all(worst <= LEAF_TOLERANCE and overall <= TOTAL_TOLERANCE
               for _, worst, overall in measured.values()), report


def test_two_processes_train_like_one_process_fed_the_same_global_batches(two_process_run, reference):
    workdir, _ = two_process_run
    state, initial = reference["state"], reference["initial"]
    saved = restore_as_numpy(os.path.join(workdir, "checkpoints", str(STEPS), "default"))
    assert int(saved["step"]) == STEPS
    assert {leaf.dtype for leaf in jax.tree.leaves(saved["params"])} == {np.dtype(np.float64)}
    _assert_same_training(saved, state, initial)
    # The training moved everything it compares: gradients reached every momentum buffer, the
    # statistics left their start, and the parameters and their average really changed.
    assert all(np.abs(x).max() > 0 for x in jax.tree.leaves(saved["opt_state"][1][0]["trace"]))
    assert np.abs(saved["batch_stats"]["conv1"]["bn"]["mean"]).max() > 1e-3
    for part in ("params", "ema_params"):
        _, _, moved = _differences(getattr(state, part), getattr(initial, part))
        assert moved > MIN_PARAMETER_CHANGE, f"{part} moved {moved:.2e} of their norm"


def test_every_test_example_is_evaluated_once(two_process_run, reference):
    workdir, _ = two_process_run
    expected = reference["eval"]
    final = json.loads((workdir / "final_metrics.json").read_text())
    assert final["eval_count"] == reference["info"].num_eval_examples == 12
    assert final["eval_top1"] == pytest.approx(expected["eval_top1"], abs=1e-6)
    # Measured 7e-8: three steps at this rate amplify float64's rounding of the gradient sums
    # (summed in another order over 2 processes); a wrong example or statistic moves it by percents.
    assert final["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-6)


def test_one_set_of_outputs_and_logs_by_process(two_process_run):
    workdir, proc = two_process_run
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", str(STEPS)]
    assert len([f for f in os.listdir(workdir) if f.startswith("events.out.tfevents")]) == 1
    lines = proc.stdout.splitlines()
    for index in range(2):
        assert f"[process {index}/2] joined the run with 2 local cpu device(s), 4 in all" in lines
    # Progress and results come from process 0 alone, prefixed.
    progress = [line for line in lines if f"step {STEPS}/{STEPS}" in line]
    assert len(progress) == 1 and progress[0].startswith("[process 0/2] ")


def test_a_two_process_checkpoint_resumes_in_one_process(two_process_run, reference, tmp_path):
    """The trainer's restore path (Checkpointer.restore_latest onto MeshParallel.state_sharding)
    puts the 2-process checkpoint on one process's 4-device mesh; the next step runs there as
    it runs from the reference's own state (the reference's compiled step, no recompilation)."""
    workdir, _ = two_process_run
    shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
    parallel_plan, train_step, batch = reference["parallel_plan"], reference["train_step"], reference["next_batch"]
    abstract = jax.eval_shape(lambda: reference["state"])
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"), every_steps=1, keep=2)
    restored = checkpointer.restore_latest(abstract, parallel_plan.state_sharding(abstract))
    checkpointer.close()
    assert int(restored.step) == STEPS
    resumed, metrics = jax.device_get(train_step(parallel_plan.put_state(restored), parallel_plan.put_batch(batch)))
    expected, expected_metrics = jax.device_get(train_step(parallel_plan.put_state(reference["state"]),
                                                           parallel_plan.put_batch(batch)))
    assert int(resumed.step) == STEPS + 1
    assert float(metrics["loss"]) == pytest.approx(float(expected_metrics["loss"]), rel=1e-9)
    _assert_same_training(resumed, expected, reference["initial"])


def test_a_batch_that_does_not_divide_over_the_new_device_count_is_a_one_line_error(two_process_run,
                                                                                   photo_folder, tmp_path):
    workdir, _ = two_process_run
    resumed = tmp_path / "workdir"
    shutil.copytree(workdir, resumed)
    before = sorted(os.listdir(resumed / "checkpoints"))
    proc = _run([sys.executable, "train.py", *_args(OVERRIDES, photo_folder, resumed)],
                env=dict(os.environ, JAX_NUM_CPU_DEVICES="3"), timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == ("train.py: error: config.batch_size=8 does not divide over 3 "
                                            "devices (use a multiple of 3)")
    assert sorted(os.listdir(resumed / "checkpoints")) == before


def _log_has(path, text):
    with open(path) as f:
        return text in f.read()


@pytest.mark.parametrize("victim", [0, 1])
def test_a_dead_process_stops_the_other_within_the_heartbeat_timeout(victim, photo_folder, tmp_path):
    """SIGKILL one process once both have joined: the other must end by itself (JAX's
    coordination service), with an error naming the cause, not hang in a barrier."""
    heartbeat = 5
    port = free_port()
    command = [sys.executable, "train.py", *_args(
        {**OVERRIDES, "heartbeat_timeout_seconds": heartbeat}, photo_folder, tmp_path / "workdir")]
    procs, logs = [], []
    try:
        for index in range(2):
            logs.append(tmp_path / f"process{index}.log")
            env = process_environment(index, num_processes=2, coordinator_address=f"127.0.0.1:{port}",
                                      devices_per_process=2, base=dict(os.environ))
            with open(logs[-1], "w") as out:
                procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 240
        while not all(_log_has(log, "joined the run") for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [log.read_text()[-2000:] for log in logs]
            time.sleep(0.1)
        procs[victim].kill()
        killed_at = time.monotonic()
        survivor = procs[1 - victim]
        survivor.wait(timeout=heartbeat + 60)
        waited = time.monotonic() - killed_at
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    output = logs[1 - victim].read_text()
    assert survivor.returncode != 0
    assert "another task died" in output, output[-3000:]
    assert waited < heartbeat + 60


def test_the_launcher_stops_the_others_when_one_fails(tmp_path):
    """Process 1 fails at once; process 0 would sleep for a minute: the launcher ends it."""
    pid_file = tmp_path / "pid0"
    child = ("import os, sys, time\n"
             "index = int(os.environ['JAX_PROCESS_ID'])\n"
             "assert os.environ['JAX_NUM_PROCESSES'] == '2' and os.environ['JAX_NUM_CPU_DEVICES'] == '3'\n"
             f"if index == 1: time.sleep(1); sys.exit(7)\n"
             f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
             "time.sleep(60)\n")
    started = time.monotonic()
    proc = _run([sys.executable, "-m", "googlenet_jax.launch", "--num_processes", "2",
                 "--devices_per_process", "3", "--grace_seconds", "5", "--", sys.executable, "-c", child],
                timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == 7
    assert proc.stderr.splitlines()[-1] == "launch: process 1 exited with status 7; stopping the others"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_the_launcher_needs_a_command():
    proc = _run([sys.executable, "-m", "googlenet_jax.launch", "--num_processes", "2"], timeout=60)
    assert proc.returncode == 2 and "give the command after --" in proc.stderr
