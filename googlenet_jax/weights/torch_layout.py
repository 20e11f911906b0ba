"""Torch state_dicts in torchvision's googlenet layout <-> our Flax variables.

    torchvision_to_flax(state_dict, variant="torchvision") -> {"params"[, "batch_stats"]}
    flax_to_torchvision(variables) -> state_dict for torchvision's googlenet(...) (strict)

Both variants use torchvision's key names: the "paper" variant's state_dict has biased convs
and no BatchNorm (`conv1.conv.weight`, `conv1.conv.bias`, ...), the layout of the torch.nn
port of BVLC Caffe in googlenet_jax/parity/caffe_torch.py. Layout changes: conv weights OIHW
<-> HWIO, linear weights (out, in) <-> (in, out), and the aux heads' fc1 input rows
(C, H, W) <-> (H, W, C) because we flatten NHWC maps. Each Inception part's torchvision name
comes from its block's description (model/architecture.py, `Part.torch_name`).

`googlenet_jax.convert` exposes these as `torchvision_to_flax` / `flax_to_torchvision`.
"""
from __future__ import annotations

import functools
import io
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from googlenet_jax.errors import first_line
from googlenet_jax.model import architecture as arch
from googlenet_jax.model import network
from googlenet_jax.weights import paths, trees

TORCH_INSTALL = "pip install torch==2.14.1 torchvision==0.29.1"


def _conv_entries(path: str, prefix: str, variant: str) -> list:
    entries = [(f"{prefix}.conv.weight", f"params/{path}/conv/kernel", "conv")]
    if arch.variant_spec(variant).batch_norm:
        entries += [
            (f"{prefix}.bn.weight", f"params/{path}/bn/scale", "copy"),
            (f"{prefix}.bn.bias", f"params/{path}/bn/bias", "copy"),
            (f"{prefix}.bn.running_mean", f"batch_stats/{path}/bn/mean", "copy"),
            (f"{prefix}.bn.running_var", f"batch_stats/{path}/bn/var", "copy"),
        ]
    else:
        entries.append((f"{prefix}.conv.bias", f"params/{path}/conv/bias", "copy"))
    return entries


def _dense_entries(path: str, prefix: str, kind: str) -> list:
    return [(f"{prefix}.weight", f"params/{path}/kernel", kind), (f"{prefix}.bias", f"params/{path}/bias", "copy")]


def _backbone_entries(model: network.GoogLeNet) -> list:
    """The convolutions of the backbone, each under the torchvision name its block gives it."""
    out, variant = [], model.variant
    for name, block in model.backbone():
        for part in block.parts:
            if not isinstance(part.layer, arch.Conv):
                continue
            if block.single:
                out += _conv_entries(name, name, variant)
            elif part.torch_name is None:
                raise ValueError(f"the {block.kind} Inception block has no torchvision layout "
                                 f"({name}/{part.name} is no torchvision module)")
            else:
                out += _conv_entries(f"{name}/{part.name}", f"{name}.{part.torch_name}", variant)
    return out


@functools.lru_cache(maxsize=None)
def entries(variant: str, aux: bool) -> tuple[tuple[str, str, str], ...]:
    """Every (torch key, our "collection/module/.../leaf" name, kind) of a state_dict, in
    torchvision's order. kind says how the array changes layout: "conv", "dense", "aux_fc1"
    or "copy"."""
    out = _backbone_entries(network.GoogLeNet(variant=variant))
    if aux:  # torchvision registers the aux heads after inception5b and before fc
        for head in ("aux1", "aux2"):
            out += _conv_entries(f"{head}/conv", f"{head}.conv", variant)
            # fc1's input rows are (C, H, W) in torch and (H, W, C) here.
            out += _dense_entries(f"{head}/fc1", f"{head}.fc1", "aux_fc1")
            out += _dense_entries(f"{head}/fc2", f"{head}.fc2", "dense")
    return tuple(out + _dense_entries("fc", "fc", "dense"))


@functools.lru_cache(maxsize=None)
def variable_shapes(variant: str, aux: bool, num_classes: int) -> dict[str, tuple[int, ...]]:
    """{"collection/module/.../leaf": shape} of torchvision's googlenet in our layout (any input size)."""
    return trees.model_shapes(network.GoogLeNet(num_classes=num_classes, variant=variant, aux_logits=aux))


