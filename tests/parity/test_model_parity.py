"""Numerical parity with the PyTorch references, through the weight converter.

"torchvision" is held to torchvision 0.29.1's googlenet; "paper" to a torch.nn port of BVLC
Caffe's bvlc_googlenet (googlenet_jax/caffe_torch.py), built independently of the Flax model.
"""
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from googlenet_jax import GoogLeNet, GoogLeNetOutputs
from googlenet_jax.model import fold_batch_norm
from googlenet_jax.model.losses import googlenet_loss
from googlenet_jax.weights.torch_layout import flax_to_torchvision, torchvision_to_flax

import helpers as ref

VARIANTS = ("torchvision", "paper")
PAPER_AUX_WEIGHT = 0.3  # the paper's weight of each auxiliary loss


def _config_aux_weight() -> float:
    """The aux weight of the paper-recipe training config, which the loss must use."""
    path = pathlib.Path(ref.REPO) / "configs" / "imagenet_paper.py"
    spec = importlib.util.spec_from_file_location("imagenet_paper_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config().aux_weight


def _apply_eval(net, variables, x):
    return np.asarray(jax.jit(lambda v, x: net.apply(v, x, train=False))(variables, x))


# (height, width): 224, then two odd sizes; the smallest input each reference accepts among them.
EVAL_SIZES = {"torchvision": [(224, 224), (117, 97), (15, 15)], "paper": [(224, 224), (117, 97), (31, 31)]}


@pytest.mark.parametrize("variant,size", [(v, s) for v in VARIANTS for s in EVAL_SIZES[v]])
def test_eval_logits_match_reference(variant, size):
    torch_net = ref.torch_reference(variant, seed=1).eval()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net), variant=variant)
    x = ref.images(2, *size, seed=2)
    with torch.no_grad():
        expected = torch_net(ref.to_nchw(x)).numpy()
    actual = _apply_eval(GoogLeNet(variant=variant), variables, x)
    assert actual.shape == (2, 1000) and actual.dtype == np.float32
    assert ref.relative_error(actual, expected) <= 1e-5


@pytest.mark.parametrize("size", [(224, 224), (99, 131)])
def test_transform_input_matches_torchvision(size):
    torch_net = ref.torch_reference("torchvision", transform_input=True, seed=3).eval()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net))
    x = ref.images(2, *size, seed=4)
    with torch.no_grad():
        expected = torch_net(ref.to_nchw(x)).numpy()
    actual = _apply_eval(GoogLeNet(transform_input=True), variables, x)
    assert ref.relative_error(actual, expected) <= 1e-5
    # The transform matters: without it the logits are far off.
    assert ref.relative_error(_apply_eval(GoogLeNet(), variables, x), expected) > 1e-2


def test_folded_batch_norm_matches_torchvision_in_float64():
    """BatchNorm folded into the convolutions (what the Classifier, evaluate and export run):
    the same logits and inner stages as torchvision's eval pass, to float64 rounding."""
    torch_net = ref.torch_reference("torchvision", seed=12).double().eval()
    x = ref.images(2, 117, 97, seed=13).astype(np.float64)
    inner = {}
    torch_net.inception4e.branch2.register_forward_hook(lambda m, args, out: inner.setdefault("branch3x3", out))
    with torch.no_grad():
        expected = torch_net(ref.to_nchw(x)).numpy()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net))
    with jax.enable_x64(True):
        net, folded = fold_batch_norm(GoogLeNet(dtype=jnp.float64), variables)
        assert "batch_stats" not in folded and "bn" not in folded["params"]["inception4e"]["branch3x3"]
        logits, stages = jax.jit(lambda v, x: net.apply(v, x, train=False, capture=("inception4e/branch3x3",)))(
            folded, jnp.asarray(x))
    assert logits.dtype == jnp.float64
    assert ref.relative_error(logits, expected) <= 1e-12
    branch = inner["branch3x3"].numpy().transpose(0, 2, 3, 1)
    assert ref.relative_error(stages["inception4e/branch3x3"], branch) <= 1e-12
    with pytest.raises(ValueError, match="eval mode only"):
        net.apply(folded, x.astype(np.float32), train=True)


def _train_outputs(net, variables, x):
    if "batch_stats" in variables:
        return net.apply(variables, x, train=True, mutable=["batch_stats"])
    return net.apply(variables, x, train=True), {}


def _record_bn_inputs(torch_net):
    """Forward hooks that keep each BatchNorm's input, keyed by its state_dict prefix."""
    inputs = {}
    for name, module in torch_net.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(lambda m, args, out, name=name: inputs.__setitem__(name, args[0].detach()))
    return inputs


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_mode_logits_and_aux_logits_match_reference(variant):
    torch_net = ref.torch_reference(variant, dropout=0.0, dropout_aux=0.0, seed=5).train()
    before = ref.state_dict_numpy(torch_net)
    variables = torchvision_to_flax(before, variant=variant)
    bn_inputs = _record_bn_inputs(torch_net)
    x = ref.images(4, 224, 224, seed=6)
    with torch.no_grad():
        expected = torch_net(ref.to_nchw(x))
    if variant == "torchvision":  # torchvision's tuple order is (logits, aux_logits2, aux_logits1)
        expected = (expected.logits, expected.aux_logits1, expected.aux_logits2)
    net = GoogLeNet(variant=variant, dropout_rate=0.0, aux_dropout_rate=0.0)
    outputs, updates = jax.jit(lambda v, x: _train_outputs(net, v, x))(variables, x)
    assert isinstance(outputs, GoogLeNetOutputs)
    for name, actual, want in zip(GoogLeNetOutputs._fields, outputs, expected):
        assert ref.relative_error(actual, want.numpy()) <= 1e-4, name
    if variant == "torchvision":
        _check_running_statistics(before, ref.state_dict_numpy(torch_net), bn_inputs, updates["batch_stats"])


