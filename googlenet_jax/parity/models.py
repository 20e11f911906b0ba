"""The two models both parts of parity compare: ours (Flax) and the torch reference holding the
same weights, and what both parts do to them, written once.

    pair = load(weights_path_or_None, variant=..., transform_input=..., seed=...)   # ModelPair
    check_image_size(variant, size)   reference_text(variant)
    torch_copy(net, dtype, train)     to_nchw(images, dtype)     # the torch side's model and inputs
    precision(dtype)                  cast_tree(variables, dtype)  # ours in the comparison's dtype

`load` is the one place a parity run builds a model: a fork whose GoogLeNet takes other fields
changes them here. Imports torch; import it before anything imports TensorFlow (torchvision
crashes when it is imported after TensorFlow in one process).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from googlenet_jax.commands.common import UsageError
from googlenet_jax.model import architecture
from googlenet_jax.model.network import GoogLeNet
from googlenet_jax.parity import references
from googlenet_jax.weights import torch_layout


@dataclasses.dataclass
class ModelPair:
    ours: Any  # our GoogLeNet module (float32 compute; each part sets the dtype it compares in)
    variables: dict  # {"params"[, "batch_stats"]}: the reference's weights in our layout
    torch_net: torch.nn.Module  # the reference, float32
    variant: str
    described: str  # where the weights come from, as the report's header says it


def load(weights: str | None, *, variant: str | None = None, transform_input: bool | None = None,
         num_classes: int = 1000, seed: int = 0, dtype=np.float32) -> ModelPair:
    """Both models holding the same weights: a torchvision-layout .pth's (its variant detected
    unless `variant` is given; its class count and aux heads follow its keys), else random
    He-scaled ones from `seed` (`variant` default "torchvision", `num_classes` classes).

    transform_input: torchvision's input transform on both sides (default: on for the
    torchvision variant, as its pretrained builder sets it). `dtype`: the numpy dtype of
    `variables`' floats. Raises UsageError for an unreadable or mismatched file.
    """
    if weights:
        try:
            state_dict = torch_layout.load_torch_state_dict(weights)
        except ValueError as error:
            raise UsageError(str(error)) from None
        variant = variant or torch_layout.detect_variant(state_dict)
        state_dict = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
        try:  # before torch's load_state_dict: the converter names a wrong key or shape
            variables = torch_layout.torchvision_to_flax(_numpy(state_dict, dtype), variant=variant)
        except ValueError as error:
            raise UsageError(f"{weights}: {error}") from None
        transform_input = _transform_input(variant, transform_input)
        torch_net = references.from_state_dict(state_dict, variant, transform_input=transform_input)
        described = weights
    else:
        variant = variant or "torchvision"
        transform_input = _transform_input(variant, transform_input)
        torch_net = references.build(variant, num_classes=num_classes, transform_input=transform_input,
                                     seed=seed)
        statistics = ", randomised BatchNorm statistics" if variant == "torchvision" else ""
        described = f"random (He-scaled{statistics}, seed {seed})"
        variables = torch_layout.torchvision_to_flax(_numpy(torch_net.state_dict(), dtype), variant=variant)
    params = variables["params"]
    ours = GoogLeNet(num_classes=int(params["fc"]["kernel"].shape[-1]), variant=variant,
                     aux_logits="aux1" in params, transform_input=transform_input)
    return ModelPair(ours, variables, torch_net, variant, described)


def _transform_input(variant: str, transform_input: bool | None) -> bool:
    if transform_input is None:
        return variant == "torchvision"
    if transform_input and variant != "torchvision":
        raise UsageError("--transform_input on is a torchvision option; the paper variant has none")
    return transform_input


def _numpy(state_dict, dtype) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(dtype) if v.is_floating_point() else v.numpy()
            for k, v in state_dict.items()}


def check_image_size(variant: str, size: int) -> None:
    """UsageError when `size` is below the smallest input the variant's network takes."""
    smallest = architecture.min_input_size(variant)
    if size < smallest:
        raise UsageError(f"--image_size {size} is too small for the {variant} GoogLeNet (at least {smallest})")


def reference_text(variant: str) -> str:
    """The torch reference of `variant`, as the reports name it."""
    return ("torchvision.models.googlenet" if variant == "torchvision"
            else "BVLC Caffe's topology in torch.nn (googlenet_jax/parity/caffe_torch.py)")


def torch_copy(torch_module, dtype: str, train: bool):
    """A copy in the comparison's dtype and mode, dropout off in train mode (the caller's
    module, its running statistics included, stays untouched)."""
    net = copy.deepcopy(torch_module)
    net = net.double() if dtype == "float64" else net.float()
    net.train(train)
    if train:
        for module in net.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return net


def to_nchw(images: np.ndarray, dtype: str) -> torch.Tensor:
    """Our NHWC images (..., H, W, 3) as the torch reference takes them: NCHW in `dtype`."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images, dtype).transpose(0, 3, 1, 2)))


def cast_tree(tree, dtype: str):
    """Every float array of `tree` as numpy `dtype`; other arrays as they are."""
    return jax.tree.map(lambda a: np.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating)
                        else np.asarray(a), tree)


def jnp_dtype(dtype: str):
    return jnp.float64 if dtype == "float64" else jnp.float32


def precision(dtype: str):
    """jax's float64 mode for float64 comparisons."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
