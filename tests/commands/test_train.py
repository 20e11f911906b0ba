"""train.py end to end (a real subprocess, the real CLI) on the embedded digits at 32x32.

Three short runs share one persistent compilation cache so that only the first compiles:
  straight: 8 steps in one go (conftest's `digits_reference`, which tests/commands/test_train_durability.py
    and tests/commands/test_gcs.py run too: one run for the three files);
  first + resumed: 4 steps, then the same command with 8 steps in the same workdir.
Resuming must continue exactly: same data position, same dropout keys, same parameters. The
resumed run also writes a profile of two of its steps (config.profile_steps).
"""
import json
import os
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest

import helpers
from helpers import DIGITS_RUN, DIGITS_STEPS, REPO

pytestmark = pytest.mark.slow  # subprocesses and training runs

TRAIN = os.path.join(REPO, "train.py")
CHECKPOINT_EVERY = 4  # N: the resume test compares 2N straight steps with N + N
assert 2 * CHECKPOINT_EVERY == DIGITS_STEPS  # the straight run is `digits_reference`

# Small and fast: 32x32 digits, 16 images per step = 2 per fake device, a constant learning
# rate (so runs of different lengths compile the very same step); keep_checkpoints=2.
SMALL = [*DIGITS_RUN, f"--config.checkpoint_every_steps={CHECKPOINT_EVERY}"]
PROFILED = "6-7"  # the resumed run traces these steps (config.profile_steps)


def _train(*args, cache_dir, check=True):
    proc = subprocess.run([sys.executable, TRAIN, *map(str, args)], env=helpers.command_env(cache_dir), cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory, jax_cache, digits_reference):
    root = tmp_path_factory.mktemp("train_cli")
    (root / "straight").symlink_to(digits_reference["workdir"])
    data = ["--config.data_dir", digits_reference["data_dir"]]
    common = dict(cache_dir=jax_cache)
    steps = 2 * CHECKPOINT_EVERY
    first = _train(*SMALL, *data, f"--config.num_train_steps={CHECKPOINT_EVERY}",
                   "--workdir", root / "resumed", **common)
    resumed = _train(*SMALL, *data, f"--config.num_train_steps={steps}", f"--config.profile_steps={PROFILED}",
                     "--workdir", root / "resumed", **common)
    return {"root": root, "straight": digits_reference["proc"], "first": first, "resumed": resumed}


def _params(workdir, step):
    restored = ocp.StandardCheckpointer().restore(
        os.path.join(workdir, "checkpoints", str(step), "default"))
    return restored


def test_writes_final_metrics_with_the_required_keys(runs):
    metrics = json.loads((runs["root"] / "resumed" / "final_metrics.json").read_text())
    assert metrics["step"] == 2 * CHECKPOINT_EVERY
    for key in ("eval_top1", "eval_top5", "eval_loss", "train_images_per_sec"):
        assert isinstance(metrics[key], float), key
    assert 0 <= metrics["eval_top1"] <= metrics["eval_top5"] <= 1
    assert metrics["eval_count"] == 360  # every test digit, padding excluded