def _to_flax_layout(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # OIHW -> HWIO
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if kind == "aux_fc1":  # (out, C*H*W) -> (H*W*C, out)
        side, out = arch.AUX_POOLED_SIZE, array.shape[0]
        array = array.reshape(out, -1, side, side).transpose(0, 2, 3, 1).reshape(out, -1)
        return np.ascontiguousarray(array.T)
    if kind == "dense":
        return np.ascontiguousarray(array.T)
    return array


def _to_torch_layout(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # HWIO -> OIHW
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    if kind == "aux_fc1":  # (H*W*C, out) -> (out, C*H*W)
        side, array = arch.AUX_POOLED_SIZE, array.T
        out = array.shape[0]
        return np.ascontiguousarray(array.reshape(out, side, side, -1).transpose(0, 3, 1, 2).reshape(out, -1))
    if kind == "dense":
        return np.ascontiguousarray(array.T)
    return array


def torch_shape(flax_shape: tuple, kind: str) -> tuple:
    """The shape an array of our layout has in torch's."""
    return _to_torch_layout(np.empty(flax_shape, np.uint8), kind).shape


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def detect_variant(keys) -> str:
    """The variant of a torchvision-layout state_dict: BatchNorm keys mean "torchvision"."""
    return "torchvision" if any(".bn." in k for k in keys) else "paper"


def _check_variant_of_state_dict(keys, variant: str):
    has_bn = any(".bn." in k for k in keys)
    has_conv_bias = any(k.endswith(".conv.bias") for k in keys)
    if variant == "torchvision" and has_conv_bias and not has_bn:
        raise ValueError("state_dict has conv biases and no BatchNorm keys (e.g. conv1.conv.bias): "
                         "it is a paper-variant state_dict; pass variant='paper'")
    if variant == "paper" and has_bn:
        raise ValueError("state_dict has BatchNorm keys (e.g. conv1.bn.weight): it is a "
                         "torchvision-variant state_dict; pass variant='torchvision'")


def torchvision_to_flax(state_dict: Mapping[str, Any], *, variant: str = "torchvision",
                            num_classes: int | None = None) -> dict:
    """Converts a torchvision-layout googlenet state_dict (torch tensors or numpy arrays) to Flax variables.

    Aux heads are converted when the state_dict has them (keys aux1.*, aux2.*); num_classes is
    read from fc.weight and, if given, checked. Arrays keep their dtype (float64 in, float64
    out). Returns {"params": ..., "batch_stats": ...} ("batch_stats" absent for "paper") of
    numpy arrays. Raises ValueError naming missing, unexpected or mis-shaped keys.
    """
    arch.variant_spec(variant)
    keys = set(state_dict)
    _check_variant_of_state_dict(keys, variant)
    if "fc.weight" not in keys:
        raise ValueError(f"state_dict has no key fc.weight; it does not look like a googlenet state_dict "
                         f"(first keys: {', '.join(sorted(keys)[:8])})")
    classes = int(np.shape(state_dict["fc.weight"])[0])
    if num_classes is not None and classes != num_classes:
        raise ValueError(f"fc.weight has {classes} classes (shape {tuple(np.shape(state_dict['fc.weight']))}), "
                         f"expected num_classes={num_classes}")
    aux = any(k.startswith(("aux1.", "aux2.")) for k in keys)
    shapes = variable_shapes(variant, aux, classes)
    expected = {torch_key: torch_shape(shapes[name], kind) for torch_key, name, kind in entries(variant, aux)}
    given = {k: tuple(np.shape(v)) for k, v in state_dict.items() if not k.endswith(".num_batches_tracked")}
    difference = trees.shape_difference(expected, given)
    if difference:
        raise ValueError(f"state_dict does not match the {variant} googlenet (aux heads: {aux}): {difference}")
    flat = {name: _to_flax_layout(_as_numpy(state_dict[torch_key]), kind)
            for torch_key, name, kind in entries(variant, aux)}
    return traverse_util.unflatten_dict(flat, sep="/")


def flax_to_torchvision(variables: Mapping[str, Any], *, num_batches_tracked: int = 0,
                            return_numpy: bool = False) -> dict:
    """Converts Flax variables back to a torchvision-layout googlenet state_dict (torchvision key order).

    The variant follows from the variables ("batch_stats" present: torchvision), aux heads from
    params["aux1"], num_classes from params["fc"]["kernel"]. Flax does not count BN updates, so
    every `*.bn.num_batches_tracked` is set to `num_batches_tracked`. Returns torch tensors
    (needs torch) or, with return_numpy=True, numpy arrays. Raises ValueError naming
    missing, unexpected or mis-shaped entries.
    """
    if "params" not in variables:
        raise ValueError(f"variables need a 'params' collection, got collections {sorted(variables)}")
    params = variables["params"]
    variant = "torchvision" if "batch_stats" in variables else "paper"
    if "fc" not in params or "kernel" not in params["fc"]:
        raise ValueError("variables have no params/fc/kernel; they do not look like GoogLeNet variables")
    aux = "aux1" in params or "aux2" in params
    expected = variable_shapes(variant, aux, int(np.shape(params["fc"]["kernel"])[-1]))
    difference = trees.shape_difference(expected, trees.variables_shapes(variables))
    if difference:
        raise ValueError(f"variables do not match the {variant} googlenet (aux heads: {aux}): {difference}")
    flat = trees.flatten_variables(variables)
    state_dict = {}
    for torch_key, name, kind in entries(variant, aux):
        state_dict[torch_key] = _to_torch_layout(np.asarray(flat[name]), kind)
        if torch_key.endswith(".bn.running_var"):
            count = np.array(num_batches_tracked, np.int64)
            state_dict[torch_key.removesuffix("running_var") + "num_batches_tracked"] = count
    if return_numpy:
        return state_dict
    torch = import_torch()
    return {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}


def import_torch():
    """torch, or an ImportError saying what to install (only .pth files need it)."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(f"reading and writing .pth files needs PyTorch: {TORCH_INSTALL}") from error
    return torch


def load_torch_state_dict(path: str) -> dict:
    """Reads a .pth file: a state_dict, or a checkpoint dict holding one under "state_dict" or "model".

    A "module." prefix (DataParallel) is removed.
    """
    torch = import_torch()
    if not paths.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        if paths.is_url(path):  # torch.load seeks: the object is read into memory first
            with paths.open_file(path, "rb") as f:
                path_or_buffer = io.BytesIO(f.read())
        else:
            path_or_buffer = path
        loaded = torch.load(path_or_buffer, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        first = first_line(error).split(". ")[0]
        raise ValueError(f"{path}: not a readable PyTorch file ({type(error).__name__}: {first})") from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(hasattr(v, "shape") for v in loaded.values()):
        raise ValueError(f"{path}: does not hold a state_dict (a mapping of names to tensors)")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return dict(loaded)
