"""The flax.linen modules GoogLeNet builds its blocks with (model/network.py), and the forms
some layers are computed in.

    ConvBlock    conv -> BatchNorm or bias -> ReLU (torchvision's BasicConv2d, Caffe's conv + ReLU)
    Inception    a block of several parts (architecture.Block), concatenated: the reduced module,
                 the naive one, or a fork's
    AuxHead      an auxiliary classifier
    ComputeForms the speed forms: merged 1x1 convolutions, separable max pools, CPU gradient forms

`GoogLeNet(blocks=Blocks(...))` swaps these classes for a fork's.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from googlenet_jax.model import architecture as arch
from googlenet_jax.model import convolution, layers


@dataclasses.dataclass(frozen=True)
class ComputeForms:
    """How some layers are computed: every form gives the same function (up to rounding) and
    the same parameters, so checkpoints do not care. Each is a speed lever that benchmarks
    switch off with `model.clone(forms=ComputeForms(...))` to measure what it gives.

    merged_1x1: an Inception module's three 1x1 convolutions that read its input run as one
      convolution over their concatenated kernels (BatchNorm stays per block).
    separable_max_pool: max pools as a W-then-H running max of strided slices instead of one
      `reduce_window` (whose gradient, select_and_scatter, is slow on XLA:CPU).
    cpu_conv_gradients: on the CPU, 1x1 convolutions as matrix products and large-map kernel
      gradients as per-tap products (`convolution.conv2d`); elsewhere XLA's own either way.
    """

    merged_1x1: bool = True
    separable_max_pool: bool = True
    cpu_conv_gradients: bool = True


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
    weight_init: Callable = arch.torchvision_weight_init
    bias_init: Callable = nn.initializers.zeros
    bn_axis_name: str | None = None
    bn_running_var: str = "biased"
    dtype: Any = jnp.float32
    cpu_conv_gradients: bool = True

    def setup(self):
        self.conv = ConvParams(self.features, self.kernel, not self.batch_norm, self.weight_init,
                               self.bias_init)
        if self.batch_norm:
            # torch momentum 0.1 == flax momentum 0.9.
            self.bn = nn.BatchNorm(momentum=0.9, epsilon=arch.BN_EPSILON, dtype=self.dtype, param_dtype=jnp.float32,
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
            unbiased = train and self.bn_running_var == "unbiased" and not self.is_initializing()
            old_var = self.bn.get_variable("batch_stats", "var") if unbiased else None
            y_count = y.size // y.shape[-1]  # values per channel in this device's batch
            y = self.bn(y, use_running_average=not train)
            if unbiased:
                self._unbias_running_var(old_var, y_count)
        return nn.relu(y)

    def _unbias_running_var(self, old_var, count: int):
        """torch's rule: the running variance mixes in the unbiased batch variance.

        Flax stored new = m * old + (1 - m) * v with v the biased batch variance; torch's
        m * old + (1 - m) * v * n / (n - 1) is new + (new - m * old) / (n - 1), which reads only
        the two stored values: no second pass over the activations, and no rounding beyond a bit.
        """
        if self.bn_axis_name is not None:  # the statistics are over every device's shard
            count = count * jax.lax.axis_size(self.bn_axis_name)
        if count < 2:
            return  # one value per channel has no unbiased variance (torch gives inf there)
        new_var = self.bn.get_variable("batch_stats", "var")
        self.bn.put_variable("batch_stats", "var",
                             new_var + (new_var - self.bn.momentum * old_var) / (count - 1))

    def __call__(self, x, *, train: bool):
        kernel, bias = self.weights(x.shape[-1])
        y = convolution.conv2d(jnp.asarray(x, self.dtype), kernel, stride=self.stride, padding=self.padding,
                               cpu_gradients=self.cpu_conv_gradients)
        return self.activate(y, bias, train=train)


def shared_input_1x1(blocks, x, *, train: bool, cpu_conv_gradients: bool = True):
    """Several 1x1 ConvBlocks applied to the same input, as one convolution.

    The kernels are concatenated on their output channels at apply time, so each block keeps
    its own parameters (and names); the result is split back and each block finishes on its
    own channels. One wide matrix product reads the input once instead of once per block.
    """
    weights = [block.weights(x.shape[-1]) for block in blocks]
    kernel = jnp.concatenate([kernel for kernel, _ in weights], axis=-1)
    y = convolution.conv2d(jnp.asarray(x, kernel.dtype), kernel, cpu_gradients=cpu_conv_gradients)
    splits = list(itertools.accumulate(kernel.shape[-1] for kernel, _ in weights))[:-1]
    return [block.activate(part, bias, train=train)
            for block, part, (_, bias) in zip(blocks, jnp.split(y, splits, axis=-1), weights)]


def _parameter_free(layer, x, forms: ComputeForms):
    """A max pool or LRN (architecture.MaxPool, architecture.LRN) on x."""
    if isinstance(layer, arch.MaxPool):
        return layers.max_pool(x, layer.kernel, layer.stride, padding=layer.padding,
                               separable=forms.separable_max_pool)
    return layers.local_response_norm(x, layer.size, layer.alpha, layer.beta, layer.bias)


def layer_module(layer, conv_block: Callable[..., nn.Module], forms: ComputeForms, name: str):
    """A block's part as a function of (x, train): a `conv_block` module named `name` for a
    convolution, else the parameter-free layer."""
    if isinstance(layer, arch.Conv):
        return conv_block(layer.features, layer.kernel, stride=layer.stride, padding=layer.padding, name=name)
    return lambda x, train: _parameter_free(layer, x, forms)


def _reads_input_1x1(part: arch.Part) -> bool:
    layer = part.layer
    return not part.input and isinstance(layer, arch.Conv) and (layer.kernel, layer.stride, layer.padding) == (1, 1, 0)


class Inception(nn.Module):
    """A block of several parts (architecture.Block: the reduced module of Figure 2b, the naive
    one of Figure 2a, or a fork's), computed in order and concatenated on channels.

    Returns the concatenation, or with `parts=True` (concatenation, {part name: output}).
    """

    block: arch.Block
    conv_block: Callable[..., nn.Module]
    forms: ComputeForms = ComputeForms()

    @nn.compact
    def __call__(self, x, *, train: bool, parts: bool = False):
        modules = {part.name: layer_module(part.layer, self.conv_block, self.forms, part.name)
                   for part in self.block.parts}
        out = {"": x}
        merged = [part.name for part in self.block.parts if _reads_input_1x1(part)]
        if self.forms.merged_1x1 and len(merged) > 1:  # the 1x1 convolutions that read the input, as one
            out.update(zip(merged, shared_input_1x1([modules[name] for name in merged], x, train=train,
                                                    cpu_conv_gradients=self.forms.cpu_conv_gradients)))
        for part in self.block.parts:
            if part.name not in out:
                out[part.name] = modules[part.name](out[part.input], train=train)
        y = jnp.concatenate([out[name] for name in self.block.outputs], axis=-1)
        return (y, {name: value for name, value in out.items() if name}) if parts else y


class AuxHead(nn.Module):
    """Auxiliary classifier: avg pool -> 4x4, 1x1 conv 128, fc 1024 + ReLU, dropout, fc
    (`features`: the conv's and fc1's widths)."""

    num_classes: int
    conv_block: Callable[..., nn.Module]
    pool: str  # "adaptive" or "caffe"
    dropout_rate: float
    weight_init: Callable
    fc1_bias_init: Callable[[int], Callable]
    classifier_bias_init: Callable[[int], Callable]
    dtype: Any = jnp.float32
    features: tuple[int, int] = (128, 1024)

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.pool == "adaptive":
            x = layers.adaptive_avg_pool(x, arch.AUX_POOLED_SIZE)
        else:
            x = layers.avg_pool_ceil(x, 5, 3)
            if x.shape[1:3] != (arch.AUX_POOLED_SIZE, arch.AUX_POOLED_SIZE):
                raise ValueError(
                    f"the paper variant's aux heads need a 12 to 14 pixel 4a/4d feature map (224x224 "
                    f"input gives 14), got {x.shape[1]}x{x.shape[2]} after their 5x5/3 pool; use "
                    f"aux_logits=False or variant='torchvision' at this input size")
        conv_features, fc1_features = self.features
        x = self.conv_block(conv_features, 1, name="conv")(x, train=train)
        # torch flattens (C, H, W); we flatten (H, W, C), and the weight converter permutes
        # fc1's input rows to match.
        x = x.reshape(x.shape[0], -1)
        dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32,
                                  kernel_init=self.weight_init)
        x = nn.relu(dense(fc1_features, bias_init=self.fc1_bias_init(x.shape[-1]), name="fc1")(x))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        return dense(self.num_classes, bias_init=self.classifier_bias_init(fc1_features), name="fc2")(x)
