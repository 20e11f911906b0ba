"""GoogLeNet as data: the paper's Table 1, its blocks, the two variants and the stage names.

Every stage of the backbone is a `Block`: its parts (a convolution, a max pool or LRN, each
reading the block's input or an earlier part) and the parts it concatenates. A stem
convolution, a pool and LRN are blocks of one part; an Inception module is the block
INCEPTION_BLOCKS builds from its Table 1 row ("reduced", Figure 2b; "naive", Figure 2a). That one
description is what the network builds and what the ONNX writer, the torchvision layout (each
part's `torch_name`), Table 1 (each part's `column`) and the stage names (`substages`) read,
through `GoogLeNet.backbone()`; the smallest input each variant takes follows from it too.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from googlenet_jax.model import layers


class InceptionChannels(NamedTuple):
    """Output channels of one Inception module, in the paper's Table 1 column order."""

    ch1x1: int
    ch3x3_reduce: int
    ch3x3: int
    ch5x5_reduce: int
    ch5x5: int
    pool_proj: int


# Table 1 of the paper. None marks a max pool between stages.
INCEPTION_TABLE = (
    ("inception3a", InceptionChannels(64, 96, 128, 16, 32, 32)),
    ("inception3b", InceptionChannels(128, 128, 192, 32, 96, 64)),
    None,
    ("inception4a", InceptionChannels(192, 96, 208, 16, 48, 64)),
    ("inception4b", InceptionChannels(160, 112, 224, 24, 64, 64)),
    ("inception4c", InceptionChannels(128, 128, 256, 24, 64, 64)),
    ("inception4d", InceptionChannels(112, 144, 288, 32, 64, 64)),
    ("inception4e", InceptionChannels(256, 160, 320, 32, 128, 128)),
    None,
    ("inception5a", InceptionChannels(256, 160, 320, 32, 128, 128)),
    ("inception5b", InceptionChannels(384, 192, 384, 48, 128, 128)),
)
# Auxiliary heads read the outputs of these modules (aux1 on 4a, aux2 on 4d).
AUX_TAPS = {"inception4a": "aux1", "inception4d": "aux2"}
# How BatchNorm's running variance mixes in each batch: "biased" (Flax's rule, the batch's
# biased variance) or "unbiased" (torch's: times n / (n - 1) for n values per channel).
BN_RUNNING_VARS = ("biased", "unbiased")
BN_EPSILON = 1e-3  # torchvision's BasicConv2d: BatchNorm2d(eps=0.001)
AUX_POOLED_SIZE = 4  # both variants' aux heads see a 4x4 map (fc1 takes 128 * 4 * 4)
FEATURES_DIM = 1024  # inception5b's channels, globally pooled: the classifier's input


class Conv(NamedTuple):
    """A convolution block: conv (square kernel, symmetric zero padding) -> BN or bias -> ReLU."""

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0


class MaxPool(NamedTuple):
    """A ceil-mode max pool."""

    kernel: int
    stride: int
    padding: int = 0


class LRN(NamedTuple):
    """Caffe's local response normalisation across channels (the paper variant's stem)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    bias: float = 1.0


def output_size(layer: Conv | MaxPool | LRN, size: int) -> int:
    """Side of a layer's output for a square input of `size` (below 1: the layer fails)."""
    if isinstance(layer, MaxPool):
        return layers.pool_output_size(size, layer.kernel, layer.stride, layer.padding, ceil_mode=True)
    if isinstance(layer, Conv):
        return (size + 2 * layer.padding - layer.kernel) // layer.stride + 1
    return size


class Part(NamedTuple):
    """One layer of a block, reading the block's input ("") or an earlier part's output.

    torch_name: the torchvision module this convolution is (None: torchvision has none).
    column: the Table 1 column its width fills (None: none).
    caffe_name: its layer in BVLC Caffe's bvlc_googlenet, after "inception_3a/" (None: none).
    """

    name: str
    layer: Conv | MaxPool | LRN
    input: str = ""
    torch_name: str | None = None
    column: str | None = None
    caffe_name: str | None = None