def test_keeps_the_last_checkpoints_every_n_steps(runs):
    steps = sorted(int(p.name) for p in (runs["root"] / "straight" / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps == [CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY]


def test_resume_continues_exactly_like_an_uninterrupted_run(runs):
    assert "resuming from" in runs["resumed"].stdout
    assert f"steps {CHECKPOINT_EVERY}->{2 * CHECKPOINT_EVERY}" in runs["resumed"].stdout
    straight = _params(runs["root"] / "straight", 2 * CHECKPOINT_EVERY)
    resumed = _params(runs["root"] / "resumed", 2 * CHECKPOINT_EVERY)
    for part in ("params", "batch_stats", "opt_state", "ema_params"):
        flat_a, flat_b = _flatten(straight[part]), _flatten(resumed[part])
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            np.testing.assert_array_equal(flat_a[key], flat_b[key], err_msg=f"{part}/{key}")
    a = json.loads((runs["root"] / "straight" / "final_metrics.json").read_text())
    b = json.loads((runs["root"] / "resumed" / "final_metrics.json").read_text())
    assert a["eval_loss"] == b["eval_loss"]


def _profiled_steps(workdir):
    """{step number of every "train_step" annotation} in the workdir's jax.profiler traces, read
    with the XSpace protobuf that TensorBoard's profile plugin reads."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    steps = set()
    for path in workdir.glob("plugins/profile/*/*.xplane.pb"):
        space = xplane_pb2.XSpace.FromString(path.read_bytes())
        for plane in space.planes:
            for line in plane.lines:
                for event in line.events:
                    if plane.event_metadata[event.metadata_id].name != "train_step":
                        continue
                    steps.update(stat.int64_value for stat in event.stats
                                 if plane.stat_metadata[stat.metadata_id].name == "step_num")
    return steps


def test_profiles_the_configured_steps(runs):
    first, last = map(int, PROFILED.split("-"))
    assert _profiled_steps(runs["root"] / "resumed") == set(range(first, last + 1))
    assert f"profiling steps {PROFILED}" in runs["resumed"].stdout
    assert not (runs["root"] / "straight" / "plugins").exists()  # off by default


def test_prints_progress_lines(runs):
    out = runs["straight"].stdout
    assert f"step {DIGITS_STEPS}/{DIGITS_STEPS}" in out and "loss" in out and "ETA" in out
    assert "held-out top1" in out


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}/"))
        return out
    if isinstance(tree, (list, tuple)):
        return _flatten({str(i): v for i, v in enumerate(tree)}, prefix)
    return {prefix: np.asarray(tree)}


@pytest.mark.parametrize("args, message", [
    (["--config.batch_size=13"], f"does not divide over {helpers.COMMAND_DEVICES} devices"),
    (["--config.num_classes=7"], "has 10 classes"),
    (["--config.nonexistent_field=1"], "bad --config override"),
])
def test_bad_configs_fail_in_one_line_before_compiling(tmp_path, args, message):
    proc = _train(*args, "--config.data_dir", tmp_path / "data", "--workdir", tmp_path / "w",
                  cache_dir=tmp_path / "cache", check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:") and message in last
    assert not (tmp_path / "w" / "checkpoints").exists()


# ----------------------------------------------------------------------------- what the run wrote
# The digits run's own figures, from its flags (helpers.DIGITS_RUN) and configs/demo.py.
IMAGE_SIZE = 32
DEMO_EVAL_CROP_FRACTION = 1.0  # configs/demo.py: the digits are seen whole in evaluation


def _scalars(workdir) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of every scalar in the workdir's TensorBoard event files."""
    import tensorflow as tf

    scalars: dict[str, dict[int, float]] = {}
    for path in sorted(workdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, {})[event.step] = number
    return scalars


def _json(workdir, name) -> dict:
    return json.loads((workdir / name).read_text())


def test_model_info_holds_the_eval_resize_that_eval_crop_fraction_asks_for(digits_reference):
    """model_info.json (what predict, evaluate and export preprocess with) records the run's
    input: its size, and the shorter side that a center crop keeping eval_crop_fraction of it
    needs, round(32 / 1.0) = 32 for the whole digits; plus the model and the digit classes."""
    info = _json(digits_reference["workdir"], "model_info.json")
    assert info["image_size"] == IMAGE_SIZE
    assert info["resize_size"] == round(IMAGE_SIZE / DEMO_EVAL_CROP_FRACTION) == 32
    assert (info["variant"], info["num_classes"], info["dataset"]) == ("tiny", 10, "sklearn_digits")
    assert len(info["class_names"]) == 10


def test_tensorboard_has_train_scalars_at_every_log_step_and_eval_scalars_at_the_end(digits_reference):
    """log_every_steps=1: the train scalars (loss, learning rate, skipped steps, memory) are at
    steps 1..8, not at the checkpoint steps alone; the final evaluation is at step 8."""
    scalars = _scalars(digits_reference["workdir"])
    every_step = set(range(1, DIGITS_STEPS + 1))
    for tag in ("loss", "loss_main", "loss_aux1", "loss_aux2", "top1", "learning_rate", "grad_norm",
                "images_per_sec", "skipped_steps", "host_rss_mb"):
        assert set(scalars[tag]) == every_step, tag
    for tag in ("eval_top1", "eval_top5", "eval_loss", "eval_count"):
        assert set(scalars[tag]) == {DIGITS_STEPS}, tag


def test_final_metrics_report_the_last_steps_training_loss_and_evaluation(digits_reference):
    """final_metrics.json's train_loss is the total training loss of the last step (main + 0.3 x
    aux, TensorBoard's "loss" at step 8, not "loss_main"), its eval figures and skipped_steps are
    those TensorBoard holds at step 8, and every documented field is there."""
    workdir = digits_reference["workdir"]
    final, scalars = _json(workdir, "final_metrics.json"), _scalars(workdir)
    assert final["step"] == DIGITS_STEPS
    assert final["train_loss"] == pytest.approx(scalars["loss"][DIGITS_STEPS], rel=1e-6)
    assert final["train_loss"] != pytest.approx(scalars["loss_main"][DIGITS_STEPS], rel=1e-6)
    for key in ("eval_top1", "eval_top5", "eval_loss", "eval_count"):
        assert final[key] == pytest.approx(scalars[key][DIGITS_STEPS], rel=1e-6), key
    assert final["skipped_steps"] == 0 == scalars["skipped_steps"][DIGITS_STEPS]
    assert final["eval_count"] == 360  # every test digit once
    assert final["train_images_per_sec"] > 0 and final["wall_time_sec"] > 0
