"""The non-finite guard's policies, and the train step that never applies a non-finite update."""
import functools

import jax
import numpy as np
import optax
import pytest

from googlenet_jax.training import optim, steps
from googlenet_jax.training.nonfinite import NonFiniteGuard, NonFiniteLossError
from googlenet_jax.training.train_state import create_train_state

import helpers
from helpers import TinyNet, tiny_batch


def _health(loss, grad_norm):
    finite = float(np.isfinite(loss) and np.isfinite(grad_norm))
    return {"loss": loss, "grad_norm": grad_norm, "finite": finite}


def _guard(policy, max_consecutive=3):
    return NonFiniteGuard(policy, max_consecutive, to_host=dict)


def test_stop_names_the_first_bad_step_and_the_quantity():
    guard = _guard("stop")
    for step, (loss, grad) in enumerate([(1.0, 1.0), (1.0, np.inf), (np.nan, np.nan)], start=5):
        guard.record(step, _health(loss, grad))
    with pytest.raises(NonFiniteLossError, match=r"^training gradient norm is inf at step 6; stopped"):
        guard.check()


def test_stop_reports_a_nan_loss_first():
    guard = _guard("stop")
    guard.record(9, _health(np.nan, 2.0))
    with pytest.raises(NonFiniteLossError, match="training loss is nan at step 9"):
        guard.check()


def test_skip_counts_and_stops_after_too_many_in_a_row():
    guard = _guard("skip", max_consecutive=3)
    pattern = [1.0, np.nan, np.nan, 1.0, np.nan, np.nan]  # never 3 in a row
    for step, loss in enumerate(pattern, start=1):
        guard.record(step, _health(loss, 1.0))
    guard.check()
    assert guard.skipped == 4
    guard.record(7, _health(np.nan, 1.0))  # the third in a row, across two checks
    with pytest.raises(NonFiniteLossError, match="at step 7, non-finite for 3 steps in a row"):
        guard.check()


def test_train_step_skips_a_non_finite_update_but_advances_the_step():
    model = TinyNet()
    tx = optax.sgd(0.1, momentum=0.9)
    state = create_train_state(model, tx, seed=0, image_size=8, use_ema=True)
    step = jax.jit(functools.partial(
        steps.train_step, model=model, tx=tx, learning_rate_fn=lambda s: 0.1, aux_weight=0.3,
        label_smoothing=0.0, ema_decay=0.9, axis_name=None))
    batch = tiny_batch(4, 8)
    new, metrics = step(state, dict(batch, image=batch["image"] * np.nan))
    assert float(metrics["finite"]) == 0.0 and not np.isfinite(float(metrics["loss"]))
    assert int(new.step) == int(state.step) + 1
    for part in ("params", "batch_stats", "opt_state", "ema_params"):
        jax.tree.map(np.testing.assert_array_equal, getattr(new, part), getattr(state, part))
    good, metrics = step(state, batch)
    assert float(metrics["finite"]) == 1.0
    assert not np.array_equal(good.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])


def test_after_skipped_steps_the_schedule_gives_the_rate_of_the_step_being_taken():
    """The schedule follows the data position: a 4-step warmup (rates 0, 0.125, 0.25, 0.375),
    steps 1 and 2 poisoned. Step 3 applies 0.375 to the momentum of steps 0 and 3, by hand.
    (Before, the skipped steps held optax's count back and step 3 applied step 1's 0.125.)"""
    classes, size, rate = 5, 4, 0.5
    config = helpers.optimizer_config(learning_rate=rate, schedule="constant", warmup_epochs=4.0, weight_decay=0.0)
    lr_fn = optim.create_learning_rate_fn(config, steps_per_epoch=1, num_train_steps=10)
    tx = optim.create_optimizer(config, lr_fn)
    model = helpers.Linear(classes)
    state = create_train_state(model, tx, seed=0, image_size=size, use_ema=False)
    step_fn = helpers.jit_train_step(model, tx, lr_fn, ema_decay=0.0)
    rng = np.random.RandomState(0)
    batches = [{"image": rng.randn(6, size, size, 3).astype(np.float32),
                "label": rng.randint(0, classes, 6).astype(np.int32)} for _ in range(4)]
    w = np.asarray(state.params["fc"]["kernel"], np.float64)
    b = np.asarray(state.params["fc"]["bias"], np.float64)

    def gradients(batch):  # softmax cross-entropy of a linear classifier, by hand
        x = batch["image"].reshape(6, -1).astype(np.float64)
        dlogits = (helpers.softmax(x @ w + b) - np.eye(classes)[batch["label"]]) / 6
        return x.T @ dlogits, dlogits.sum(0)

    finite = []
    for step, batch in enumerate(batches):
        if step in (1, 2):
            batch = dict(batch, image=batch["image"] * np.nan)
        state, metrics = step_fn(state, batch)
        finite.append(float(metrics["finite"]))
    assert finite == [1.0, 0.0, 0.0, 1.0] and int(state.step) == 4
    # Step 0 applied rate 0 (w unchanged) and left its gradient in the momentum buffer.
    (g0_w, g0_b), (g3_w, g3_b) = gradients(batches[0]), gradients(batches[3])
    np.testing.assert_allclose(float(metrics["learning_rate"]), 0.375, rtol=1e-6)
    np.testing.assert_allclose(state.params["fc"]["kernel"], w - 0.375 * (0.9 * g0_w + g3_w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.params["fc"]["bias"], b - 0.375 * (0.9 * g0_b + g3_b), rtol=1e-5, atol=1e-6)
