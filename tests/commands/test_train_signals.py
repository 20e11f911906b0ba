"""Ctrl-C, a second signal while saving, and signals through the launcher: real train.py
processes, real signals, real orbax files.

Every run trains the embedded digits at 32x32 with helpers.DIGITS_RUN (tests/commands/test_train_durability.py's
flags: the tiny test network) and the session's compilation cache, so the steps compile once
for both files. That a saved checkpoint is complete is judged against the network's own variable
shapes (`jax.eval_shape` of its init), not by the code that saved or restores it.
"""
import os
import re
import signal
import sys
import time

import jax
import numpy as np
import pytest

from googlenet_jax import GoogLeNet
from googlenet_jax.weights.files import restore_as_numpy

from helpers import DIGITS_RUN, BackgroundCommand

pytestmark = pytest.mark.slow  # subprocesses and training runs

# Long enough that a signal always lands before the end (a step of the tiny network takes tens of
# milliseconds; several processes agree on the step to stop at a little later), and every
# checkpoint here is a preemption's. A signal stops the run early, so the length costs nothing.
STEPS = 200
RUN = [*DIGITS_RUN, f"--config.num_train_steps={STEPS}", f"--config.checkpoint_every_steps={STEPS}"]


def _train(workdir, data_dir, cache_dir, launcher=()):
    return BackgroundCommand([*launcher, "train.py", *RUN, f"--config.data_dir={data_dir}",
                              "--workdir", workdir], cache_dir=cache_dir)


def _saved_steps(workdir):
    return sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())


def _assert_complete_checkpoint(workdir, step):
    """The step's TrainState reads back whole: finite, and every parameter and statistic of the
    network (its Polyak average and momentum too) there with its shape."""
    state = restore_as_numpy(f"{workdir}/checkpoints/{step}/default")
    assert int(state["step"]) == step
    for part in ("params", "batch_stats", "opt_state", "ema_params"):
        leaves = [np.asarray(x) for x in jax.tree.leaves(state[part])]
        assert leaves and all(np.isfinite(x).all() for x in leaves), part
    net = GoogLeNet(num_classes=10, variant="tiny")
    expected = jax.eval_shape(lambda: net.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), train=False))
    shapes = lambda tree: jax.tree.map(np.shape, tree)  # noqa: E731
    for saved in (state["params"], state["ema_params"]):
        assert shapes(saved) == shapes(expected["params"])
    assert shapes(state["batch_stats"]) == shapes(expected["batch_stats"])
    assert not [n for n in os.listdir(workdir / "checkpoints") if not n.isdigit()]  # no partial save left


def _stopped_line(stdout, signame, workdir):
    """The one line train.py ends with after a preemption save; returns the saved step."""
    pattern = (rf"train\.py: stopped by {signame}: saved step (\d+) to {re.escape(str(workdir / 'checkpoints'))} "
               r"in [0-9.]+s; run the same command to resume")
    lines = [m for m in (re.fullmatch(pattern, line) for line in stdout.splitlines()) if m]
    assert len(lines) == 1, stdout
    return int(lines[0].group(1))


def test_ctrl_c_saves_the_step_in_flight_and_exits_130(tmp_path, digits_data_dir, jax_cache):
    workdir = tmp_path / "workdir"
    run = _train(workdir, digits_data_dir, jax_cache)
    run.wait_for(f"step 2/{STEPS}")
    run.proc.send_signal(signal.SIGINT)
    run.finish()
    assert run.proc.returncode == 130, run.stdout + run.stderr
    assert "received SIGINT: finishing this step, then saving a checkpoint and exiting" in run.stdout
    step = _stopped_line(run.stdout, "SIGINT", workdir)
    assert 2 <= step < STEPS and _saved_steps(workdir) == [step]
    assert "Traceback" not in run.stderr and "KeyboardInterrupt" not in run.stderr
    _assert_complete_checkpoint(workdir, step)


def test_a_second_ctrl_c_while_saving_is_reported_and_the_save_completes(tmp_path, digits_data_dir, jax_cache):
    workdir = tmp_path / "workdir"
    folder = workdir / "checkpoints"
    run = _train(workdir, digits_data_dir, jax_cache)
    run.wait_for(f"step 2/{STEPS}")
    run.proc.send_signal(signal.SIGINT)
    # The second Ctrl-C lands while orbax writes the step: its temporary folder is there.
    saving = False
    deadline = time.time() + 300
    while not saving and time.time() < deadline and run.proc.poll() is None:
        saving = folder.exists() and any(".orbax-checkpoint-tmp" in n for n in os.listdir(folder))
        time.sleep(0.002)
    assert saving, "never saw the preemption save in progress"
    run.proc.send_signal(signal.SIGINT)
    run.finish()
    assert run.proc.returncode == 130, run.stdout + run.stderr
    assert "received SIGINT again: still saving the checkpoint, please wait" in run.stdout
    step = _stopped_line(run.stdout, "SIGINT", workdir)
    assert _saved_steps(workdir) == [step]
    assert "Traceback" not in run.stderr and "KeyboardInterrupt" not in run.stderr
    _assert_complete_checkpoint(workdir, step)


def test_the_launcher_forwards_sigterm_and_exits_with_the_status_of_its_child(tmp_path, digits_data_dir, jax_cache):
    """One process under the launcher joins jax.distributed, so it stops through JAX's own
    SIGTERM handler and preemption sync point (training/preemption.py's multi-process path)."""
    workdir = tmp_path / "workdir"
    run = _train(workdir, digits_data_dir, jax_cache,
                 launcher=["-m", "googlenet_jax.launch", "--num_processes", "1", "--", sys.executable])
    run.wait_for(f"step 2/{STEPS}")
    os.kill(run.proc.pid, signal.SIGTERM)  # the launcher alone: its child hears it from the launcher
    run.finish()
    assert run.proc.returncode == 128 + signal.SIGTERM, run.stdout + run.stderr
    step = _stopped_line(run.stdout, "SIGTERM", workdir)
    assert 2 <= step < STEPS and _saved_steps(workdir) == [step]
    assert "launch:" not in run.stderr and "Traceback" not in run.stderr  # no child failure reported
    _assert_complete_checkpoint(workdir, step)
