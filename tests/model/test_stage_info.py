"""Looking inside the network: capture, features_only and stage_info, held to torchvision's hooks.

The stage outputs themselves are compared with torchvision, stage by stage, by the parity tool
(tests/parity/test_compare.py reads them through `capture`); here: what capture returns, that a
features-only call really stops where it says, and the stage shapes against torch's.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from googlenet_jax.model import GoogLeNet, stage_info, stage_names

import helpers

SIZE = 64  # every stage at least 2x2


@pytest.fixture(scope="module")
def model_and_variables():
    net = helpers.torch_reference("torchvision", aux_logits=True, seed=5)
    from googlenet_jax.weights.torch_layout import torchvision_to_flax
    return GoogLeNet(), torchvision_to_flax(helpers.state_dict_numpy(net)), net


def test_capture_returns_the_usual_output_and_the_named_stages(model_and_variables):
    model, variables, _ = model_and_variables
    x = helpers.images(2, SIZE, SIZE, seed=1)
    plain = model.apply(variables, x, train=False)
    logits, stages = model.apply(variables, x, train=False,
                                 capture=("conv1", "inception4e", "inception4a/branch1x1", "avgpool", "fc"))
    np.testing.assert_array_equal(logits, plain)
    np.testing.assert_array_equal(stages["fc"], plain)
    assert set(stages) == {"conv1", "inception4e", "inception4a/branch1x1", "avgpool", "fc"}
    assert stages["conv1"].shape == (2, SIZE // 2, SIZE // 2, 64)
    assert stages["inception4a/branch1x1"].shape[-1] == 192  # Table 1's #1x1 for 4a
    pooled = model.apply(variables, x, train=False, features=True)
    np.testing.assert_allclose(stages["avgpool"], pooled, rtol=1e-6)


def test_aux_stages_exist_in_train_mode_only(model_and_variables):
    model, variables, _ = model_and_variables
    x = helpers.images(2, SIZE, SIZE, seed=2)
    _, stages = model.apply(variables, x, train=False, capture=("aux1", "aux2", "fc"))
    assert set(stages) == {"fc"}
    (outputs, stages), _ = model.apply(variables, x, train=True, capture=("aux1", "aux2"),
                                       mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
    np.testing.assert_array_equal(stages["aux1"], outputs.aux_logits1)
    np.testing.assert_array_equal(stages["aux2"], outputs.aux_logits2)


def test_features_only_stops_after_the_last_stage_asked_for(model_and_variables):
    model, variables, _ = model_and_variables
    x = helpers.images(2, SIZE, SIZE, seed=3)
    _, full = model.apply(variables, x, train=False, capture=("inception3b", "inception4e"))
    # Without the parameters of everything after 4e (5a, 5b, fc, the aux heads) it still runs:
    # nothing after the last stage asked for is computed.
    kept = ("conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b",
            "inception4c", "inception4d", "inception4e")
    trimmed = {collection: {k: v for k, v in tree.items() if k in kept} for collection, tree in variables.items()}
    features = model.apply(trimmed, x, train=False, capture=("inception3b", "inception4e"), features_only=True)
    assert set(features) == {"inception3b", "inception4e"}
    for name in features:
        np.testing.assert_array_equal(features[name], full[name])


def test_unknown_stage_names_are_a_value_error_listing_the_stages(model_and_variables):
    model, variables, _ = model_and_variables
    x = jnp.zeros((1, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match=r"unknown stage\(s\) 'inception6a'.*stages: conv1, pool1, conv2"):
        model.apply(variables, x, train=False, capture=("inception6a",))
    with pytest.raises(ValueError, match="features_only=True returns the captured stages"):
        model.apply(variables, x, train=False, features_only=True)


@pytest.mark.parametrize("variant,image_size", [("torchvision", 224), ("paper", 117)])
def test_stage_info_matches_the_torch_references_output_shapes(variant, image_size):
    net = helpers.torch_reference(variant, aux_logits=False).eval()
    torch_names = {"torchvision": {f"pool{i}": f"maxpool{i}" for i in range(1, 5)},
                   "paper": {"lrn1": "norm1", "lrn2": "norm2"}}[variant]
    shapes, modules = {}, dict(net.named_modules())
    info = stage_info(GoogLeNet(variant=variant, aux_logits=False), image_size)
    def record(name, _module, _inputs, output):  # returns None: the output stays as it is
        shapes.setdefault(name, tuple(output.shape))

    for row in info:
        modules[torch_names.get(row.name, row.name)].register_forward_hook(functools.partial(record, row.name))
    with torch.no_grad():
        net(torch.zeros(1, 3, image_size, image_size))
    assert [row.name for row in info] == [name for name in stage_names(variant, aux_logits=False)]
    for row in info:
        torch_shape = shapes[row.name]  # NCHW, or (N, C[, 1, 1]) for the pooled and the logits
        expected = (*torch_shape[2:], torch_shape[1]) if len(torch_shape) == 4 and torch_shape[2] > 1 \
            else (torch_shape[1],)
        assert row.shape == expected, row
        assert row.channels == expected[-1]
    reductions = {row.name: row.reduction for row in info}
    assert (reductions["conv1"], reductions["inception3a"], reductions["inception4e"],
            reductions["inception5b"], reductions["fc"]) == (2, 8, 16, 32, None)
