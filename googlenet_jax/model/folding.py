"""BatchNorm folded into the convolutions, for inference: one biased convolution per block.

In eval mode a ConvBlock computes relu(BN(x * k)) with BN(y) = (y - mean) * s + offset and
s = scale / sqrt(var + eps), per output channel. That is relu(x * (k s) + (offset - mean s)):
a convolution with kernel k s and a bias, and no BatchNorm. `fold_batch_norm` rewrites the
weights that way (computed in float64, stored in the weights' dtype) and returns the network
built with biased convolutions (`GoogLeNet(batch_norm_folded=True)`), which computes the same
function up to float rounding with a multiply-add less per activation. The paper variant has
no BatchNorm and comes back unchanged.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from googlenet_jax.model.architecture import BN_EPSILON, variant_spec


def fold_block(block: Mapping[str, Any], stats: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """(kernel HWIO, bias) of a ConvBlock's parameters {"conv": ..., "bn": ...} and its
    batch_stats {"bn": {"mean", "var"}}, in the kernel's dtype (float32, or float64 for float64
    weights); a block without BatchNorm keeps its kernel and bias."""
    dtype = np.result_type(np.asarray(block["conv"]["kernel"]).dtype, np.float32)
    kernel = np.asarray(block["conv"]["kernel"], np.float64)
    bias = np.asarray(block["conv"].get("bias", np.zeros(kernel.shape[-1])), np.float64)
    if "bn" in block:
        bn = {k: np.asarray(v, np.float64) for k, v in (*block["bn"].items(), *stats["bn"].items())}
        scale = bn["scale"] / np.sqrt(bn["var"] + BN_EPSILON)
        kernel = kernel * scale  # HWIO: the output channel is the last axis
        bias = bn["bias"] + (bias - bn["mean"]) * scale
    return kernel.astype(dtype), bias.astype(dtype)


def _fold_tree(params: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    folded = {}
    for name, value in params.items():
        if isinstance(value, Mapping) and "conv" in value and "bn" in value:  # a ConvBlock with BatchNorm
            kernel, bias = fold_block(value, stats[name])
            folded[name] = {"conv": {"kernel": kernel, "bias": bias}}
        elif isinstance(value, Mapping):
            folded[name] = _fold_tree(value, stats.get(name, {}))
        else:
            folded[name] = value
    return folded


def fold_batch_norm(model, variables: Mapping[str, Any]):
    """(model, variables) -> (the eval-only model with biased convolutions, {"params": folded}).

    Raises ValueError for variables without the BatchNorm statistics the model needs."""
    if model.batch_norm_folded or not variant_spec(model.variant).batch_norm:  # nothing to fold
        return model, variables
    if "batch_stats" not in variables:
        raise ValueError("folding BatchNorm needs the variables' batch_stats (running mean and variance)")
    params = _fold_tree(variables["params"], variables["batch_stats"])
    return model.clone(batch_norm_folded=True), {"params": params}
