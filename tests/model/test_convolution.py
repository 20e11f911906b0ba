"""conv2d and the merged 1x1 convolutions compute the same function, and gradients, as plain convolutions.

The reference is `lax.conv_general_dilated` and its `jax.grad`, in float64 where the
orders of summation cannot hide a wrong tap, transpose or padding. Each of conv2d's CPU
paths is covered: 1x1 as a matrix product, the per-tap kernel gradient (maps of 56x56 and
more), XLA's own gradient (smaller maps) and the strided stem.
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from googlenet_jax.model import ComputeForms, ConvBlock, GoogLeNet, Inception, InceptionChannels, convolution, layers
from googlenet_jax.model.architecture import reduced_inception


def _reference_conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), [(padding, padding)] * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _loss(conv):
    """A nonlinear loss, so the output gradient differs at every position and channel."""
    def loss(x, kernel):
        y = conv(x, kernel)
        return jnp.sum(jnp.sin(y) * jnp.arange(1.0, 1.0 + y.shape[-1]))
    return loss


# (batch, size, in, out, kernel, stride, padding): which CPU path each exercises.
CASES = {
    "1x1 as a matrix product": (2, 9, 5, 7, 1, 1, 0),
    "3x3 on a small map (XLA's gradient)": (2, 11, 4, 6, 3, 1, 1),
    "3x3 on a 56x56 map (per-tap kernel gradient)": (1, 56, 3, 4, 3, 1, 1),
    "5x5 on a 57x57 map (per-tap kernel gradient)": (1, 57, 2, 3, 5, 1, 2),
    "7x7/2 stem (XLA's gradient)": (2, 23, 3, 8, 7, 2, 3),
    "1x1/2 (not a plain matrix product)": (2, 9, 3, 4, 1, 2, 0),
}


@pytest.mark.parametrize("case", CASES)
def test_conv2d_and_its_gradients_equal_the_plain_convolution_in_float64(case):
    batch, size, cin, cout, k, stride, padding = CASES[case]
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((batch, size, size, cin)))
        kernel = jnp.asarray(rng.standard_normal((k, k, cin, cout)))
        ours = jax.jit(lambda x, w: convolution.conv2d(x, w, stride=stride, padding=padding))(x, kernel)
        want = _reference_conv(x, kernel, stride, padding)
        assert ours.dtype == jnp.float64 and ours.shape == want.shape
        np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-12)
        grads = jax.jit(jax.grad(_loss(lambda x, w: convolution.conv2d(x, w, stride=stride, padding=padding)),
                                 argnums=(0, 1)))(x, kernel)
        want_grads = jax.grad(_loss(lambda x, w: _reference_conv(x, w, stride, padding)),
                              argnums=(0, 1))(x, kernel)
        for name, got, expected in zip(("input", "kernel"), grads, want_grads):
            np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11, err_msg=name)


def test_conv2d_rejects_mixed_dtypes():
    with pytest.raises(ValueError, match="float32.*bfloat16"):
        convolution.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((1, 1, 2, 3), jnp.bfloat16))


class _SeparateInception(nn.Module):
    """The Inception module written the plain way: every ConvBlock applied on its own."""

    channels: InceptionChannels

    @nn.compact
    def __call__(self, x, *, train):
        c = self.channels
        conv = functools.partial(ConvBlock, dtype=jnp.float64)
        b1 = conv(c.ch1x1, 1, name="branch1x1")(x, train=train)
        b2 = conv(c.ch3x3, 3, padding=1, name="branch3x3")(
            conv(c.ch3x3_reduce, 1, name="branch3x3_reduce")(x, train=train), train=train)
        b3 = conv(c.ch5x5, 3, padding=1, name="branch5x5")(
            conv(c.ch5x5_reduce, 1, name="branch5x5_reduce")(x, train=train), train=train)
        pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
        b4 = conv(c.pool_proj, 1, name="pool_proj")(pooled, train=train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


def test_merged_1x1_convolutions_equal_separate_ones_with_the_same_parameters():
    """The Inception module runs its three input 1x1 convs as one; parameters, outputs, BatchNorm
    statistics and gradients must be those of the three separate blocks."""
    channels = InceptionChannels(5, 4, 6, 3, 2, 4)
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((3, 7, 7, 6)))
        merged = Inception(reduced_inception(channels, 3), functools.partial(ConvBlock, dtype=jnp.float64))
        separate = _SeparateInception(channels)
        variables = merged.init(jax.random.key(0), x, train=False)
        assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
            jnp.shape, separate.init(jax.random.key(0), x, train=False))
        # Non-trivial BatchNorm parameters and statistics, so a channel mix-up shows.
        leaves, tree = jax.tree.flatten(variables)
        keys = jax.random.split(jax.random.key(2), len(leaves))
        variables = jax.tree.unflatten(tree, [
            jax.random.uniform(k, leaf.shape, jnp.float64, 0.5, 1.5) for k, leaf in zip(keys, leaves)])

        def loss(module, params):
            out, updates = module.apply({**variables, "params": params}, x, train=True,
                                        mutable=["batch_stats"])
            return jnp.sum(jnp.sin(out)), (out, updates["batch_stats"])

        (_, (out, stats)), grads = jax.jit(jax.value_and_grad(lambda p: loss(merged, p), has_aux=True))(
            variables["params"])
        (_, (want_out, want_stats)), want_grads = jax.jit(jax.value_and_grad(
            lambda p: loss(separate, p), has_aux=True))(variables["params"])
        np.testing.assert_allclose(out, want_out, rtol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), stats, want_stats)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), grads, want_grads)
        eval_out = merged.apply(variables, x, train=False)
        np.testing.assert_allclose(eval_out, separate.apply(variables, x, train=False), rtol=1e-12)


@pytest.mark.parametrize("size,kernel,stride,padding", [(9, 3, 2, 0), (8, 3, 2, 0), (7, 3, 1, 1), (8, 2, 2, 0)])
def test_both_max_pool_forms_give_the_same_values_and_gradients(size, kernel, stride, padding):
    """The separable max pool against XLA's 2-D reduce_window, ceil mode and padding included;
    distinct values, so no tie decides a gradient."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(size).permutation(2 * size * size * 3).reshape(2, size, size, 3),
                        jnp.float64)
        weights = jnp.asarray(np.random.default_rng(1).standard_normal(
            layers.max_pool(x, kernel, stride, padding).shape))

        def loss(x, separable):
            return jnp.sum(layers.max_pool(x, kernel, stride, padding, separable=separable) * weights)

        np.testing.assert_array_equal(layers.max_pool(x, kernel, stride, padding, separable=True),
                                      layers.max_pool(x, kernel, stride, padding, separable=False))
        np.testing.assert_allclose(jax.grad(loss)(x, True), jax.grad(loss)(x, False), rtol=1e-12)  # sum order