class Block(NamedTuple):
    """One stage of the network: its parts in the order they compute, and the parts whose
    outputs it concatenates on channels. A block of one part named "" is that layer itself
    (a stem convolution, a max pool, LRN): its parameters sit under the stage's name."""

    kind: str  # "conv", "max_pool", "lrn" or an INCEPTION_BLOCKS name
    parts: tuple[Part, ...]
    outputs: tuple[str, ...]

    @property
    def single(self) -> bool:
        return self.parts[0].name == ""

    @property
    def stride(self) -> int:
        return max(getattr(part.layer, "stride", 1) for part in self.parts)

    def output_size(self, size: int) -> int:
        """Side of the block's output for a square input of `size` (below 1: it fails)."""
        sizes = {"": size}
        for part in self.parts:
            given = sizes[part.input]
            sizes[part.name] = output_size(part.layer, given) if given >= 1 else 0
        return min(sizes[name] for name in self.outputs)

    def depth(self) -> int:
        """The most convolutions on one path through the block (Table 1's depth)."""
        depths = {"": 0}
        for part in self.parts:
            depths[part.name] = depths[part.input] + isinstance(part.layer, Conv)
        return max(depths[name] for name in self.outputs)


def layer_block(layer: Conv | MaxPool | LRN) -> Block:
    """A stage that is one layer."""
    kind = {Conv: "conv", MaxPool: "max_pool", LRN: "lrn"}[type(layer)]
    return Block(kind, (Part("", layer),), ("",))


