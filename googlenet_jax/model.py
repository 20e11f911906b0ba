"""GoogLeNet (Inception v1) in flax.linen, NHWC.

Two variants share one network definition and differ only in the `VARIANTS` table:
- "torchvision": numerically identical to torchvision 0.29.1's `googlenet` (BatchNorm,
  3x3 "5x5" branch, 2x2 pool after 4e, adaptive pools), so its weights load unchanged.
- "paper": BVLC Caffe's bvlc_googlenet, the topology the paper released (biased convs,
  LRN, true 5x5 branches, 3x3 pool after 4e, 5x5/3 average pool in the aux heads).
"""
import dataclasses
import functools
import itertools
import math
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from googlenet_jax import convolution
from googlenet_jax import layers
from googlenet_jax import normalization


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
AUX_POOLED_SIZE = 4  # both variants' aux heads see a 4x4 map (fc1 takes 128 * 4 * 4)

# ImageNet statistics that torchvision's transform_input undoes (see GoogLeNet.transform_input).
IMAGENET_MEAN, IMAGENET_STD = normalization.IMAGENET_MEAN, normalization.IMAGENET_STD


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


class GoogLeNetOutputs(NamedTuple):
    """Train-mode outputs; aux_logits1 is the head on 4a, aux_logits2 the head on 4d."""

    logits: Any
    aux_logits1: Any
    aux_logits2: Any


