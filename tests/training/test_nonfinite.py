"""The non-finite guard's policies, and the train step that never applies a non-finite update."""
import functools

import jax
import numpy as np
import optax
import pytest

from googlenet_jax.training import steps
from googlenet_jax.training.nonfinite import NonFiniteGuard, NonFiniteLossError
from googlenet_jax.training.train_state import create_train_state

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
