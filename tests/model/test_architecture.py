"""Blocks described once: the paper's naive Inception module (Figure 2a) as a block option, read
by the network, Table 1, the ONNX writer, the torchvision layout and the stage names; block
classes swapped from the outside.

The reference figures are counted by hand here from the paper's Table 1, typed in again below
(not read from the package), with the layer formulas written out.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from googlenet_jax.inference import onnx_export
from googlenet_jax.model import table1
from googlenet_jax.model.blocks import ConvBlock
from googlenet_jax.model.network import Blocks, GoogLeNet
from googlenet_jax.training import optim
from googlenet_jax.training.train_state import create_train_state
from googlenet_jax.weights import torch_layout

import helpers

# Table 1 (arXiv 1409.4842): #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, and the
# side of the map each module sees at 224x224.
PAPER_ROWS = (
    (64, 96, 128, 16, 32, 32, 28), (128, 128, 192, 32, 96, 64, 28),
    (192, 96, 208, 16, 48, 64, 14), (160, 112, 224, 24, 64, 64, 14), (128, 128, 256, 24, 64, 64, 14),
    (112, 144, 288, 32, 64, 64, 14), (256, 160, 320, 32, 128, 128, 14),
    (256, 160, 320, 32, 128, 128, 7), (384, 192, 384, 48, 128, 128, 7),
)


def _hand_count(variant: str, block: str, classes: int = 1000) -> tuple[int, int]:
    """(parameters without the aux heads, multiply-adds per 224x224 image) by hand."""
    batch_norm = variant == "torchvision"  # BatchNorm: scale and offset per channel; else a bias
    five = 3 if variant == "torchvision" else 5  # torchvision's "5x5" branches are 3x3

    def conv(k, cin, cout, side):
        return k * k * cin * cout + (2 if batch_norm else 1) * cout, side * side * k * k * cin * cout

    layers = [conv(7, 3, 64, 112), conv(1, 64, 64, 56), conv(3, 64, 192, 56)]
    cin = 192
    for c1, r3, c3, r5, c5, proj, side in PAPER_ROWS:
        if block == "naive":  # every branch reads the module's input; the pool passes it on
            layers += [conv(1, cin, c1, side), conv(3, cin, c3, side), conv(five, cin, c5, side)]
            cin = c1 + c3 + c5 + cin
        else:
            layers += [conv(1, cin, c1, side), conv(1, cin, r3, side), conv(3, r3, c3, side),
                       conv(1, cin, r5, side), conv(five, r5, c5, side), conv(1, cin, proj, side)]
            cin = c1 + c3 + c5 + proj
    layers.append((cin * classes + classes, cin * classes))  # the classifier
    return sum(p for p, _ in layers), sum(m for _, m in layers)


@pytest.mark.parametrize("variant", ["torchvision", "paper"])
def test_summary_counts_the_naive_module_and_shows_the_reduced_one_beside_it(variant):
    summary = table1.summarize(variant, inception_block="naive")
    assert (summary["params"], summary["macs"]) == _hand_count(variant, "naive")
    assert (summary["reduced"]["params"], summary["reduced"]["macs"]) == _hand_count(variant, "reduced")
    rows = {row["name"]: row for row in summary["layers"]}
    # 3a's naive module: 1x1, 3x3 and "5x5" on 192 channels; out 64 + 128 + 32 + 192 channels.
    five = 3 if variant == "torchvision" else 5
    assert rows["inception3a"]["macs"] == 28 * 28 * 192 * (64 + 9 * 128 + five * five * 32)
    assert rows["inception3a"]["output_size"] == [28, 28, 416]
    assert rows["inception3a"]["depth"] == 1
    assert (rows["inception3a"]["ch3x3_reduce"], rows["inception3a"]["pool_proj"]) == (None, None)
    assert rows["inception3a"]["paper_params"] is None  # the printed figures are the reduced module's
    text = table1.format_table(summary)
    assert text.startswith(f"GoogLeNet, {variant} variant, 224x224 input, 1000 classes, naive Inception modules")
    assert "reduced" in text.splitlines()[2]


def test_a_googlenet_of_naive_modules_trains():
    """A few SGD steps on one batch of the test-only tiny network built with naive modules: the
    loss falls, and the parameters are those of Figure 2a (no reductions, no pool projection)."""
    model = GoogLeNet(num_classes=helpers.TINY_CLASSES, variant="tiny", inception_block="naive")
    config = helpers.optimizer_config(batch_size=8, learning_rate=0.05, schedule="constant", warmup_epochs=0.0)
    lr_fn = optim.create_learning_rate_fn(config, 10, 100)
    tx = optim.create_optimizer(config, lr_fn)
    state = create_train_state(model, tx, seed=0, image_size=32, use_ema=False)
    assert sorted(state.params["inception4a"]) == ["branch1x1", "branch3x3", "branch5x5"]
    step = helpers.jit_train_step(model, tx, lr_fn, ema_decay=0.0)
    batch = helpers.tiny_batch(8, 32)
    losses = []
    for _ in range(4):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_the_onnx_writer_and_the_stage_names_read_the_naive_block():
    onnxruntime = pytest.importorskip("onnxruntime")
    model = GoogLeNet(num_classes=helpers.TINY_CLASSES, variant="tiny", inception_block="naive", aux_logits=False)
    x = helpers.images(2, 32, 32)
    variables = model.init(jax.random.key(0), x, train=False)
    proto = onnx_export.to_onnx(model, variables, logits=True)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": x})[0], model.apply(variables, x, train=False),
                               rtol=1e-4, atol=1e-5)
    _, parts = model.apply(variables, x, train=False, capture=("inception4a/pool", "inception4a/branch5x5"))
    assert parts["inception4a/pool"].shape[-1] == 16  # the pool passes conv3's 16 channels on
    with pytest.raises(ValueError, match="unknown stage.*branch1x1, branch3x3, branch5x5, pool"):
        model.apply(variables, x, train=False, capture=("inception4a/pool_proj",))


def test_the_naive_block_has_no_torchvision_layout():
    variables = jax.eval_shape(lambda: GoogLeNet(variant="tiny", inception_block="naive").init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    with pytest.raises(ValueError, match="naive Inception block has no torchvision layout"):
        torch_layout._backbone_entries(GoogLeNet(variant="tiny", inception_block="naive"))
    assert "branch3x3_reduce" not in variables["params"]["inception4d"]


def test_an_unknown_block_names_the_choices():
    with pytest.raises(ValueError, match=r"inception_block must be one of \['naive', 'reduced'\], got 'wide'"):
        GoogLeNet(variant="tiny", inception_block="wide").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                                               train=False)


class _TaggedConv(ConvBlock):
    """A fork's convolution block: this one leaves a mark each time it finishes (merged 1x1
    convolutions finish in `activate` too)."""

    def activate(self, y, bias, *, train):
        self.sow("intermediates", "swapped", True)
        return super().activate(y, bias, train=train)


def test_a_swapped_conv_block_class_builds_every_convolution():
    """Every convolution of the network (stem, Inception parts with their merged 1x1s, aux
    heads) runs the swapped class: one mark per convolution kernel in the parameters."""
    model = GoogLeNet(num_classes=helpers.TINY_CLASSES, variant="tiny", blocks=Blocks(conv=_TaggedConv))
    x = helpers.images(2, 32, 32)
    variables = model.init(jax.random.key(0), x, train=False)
    kernels = [path for path, _ in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
               if [entry.key for entry in path[-2:]] == ["conv", "kernel"]]
    _, state = model.apply(variables, x, train=True, mutable=["intermediates", "batch_stats"],
                           rngs={"dropout": jax.random.key(1)})
    assert len(jax.tree.leaves(state["intermediates"])) == len(kernels) == 3 + 2 * 6 + 2
