"""The model's contract: shapes, dtypes, parameter counts, initialisation and input errors.

Shapes, dtypes and errors are read off the traced model (`jax.eval_shape`, nothing compiled);
the initialisation tests draw real values.
"""
import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from googlenet_jax import GoogLeNet, GoogLeNetOutputs
from googlenet_jax.model import layers
from googlenet_jax.model.architecture import TEST_VARIANTS, VARIANTS
from googlenet_jax.training.train_state import INIT_COMPILER_OPTIONS

SMALL = 32  # smallest size both variants accept comfortably; the paper's aux heads need 224


@functools.lru_cache(maxsize=None)
def _init(net, size=SMALL, batch=2):
    """The variables' shapes and dtypes (flax modules are hashable: shared by tests of one net)."""
    return jax.eval_shape(functools.partial(net.init, train=False), jax.random.key(0),
                          jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32))


def _params(net, size):
    """Real initial parameters (init compiled once, unoptimised as the trainer compiles it: faster
    than op by op, and than XLA's optimising passes over the random draws)."""
    init = jax.jit(functools.partial(net.init, train=False),
                   compiler_options=INIT_COMPILER_OPTIONS.get(jax.default_backend()))
    return init(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]


def _apply(net, variables, shape, **kwargs):
    """The traced output of net.apply on an input of `shape`: shapes and dtypes only."""
    return jax.eval_shape(functools.partial(net.apply, **kwargs), variables,
                          jax.ShapeDtypeStruct(shape, jnp.float32))


