"""googlenet_jax.parity.models: what both parts of parity share, written once (the model pair,
the input-size check, the reference's name, the torch side's copy and input layout)."""
import numpy as np
import pytest
import torch

from googlenet_jax.commands.common import UsageError
from googlenet_jax.model import architecture
from googlenet_jax.parity import models
from googlenet_jax.weights import torch_layout

import helpers


@pytest.mark.parametrize("variant", ["torchvision", "paper"])
def test_random_weights_are_the_same_on_both_sides(variant):
    pair = models.load(None, variant=variant, num_classes=10, seed=3, dtype=np.float64)
    theirs = helpers.state_dict_numpy(pair.torch_net)
    ours = torch_layout.flax_to_torchvision(pair.variables, return_numpy=True)
    assert set(ours) <= set(theirs)
    for name, value in ours.items():
        assert value.dtype == theirs[name].dtype or value.dtype == np.float64, name
        np.testing.assert_array_equal(value, theirs[name], err_msg=name)
    assert (pair.ours.num_classes, pair.ours.variant, pair.ours.aux_logits) == (10, variant, True)
    assert pair.ours.transform_input == (variant == "torchvision")  # as torchvision's pretrained builder
    assert pair.described.startswith("random (He-scaled") and "seed 3" in pair.described


def test_a_pth_brings_its_variant_class_count_and_aux_heads(tmp_path):
    net = helpers.torch_reference("paper", num_classes=7, aux_logits=False, seed=0)
    path = tmp_path / "paper.pth"
    torch.save(net.state_dict(), path)
    pair = models.load(str(path))
    assert (pair.variant, pair.ours.num_classes, pair.ours.aux_logits) == ("paper", 7, False)
    assert pair.described == str(path)
    assert pair.variables["params"]["fc"]["kernel"].dtype == np.float32


def test_transform_input_on_the_paper_variant_is_a_usage_error(tmp_path):
    path = tmp_path / "paper.pth"
    torch.save(helpers.torch_reference("paper", aux_logits=False, seed=0).state_dict(), path)
    with pytest.raises(UsageError, match="--transform_input on is a torchvision option"):
        models.load(str(path), transform_input=True)
    with pytest.raises(UsageError, match="--transform_input on is a torchvision option"):
        models.load(None, variant="paper", transform_input=True)


@pytest.mark.parametrize("variant", ["torchvision", "paper"])
def test_an_image_below_the_smallest_size_is_a_usage_error(variant):
    smallest = architecture.min_input_size(variant)
    models.check_image_size(variant, smallest)
    message = rf"--image_size {smallest - 1} is too small for the {variant} GoogLeNet \(at least {smallest}\)"
    with pytest.raises(UsageError, match=message):
        models.check_image_size(variant, smallest - 1)


def test_torch_gets_our_nhwc_images_as_nchw_in_the_compared_dtype():
    images = np.arange(2 * 5 * 7 * 3, dtype=np.float32).reshape(2, 5, 7, 3)
    nchw = models.to_nchw(images, "float64")
    assert nchw.dtype == torch.float64 and tuple(nchw.shape) == (2, 3, 5, 7)
    np.testing.assert_array_equal(nchw.numpy(), images.transpose(0, 3, 1, 2))


def test_the_torch_copy_is_in_the_dtype_and_mode_with_dropout_off_and_the_original_untouched():
    net = helpers.torch_reference("torchvision", seed=0).eval()
    copy = models.torch_copy(net, "float64", train=True)
    assert copy.training and not net.training
    assert all(p.dtype == torch.float64 for p in copy.parameters())
    assert all(p.dtype == torch.float32 for p in net.parameters())
    dropouts = [m for m in copy.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)
    assert all(m.p > 0 for m in net.modules() if isinstance(m, torch.nn.Dropout))


def test_the_reference_is_named_by_variant():
    assert models.reference_text("torchvision") == "torchvision.models.googlenet"
    assert "caffe_torch.py" in models.reference_text("paper")
