"""What a train step and a multi-crop evaluation compute, written out by hand in numpy.

A linear classifier stands in for the network so every gradient has a closed form:
softmax cross-entropy's gradient with respect to the logits is (softmax - one_hot) / B.
Nothing here goes through optax or flax on the reference side.

At the end, short train.py runs on the embedded digits (configs/demo.py) must learn: the
held-out loss falls under a uniform guess's and the top-1 beats chance by stated margins.
"""
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from googlenet_jax import evaluation
from googlenet_jax.data.digits import digits_split
from googlenet_jax.model.network import GoogLeNet
from googlenet_jax.training import optim, steps
from googlenet_jax.training.train_state import create_train_state

import helpers

CLASSES, SIZE = 5, 4


class Linear(nn.Module):
    """logits = flatten(image) @ kernel + bias."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(CLASSES, name="fc")(x.reshape(x.shape[0], -1))


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _jit_train_step(model, tx, lr_fn, *, ema_decay):
    """steps.train_step on one device, aux weight 0.3 and no label smoothing, jitted."""
    return jax.jit(lambda s, b: steps.train_step(
        s, b, model=model, tx=tx, learning_rate_fn=lr_fn, aux_weight=0.3, label_smoothing=0.0,
        ema_decay=ema_decay, axis_name=None))


def _config(**optimizer):
    """SGD (the other fields: configs/default.py's), with `optimizer` overriding."""
    return helpers.optimizer_config(**{**dict(
        learning_rate=0.5, schedule="constant", decay_epochs=1.0, decay_factor=0.5,
        weight_decay=0.05), **optimizer})


def test_train_steps_equal_sgd_momentum_weight_decay_schedule_and_polyak_by_hand():
    # A 4-step warmup makes the rate differ at every step: 0, 0.125, 0.25, 0.375 x 0.5/0.5...
    config = _config(warmup_epochs=4.0)
    lr_fn = optim.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=10)
    tx = optim.create_optimizer(config, lr_fn)
    model, ema_decay = Linear(), 0.99
    state = create_train_state(model, tx, seed=0, image_size=SIZE, use_ema=True)
    step_fn = _jit_train_step(model, tx, lr_fn, ema_decay=ema_decay)

    rng = np.random.RandomState(0)
    w = np.asarray(state.params["fc"]["kernel"], np.float64)
    b = np.asarray(state.params["fc"]["bias"], np.float64) + 0.0
    ema_w, ema_b = w.copy(), b.copy()
    buf_w, buf_b = np.zeros_like(w), np.zeros_like(b)
    for step in range(3):
        images = rng.randn(6, SIZE, SIZE, 3).astype(np.float32)
        labels = rng.randint(0, CLASSES, 6).astype(np.int32)
        state, metrics = step_fn(state, {"image": images, "label": labels})

        x = images.reshape(6, -1).astype(np.float64)
        probs = _softmax(x @ w + b)
        loss = -np.log(probs[np.arange(6), labels]).mean()
        dlogits = (probs - np.eye(CLASSES)[labels]) / 6
        grad_w = x.T @ dlogits + 0.05 * w  # coupled weight decay: kernels only
        grad_b = dlogits.sum(0)
        lr = 0.5 * min(1.0, step / 4)  # linear warmup from 0 over 4 steps
        buf_w, buf_b = 0.9 * buf_w + grad_w, 0.9 * buf_b + grad_b  # torch.optim.SGD momentum
        w, b = w - lr * buf_w, b - lr * buf_b
        decay = min(ema_decay, (1 + step) / (10 + step))  # debiased early on
        ema_w, ema_b = decay * ema_w + (1 - decay) * w, decay * ema_b + (1 - decay) * b

        np.testing.assert_allclose(float(metrics["loss"]), loss, rtol=1e-5)
        np.testing.assert_allclose(float(metrics["learning_rate"]), lr, rtol=1e-6)
        np.testing.assert_allclose(state.params["fc"]["kernel"], w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.params["fc"]["bias"], b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.ema_params["fc"]["kernel"], ema_w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.ema_params["fc"]["bias"], ema_b, rtol=1e-5, atol=1e-6)
    assert int(state.step) == 3
    assert not np.allclose(state.ema_params["fc"]["kernel"], state.params["fc"]["kernel"])