def _primitives(forms: ComputeForms) -> list[str]:
    """The primitives of a traced eval-mode GoogLeNet built with `forms` (tracing only)."""
    model = GoogLeNet(num_classes=10, aux_logits=False, forms=forms)
    x = jnp.zeros((1, 32, 32, 3))
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
    found = []

    def walk(jaxpr):
        for equation in jaxpr.eqns:
            found.append(equation.primitive.name)
            for param in equation.params.values():
                for inner in param if isinstance(param, (list, tuple)) else [param]:
                    if hasattr(inner, "jaxpr"):
                        walk(inner.jaxpr if hasattr(inner.jaxpr, "eqns") else inner.jaxpr.jaxpr)
    walk(jaxpr.jaxpr)
    return found


def test_compute_forms_switch_what_the_network_is_built_from():
    """Each ComputeForms field changes the computation it names, and only that one: the plain
    forms are XLA's reduce_window pools, three 1x1 convolutions per Inception module, and
    convolutions without the CPU branch."""
    plain = ComputeForms(merged_1x1=False, separable_max_pool=False, cpu_conv_gradients=False)
    base = _primitives(plain)
    merged = _primitives(dataclasses.replace(plain, merged_1x1=True))
    separable = _primitives(dataclasses.replace(plain, separable_max_pool=True))
    cpu = _primitives(dataclasses.replace(plain, cpu_conv_gradients=True))
    convolutions = base.count("conv_general_dilated")
    assert convolutions == 3 + 9 * 6  # the stem and six per Inception module
    assert merged.count("conv_general_dilated") == convolutions - 9 * 2
    assert base.count("reduce_window_max") == 4 + 9 and "reduce_window_max" not in separable
    assert "platform_index" not in base and "platform_index" in cpu
