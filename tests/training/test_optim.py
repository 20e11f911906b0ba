"""Learning-rate schedules, SGD's weight-decay mask and LARS, against hand computations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from googlenet_jax.training import optim

import helpers


def _config(**optimizer):
    """SGD (the other fields: configs/default.py's), with `optimizer` overriding."""
    return helpers.optimizer_config(**{**dict(
        learning_rate=0.1, schedule="constant", decay_epochs=8.0, decay_factor=0.96,
        weight_decay=0.01), **optimizer})


def test_weight_decay_applies_to_kernels_only_and_matches_torch_sgd():
    params = {"conv": {"kernel": jnp.full((1, 1, 2, 2), 2.0)}, "bn": {"scale": jnp.ones(2)},
              "fc": {"bias": jnp.full((2,), 3.0)}}
    grads = jax.tree.map(jnp.ones_like, params)
    config = _config()
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config, 10, 100))
    opt_state = tx.init(params)
    new = params
    for _ in range(2):
        updates, opt_state = tx.update(grads, opt_state, new)
        new = optax.apply_updates(new, updates)
    # torch.optim.SGD(momentum=0.9, weight_decay=0.01) by hand: g' = g + wd p; b = 0.9 b + g'.
    p, b = 2.0, 0.0
    for _ in range(2):
        b = 0.9 * b + (1.0 + 0.01 * p)
        p = p - 0.1 * b
    np.testing.assert_allclose(new["conv"]["kernel"], p, rtol=1e-6)
    np.testing.assert_allclose(new["bn"]["scale"], 1.0 - 0.1 * (1 + 1.9), rtol=1e-6)
    np.testing.assert_allclose(new["fc"]["bias"], 3.0 - 0.1 * (1 + 1.9), rtol=1e-6)


def test_step_schedule_multiplies_by_the_factor_every_decay_epochs():
    config = _config(schedule="step", decay_epochs=8.0, decay_factor=0.96, learning_rate=0.01,
                     lr_reference_batch_size=32)
    fn = optim.create_learning_rate_fn(config, steps_per_epoch=10, num_train_steps=1000)
    peak = 0.01 * 256 / 32  # scaled linearly to the batch
    np.testing.assert_allclose([fn(0), fn(79), fn(80), fn(160)],
                               [peak, peak, peak * 0.96, peak * 0.96**2], rtol=1e-6)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_warmup_ramps_linearly_to_the_peak(schedule):
    config = _config(schedule=schedule, warmup_epochs=1.0)
    fn = optim.create_learning_rate_fn(config, steps_per_epoch=10, num_train_steps=100)
    np.testing.assert_allclose([fn(0), fn(5), fn(10)], [0.0, 0.05, 0.1], rtol=1e-6, atol=1e-8)
    if schedule == "cosine":
        assert float(fn(100)) < 1e-6


@pytest.mark.parametrize("schedule", ["polynomial", "cosine"])
def test_decay_schedules_follow_their_formulas_after_the_warmup(schedule):
    config = _config(schedule=schedule, warmup_epochs=2.0, end_learning_rate=0.001, poly_power=2.0)
    fn = optim.create_learning_rate_fn(config, steps_per_epoch=10, num_train_steps=120)
    peak, end, warmup, decay = 0.1, 0.001, 20, 100
    for step in (0, 7, 20, 33, 70, 119, 120, 150):
        if step < warmup:
            expected = peak * step / warmup
        else:
            t = min(step - warmup, decay) / decay
            shape = (1 - t) ** 2 if schedule == "polynomial" else 0.5 * (1 + np.cos(np.pi * t))
            expected = end + (peak - end) * shape
        np.testing.assert_allclose(float(fn(step)), expected, rtol=1e-5, err_msg=f"step {step}")


def test_lars_update_equals_the_trust_ratio_by_hand():
    """LARS on kernels (decayed gradient rescaled by eta |w| / |g + wd w|), plain momentum SGD
    on biases and BatchNorm scales, over two steps so the momentum buffer matters."""
    rng = np.random.RandomState(0)
    params = {"conv": {"kernel": rng.randn(3, 3, 2, 4)}, "bn": {"scale": rng.rand(4) + 0.5},
              "fc": {"kernel": rng.randn(4, 3), "bias": rng.randn(3)}}
    grads = [jax.tree.map(lambda p: rng.randn(*p.shape), params) for _ in range(2)]
    lr, wd, eta, momentum = 2.0, 0.01, 0.02, 0.9
    config = _config(name="lars", learning_rate=lr, weight_decay=wd, trust_coefficient=eta,
                     momentum=momentum)
    tx = optim.create_optimizer(config, optim.create_learning_rate_fn(config, 10, 100))
    params32 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    new, opt_state = params32, tx.init(params32)
    for g in grads:
        updates, opt_state = tx.update(jax.tree.map(jnp.float32, g), opt_state, new)
        new = optax.apply_updates(new, updates)

    def by_hand(w, gs, is_kernel):
        buffer = np.zeros_like(w)
        for g in gs:
            if is_kernel:
                g = g + wd * w
                g = g * eta * np.linalg.norm(w) / np.linalg.norm(g)
            buffer = momentum * buffer + lr * g
            w = w - buffer
        return w

    for module, name in [("conv", "kernel"), ("fc", "kernel"), ("bn", "scale"), ("fc", "bias")]:
        expected = by_hand(params[module][name], [g[module][name] for g in grads], name == "kernel")
        np.testing.assert_allclose(new[module][name], expected, rtol=2e-5, err_msg=f"{module}/{name}")
