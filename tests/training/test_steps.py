"""What a train step computes (SGD with momentum, weight decay, the schedule, the Polyak
average, gradient clipping), written out by hand in numpy.

A linear classifier stands in for the network so every gradient has a closed form. Nothing
here goes through optax or flax on the reference side.
"""
import numpy as np

from googlenet_jax.training import optim
from googlenet_jax.training.train_state import create_train_state

import helpers
from helpers import jit_train_step, softmax

CLASSES, SIZE = 5, 4


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
    model, ema_decay = helpers.Linear(CLASSES), 0.99
    state = create_train_state(model, tx, seed=0, image_size=SIZE, use_ema=True)
    step_fn = jit_train_step(model, tx, lr_fn, ema_decay=ema_decay)

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
        probs = softmax(x @ w + b)
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


def test_gradient_clipping_scales_the_global_norm_down_to_the_limit():
    config = _config(grad_clip_norm=0.05, weight_decay=0.0, momentum=0.0)
    lr_fn = optim.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=10)
    tx = optim.create_optimizer(config, lr_fn)
    model = helpers.Linear(CLASSES)
    state = create_train_state(model, tx, seed=0, image_size=SIZE, use_ema=False)
    rng = np.random.RandomState(2)
    images = (5 * rng.randn(6, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.randint(0, CLASSES, 6).astype(np.int32)
    new, metrics = jit_train_step(model, tx, lr_fn, ema_decay=0.0)(state, {"image": images, "label": labels})

    w = np.asarray(state.params["fc"]["kernel"], np.float64)
    b = np.asarray(state.params["fc"]["bias"], np.float64)
    x = images.reshape(6, -1).astype(np.float64)
    dlogits = (softmax(x @ w + b) - np.eye(CLASSES)[labels]) / 6
    grad_w, grad_b = x.T @ dlogits, dlogits.sum(0)
    norm = np.sqrt((grad_w ** 2).sum() + (grad_b ** 2).sum())
    assert norm > 0.05  # the limit bites
    scale = 0.05 / norm
    np.testing.assert_allclose(float(metrics["grad_norm"]), norm, rtol=1e-5)  # reported before clipping
    np.testing.assert_allclose(new.params["fc"]["kernel"], w - 0.5 * scale * grad_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new.params["fc"]["bias"], b - 0.5 * scale * grad_b, rtol=1e-5, atol=1e-7)
