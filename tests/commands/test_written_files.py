"""What a finished train.py run promises in its workdir, read back from the files themselves.

Every test reads conftest's `digits_reference` (helpers.DIGITS_RUN: the demo config, 8 steps,
a progress line and TensorBoard scalars at every step, checkpoints at steps 4 and 8) with json
or TensorFlow's own event-file reader, and checks it against the run's flags by hand.
"""
import json

import pytest

from helpers import DIGITS_STEPS

pytestmark = pytest.mark.slow  # the session's reference training run

# The digits run's own figures, from its flags (helpers.DIGITS_RUN) and configs/demo.py.
IMAGE_SIZE, CHECKPOINT_EVERY = 32, 4
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
    for tag in ("loss", "loss_main", "top1", "learning_rate", "grad_norm", "images_per_sec", "skipped_steps",
                "host_rss_mb"):
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