def _count(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("variant,aux,expected", [
    ("torchvision", False, 6_624_904), ("torchvision", True, 13_004_888),
    ("paper", False, 6_998_552), ("paper", True, 13_378_280),
])
def test_parameter_counts_match_reference_figures(variant, aux, expected):
    net = GoogLeNet(variant=variant, aux_logits=aux)
    shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
    assert _count(shapes["params"]) == expected


def test_eval_returns_float32_logits_and_no_aux_outputs():
    net = GoogLeNet(num_classes=10)
    variables = _init(net)
    logits = _apply(net, variables, (3, SMALL, SMALL, 3), train=False)
    chex.assert_shape(logits, (3, 10))
    chex.assert_type(logits, jnp.float32)


def test_train_returns_main_and_both_aux_logits():
    net = GoogLeNet(num_classes=10)
    variables = _init(net)
    outputs, updates = _apply(net, variables, (3, SMALL, SMALL, 3), train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
    assert isinstance(outputs, GoogLeNetOutputs)
    chex.assert_shape(list(outputs), (3, 10))
    chex.assert_trees_all_equal_shapes(updates["batch_stats"], variables["batch_stats"])


def test_without_aux_heads_train_returns_plain_logits_and_no_aux_params():
    net = GoogLeNet(num_classes=10, aux_logits=False)
    variables = _init(net)
    assert "aux1" not in variables["params"] and "aux2" not in variables["params"]
    logits, _ = _apply(net, variables, (2, SMALL, SMALL, 3), train=True,
                          mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
    chex.assert_shape(logits, (2, 10))


def test_paper_variant_has_no_batch_stats_and_needs_no_mutable():
    net = GoogLeNet(num_classes=10, variant="paper", aux_logits=False)
    variables = _init(net)
    assert set(variables) == {"params"}
    logits = _apply(net, variables, (2, SMALL, SMALL, 3), train=True, rngs={"dropout": jax.random.key(1)})
    chex.assert_shape(logits, (2, 10))


def test_bfloat16_compute_keeps_float32_params_and_float32_logits():
    net = GoogLeNet(num_classes=10, dtype=jnp.bfloat16)
    variables = _init(net)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    outputs, updates = _apply(net, variables, (2, SMALL, SMALL, 3), train=True,
                                 mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
    chex.assert_type(list(outputs), jnp.float32)
    assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    # Every convolution and matrix product of the traced program takes bfloat16 operands.
    jaxpr = jax.make_jaxpr(functools.partial(net.apply, train=False))(
        variables, jnp.zeros((2, SMALL, SMALL, 3), jnp.float32))
    operand_types = {eqn.primitive.name: set() for eqn in _equations(jaxpr.jaxpr)}
    for eqn in _equations(jaxpr.jaxpr):
        operand_types[eqn.primitive.name].add(tuple(str(v.aval.dtype) for v in eqn.invars))
    assert operand_types["conv_general_dilated"] == {("bfloat16", "bfloat16")}
    assert operand_types["dot_general"] == {("bfloat16", "bfloat16")}  # the classifier


def _equations(jaxpr):
    """Every equation of a jaxpr, nested ones (custom_vjp, cond, pjit bodies) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if isinstance(inner, jax.extend.core.Jaxpr):
                    yield from _equations(inner)


def test_dropout_needs_an_rng_only_when_its_rate_is_above_zero():
    shape = (2, SMALL, SMALL, 3)
    net = GoogLeNet(num_classes=10)
    variables = _init(net)
    with pytest.raises(Exception, match="dropout"):
        _apply(net, variables, shape, train=True, mutable=["batch_stats"])
    no_dropout = GoogLeNet(num_classes=10, dropout_rate=0.0, aux_dropout_rate=0.0)
    _apply(no_dropout, variables, shape, train=True, mutable=["batch_stats"])


def test_dropout_rate_defaults_follow_the_variant():
    """Eval ignores dropout; in training, the main head drops 0.2 (torchvision) or 0.4 (paper)."""
    for variant, rate in (("torchvision", 0.2), ("paper", 0.4)):
        net = GoogLeNet(num_classes=10, variant=variant, aux_logits=False)
        variables = _init(net)
        rates = []

        def spy(next_fun, args, kwargs, context, rates=rates):
            if isinstance(context.module, nn.Dropout) and context.method_name == "__call__":
                rates.append(context.module.rate)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(spy):
            _apply(net, variables, (2, SMALL, SMALL, 3), train=True, mutable=["batch_stats"],
                      rngs={"dropout": jax.random.key(0)})
        assert rates == [rate]


@pytest.mark.parametrize("shape,message", [
    ((2, 32, 32), "NHWC"),
    ((2, 32, 32, 1), r"\(N, H, W, 3\)"),
    ((2, 3, 32, 32), r"\(N, H, W, 3\)"),
    ((2, 14, 64, 3), "at least 15"),
])
def test_bad_input_raises_a_clear_value_error(shape, message):
    net = GoogLeNet(num_classes=10)
    variables = _init(net)
    with pytest.raises(ValueError, match=message):
        _apply(net, variables, shape, train=False)


def test_unknown_variant_is_a_value_error_naming_the_users_variants():
    with pytest.raises(ValueError, match=r"variant must be one of \['paper', 'torchvision'\], got 'resnet'"):
        _init(GoogLeNet(variant="resnet"))


def test_the_tiny_test_network_is_the_torchvision_variant_at_a_few_channels():
    """The tests' tiny network (not offered to users) runs the same code paths: stem, both aux
    heads on their taps, BatchNorm, the classifier on the last module's channels."""
    assert "tiny" not in VARIANTS and "tiny" in TEST_VARIANTS
    net = GoogLeNet(num_classes=10, variant="tiny")
    variables = _init(net)
    assert set(variables["params"]) == {"conv1", "conv2", "conv3", "inception4a", "aux1", "inception4d", "aux2", "fc"}
    assert set(variables["batch_stats"]) == set(variables["params"]) - {"fc"}
    out, _ = jax.eval_shape(lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"],
                                                   rngs={"dropout": jax.random.key(0)}),
                            variables, jax.ShapeDtypeStruct((2, SMALL, SMALL, 3), jnp.float32))
    assert isinstance(out, GoogLeNetOutputs) and all(o.shape == (2, 10) for o in out)
    channels = sum(TEST_VARIANTS["tiny"].inception_table[-1][1][i] for i in (0, 2, 4, 5))  # 1x1, 3x3, 5x5, pool
    assert variables["params"]["fc"]["kernel"].shape == (channels, 10)


def test_paper_aux_heads_at_a_size_caffe_cannot_take_is_a_value_error():
    with pytest.raises(ValueError, match="aux"):
        _init(GoogLeNet(variant="paper"), size=64, batch=1)


def test_torchvision_initialisation():
    """Convs and linears ~ N(0, 0.01), BN scale 1 and bias 0, linear biases U(+-1/sqrt(fan_in))."""
    params = _params(GoogLeNet(), SMALL)  # parameter shapes do not depend on the input size
    kernel = np.asarray(params["inception4c"]["branch3x3"]["conv"]["kernel"])
    assert abs(kernel.std() - 0.01) < 3e-4 and abs(kernel.mean()) < 3e-4
    assert np.all(params["conv1"]["bn"]["scale"] == 1) and np.all(params["conv1"]["bn"]["bias"] == 0)
    bias = np.asarray(params["fc"]["bias"])
    bound = 1 / np.sqrt(1024)
    assert np.all(np.abs(bias) <= bound) and bias.max() > 0.9 * bound and bias.min() < -0.9 * bound


def test_paper_initialisation_is_caffe_xavier_with_bias_0_2():
    params = _params(GoogLeNet(variant="paper"), 224)  # its aux heads need 224
    kernel = np.asarray(params["inception4c"]["branch5x5"]["conv"]["kernel"])  # 5x5x24 fan-in
    bound = np.sqrt(3 / (5 * 5 * 24))
    assert np.all(np.abs(kernel) <= bound) and kernel.max() > 0.95 * bound
    assert np.all(params["conv1"]["conv"]["bias"] == 0.2)
    assert np.all(params["aux1"]["fc1"]["bias"] == 0.2)
    assert np.all(params["fc"]["bias"] == 0) and np.all(params["aux1"]["fc2"]["bias"] == 0)


def test_adaptive_pool_windows_are_torchvisions_on_14x14():
    """AdaptiveAvgPool2d(4) on 14 cells uses [0:4], [3:7], [7:11], [10:14] (not 5x5/3 windows)."""
    expected = np.zeros((4, 14))
    for row, (start, end) in enumerate([(0, 4), (3, 7), (7, 11), (10, 14)]):
        expected[row, start:end] = 1 / (end - start)
    np.testing.assert_array_equal(layers.adaptive_pool_matrix(14, 4), expected)


@pytest.mark.parametrize("size,kernel,stride,padding,expected", [
    (112, 3, 2, 0, 56),  # pool1 at 224: ceil((112 - 3) / 2) + 1
    (7, 2, 2, 0, 4),  # torchvision's pool after 4e on an odd map: the last window hangs over
    (14, 3, 1, 1, 14),  # the pool inside every Inception module keeps the size
    (2, 3, 2, 0, 1),  # a window larger than the input still yields one output in ceil mode
    (5, 2, 2, 0, 3),
])
def test_ceil_mode_output_sizes(size, kernel, stride, padding, expected):
    assert layers.pool_output_size(size, kernel, stride, padding, ceil_mode=True) == expected
    x = jnp.arange(size * size, dtype=jnp.float32).reshape(1, size, size, 1)
    assert layers.max_pool(x, kernel, stride, padding).shape == (1, expected, expected, 1)


def test_max_pool_overhanging_window_takes_the_max_of_the_cells_inside():
    x = jnp.array([[1.0, 5.0, 2.0, 7.0, -3.0]]).reshape(1, 1, 5, 1)
    x = jnp.tile(x, (1, 2, 1, 1))
    out = layers.max_pool(x, 2, 2)  # windows [0:2], [2:4], [4:5]
    np.testing.assert_array_equal(out[0, 0, :, 0], [5.0, 7.0, -3.0])


def test_local_response_norm_by_hand():
    """b_c = a_c / (1 + 1e-4 / 5 * sum of squares over channels c-2..c+2) ** 0.75."""
    a = np.arange(1, 8, dtype=np.float64) * 10
    x = jnp.asarray(a.reshape(1, 1, 1, 7), jnp.float32)
    expected = [a[c] / (1 + 1e-4 / 5 * np.sum(a[max(c - 2, 0): c + 3] ** 2)) ** 0.75 for c in range(7)]
    np.testing.assert_allclose(np.asarray(layers.local_response_norm(x)).ravel(), expected, rtol=1e-6)
