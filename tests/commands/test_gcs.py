"""gs:// paths against a real GCS emulator on localhost (tests/gcs_emulator.py): train.py with
--workdir gs://..., killed and resumed, a damaged step, a bucket that does not exist, and the
tools reading --weights gs://... and writing --out gs://....

Every run trains the tiny test network on the embedded digits at 32x32 on 2 fake devices with the session's
compilation cache. The independent reference is one uninterrupted run into a local folder
(conftest's `digits_reference`, shared with tests/commands/test_train_durability.py; it checkpoints every 4
steps, these runs every 2): the runs on the emulator must end bit for bit where it ends. The test reads what the runs
stored through the emulator's own API, never through the code under test.
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from googlenet_jax.weights.files import restore_as_numpy

import helpers
from gcs_emulator import GcsEmulator
from helpers import DIGITS_RUN, REPO, photo
from helpers import DIGITS_STEPS as STEPS

pytestmark = pytest.mark.slow  # subprocesses, training runs and an emulator

# Every gs:// write of TensorFlow's goes through the emulator's HTTPS front: the runs log at the
# last step only.
RUN = [*DIGITS_RUN, "--config.checkpoint_every_steps=2", f"--config.log_every_steps={STEPS}"]
WORKDIR = "gs://bucket/run"
CHECKPOINTS = f"{WORKDIR}/checkpoints"


@pytest.fixture(scope="module")
def gcs():
    emulator = GcsEmulator(buckets=("bucket",))
    yield emulator
    emulator.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory, jax_cache, gcs, digits_reference):
    root = tmp_path_factory.mktemp("gcs")
    environment = helpers.command_env(jax_cache, base=dict(os.environ, **gcs.env))
    # The reference's data folder: the digits are prepared once.
    return {"environ": environment, "data_dir": digits_reference["data_dir"], "root": root}


def _start(env, command, name):
    """A subprocess from the repository root with the emulator's environment; its stdout and
    stderr go to files (read with _finish)."""
    out, err = (open(env["root"] / f"{name}.{kind}", "w") for kind in ("out", "err"))
    proc = subprocess.Popen([sys.executable, *map(str, command)], cwd=REPO, env=env["environ"],
                            stdout=out, stderr=err, text=True, start_new_session=True)
    proc.files = (out, err)
    return proc


def _finish(proc, timeout=900):
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for f in proc.files:
            f.close()
    out, err = (open(f.name).read() for f in proc.files)
    return proc.returncode, out, err


def _train(env, workdir, *args, name):
    return _start(env, ["train.py", *RUN, f"--config.data_dir={env['data_dir']}", *args, "--workdir", workdir],
                  name)


def _run(env, command, name):
    code, out, err = _finish(_start(env, command, name))
    assert "Traceback" not in err, err[-3000:]
    return code, out, err


def _arrays(step_dir):
    tree = restore_as_numpy(os.path.join(step_dir, "default"))
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _files(gcs, url):
    """{name: bytes} of the objects under `url`, folder markers left out."""
    return {name: gcs.read(f"{url}/{name}") for name in gcs.objects(url) if name and not name.endswith("/")}


def _steps(gcs):
    """{name: has commit marker} of the step-like folders under CHECKPOINTS."""
    names = gcs.objects(CHECKPOINTS)
    return {folder: f"{folder}/commit_success.txt" in names
            for folder in {name.split("/")[0] for name in names} - {""}}  # "": the folder's own marker


@pytest.fixture(scope="module")
def reference(digits_reference):
    """An uninterrupted run into a local folder."""
    return digits_reference["workdir"]


def assert_same_final_state(gcs, reference, local_copy):
    ours = _arrays(gcs.download(f"{CHECKPOINTS}/{STEPS}", local_copy))
    expected = _arrays(reference / "checkpoints" / str(STEPS))
    assert ours.keys() == expected.keys()
    for part in ("params", "batch_stats", "opt_state", "ema_params", "step", "rng"):
        assert any(part in key for key in expected), part
    for key, value in expected.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)
    final = json.loads(gcs.read(f"{WORKDIR}/final_metrics.json"))
    assert final["eval_loss"] == json.loads((reference / "final_metrics.json").read_text())["eval_loss"]


@pytest.fixture(scope="module")
def killed_and_resumed(env, gcs, reference):
    """A run on the emulator killed -9 while step 4 is being written, then resumed to the end.
    Returns the resumed run's stdout."""
    proc = _train(env, WORKDIR, name="killed")
    # Found by watching for step 4's objects before its commit marker, not by a sleep.
    deadline, partial = time.time() + 600, False
    while not partial and time.time() < deadline and proc.poll() is None:
        partial = _steps(gcs).get("4") is False
        time.sleep(0.02)
    assert partial, "never saw the save of step 4 in progress"
    os.killpg(proc.pid, signal.SIGKILL)
    code, out, err = _finish(proc)
    assert code == -signal.SIGKILL
    assert _steps(gcs) == {"2": True, "4": False}

    code, out, err = _run(env, ["train.py", *RUN, f"--config.data_dir={env['data_dir']}", "--workdir", WORKDIR],
                          "resumed")
    assert code == 0, out + err
    return out