def _check_running_statistics(before, after, bn_inputs, new_stats):
    """Running means must equal torch's. Running variances differ in one documented way:
    torch mixes in the unbiased batch variance, Flax the biased one, so Flax's must equal
    0.9 * old + 0.1 * biased_batch_variance, computed here from the inputs torch's BNs saw."""
    assert len(bn_inputs) == 59  # 3 stem convs + 9 modules x 6 + 2 aux convs
    expected = dict(after)
    for name, x in bn_inputs.items():
        x = x.double()
        n = x.numel() // x.shape[1]
        biased = x.var(dim=(0, 2, 3), unbiased=False).numpy()
        old = before[f"{name}.running_var"].astype(np.float64)
        expected[f"{name}.running_var"] = 0.9 * old + 0.1 * biased
        # torch's own rule, checked so that the documented difference stays true.
        np.testing.assert_allclose(after[f"{name}.running_var"], 0.9 * old + 0.1 * biased * n / (n - 1), rtol=1e-5)
    want = torchvision_to_flax(expected)["batch_stats"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), dict(new_stats), want)
    # Not a vacuous check: on the aux heads' 4x4 maps torch's rule misses that tolerance.
    aux_var = np.asarray(new_stats["aux1"]["conv"]["bn"]["var"])
    assert not np.allclose(aux_var, after["aux1.conv.bn.running_var"], rtol=1e-4, atol=1e-5)


def _parameter_gradients(torch_net, loss):
    """torch's gradients in a state_dict (buffers kept) so the converter can map them."""
    torch_net.zero_grad()
    loss.backward()
    grads = {}
    for name, value in torch_net.state_dict().items():
        parameter = dict(torch_net.named_parameters()).get(name)
        grads[name] = (parameter.grad if parameter is not None else value).detach().numpy()
    return grads


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_gradients_match_reference_in_float64(variant):
    """Gradients of CE(main) + 0.3 CE(aux1) + 0.3 CE(aux2) w.r.t. every parameter, in float64
    (float32 rounding alone moves them by ~1% per tensor; float64 agrees to ~1e-13)."""
    torch_net = ref.torch_reference(variant, dropout=0.0, dropout_aux=0.0, seed=7).double().train()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net), variant=variant)
    x = ref.images(2, 224, 224, seed=8).astype(np.float64)
    labels = np.array([3, 917])
    outputs = torch_net(ref.to_nchw(x))
    if variant == "torchvision":
        outputs = (outputs.logits, outputs.aux_logits1, outputs.aux_logits2)
    ce = torch.nn.functional.cross_entropy
    torch_labels = torch.from_numpy(labels)
    aux = ce(outputs[1], torch_labels) + ce(outputs[2], torch_labels)
    loss = ce(outputs[0], torch_labels) + PAPER_AUX_WEIGHT * aux
    expected = torchvision_to_flax(_parameter_gradients(torch_net, loss), variant=variant)["params"]

    aux_weight = _config_aux_weight()
    with jax.enable_x64(True):
        net = GoogLeNet(variant=variant, dropout_rate=0.0, aux_dropout_rate=0.0, dtype=jnp.float64)

        def loss_fn(params):
            outputs, _ = _train_outputs(net, {**variables, "params": params}, jnp.asarray(x))
            assert outputs.logits.dtype == jnp.float64
            total, _ = googlenet_loss(outputs.logits, outputs[1:], jnp.asarray(labels), aux_weight=aux_weight)
            return total

        value, grads = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
        assert abs(float(value) - loss.item()) <= 1e-12 * abs(loss.item())
        errors = jax.tree.map(ref.relative_error, grads, expected)
    worst = max(jax.tree_util.tree_flatten_with_path(errors)[0], key=lambda item: item[1])
    assert worst[1] <= 1e-9, f"worst gradient {jax.tree_util.keystr(worst[0])}: relative error {worst[1]:.2e}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("aux_logits", [True, False])
def test_round_trip_through_flax_is_exact_and_loads_strictly(variant, aux_logits):
    torch_net = ref.torch_reference(variant, aux_logits=aux_logits, num_classes=17, seed=9)
    state_dict = torch_net.state_dict()
    back = flax_to_torchvision(torchvision_to_flax(state_dict, variant=variant))
    assert list(back) == list(state_dict)  # same keys, same order
    for key, value in state_dict.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key
    fresh = ref.torch_reference(variant, aux_logits=aux_logits, num_classes=17, seed=10)
    fresh.load_state_dict(back, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_smallest_input_agrees_with_reference(variant):
    """The reference accepts the size our model accepts and rejects one pixel less."""
    smallest = EVAL_SIZES[variant][-1][0]
    torch_net = ref.torch_reference(variant, aux_logits=False).eval()
    variables = torchvision_to_flax(ref.state_dict_numpy(torch_net), variant=variant)
    net = GoogLeNet(variant=variant, aux_logits=False)
    with torch.no_grad():
        torch_net(ref.to_nchw(ref.images(1, smallest, smallest)))
        with pytest.raises(RuntimeError):
            torch_net(ref.to_nchw(ref.images(1, smallest - 1, smallest - 1)))
    _apply_eval(net, variables, ref.images(1, smallest, smallest))
    with pytest.raises(ValueError, match=f"at least {smallest}"):
        net.apply(variables, ref.images(1, smallest - 1, smallest), train=False)
