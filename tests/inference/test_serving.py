"""The serving files' FILE.json and artifact, read back directly (json, jax.export), on the tiny network.

The whole export command, at full size and in processes without googlenet_jax, is
tests/commands/test_export.py; here: what FILE.json promises a serving user, and that the
artifact holds what it says, at sizes that lower in a second and compile nothing.
"""
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from googlenet_jax import GoogLeNet
from googlenet_jax.inference import serving
from googlenet_jax.weights import LoadedModel, ModelInfo

SIZE = 32


def _tiny(normalization: str = "torchvision") -> LoadedModel:
    """The tiny GoogLeNet with random weights (drawn in numpy from the traced shapes: nothing
    compiled), as `googlenet_jax.load` returns it."""
    model = GoogLeNet(num_classes=3, variant="tiny")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape) + 1.0).astype(np.float32), shapes)
    info = ModelInfo(variant="tiny", num_classes=3, class_names=("a", "b", "c"), image_size=SIZE,
                     resize_size=SIZE, normalization=normalization, aux_logits=True)
    return LoadedModel(model, variables, info)


# Each normalisation by hand, on 0..255 pixels: torchvision's Normalize(ImageNet mean, std) of
# ToTensor's pixel / 255, and Caffe's mean pixel subtracted in RGB order.
BY_HAND = {
    "torchvision": lambda p: (p / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
    "paper": lambda p: p - np.array([123.0, 117.0, 104.0]),
}


@pytest.mark.parametrize("normalization", ["torchvision", "paper"])
def test_file_json_mean_and_std_turn_pixels_into_the_models_input(normalization):
    """FILE.json's `(pixel - mean) / std`, with its mean and std, is the normalisation the weights expect."""
    meta = json.loads(json.dumps(serving.describe(_tiny(normalization), logits=False)))  # as the file holds it
    pre = meta["preprocessing"]
    assert pre["normalization"] == normalization and pre["formula"] == "(pixel - mean) / std, pixel in 0..255"
    pixels = np.random.default_rng(1).integers(0, 256, (4, 5, 3)).astype(np.float64)
    np.testing.assert_allclose((pixels - np.array(pre["mean"])) / np.array(pre["std"]), BY_HAND[normalization](pixels),
                               rtol=1e-12, atol=1e-12)


def _convolution_types(artifact: bytes) -> set[str]:
    """The element types of the convolutions in a serialized artifact's StableHLO, e.g. {"f32"}."""
    text = export.deserialize(artifact).mlir_module()
    return set(re.findall(r"stablehlo\.convolution.*-> tensor<[^>]*x(\w+)>", text))


def test_bfloat16_artifact_computes_in_bfloat16_as_its_file_json_says():
    """`export --dtype bfloat16` reaches the network inside the artifact; float32 stays float32."""
    loaded = _tiny()
    for dtype, element in (("bfloat16", "bf16"), ("float32", "f32")):
        artifact, meta = serving.jax_artifact(loaded, platforms=["cpu"], dtype=dtype)
        assert meta["compute_dtype"] == dtype
        assert _convolution_types(artifact) == {element}, dtype
