"""Short training runs on the embedded digits must learn: the full GoogLeNet (both variants,
float32 and bfloat16 compute) brings the held-out loss under a uniform guess's and the top-1 over
chance by stated margins.
"""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from googlenet_jax.data.digits import digits_split
from googlenet_jax.model.network import GoogLeNet
from googlenet_jax.training import optim
from googlenet_jax.training.train_state import create_train_state

import helpers

# ----------------------------------------------------------------------------- through train.py
# 80 train.py steps on the digits (configs/demo.py) at 32x32, 16 images per step on 2 fake
# devices, a constant rate of 0.0125 (0.2 per 256 images: half the demo's, whose 0.025 at this
# batch and without warmup is a coin toss this early; the outcome moved with the processor's
# rounding: held-out loss 1.93 on one machine, 5.66 on another, and 1.80 with seed 1) and a
# Polyak average. Judged on all 360 held-out digits against a uniform guess: its loss is ln 10
# and its top-1 1 in 10 (a standard deviation of 1.6 points over 360). The per-step training
# loss is no judge this early: with dropout 0.2 on the main head and 0.7 on the aux heads it
# swings between 1.5 and 5.8 while the averaged weights learn.
LEARNING_STEPS = 80
RUN = ["--config.image_size=32", "--config.batch_size=16", "--config.eval_batch_size=40",
       "--config.log_every_steps=1", "--config.optimizer.schedule=constant",
       "--config.optimizer.learning_rate=0.2", "--config.optimizer.warmup_epochs=0", "--config.ema_decay=0.9",
       "--config.keep_checkpoints=2", f"--config.num_train_steps={LEARNING_STEPS}",
       "--config.checkpoint_every_steps=1000"]


@pytest.mark.slow
@pytest.mark.parametrize("flags, under_ln10, over_chance", [
    # measured with seeds 0 to 4 (--config.seed; the test runs seed 0, another processor's
    # rounding acts like another seed): held-out loss 1.10, 0.79, 1.25, 1.17, 1.55 (at least 0.75
    # under ln 10 = 2.303), top-1 0.642, 0.717, 0.550, 0.592, 0.394 (at least 29 points over chance)
    pytest.param([], 0.3, 0.15, id="float32-loss-0.3-under-ln10-top1-15-points-over-chance"),
])
def test_80_steps_bring_the_held_out_loss_under_ln10_and_top1_over_chance(flags, under_ln10, over_chance, tmp_path,
                                                                          digits_data_dir, jax_cache):
    workdir = tmp_path / "workdir"
    helpers.run_command(["train.py", *RUN, *flags, f"--config.data_dir={digits_data_dir}", "--workdir", workdir],
                        cache_dir=jax_cache, timeout=1800)
    final = json.loads((workdir / "final_metrics.json").read_text())
    assert final["step"] == LEARNING_STEPS and final["eval_count"] == 360
    assert final["eval_loss"] <= math.log(10) - under_ln10, final
    assert final["eval_top1"] >= 0.1 + over_chance, final


# ----------------------------------------------------------------------------- in this process
# The variants train.py cannot run at 32x32, or runs slowly there, train in this process
# through the same train step: the digits upscaled 4x, a constant rate, no Polyak average.
def _digits_at_32x32(split):
    images, labels, _ = digits_split()[split]
    x = np.kron(images.astype(np.float32) / 255.0, np.ones((1, 4, 4, 1), np.float32))  # each pixel 4x4
    return (x - 0.5) / 0.25, labels.astype(np.int32)


def _sgd(model, *, steps_, learning_rate, weight_decay):
    """(initial TrainState, jitted train step) of SGD at a constant rate, no Polyak average."""
    config = helpers.optimizer_config(learning_rate=learning_rate, schedule="constant", warmup_epochs=0.0,
                                      weight_decay=weight_decay)
    lr_fn = optim.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=steps_)
    tx = optim.create_optimizer(config, lr_fn)
    state = create_train_state(model, tx, seed=0, image_size=32, use_ema=False)
    return state, helpers.jit_train_step(model, tx, lr_fn, ema_decay=0.0)


