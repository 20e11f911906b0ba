"""The parallel train step (pmap and jit-over-mesh) against the single-device step.

Run on the 8 fake CPU devices of conftest.py. The single-device jit of the same pure step
on the same global batch is the independent reference: any gradient scaled by the device
count, BatchNorm statistics left per device, or metrics summed instead of averaged shows up
as a mismatch.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from googlenet_jax import GoogLeNet, parallel
from googlenet_jax.training import steps
from googlenet_jax.training import train_state as train_state_lib

import helpers
from helpers import TinyNet, tiny_batch


def _tx():
    return optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(0.05, momentum=0.9))


def _step_fn(model, tx, *, ema_decay=0.0, label_smoothing=0.0, **options):
    return functools.partial(steps.train_step, model=model, tx=tx,
                             learning_rate_fn=lambda step: 0.05, aux_weight=0.3,
                             label_smoothing=label_smoothing, ema_decay=ema_decay, **options)


def _run_single(step_fn, state, batches):
    step = jax.jit(functools.partial(step_fn, axis_name=None))
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return jax.device_get(state), losses


def _run_parallel(parallel_plan, step_fn, state, batches):
    step = parallel_plan.compile_train_step(step_fn)
    state = parallel_plan.put_state(state)
    losses = []
    for batch in batches:
        state, metrics = step(state, parallel_plan.put_batch(batch))
        losses.append(parallel_plan.metrics_to_host(metrics)["loss"])
    return jax.device_get(parallel_plan.get_state(state)), losses


def _assert_trees_close(actual, expected, *, rtol, atol):
    flat_expected = jax.tree_util.tree_flatten_with_path(expected)[0]
    flat_actual = jax.tree.leaves(actual)
    assert len(flat_actual) == len(flat_expected)
    for (path, want), got in zip(flat_expected, flat_actual):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))


PARALLELS = [pytest.param(parallel.PmapParallel, id="pmap"),
             pytest.param(parallel.MeshParallel, id="mesh")]


def test_googlenet_step_agrees_on_pmap_mesh_and_one_device():
    """The network's code (the tiny test network: BatchNorm synchronised over the devices, both
    aux heads) at 32x32, one step, 16 images = 2 per device, dropout off.

    Loss and BatchNorm statistics agree to float32 rounding. Parameter updates are compared
    relative to the size of the update, as float32 rounding of reordered batch sums moves them
    by a little. A gradient scaled by the device count, or left un-averaged, moves every layer
    by 100% or more.
    """
    tx = _tx()
    make = lambda axis: GoogLeNet(num_classes=helpers.TINY_CLASSES, variant="tiny", dropout_rate=0.0,  # noqa: E731
                                  aux_dropout_rate=0.0, bn_axis_name=axis)
    state = jax.device_get(train_state_lib.create_train_state(
        make(None), tx, seed=0, image_size=32, use_ema=False))
    batches = [tiny_batch(16, 32)]
    want, want_loss = _run_single(_step_fn(make(None), tx), state, batches)
    updates = jax.tree.map(lambda new, old: np.abs(new - old).max(), want.params, state.params)
    largest_update = max(jax.tree.leaves(updates))
    for parallel_plan in (parallel.PmapParallel(), parallel.MeshParallel()):
        got, got_loss = _run_parallel(parallel_plan, _step_fn(make(parallel_plan.bn_axis_name), tx), state, batches)
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
        _assert_trees_close(got.batch_stats, want.batch_stats, rtol=1e-4, atol=1e-7)
        errors = jax.tree.map(lambda a, b: np.abs(a - b).max(), got.params, want.params)
        assert max(jax.tree.leaves(errors)) < 0.03 * largest_update
        for (path, error), update in zip(jax.tree_util.tree_flatten_with_path(errors)[0],
                                         jax.tree.leaves(updates)):
            assert error <= 0.3 * update + 1e-7, jax.tree_util.keystr(path)
        assert int(got.step) == 1


@pytest.mark.parametrize("make_parallel", PARALLELS)
def test_three_steps_with_ema_and_label_smoothing_agree_with_one_device(make_parallel):
    parallel_plan = make_parallel()
    tx = _tx()
    state = train_state_lib.create_train_state(TinyNet(), tx, seed=1, image_size=8, use_ema=True)
    batches = [tiny_batch(16, 8, seed=s) for s in range(3)]
    kwargs = dict(ema_decay=0.9, label_smoothing=0.1)
    want, want_loss = _run_single(_step_fn(TinyNet(), tx, **kwargs), state, batches)
    got, got_loss = _run_parallel(
        parallel_plan, _step_fn(TinyNet(bn_axis_name=parallel_plan.bn_axis_name), tx, **kwargs), state, batches)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    _assert_trees_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make_parallel", PARALLELS)
def test_no_retracing_after_the_first_step(make_parallel):
    parallel_plan = make_parallel()
    tx = _tx()
    model = TinyNet(dropout_rate=0.5, bn_axis_name=parallel_plan.bn_axis_name)
    traces = []

    def counted_step(state, batch, **kwargs):
        traces.append(1)  # runs once per trace, never per execution
        return _step_fn(model, tx, ema_decay=0.99)(state, batch, **kwargs)

    step = parallel_plan.compile_train_step(counted_step)
    state = parallel_plan.put_state(
        train_state_lib.create_train_state(model, tx, seed=0, image_size=8, use_ema=True))
    for seed in range(3):
        state, _ = step(state, parallel_plan.put_batch(tiny_batch(16, 8, seed=seed)))
    jax.block_until_ready(state)
    assert len(traces) == 1


@pytest.mark.parametrize("make_parallel", PARALLELS)
def test_train_step_donates_the_state(make_parallel):
    parallel_plan = make_parallel()
    tx = _tx()
    model = TinyNet(bn_axis_name=parallel_plan.bn_axis_name)
    state = parallel_plan.put_state(
        train_state_lib.create_train_state(model, tx, seed=0, image_size=8, use_ema=False))
    train_step = parallel_plan.compile_train_step(_step_fn(model, tx))
    new_state, _ = train_step(state, parallel_plan.put_batch(tiny_batch(16, 8)))
    jax.block_until_ready(new_state)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(state.params))


def test_dropout_keys_differ_by_device_and_by_step():
    state = train_state_lib.create_train_state(TinyNet(), _tx(), seed=0, image_size=8,
                                               use_ema=False)
    parallel_plan = parallel.PmapParallel()
    keys_of = jax.pmap(lambda s: steps.dropout_key(s, parallel.AXIS_NAME),
                       axis_name=parallel.AXIS_NAME)
    keys = []
    for step in range(2):
        replicated = parallel_plan.put_state(state.replace(step=jnp.asarray(step, jnp.int32)))
        keys.extend(tuple(np.asarray(k).ravel()) for k in jax.device_get(keys_of(replicated)))
    assert len(keys) == 2 * parallel_plan.num_devices
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("make_parallel", PARALLELS)
def test_eval_sums_count_every_unpadded_example_once(make_parallel):
    parallel_plan = make_parallel()
    model = TinyNet(bn_axis_name=parallel_plan.bn_axis_name)
    state = train_state_lib.create_train_state(model, _tx(), seed=0, image_size=8,
                                               use_ema=False)
    batch = tiny_batch(16, 8)
    batch["mask"] = np.arange(16) < 11  # the last 5 rows are padding
    eval_step = parallel_plan.compile_eval_step(functools.partial(steps.eval_step, model=model))
    got = parallel_plan.metrics_to_host(eval_step(parallel_plan.put_state(state), parallel_plan.put_batch(batch)))

    logits = np.asarray(model.apply({"params": state.params, "batch_stats": state.batch_stats},
                                    batch["image"][:11], train=False), np.float64)
    labels = batch["label"][:11]
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    order = np.argsort(-logits, axis=-1)
    assert got["count"] == 11
    assert got["top1"] == (order[:, 0] == labels).sum()
    assert got["top5"] == (order[:, :5] == labels[:, None]).any(-1).sum()
    np.testing.assert_allclose(got["loss"], -log_probs[np.arange(11), labels].sum(), rtol=1e-5)


def test_bfloat16_computes_in_bfloat16_with_float32_params_and_loss():
    """Traced only (no compilation): the convolutions run in bfloat16, the rest is float32."""
    tx = _tx()
    model = GoogLeNet(num_classes=helpers.TINY_CLASSES, dtype=jnp.bfloat16)
    state = jax.eval_shape(train_state_lib.initial_state_fn(model, tx, seed=0, image_size=32, use_ema=False))
    batch = jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((4,), jnp.int32)
    step = functools.partial(_step_fn(model, tx), axis_name=None)
    new_state, metrics = jax.eval_shape(step, state, {"image": batch, "label": labels})
    assert {leaf.dtype for leaf in jax.tree.leaves(new_state.params)} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32
    jaxpr = jax.make_jaxpr(step)(state, {"image": batch, "label": labels})
    # Convolutions, and the matrix products that 1x1 convolutions and the classifiers are.
    for primitive in ("conv_general_dilated", "dot_general"):
        dtypes = {eqn.invars[0].aval.dtype for eqn in _all_eqns(jaxpr.jaxpr)
                  if eqn.primitive.name == primitive}
        assert dtypes == {jnp.dtype(jnp.bfloat16)}, primitive


def _all_eqns(jaxpr):
    """Every equation, including those inside nested jaxprs (jit, custom_vjp, the branches of
    cond and platform_dependent, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for value in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(value, "jaxpr", value)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    yield from _all_eqns(inner)


def _gradient_recorder() -> optax.GradientTransformation:
    """An optimizer that changes nothing and keeps, as its state, the gradient it was given."""
    return optax.GradientTransformation(lambda params: jax.tree.map(jnp.zeros_like, params),
                                        lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads), grads))