def test_multi_crop_logits_are_the_log_of_the_mean_softmax_over_crops():
    model = Linear()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))
    rng = np.random.RandomState(1)
    images = (3 * rng.randn(2, 10, SIZE, SIZE, 3)).astype(np.float32)  # 10 crops of 2 images
    w = np.asarray(variables["params"]["fc"]["kernel"], np.float64)
    b = np.asarray(variables["params"]["fc"]["bias"], np.float64)
    probs = _softmax(images.reshape(20, -1).astype(np.float64) @ w + b).reshape(2, 10, CLASSES)
    expected = probs.mean(axis=1)

    averaged = evaluation.crop_averaged_logits(model, variables, jnp.asarray(images))
    np.testing.assert_allclose(np.exp(averaged), expected, rtol=1e-5)
    # Averaging logits instead would predict another distribution (and here another class).
    mean_logit_probs = _softmax((images.reshape(20, -1) @ w + b).reshape(2, 10, CLASSES).mean(1))
    assert np.abs(mean_logit_probs - expected).max() > 1e-2


def test_gradient_clipping_scales_the_global_norm_down_to_the_limit():
    config = _config(grad_clip_norm=0.05, weight_decay=0.0, momentum=0.0)
    lr_fn = optim.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=10)
    tx = optim.create_optimizer(config, lr_fn)
    model = Linear()
    state = create_train_state(model, tx, seed=0, image_size=SIZE, use_ema=False)
    rng = np.random.RandomState(2)
    images = (5 * rng.randn(6, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.randint(0, CLASSES, 6).astype(np.int32)
    new, metrics = _jit_train_step(model, tx, lr_fn, ema_decay=0.0)(state, {"image": images, "label": labels})

    w = np.asarray(state.params["fc"]["kernel"], np.float64)
    b = np.asarray(state.params["fc"]["bias"], np.float64)
    x = images.reshape(6, -1).astype(np.float64)
    dlogits = (_softmax(x @ w + b) - np.eye(CLASSES)[labels]) / 6
    grad_w, grad_b = x.T @ dlogits, dlogits.sum(0)
    norm = np.sqrt((grad_w ** 2).sum() + (grad_b ** 2).sum())
    assert norm > 0.05  # the limit bites
    scale = 0.05 / norm
    np.testing.assert_allclose(float(metrics["grad_norm"]), norm, rtol=1e-5)  # reported before clipping
    np.testing.assert_allclose(new.params["fc"]["kernel"], w - 0.5 * scale * grad_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new.params["fc"]["bias"], b - 0.5 * scale * grad_b, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- short learning runs
# 80 train.py steps on the digits (configs/demo.py) at 32x32, 16 images per step on the 8 fake
# devices, with tests/test_durability.py's flags (a constant rate, a Polyak average), so the
# float32 steps compile once for both files. Judged on all 360 held-out digits against a
# uniform guess: its loss is ln 10 and its top-1 1 in 10 (a standard deviation of 1.6 points
# over 360). The per-step training loss is no judge this early: with dropout 0.2 on the main
# head and 0.7 on the aux heads its mean over the last 10 steps (4.22) was above the first 10's
# (4.11) in the measured float32 run while the averaged weights had learned.
LEARNING_STEPS = 80
RUN = ["--config.image_size=32", "--config.batch_size=16", "--config.eval_batch_size=40",
       "--config.log_every_steps=1", "--config.optimizer.schedule=constant",
       "--config.optimizer.warmup_epochs=0", "--config.ema_decay=0.9", "--config.keep_checkpoints=2",
       f"--config.num_train_steps={LEARNING_STEPS}", "--config.checkpoint_every_steps=1000"]


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("digits")


@pytest.mark.slow
@pytest.mark.parametrize("flags, under_ln10, over_chance", [
    # measured: held-out loss 1.927 (0.38 under ln 10 = 2.303), top-1 0.319 (22 points over chance)
    pytest.param([], 0.2, 0.12, id="float32-loss-0.2-under-ln10-top1-12-points-over-chance"),
])
def test_80_steps_bring_the_held_out_loss_under_ln10_and_top1_over_chance(flags, under_ln10, over_chance, tmp_path,
                                                                          digits_dir, jax_cache):
    workdir = tmp_path / "workdir"
    helpers.run_command(["train.py", *RUN, *flags, f"--config.data_dir={digits_dir}", "--workdir", workdir],
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


def _train_and_evaluate(model, *, steps_, batch_size, learning_rate, weight_decay, held_out_statistics=False):
    """(held-out loss, held-out top-1) on the 360 test digits after `steps_` SGD steps, and the
    mean training loss of the first and of the last 25 steps. With `held_out_statistics`,
    BatchNorm normalises with the 360 digits' own statistics (train mode; the model must have
    no dropout) instead of the running averages."""
    config = helpers.optimizer_config(learning_rate=learning_rate, schedule="constant", warmup_epochs=0.0,
                                      weight_decay=weight_decay)
    lr_fn = optim.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=steps_)
    tx = optim.create_optimizer(config, lr_fn)
    state = create_train_state(model, tx, seed=0, image_size=32, use_ema=False)
    step_fn = _jit_train_step(model, tx, lr_fn, ema_decay=0.0)
    (train_x, train_y), (test_x, test_y) = _digits_at_32x32("train"), _digits_at_32x32("test")
    rng, train_losses = np.random.RandomState(0), []
    for _ in range(steps_):
        batch = rng.randint(0, len(train_y), batch_size)
        state, metrics = step_fn(state, {"image": train_x[batch], "label": train_y[batch]})
        train_losses.append(float(metrics["loss"]))

    def predict(params, batch_stats, x):
        if held_out_statistics:
            outputs, _ = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                     mutable=["batch_stats"])
            return outputs[0]  # (logits, aux_logits1, aux_logits2)
        return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)

    logits = np.asarray(jax.jit(predict)(state.params, state.batch_stats, test_x), np.float64)
    loss = -np.log(_softmax(logits)[np.arange(len(test_y)), test_y]).mean()
    return (loss, (logits.argmax(-1) == test_y).mean(),
            np.mean(train_losses[:25]), np.mean(train_losses[-25:]))


# bfloat16 compute (float32 parameters), the torchvision variant with its aux heads, 80 steps of
# 16 images, dropout off. Judged with BatchNorm normalising by the held-out digits' own
# statistics: after 80 steps at these rates the running averages lag the moving weights, and
# the held-out loss with them changes with the order of float32 sums (dropout on, rate 0.01:
# 2.139 and top-1 22.2% in a script, 2.48 and 27.5% under pytest's 8 fake devices; 2.49 at
# 0.02, 310 at 0.05, float32 at 0.05: 43). With the held-out statistics at 0.01 (script):
# loss 1.657 (0.65 under ln 10), top-1 48.3%, training loss of the last 25 steps 3.00 against
# 3.61 for the first 25; at 0.05 the training loss rose (5.87 to 6.69). About 150 s.
@pytest.mark.slow
def test_a_bfloat16_train_step_learns_the_digits():
    model = GoogLeNet(num_classes=10, variant="torchvision", dtype=jnp.bfloat16, dropout_rate=0.0,
                      aux_dropout_rate=0.0)
    loss, top1, first, last = _train_and_evaluate(model, steps_=80, batch_size=16, learning_rate=0.01,
                                                  weight_decay=5e-5, held_out_statistics=True)
    assert loss <= math.log(10) - 0.3 and top1 >= 0.1 + 0.2 and last <= first - 0.25, (loss, top1, first, last)


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