def _train_and_evaluate(model, *, steps_, batch_size, learning_rate, weight_decay):
    """(held-out loss, held-out top-1) on the 360 test digits after `steps_` SGD steps, and the
    mean training loss of the first and of the last 25 steps."""
    state, step_fn = _sgd(model, steps_=steps_, learning_rate=learning_rate, weight_decay=weight_decay)
    (train_x, train_y), (test_x, test_y) = _digits_at_32x32("train"), _digits_at_32x32("test")
    rng, train_losses = np.random.RandomState(0), []
    for _ in range(steps_):
        batch = rng.randint(0, len(train_y), batch_size)
        state, metrics = step_fn(state, {"image": train_x[batch], "label": train_y[batch]})
        train_losses.append(float(metrics["loss"]))

    def predict(params, batch_stats, x):
        return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)

    logits = np.asarray(jax.jit(predict)(state.params, state.batch_stats, test_x), np.float64)
    loss = -np.log(helpers.softmax(logits)[np.arange(len(test_y)), test_y]).mean()
    return (loss, (logits.argmax(-1) == test_y).mean(),
            np.mean(train_losses[:25]), np.mean(train_losses[-25:]))


# bfloat16 compute (float32 parameters), the torchvision variant with its aux heads and no
# dropout, 30 steps on one fixed batch of 16 digits at learning rate 0.01: the train step must fit
# it. Measured: the weighted training loss fell from 3.68 and 3.74 to 0.23 and 0.39 for two
# batches (float32: 3.69 to 0.25). Held-out figures after 80 steps of random batches are no judge
# here: they moved with the last bits of the initial weights (held-out loss 1.66 in one run, 2.32
# in another). About 45 s.
@pytest.mark.slow
def test_a_bfloat16_train_step_fits_a_batch_of_digits():
    model = GoogLeNet(num_classes=10, variant="torchvision", dtype=jnp.bfloat16, dropout_rate=0.0,
                      aux_dropout_rate=0.0)
    state, step_fn = _sgd(model, steps_=30, learning_rate=0.01, weight_decay=5e-5)
    images, labels = _digits_at_32x32("train")
    batch = np.random.RandomState(0).choice(len(labels), 16, replace=False)
    losses = []
    for _ in range(30):
        state, metrics = step_fn(state, {"image": images[batch], "label": labels[batch]})
        losses.append(float(metrics["loss"]))
    assert losses[-1] <= 1.0 and losses[-1] <= 0.3 * losses[0], losses


# The paper variant (no BatchNorm: LRN, Caffe's Xavier initialisation, biases 0.2, dropout 0.4)
# in this process, through the same train step, without its aux heads: they need a 12 to 14
# pixel 4a feature map (192x192 input or more), too slow here. Without BatchNorm and without
# the aux heads' gradients the network first sits on a plateau at ln 10 (the reason the paper
# attached the heads): at batch 32 and learning rate 0.02 it left it after about 130 steps in
# every run measured; at 0.04 or at batch 16 it was still there after 300 steps. Just after
# the plateau the held-out loss swings from step to step (1.39, 0.84, 0.67, 0.75 at steps 250,
# 300, 350, 400 of one run), so the test asks for a falling training loss and a top-1 over
# chance: measured here, training loss 2.42 over the first 25 steps and 1.46 over the last 25,
# held-out top-1 37.2% (loss 1.61). About 120 s.
PAPER_STEPS = 250


@pytest.mark.slow
def test_the_paper_variant_leaves_the_plateau_and_learns_the_digits():
    model = GoogLeNet(num_classes=10, variant="paper", aux_logits=False)  # dropout 0.4: the variant's
    loss, top1, first, last = _train_and_evaluate(model, steps_=PAPER_STEPS, batch_size=32, learning_rate=0.02,
                                                  weight_decay=2e-4)
    assert top1 >= 0.1 + 0.1 and last <= first - 0.3, (loss, top1, first, last)