def test_a_gs_workdir_killed_mid_save_resumes_bit_for_bit(gcs, reference, killed_and_resumed, tmp_path):
    out = killed_and_resumed
    assert f"removed {CHECKPOINTS}/4: the remains of an interrupted checkpoint save or delete" in out
    assert f"resuming from {WORKDIR} at step 2" in out
    # Old steps pruned (keep_checkpoints=2) with nothing left over, every file of a workdir there.
    assert _steps(gcs) == {"6": True, "8": True}
    names = gcs.objects(WORKDIR)
    for name in ("config.json", "model_info.json", "final_metrics.json"):
        assert name in names
    assert any(name.startswith("events.out.tfevents.") for name in names)
    assert_same_final_state(gcs, reference, tmp_path / "copy")


def test_a_damaged_newest_gs_step_falls_back_with_one_warning(env, gcs, reference, killed_and_resumed, tmp_path):
    # Step 8 with one of its array files gone (objects on GCS arrive whole or not at all; a
    # truncated file is tests/commands/test_train_durability.py's local case); a step 10 without
    # its commit marker (a save or a prune that was interrupted); a step 12 that has the marker
    # and no arrays.
    gcs.delete(f"{CHECKPOINTS}/8/" + next(name for name in gcs.objects(f"{CHECKPOINTS}/8") if "/d/" in name))
    for name in ("_CHECKPOINT_METADATA", "default/_METADATA"):
        gcs.put(f"{CHECKPOINTS}/10/{name}", gcs.read(f"{CHECKPOINTS}/6/{name}"))
    for name in ("_CHECKPOINT_METADATA", "commit_success.txt", "default/_METADATA"):
        gcs.put(f"{CHECKPOINTS}/12/{name}", gcs.read(f"{CHECKPOINTS}/6/{name}"))
    damaged_8 = _files(gcs, f"{CHECKPOINTS}/8")

    code, out, err = _run(env, ["train.py", *RUN, f"--config.data_dir={env['data_dir']}", "--workdir", WORKDIR],
                          "damaged")
    assert code == 0, out + err
    assert f"removed {CHECKPOINTS}/10: the remains of an interrupted checkpoint save or delete" in out
    warnings = [line for line in out.splitlines() if line.startswith("warning: checkpoint step")]
    assert [w.split(" cannot be read")[0] for w in warnings] == [
        f"warning: checkpoint step 12 in {CHECKPOINTS}", f"warning: checkpoint step 8 in {CHECKPOINTS}"]
    assert f"resuming from {WORKDIR} at step 6" in out
    # Kept whole under another name, out of the step namespace.
    assert _files(gcs, f"{CHECKPOINTS}/8.unreadable") == damaged_8
    assert _steps(gcs) == {"6": True, "8": True, "8.unreadable": True, "12.unreadable": True}
    assert_same_final_state(gcs, reference, tmp_path / "copy")


def test_a_bucket_that_does_not_exist_is_one_line_and_writes_nothing(env, gcs):
    before = {bucket: gcs.objects(f"gs://{bucket}") for bucket in gcs.buckets()}
    code, out, err = _run(env, ["train.py", *RUN, f"--config.data_dir={env['data_dir']}",
                                "--workdir", "gs://no-such-bucket/run"], "no_bucket")
    assert code != 0
    assert err.strip().splitlines()[-1] == ("train.py: error: cannot write to the workdir gs://no-such-bucket/run: "
                                            "gs://no-such-bucket: no such bucket, or no permission to see it")
    code, out, err = _run(env, ["-m", "googlenet_jax.export", "--weights", "gs://bucket/run",
                                "--out", "gs://no-such-bucket/model.jax"], "no_bucket_export")
    assert code == 2
    assert err.strip().splitlines()[-1] == ("export: error: --out gs://no-such-bucket/model.jax: "
                                            "gs://no-such-bucket: no such bucket, or no permission to see it")
    assert {bucket: gcs.objects(f"gs://{bucket}") for bucket in gcs.buckets()} == before
    assert not os.path.exists(os.path.join(REPO, "gs:"))  # never taken for a local path


def test_the_tools_read_gs_weights_and_export_writes_gs(env, gcs, reference, killed_and_resumed, tmp_path):
    # The same final weights on the emulator and on disk (proved above): the same predictions.
    predictions = {}
    for where, weights in (("gs", WORKDIR), ("local", reference)):
        out_json = tmp_path / f"{where}.json"
        code, out, err = _run(env, ["-m", "googlenet_jax.predict", "--weights", weights, "--json", out_json,
                                    photo("cat")], f"predict_{where}")
        assert code == 0, out + err
        predictions[where] = json.loads(out_json.read_text())[0]["top_k"]
    assert predictions["gs"] == predictions["local"]

    artifact = "gs://bucket/exported/googlenet.jax"
    code, out, err = _run(env, ["-m", "googlenet_jax.export", "--weights", f"{CHECKPOINTS}/{STEPS}",
                                "--platforms", "cpu", "--out", artifact], "export")
    assert code == 0, out + err
    assert gcs.objects("gs://bucket/exported") == ["googlenet.jax", "googlenet.jax.json"]
    serve = jax.export.deserialize(bytearray(gcs.read(artifact)))
    probabilities = np.asarray(serve.call(np.zeros((2, 32, 32, 3), np.float32)))
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert json.loads(gcs.read(artifact + ".json"))["platforms"] == ["cpu"]