def test_gradients_of_a_bfloat16_network_are_summed_over_devices_in_float32():
    """bfloat16 compute on 8 devices: the gradient the optimizer gets, against the float64 mean
    of the 8 per-device gradients the step reduces (the same step under pmap without its
    gradient average, BatchNorm still synchronised).

    Against the float64 gradient of the whole network, bfloat16's rounding of activations
    dominates (17% on the tiny GoogLeNet, 64 images of 32x32, the same to 4 digits with either
    reduction dtype), so the reference holds the per-device gradients fixed and measures what
    the reduction adds. Measured (relative L2 over every parameter): float32, the default,
    1.8e-8; bfloat16 1.8e-3: the default is about 100,000 times closer, on both paths (the mesh
    path's sum left to XLA's partitioner, as before, measured 1.6e-3 either way).
    """
    tx = _gradient_recorder()
    model = lambda axis: TinyNet(bn_axis_name=axis, dtype=jnp.bfloat16)  # noqa: E731
    # On the host: the train step donates the state it is given.
    state = jax.device_get(train_state_lib.create_train_state(model(None), tx, seed=0, image_size=8, use_ema=False))
    batch = tiny_batch(16, 8)
    step_fn = lambda axis, **kwargs: _step_fn(model(axis), tx, **kwargs)  # noqa: E731
    pmap = parallel.PmapParallel()
    per_device, _ = jax.pmap(functools.partial(step_fn(parallel.AXIS_NAME), axis_name=None),
                             axis_name=parallel.AXIS_NAME)(pmap.put_state(state), pmap.put_batch(batch))
    reference = jax.tree.map(lambda g: np.asarray(g, np.float64).mean(0), per_device.opt_state)
    assert len({row.tobytes() for row in jax.tree.leaves(per_device.opt_state)[0]}) == 8  # they differ

    def error(grads):
        got = np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads)]).astype(np.float64)
        want = np.concatenate([np.ravel(g) for g in jax.tree.leaves(reference)])
        return np.linalg.norm(got - want) / np.linalg.norm(want)

    for parallel_plan in (pmap, parallel.MeshParallel()):
        errors = {}
        for reduce_dtype in parallel.GRAD_REDUCE_DTYPES:
            step = parallel_plan.compile_train_step(step_fn(parallel_plan.bn_axis_name, grad_reduce_dtype=reduce_dtype))
            new_state, _ = step(parallel_plan.put_state(state), parallel_plan.put_batch(batch))
            errors[reduce_dtype] = error(jax.device_get(parallel_plan.get_state(new_state).opt_state))
        assert errors["float32"] < 1e-6 and errors["bfloat16"] > 1e-4, (type(parallel_plan).__name__, errors)
        assert errors["bfloat16"] > 1000 * errors["float32"], (type(parallel_plan).__name__, errors)