class ConvParams(nn.Module):
    """A convolution's parameters, named as flax's nn.Conv names them: "kernel" (HWIO), "bias"."""

    features: int
    kernel: int
    use_bias: bool
    weight_init: Callable
    bias_init: Callable

    @nn.compact
    def __call__(self, in_features: int):
        kernel = self.param("kernel", self.weight_init,
                            (self.kernel, self.kernel, in_features, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32) if self.use_bias else None
        return kernel, bias


class ConvBlock(nn.Module):
    """Conv -> (BatchNorm) -> ReLU: torchvision's BasicConv2d, or Caffe's biased conv + ReLU.

    `weights` and `activate` split the block around its convolution so that an Inception
    module can run several 1x1 blocks that read the same input as one convolution.
    """

    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    batch_norm: bool = True
    weight_init: Callable = torchvision_weight_init
    bias_init: Callable = nn.initializers.zeros
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    def setup(self):
        self.conv = ConvParams(self.features, self.kernel, not self.batch_norm, self.weight_init,
                               self.bias_init)
        if self.batch_norm:
            # torch momentum 0.1 == flax momentum 0.9.
            self.bn = nn.BatchNorm(momentum=0.9, epsilon=1e-3, dtype=self.dtype, param_dtype=jnp.float32,
                                   axis_name=self.bn_axis_name)

    def weights(self, in_features: int):
        """(kernel, bias or None) in the compute dtype."""
        kernel, bias = self.conv(in_features)
        return kernel.astype(self.dtype), None if bias is None else bias.astype(self.dtype)

    def activate(self, y, bias, *, train: bool):
        """Everything after the convolution: bias or BatchNorm, then ReLU."""
        if bias is not None:
            y = y + bias
        if self.batch_norm:
            y = self.bn(y, use_running_average=not train)
        return nn.relu(y)

    def __call__(self, x, *, train: bool):
        kernel, bias = self.weights(x.shape[-1])
        y = convolution.conv2d(jnp.asarray(x, self.dtype), kernel, stride=self.stride, padding=self.padding)
        return self.activate(y, bias, train=train)


def shared_input_1x1(blocks, x, *, train: bool):
    """Several 1x1 ConvBlocks applied to the same input, as one convolution.

    The kernels are concatenated on their output channels at apply time, so each block keeps
    its own parameters (and names); the result is split back and each block finishes on its
    own channels. One wide matrix product reads the input once instead of once per block.
    """
    weights = [block.weights(x.shape[-1]) for block in blocks]
    kernel = jnp.concatenate([kernel for kernel, _ in weights], axis=-1)
    y = convolution.conv2d(jnp.asarray(x, kernel.dtype), kernel)
    splits = list(itertools.accumulate(kernel.shape[-1] for kernel, _ in weights))[:-1]
    return [block.activate(part, bias, train=train)
            for block, part, (_, bias) in zip(blocks, jnp.split(y, splits, axis=-1), weights)]


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->"5x5" | pool->1x1."""

    channels: InceptionChannels
    conv_block: Callable[..., nn.Module]
    branch5x5_kernel: int = 3

    @nn.compact
    def __call__(self, x, *, train: bool):
        c, conv = self.channels, self.conv_block
        # The three 1x1 convolutions that read the module's input run as one.
        branch1, branch2, branch3 = shared_input_1x1(
            [conv(c.ch1x1, 1, name="branch1x1"), conv(c.ch3x3_reduce, 1, name="branch3x3_reduce"),
             conv(c.ch5x5_reduce, 1, name="branch5x5_reduce")], x, train=train)
        branch2 = conv(c.ch3x3, 3, padding=1, name="branch3x3")(branch2, train=train)
        k = self.branch5x5_kernel
        branch3 = conv(c.ch5x5, k, padding=k // 2, name="branch5x5")(branch3, train=train)
        branch4 = layers.max_pool(x, 3, 1, padding=1, ceil_mode=True)
        branch4 = conv(c.pool_proj, 1, name="pool_proj")(branch4, train=train)
        return jnp.concatenate([branch1, branch2, branch3, branch4], axis=-1)


class AuxHead(nn.Module):
    """Auxiliary classifier: avg pool -> 4x4, 1x1 conv 128, fc 1024 + ReLU, dropout, fc."""

    num_classes: int
    conv_block: Callable[..., nn.Module]
    pool: str  # "adaptive" or "caffe"
    dropout_rate: float
    weight_init: Callable
    fc1_bias_init: Callable[[int], Callable]
    classifier_bias_init: Callable[[int], Callable]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.pool == "adaptive":
            x = layers.adaptive_avg_pool(x, AUX_POOLED_SIZE)
        else:
            x = layers.avg_pool_ceil(x, 5, 3)
            if x.shape[1:3] != (AUX_POOLED_SIZE, AUX_POOLED_SIZE):
                raise ValueError(
                    f"the paper variant's aux heads need a 12 to 14 pixel 4a/4d feature map (224x224 "
                    f"input gives 14), got {x.shape[1]}x{x.shape[2]} after their 5x5/3 pool; use "
                    f"aux_logits=False or variant='torchvision' at this input size")
        x = self.conv_block(128, 1, name="conv")(x, train=train)
        # torch flattens (C, H, W); we flatten (H, W, C), and the weight converter permutes
        # fc1's input rows to match.
        x = x.reshape(x.shape[0], -1)
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32,
                                  kernel_init=self.weight_init)
        x = nn.relu(dense(1024, bias_init=self.fc1_bias_init(x.shape[-1]), name="fc1")(x))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        return dense(self.num_classes, bias_init=self.classifier_bias_init(1024), name="fc2")(x)


def min_input_size(variant: str) -> int:
    """Smallest square input whose every feature map is at least 1x1 (torchvision: 15)."""
    size = 1
    while feature_map_size(size, variant) is None:
        size += 1
    return size


def feature_map_size(size: int, variant: str) -> int | None:
    """Side of the 5b feature map for a square input of `size`, or None if a layer fails."""
    spec = VARIANTS[variant]
    size = (size + 2 * 3 - 7) // 2 + 1  # conv1 7x7/2 pad 3
    pools = (("pool1", 3, 2), ("pool2", 3, 2), ("pool3", 3, 2), ("pool4", spec.pool4_kernel, 2))
    for _, kernel, stride in pools:
        if size < 1:
            return None
        size = layers.pool_output_size(size, kernel, stride, 0, ceil_mode=True)
    return size if size >= 1 else None


class GoogLeNet(nn.Module):
    """GoogLeNet / Inception v1.

    Input: NHWC float images (N, H, W, 3). `apply(variables, x, train=False)` returns
    logits (N, num_classes) in float32 (float64 when dtype is float64). With `train=True`
    and `aux_logits=True` it returns `GoogLeNetOutputs(logits, aux_logits1, aux_logits2)`.
    Parameters are float32; `dtype` is the compute dtype. `bn_axis_name` averages
    BatchNorm statistics across devices under pmap. `features=True` (with `train=False`)
    returns the 1024-d globally pooled features (N, 1024) that feed the classifier instead
    of logits, for transfer learning and retrieval.
    """

    num_classes: int = 1000
    variant: str = "torchvision"
    aux_logits: bool = True
    transform_input: bool = False
    dropout_rate: float | None = None  # None: the variant's own (0.2 torchvision, 0.4 paper)
    aux_dropout_rate: float = 0.7
    dtype: Any = jnp.float32
    bn_axis_name: str | None = None

    def _check_input(self, x):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"GoogLeNet expects NHWC images of shape (N, H, W, 3), got shape {tuple(x.shape)}")
        smallest = min_input_size(self.variant)
        if min(x.shape[1:3]) < smallest:
            raise ValueError(
                f"input {x.shape[1]}x{x.shape[2]} is too small for the {self.variant} GoogLeNet: "
                f"height and width must be at least {smallest}")

    @nn.compact
    def __call__(self, x, *, train: bool, features: bool = False):
        self._check_input(x)
        if features and train:
            raise ValueError("features=True returns the pooled features of an eval-mode pass; "
                             "use train=False")
        spec = VARIANTS[self.variant]
        conv = functools.partial(
            ConvBlock, batch_norm=spec.batch_norm, weight_init=spec.weight_init,
            bias_init=nn.initializers.constant(spec.conv_bias), bn_axis_name=self.bn_axis_name,
            dtype=self.dtype)
        x = jnp.asarray(x, self.dtype)
        if self.transform_input:
            # Maps ImageNet-normalised input to the [-1, 1] range the ported weights expect.
            std, mean = jnp.asarray(IMAGENET_STD, self.dtype), jnp.asarray(IMAGENET_MEAN, self.dtype)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5

        # The pools, LRNs and the global pool are functions, not modules: they sow their outputs
        # into "intermediates" (a no-op unless that collection is mutable) for the parity tool.
        x = conv(64, 7, stride=2, padding=3, name="conv1")(x, train=train)
        x = layers.max_pool(x, 3, 2)
        self.sow("intermediates", "pool1", x)
        if spec.lrn:
            x = layers.local_response_norm(x)
            self.sow("intermediates", "lrn1", x)
        x = conv(64, 1, name="conv2")(x, train=train)
        x = conv(192, 3, padding=1, name="conv3")(x, train=train)
        if spec.lrn:
            x = layers.local_response_norm(x)
            self.sow("intermediates", "lrn2", x)
        x = layers.max_pool(x, 3, 2)
        self.sow("intermediates", "pool2", x)

        # Aux heads run in training, and at init so that their parameters exist.
        run_aux = self.aux_logits and (train or self.is_initializing())
        aux_outputs = {}
        pools = iter((("pool3", 3), ("pool4", spec.pool4_kernel)))
        for entry in INCEPTION_TABLE:
            if entry is None:
                pool_name, kernel = next(pools)
                x = layers.max_pool(x, kernel, 2)
                self.sow("intermediates", pool_name, x)
                continue
            name, channels = entry
            x = Inception(channels, conv, spec.branch5x5_kernel, name=name)(x, train=train)
            if run_aux and name in AUX_TAPS:
                head = AuxHead(
                    self.num_classes, conv, spec.aux_pool, self.aux_dropout_rate, spec.weight_init,
                    spec.aux_fc1_bias_init, spec.classifier_bias_init, self.dtype, name=AUX_TAPS[name])
                aux_outputs[AUX_TAPS[name]] = head(x, train=train)

        x = jnp.mean(x, axis=(1, 2))  # adaptive avg pool to 1x1 (Caffe: 7x7 avg pool at 224)
        self.sow("intermediates", "avgpool", x)
        out_dtype = jnp.promote_types(self.dtype, jnp.float32)
        if features:
            return x.astype(out_dtype)
        rate = spec.dropout_rate if self.dropout_rate is None else self.dropout_rate
        x = nn.Dropout(rate)(x, deterministic=not train)
        logits = nn.Dense(
            self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
            kernel_init=spec.weight_init, bias_init=spec.classifier_bias_init(x.shape[-1]),
            name="fc")(x)
        logits = logits.astype(out_dtype)
        if self.aux_logits and train:
            return GoogLeNetOutputs(logits, aux_outputs["aux1"].astype(out_dtype),
                                    aux_outputs["aux2"].astype(out_dtype))
        return logits
