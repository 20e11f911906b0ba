"""Runs that are preempted, killed, damaged or poisoned: real train.py processes, real signals,
real orbax files.

Every run trains the tiny test network on the embedded digits at 32x32 on 2 fake devices with one shared
compilation cache (only the first run compiles). The reference is one uninterrupted 8-step
run (conftest's `digits_reference`, shared with tests/commands/test_gcs.py); the interrupted runs must
end bit for bit where it ends: parameters, BatchNorm statistics, optimizer state and Polyak
average.
"""
import json
import os
import shutil
import signal
import sys
import time

import jax
import numpy as np
import pytest

from googlenet_jax.weights.files import restore_as_numpy

import helpers
from helpers import DIGITS_RUN as RUN
from helpers import DIGITS_STEPS as STEPS

pytestmark = pytest.mark.slow  # subprocesses and training runs


class Run(helpers.BackgroundCommand):
    """A train.py subprocess with the runs' flags, its output collected as the command runs."""

    def __init__(self, workdir, *args, cache_dir, data_dir, max_file_kb=None):
        command = [sys.executable, "train.py", *RUN, f"--config.data_dir={data_dir}", *map(str, args),
                   "--workdir", str(workdir)]
        if max_file_kb:  # no file may grow past this: writes fail (SIGXFSZ ignored) as on a full disk
            command = ["bash", "-c", f"ulimit -f {max_file_kb}; trap '' XFSZ; exec \"$@\"", "bash",
                       *command]
        self._start(command, cache_dir)

    def finish(self, timeout=900):
        return super().finish(timeout)

    @property
    def last_error_line(self):
        return self.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def env(tmp_path_factory, jax_cache, digits_reference):
    root = tmp_path_factory.mktemp("durability")
    # The reference's data folder: the digits are prepared once.
    return {"cache_dir": jax_cache, "data_dir": digits_reference["data_dir"], "root": root}


def _run(env, workdir, *args, **kwargs):
    return Run(workdir, *args, cache_dir=env["cache_dir"], data_dir=env["data_dir"], **kwargs)


@pytest.fixture(scope="module")
def reference(digits_reference):
    """An uninterrupted run, checkpoints at 4 and 8 (tests copy it before they change it)."""
    return digits_reference["workdir"]


def _state(workdir, step=STEPS):
    """{"params/...": array, ...}: every array of the TrainState checkpointed at `step`."""
    tree = restore_as_numpy(f"{workdir}/checkpoints/{step}/default")
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def assert_same_final_state(workdir, reference):
    ours, expected = _state(workdir), _state(reference)
    assert ours.keys() == expected.keys()
    for part in ("params", "batch_stats", "opt_state", "ema_params", "step", "rng"):
        keys = [k for k in expected if k.startswith(part)]
        assert keys, part
        for key in keys:
            np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)
    final = json.loads((workdir / "final_metrics.json").read_text())
    assert final["eval_loss"] == json.loads((reference / "final_metrics.json").read_text())["eval_loss"]


def _steps(workdir):
    return sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())


def test_sigterm_saves_the_step_in_flight_exits_and_resumes_bit_for_bit(env, reference):
    workdir = env["root"] / "sigterm"
    rare = "--config.checkpoint_every_steps=100"  # so the saved step is never a scheduled one
    run = _run(env, workdir, rare)
    run.wait_for("step 2/8")
    run.proc.send_signal(signal.SIGTERM)
    run.finish()
    assert run.proc.returncode == 128 + signal.SIGTERM, run.stdout + run.stderr
    assert "received SIGTERM: finishing this step" in run.stdout
    saved = _steps(workdir)
    assert len(saved) == 1 and 2 <= saved[0] < STEPS
    assert f"stopped by SIGTERM: saved step {saved[0]} to {workdir / 'checkpoints'}" in run.stdout
    assert "run the same command to resume" in run.stdout and "Traceback" not in run.stderr

    resumed = _run(env, workdir, rare).finish()
    assert resumed.proc.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming from {workdir} at step {saved[0]}" in resumed.stdout
    assert_same_final_state(workdir, reference)