def reduced_inception(c: InceptionChannels, branch5x5_kernel: int) -> Block:
    """The paper's Figure 2b, as Table 1 and both variants build it: 1x1 | 1x1 -> 3x3 |
    1x1 -> "5x5" | 3x3 max pool -> 1x1, concatenated (torchvision's branch1 ... branch4)."""
    k = branch5x5_kernel
    return Block("reduced", (
        Part("branch1x1", Conv(c.ch1x1, 1), "", "branch1", "ch1x1", "1x1"),
        Part("branch3x3_reduce", Conv(c.ch3x3_reduce, 1), "", "branch2.0", "ch3x3_reduce", "3x3_reduce"),
        Part("branch3x3", Conv(c.ch3x3, 3, padding=1), "branch3x3_reduce", "branch2.1", "ch3x3", "3x3"),
        Part("branch5x5_reduce", Conv(c.ch5x5_reduce, 1), "", "branch3.0", "ch5x5_reduce", "5x5_reduce"),
        Part("branch5x5", Conv(c.ch5x5, k, padding=k // 2), "branch5x5_reduce", "branch3.1", "ch5x5", "5x5"),
        Part("pool", MaxPool(3, 1, padding=1), caffe_name="pool"),  # torchvision's branch4.0
        Part("pool_proj", Conv(c.pool_proj, 1), "pool", "branch4.1", "pool_proj", "pool_proj"),
    ), ("branch1x1", "branch3x3", "branch5x5", "pool_proj"))


def naive_inception(c: InceptionChannels, branch5x5_kernel: int) -> Block:
    """The paper's Figure 2a, the module it argues against: 1x1, 3x3 and "5x5" convolutions
    and a 3x3 max pool side by side on the module's input, with no 1x1 reductions and no pool
    projection, so the pool passes every input channel on and the widths compound."""
    k = branch5x5_kernel
    return Block("naive", (
        Part("branch1x1", Conv(c.ch1x1, 1), column="ch1x1"),
        Part("branch3x3", Conv(c.ch3x3, 3, padding=1), column="ch3x3"),
        Part("branch5x5", Conv(c.ch5x5, k, padding=k // 2), column="ch5x5"),
        Part("pool", MaxPool(3, 1, padding=1)),
    ), ("branch1x1", "branch3x3", "branch5x5", "pool"))


# How an Inception stage is built from its Table 1 row: GoogLeNet(inception_block=NAME). A fork
# adds a kind of module here; the network, the ONNX writer, the torchvision layout, Table 1 and
# the stage names all read the Block it returns.
INCEPTION_BLOCKS: dict[str, Callable[[InceptionChannels, int], Block]] = {
    "reduced": reduced_inception, "naive": naive_inception}
# The sub-stages a (reduced) Inception module records, "inception4a/branch3x3": its parts.
INCEPTION_PARTS = tuple(part.name for part in reduced_inception(InceptionChannels(*[1] * 6), 3).parts)


def torch_linear_bias_init(fan_in: int):
    """torch.nn.Linear's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# Caffe's "xavier" filler: U(-sqrt(3 / fan_in), sqrt(3 / fan_in)).
caffe_xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
# torchvision: trunc_normal_(std=0.01, a=-2, b=2); the bounds are absolute (200 sigma), so
# the truncation never fires and this is a plain normal.
torchvision_weight_init = nn.initializers.normal(0.01)


@dataclasses.dataclass(frozen=True)
class Variant:
    """Everything that differs between the two variants."""

    batch_norm: bool  # conv + BN (no conv bias) vs conv with bias
    lrn: bool  # LRN after pool1 and after conv3
    branch5x5_kernel: int  # the "5x5" branch: 3 in torchvision (issue 906), 5 in the paper
    pool4_kernel: int  # the max pool after 4e
    aux_pool: str  # "adaptive" (torch AdaptiveAvgPool2d(4)) or "caffe" (AvgPool 5x5/3 ceil)
    dropout_rate: float
    weight_init: Callable
    conv_bias: float  # Caffe initialises conv biases to 0.2
    classifier_bias_init: Callable[[int], Callable]  # fan_in -> init, for both classifiers
    aux_fc1_bias_init: Callable[[int], Callable]  # fan_in -> init
    # The widths: Table 1's for both variants; only the test-only "tiny" network changes them.
    stem_features: tuple[int, int, int] = (64, 64, 192)  # conv1, conv2, conv3
    inception_table: tuple = INCEPTION_TABLE
    aux_features: tuple[int, int] = (128, 1024)  # the aux heads' 1x1 conv and fc1


VARIANTS = {
    "torchvision": Variant(
        batch_norm=True, lrn=False, branch5x5_kernel=3, pool4_kernel=2, aux_pool="adaptive",
        dropout_rate=0.2, weight_init=torchvision_weight_init, conv_bias=0.0,
        classifier_bias_init=torch_linear_bias_init, aux_fc1_bias_init=torch_linear_bias_init),
    "paper": Variant(
        batch_norm=False, lrn=True, branch5x5_kernel=5, pool4_kernel=3, aux_pool="caffe",
        dropout_rate=0.4, weight_init=caffe_xavier, conv_bias=0.2,
        classifier_bias_init=lambda fan_in: nn.initializers.zeros,
        aux_fc1_bias_init=lambda fan_in: nn.initializers.constant(0.2)),
}


# For tests only, not a model to train (flax's ImageNet example keeps `_ResNet1` the same way):
# the torchvision variant's code paths (stem, BatchNorm, max pools, Inception modules, both aux
# heads and their taps, classifier) at a few channels, so that the tests of the machinery
# (checkpoints, signals, several processes, commands) compile in seconds, not minutes.
_TINY_INCEPTION = InceptionChannels(8, 8, 8, 4, 8, 8)
TEST_VARIANTS = {
    "tiny": dataclasses.replace(
        VARIANTS["torchvision"], stem_features=(8, 8, 16), aux_features=(8, 16),
        inception_table=(("inception4a", _TINY_INCEPTION), ("inception4d", _TINY_INCEPTION))),
}


def variant_spec(variant: str) -> Variant:
    """The variant's description, or a ValueError naming the variants."""
    spec = VARIANTS.get(variant) or TEST_VARIANTS.get(variant)
    if spec is None:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    return spec


def known_variant(variant: str) -> bool:
    """Whether `variant` names a variant (a user's or the test-only one)."""
    return variant in VARIANTS or variant in TEST_VARIANTS


def backbone(variant: str, inception_block: str = "reduced") -> tuple[tuple[str, Block], ...]:
    """The stages from the image to inception5b, in order: (stage name, Block). Every Inception
    stage is built by INCEPTION_BLOCKS[inception_block] from its Table 1 row."""
    spec = variant_spec(variant)
    if inception_block not in INCEPTION_BLOCKS:
        raise ValueError(f"inception_block must be one of {sorted(INCEPTION_BLOCKS)}, got {inception_block!r}")
    make_inception = INCEPTION_BLOCKS[inception_block]
    lrn = (LRN(),) if spec.lrn else ()
    conv1, conv2, conv3 = spec.stem_features
    stem = [("conv1", Conv(conv1, 7, stride=2, padding=3)), ("pool1", MaxPool(3, 2)),
            *(("lrn1", layer) for layer in lrn),
            ("conv2", Conv(conv2, 1)), ("conv3", Conv(conv3, 3, padding=1)),
            *(("lrn2", layer) for layer in lrn),
            ("pool2", MaxPool(3, 2))]
    pools = iter((("pool3", MaxPool(3, 2)), ("pool4", MaxPool(spec.pool4_kernel, 2))))
    body = [next(pools) if entry is None else entry for entry in spec.inception_table]
    return tuple((name, make_inception(layer, spec.branch5x5_kernel) if isinstance(layer, InceptionChannels)
                  else layer_block(layer)) for name, layer in stem + body)


def backbone_stages(variant: str = "torchvision") -> tuple[str, ...]:
    """conv1 ... inception5b in network order: the stages `freeze_up_to` and features_only use."""
    return tuple(name for name, _ in backbone(variant))


def stages_up_to(variant: str, stage: str) -> tuple[str, ...]:
    """The backbone stages from conv1 to `stage` included ("" gives none): what
    `freeze_up_to=stage` freezes. A ValueError lists the stages for an unknown name."""
    if not stage:
        return ()
    stages = backbone_stages(variant)
    if stage not in stages:
        raise ValueError(f"{stage!r} is not a backbone stage of the {variant} GoogLeNet; stages: "
                         f"{', '.join(stages)}")
    return stages[:stages.index(stage) + 1]


def stage_names(variant: str = "torchvision", *, aux_logits: bool = True) -> tuple[str, ...]:
    """Every stage of the network in the order it computes them: the backbone (with the aux
    heads right after the module they read), then avgpool (the pooled 1024-d features) and fc
    (the logits). The parity tool prints these rows; `capture` takes these names and the
    Inception sub-stages "inceptionXY/<part>" (see `substages`)."""
    names = []
    for name in backbone_stages(variant):
        names.append(name)
        if aux_logits and name in AUX_TAPS:
            names.append(AUX_TAPS[name])
    return tuple(names + ["avgpool", "fc"])


def substages(stages) -> tuple[str, ...]:
    """"inception3a/branch1x1", ... for every part of every block of several parts, in network
    order (`stages`: backbone()'s pairs)."""
    return tuple(f"{name}/{part.name}" for name, block in stages if not block.single for part in block.parts)


def feature_map_size(size: int, variant: str) -> int | None:
    """Side of the 5b feature map for a square input of `size`, or None if a layer fails."""
    for _, block in backbone(variant):
        size = block.output_size(size) if size >= 1 else 0
    return size if size >= 1 else None


def min_input_size(variant: str) -> int:
    """Smallest square input whose every feature map is at least 1x1 (torchvision: 15)."""
    size = 1
    while feature_map_size(size, variant) is None:
        size += 1
    return size
