"""The tools' options that change numbers, from the command line, against torchvision's own
model: `--transform_input`, `export --dtype bfloat16`, and `convert` on the torchvision variant
both ways. (The paper variant's round trip is in tests/weights/test_torch_layout.py.)"""
import copy
import json

import jax
import numpy as np
import pytest
import torch
from jax import export as jax_export
from PIL import Image
from torchvision.models import googlenet

import googlenet_jax
from googlenet_jax.weights import torch_layout
from googlenet_jax.weights.files import restore_as_numpy

import helpers
from helpers import run_command

pytestmark = pytest.mark.slow  # subprocesses


def _torch_probabilities(net, image_path):
    x = helpers.torchvision_eval_input(Image.open(image_path).convert("RGB"))
    with torch.no_grad():
        return torch.softmax(net(helpers.to_nchw(x)), -1)[0].numpy()


def test_predict_transform_input_off_equals_torchvision_without_its_input_transform(tmp_path, torchvision_pth):
    path, net = torchvision_pth  # torchvision's pretrained set-up: transform_input=True
    plain = copy.deepcopy(net)
    plain.transform_input = False
    image = helpers.photo("cat")
    expected = _torch_probabilities(plain, image)
    with_transform = _torch_probabilities(net, image)
    top = np.argsort(-expected)[:5]
    # Our resize (TensorFlow) and torchvision's (PIL) differ slightly: the top-5 probabilities
    # were measured within 1.6e-3 of torch's, relatively. The flag moves them far more
    # (the top class: 0.254 off, 0.072 on).
    tolerance = 1e-2
    assert np.abs(with_transform[top] - expected[top]).max() > 10 * tolerance * expected[top[0]]

    out = tmp_path / "out.json"
    run_command(["-m", "googlenet_jax.predict", "--weights", path, "--transform_input", "off", "--top_k", "5",
                 "--json", out, image])
    top_k = json.loads(out.read_text())[0]["top_k"]
    assert [t["index"] for t in top_k] == list(top)
    np.testing.assert_allclose([t["probability"] for t in top_k], expected[top], rtol=tolerance)


def test_export_bfloat16_runs_and_stays_within_bfloat16_rounding_of_torch_float32(tmp_path, finetuned_workdir):
    """The fine-tuned workdir (32x32, 3 classes, a Polyak average) against torchvision's model in
    float32 holding the same averaged weights. bfloat16 keeps 8 significant bits (relative
    rounding 4e-3 per operation): its logits must be within 5e-2 of float32's, and further
    than 1e-4 from them (float32 inside would be within 1e-6)."""
    workdir, _ = finetuned_workdir
    artifact = tmp_path / "model.jax"
    run_command(["-m", "googlenet_jax.export", "--weights", workdir, "--out", artifact, "--dtype", "bfloat16",
                 "--logits", "--platforms", "cpu"])
    images = helpers.images(4, 32, 32, seed=5)
    served = np.asarray(jax_export.deserialize(artifact.read_bytes()).call(images))

    state = restore_as_numpy(f"{workdir}/checkpoints/2/default")
    net = googlenet(weights=None, num_classes=3, aux_logits=True, init_weights=False).eval()
    state_dict = torch_layout.flax_to_torchvision({"params": state["ema_params"], "batch_stats": state["batch_stats"]})
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()})
    with torch.no_grad():
        expected = net(helpers.to_nchw(images)).numpy()

    assert served.dtype == np.float32 and served.shape == (4, 3)
    error = helpers.relative_error(served, expected)
    assert 1e-4 < error < 5e-2, error


def test_convert_torchvision_pth_to_orbax_and_back_is_bit_for_bit_and_keeps_torchvisions_logits(
        tmp_path, torchvision_pth):
    path, net = torchvision_pth
    original = torch.load(path, weights_only=True)
    checkpoint, back = tmp_path / "checkpoint", tmp_path / "back.pth"
    run_command(["-m", "googlenet_jax.convert", "to-flax", path, checkpoint])
    run_command(["-m", "googlenet_jax.convert", "to-torch", checkpoint, back])

    returned = torch.load(back, weights_only=True)
    assert list(returned) == list(original)  # BatchNorm's num_batches_tracked included
    for key, value in original.items():
        assert returned[key].dtype == value.dtype, key
        assert torch.equal(returned[key], value), key

    # The orbax checkpoint computes what torchvision computes (transform_input on, as saved).
    loaded = googlenet_jax.load(str(checkpoint))
    x = helpers.images(2, 64, 64, seed=7)
    logits = np.asarray(jax.jit(lambda v, x: loaded.model.apply(v, x, train=False))(loaded.variables, x))
    with torch.no_grad():
        expected = net(helpers.to_nchw(x)).numpy()
    assert helpers.relative_error(logits, expected) < 1e-5