def test_sigkill_mid_save_and_between_steps_then_a_bit_for_bit_finish(env, reference):
    workdir = env["root"] / "sigkill"
    every = "--config.checkpoint_every_steps=2"
    # 1. Killed while the asynchronous save of step 4 is being written: found by watching
    #    for orbax's temporary folder, not by a sleep.
    run = _run(env, workdir, every)
    folder = workdir / "checkpoints"
    partial = None
    deadline = time.time() + 600
    while partial is None and time.time() < deadline and run.proc.poll() is None:
        names = os.listdir(folder) if folder.exists() else []
        partial = next((n for n in names if n.startswith("4.orbax-checkpoint-tmp")), None)
        time.sleep(0.002)
    assert partial, "never saw the save of step 4 in progress"
    os.killpg(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert run.proc.returncode == -signal.SIGKILL
    assert _steps(workdir) == [2] and (folder / partial).exists()

    # 2. Resumes from step 2, cleans the partial folder up, and is killed between steps
    #    (before its own save of step 4 starts).
    run = _run(env, workdir, every)
    run.wait_for("step 3/8")
    os.killpg(run.proc.pid, signal.SIGKILL)
    run.finish()
    assert f"resuming from {workdir} at step 2" in run.stdout
    assert f"removed {folder / partial}: the remains of an interrupted checkpoint save" in run.stdout
    assert not (folder / partial).exists()

    # 3. Finishes.
    run = _run(env, workdir, every).finish()
    assert run.proc.returncode == 0, run.stdout + run.stderr
    assert not [n for n in os.listdir(folder) if not n.isdigit()]
    assert _steps(workdir) == [6, 8]  # keep_checkpoints=2
    assert_same_final_state(workdir, reference)


def _truncate_arrays(step_dir):
    for root, _, files in os.walk(step_dir):
        for name in files:
            if os.sep + "d" in root or name.endswith(".ocdbt"):
                with open(os.path.join(root, name), "r+b") as f:
                    f.truncate(os.path.getsize(os.path.join(root, name)) // 2)


def _delete_arrays(step_dir):
    for root, _, files in os.walk(step_dir):
        if root.endswith(os.sep + "d"):
            for name in files:
                os.remove(os.path.join(root, name))


def test_damaged_newest_checkpoints_are_set_aside_and_the_run_falls_back(env, reference):
    workdir = env["root"] / "damaged"
    shutil.copytree(reference, workdir)
    folder = workdir / "checkpoints"
    (folder / "12").mkdir()  # an empty step folder
    shutil.copytree(folder / "4", folder / "10")
    _delete_arrays(folder / "10")  # deleted array files
    (folder / "8" / "default" / "_METADATA").write_text("{ not json")  # garbage metadata
    shutil.copytree(folder / "4", folder / "6")
    _truncate_arrays(folder / "6")  # truncated array files
    (folder / "2.deleting").mkdir()  # an interrupted delete
    (folder / "2.deleting" / "leftover").write_text("x")

    run = _run(env, workdir, "--config.checkpoint_every_steps=4").finish()
    assert run.proc.returncode == 0, run.stdout + run.stderr
    for step in (12, 10, 8, 6):
        assert f"warning: checkpoint step {step} in {folder} cannot be read (" in run.stdout, step
        assert (folder / f"{step}.unreadable").exists()
    assert f"resuming from {workdir} at step 4" in run.stdout
    assert not (folder / "2.deleting").exists()
    assert_same_final_state(workdir, reference)


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(env, reference):
    workdir = env["root"] / "unreadable"
    shutil.copytree(reference, workdir)
    for step in (4, 8):
        _truncate_arrays(workdir / "checkpoints" / str(step))
    run = _run(env, workdir).finish()
    assert run.proc.returncode != 0 and "Traceback" not in run.stderr
    line = run.last_error_line
    assert line.startswith(f"train.py: error: no checkpoint in {workdir / 'checkpoints'} can be read "
                           "(steps 8, 4; newest: ")
    assert line.endswith("refusing to start a new run over them: move the folder away to start from scratch")
    assert _steps(workdir) == [4, 8]  # left as they were


def test_a_workdir_of_another_run_or_model_is_named(env, reference):
    workdir = env["root"] / "other"
    shutil.copytree(reference, workdir)
    run = _run(env, workdir, "--config.train_split=test", "--config.normalization=paper").finish()
    assert run.last_error_line == (
        f"train.py: error: {workdir} holds checkpoints of another run (train_split='train' there, 'test' "
        "here; normalization='torchvision' there, 'paper' here): use another --workdir, or that run's "
        "config to resume it")
    # Without its config.json the checkpoint itself tells: the arrays are another model's.
    (workdir / "config.json").unlink()
    run = _run(env, workdir, "--config.ema_decay=0").finish()
    assert run.proc.returncode != 0 and "Traceback" not in run.stderr
    assert run.last_error_line.startswith(f"train.py: error: {workdir / 'checkpoints' / '8' / 'default'} is "
                                          "a checkpoint of another model (ema_params present in the "
                                          "checkpoint, absent in this config)")
    assert _steps(workdir) == [4, 8]  # nothing set aside or lost


def test_nan_at_a_non_log_step_stops_there_with_the_last_good_checkpoint(env):
    workdir = env["root"] / "nan_stop"
    run = _run(env, workdir, "--config.checkpoint_every_steps=2", "--config.log_every_steps=4",
               "--config.inject_nan_at_step=3").finish()
    assert run.proc.returncode != 0 and "Traceback" not in run.stderr
    assert run.last_error_line.startswith("train.py: error: training loss is nan at step 3; stopped")
    assert _steps(workdir) == [2]
    for key, value in _state(workdir, 2).items():
        assert np.isfinite(value).all(), key


def test_skip_policy_completes_and_counts_the_skipped_step(env):
    workdir = env["root"] / "nan_skip"
    run = _run(env, workdir, "--config.checkpoint_every_steps=4", "--config.inject_nan_at_step=3",
               "--config.nan_policy=skip").finish()
    assert run.proc.returncode == 0, run.stdout + run.stderr
    assert json.loads((workdir / "final_metrics.json").read_text())["skipped_steps"] == 1
    assert "step 3/8 (epoch 0.0) | loss nan" in run.stdout and "1 non-finite step(s) skipped" in run.stdout
    for key, value in _state(workdir).items():
        assert np.isfinite(value).all(), key


def test_the_skip_policy_stops_after_nan_max_consecutive_skips_in_a_row(env):
    """nan_max_consecutive_skips=1 (the default is 10): one poisoned step is already too many in
    a row, so the run stops there in one line, with no results."""
    workdir = env["root"] / "nan_skip_limit"
    run = _run(env, workdir, "--config.nan_policy=skip", "--config.nan_max_consecutive_skips=1",
               "--config.inject_nan_at_step=3").finish()
    assert run.proc.returncode == 1 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert run.last_error_line == ("train.py: error: training loss is nan at step 3, non-finite for 1 steps in a "
                                   "row (nan_max_consecutive_skips=1); stopped")
    assert not (workdir / "final_metrics.json").exists()


def test_a_failed_save_is_one_line_and_loses_nothing(env, reference):
    """A full disk, played by a 16 KB file-size limit (the tiny network's checkpoint metadata and
    its larger array files are larger; the run's other files are smaller):
    the writes fail as they would with ENOSPC. The error is the last line, and the hundreds of
    writes still pending when the first one failed do not each print a traceback."""
    workdir = env["root"] / "full"
    shutil.copytree(reference, workdir)
    shutil.rmtree(workdir / "checkpoints" / "8")
    run = _run(env, workdir, "--config.checkpoint_every_steps=2", max_file_kb=16).finish()
    assert run.proc.returncode != 0
    assert run.last_error_line == (
        f"train.py: error: saving checkpoint step 6 to {workdir / 'checkpoints'} failed (File too large); "
        "the newest complete checkpoint is step 4: fix the folder (free space, permissions) and run the "
        "same command to resume")
    assert "Event loop is closed" not in run.stderr
    assert _steps(workdir) == [4]


def test_an_unwritable_workdir_fails_before_training_in_one_line(env, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    run = _run(env, blocker / "run").finish()
    assert run.proc.returncode != 0 and "Traceback" not in run.stderr
    assert run.last_error_line == (f"train.py: error: cannot write to the workdir {blocker / 'run'}: "
                                   "Not a directory")
