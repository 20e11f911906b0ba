"""Weight conversion between torchvision's googlenet state_dict and Flax variables.

    torchvision_to_flax(state_dict, variant="torchvision") -> {"params", "batch_stats"}
    flax_to_torchvision(variables) -> state_dict for torchvision's googlenet(...) (strict)

The "paper" variant uses the same key names with biased convs and no BatchNorm
(`conv1.conv.weight`, `conv1.conv.bias`, ...), the layout of a torch.nn port of BVLC Caffe.
Layout changes: conv weights OIHW <-> HWIO, linear weights (out, in) <-> (in, out), and the
aux heads' fc1 input rows (C, H, W) <-> (H, W, C) because we flatten NHWC maps.

Command line (torch is needed for .pth files only):
    python -m googlenet_jax.convert to-flax MODEL.pth CHECKPOINT_DIR [--variant paper]
        (also writes CHECKPOINT_DIR/model_info.json: class names, input size, normalisation)
    python -m googlenet_jax.convert to-torch CHECKPOINT_DIR MODEL.pth
"""
import argparse
import functools
import os
import sys
from typing import Any, Mapping

import numpy as np

from googlenet_jax import model as model_lib

# Flax module name inside an Inception block -> torchvision's name.
INCEPTION_BRANCHES = (
    ("branch1x1", "branch1"),
    ("branch3x3_reduce", "branch2.0"),
    ("branch3x3", "branch2.1"),
    ("branch5x5_reduce", "branch3.0"),
    ("branch5x5", "branch3.1"),
    ("pool_proj", "branch4.1"),  # branch4.0 is the max pool
)
def _conv_entries(path: tuple, prefix: str, variant: str) -> list:
    entries = [(f"{prefix}.conv.weight", "params", path + ("conv", "kernel"), "conv")]
    if model_lib.VARIANTS[variant].batch_norm:
        entries += [
            (f"{prefix}.bn.weight", "params", path + ("bn", "scale"), "copy"),
            (f"{prefix}.bn.bias", "params", path + ("bn", "bias"), "copy"),
            (f"{prefix}.bn.running_mean", "batch_stats", path + ("bn", "mean"), "copy"),
            (f"{prefix}.bn.running_var", "batch_stats", path + ("bn", "var"), "copy"),
        ]
    else:
        entries.append((f"{prefix}.conv.bias", "params", path + ("conv", "bias"), "copy"))
    return entries


def _dense_entries(path: tuple, prefix: str, kind: str) -> list:
    return [(f"{prefix}.weight", "params", path + ("kernel",), kind),
            (f"{prefix}.bias", "params", path + ("bias",), "copy")]


def _entries(variant: str, aux: bool) -> list:
    """Every (torch key, flax collection, flax path, kind) of a state_dict, in torchvision's order.

    kind says how the array changes layout: "conv", "dense", "aux_fc1" or "copy".
    """
    entries = []
    for name in ("conv1", "conv2", "conv3"):
        entries += _conv_entries((name,), name, variant)
    for entry in model_lib.INCEPTION_TABLE:
        if entry is not None:
            for flax_name, torch_name in INCEPTION_BRANCHES:
                entries += _conv_entries((entry[0], flax_name), f"{entry[0]}.{torch_name}", variant)
    if aux:  # torchvision registers the aux heads after inception5b and before fc
        for head in ("aux1", "aux2"):
            entries += _conv_entries((head, "conv"), f"{head}.conv", variant)
            # fc1's input rows are (C, H, W) in torch and (H, W, C) here.
            entries += _dense_entries((head, "fc1"), f"{head}.fc1", "aux_fc1")
            entries += _dense_entries((head, "fc2"), f"{head}.fc2", "dense")
    return entries + _dense_entries(("fc",), "fc", "dense")


@functools.lru_cache(maxsize=None)
def variable_shapes(variant: str, aux: bool, num_classes: int) -> dict[tuple, tuple[int, ...]]:
    """{(collection, path): shape} of a freshly initialised model (independent of the input size)."""
    import jax
    import jax.numpy as jnp

    net = model_lib.GoogLeNet(num_classes=num_classes, variant=variant, aux_logits=aux)
    shapes = jax.eval_shape(
        lambda: net.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3), jnp.float32), train=False))
    flat = {}
    for collection, tree in shapes.items():
        for path, leaf in _flatten(tree):
            flat[(collection, path)] = tuple(leaf.shape)
    return flat


def _flatten(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _to_flax_layout(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # OIHW -> HWIO
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if kind == "aux_fc1":  # (out, C*H*W) -> (H*W*C, out)
        side = model_lib.AUX_POOLED_SIZE
        out = array.shape[0]
        array = array.reshape(out, -1, side, side).transpose(0, 2, 3, 1).reshape(out, -1)
        return np.ascontiguousarray(array.T)
    if kind == "dense":
        return np.ascontiguousarray(array.T)
    return array


def _to_torch_layout(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # HWIO -> OIHW
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    if kind == "aux_fc1":  # (H*W*C, out) -> (out, C*H*W)
        side = model_lib.AUX_POOLED_SIZE
        array = array.T
        out = array.shape[0]
        array = array.reshape(out, side, side, -1).transpose(0, 3, 1, 2).reshape(out, -1)
        return np.ascontiguousarray(array)
    if kind == "dense":
        return np.ascontiguousarray(array.T)
    return array


def _torch_shape(flax_shape: tuple, kind: str) -> tuple:
    return _to_torch_layout(np.empty(flax_shape, np.uint8), kind).shape


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _format_keys(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:8])
    return shown + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")


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
    """Converts a torchvision googlenet state_dict (torch tensors or numpy arrays) to Flax variables.

    Aux heads are converted when the state_dict has them (keys aux1.*, aux2.*); num_classes is
    read from fc.weight and, if given, checked. Arrays keep their dtype (float64 in, float64
    out). Returns {"params": ..., "batch_stats": ...} ("batch_stats" absent for "paper") of
    numpy arrays. Raises ValueError naming missing, unexpected or mis-shaped keys.
    """
    if variant not in model_lib.VARIANTS:
        raise ValueError(f"variant must be one of {sorted(model_lib.VARIANTS)}, got {variant!r}")
    keys = set(state_dict)
    _check_variant_of_state_dict(keys, variant)
    if "fc.weight" not in keys:
        raise ValueError(f"state_dict has no key fc.weight; it does not look like a googlenet state_dict "
                         f"(first keys: {_format_keys(list(keys)[:8])})")
    classes = int(np.shape(state_dict["fc.weight"])[0])
    if num_classes is not None and classes != num_classes:
        raise ValueError(f"fc.weight has {classes} classes (shape {tuple(np.shape(state_dict['fc.weight']))}), "
                         f"expected num_classes={num_classes}")
    aux = any(k.startswith(("aux1.", "aux2.")) for k in keys)
    entries = _entries(variant, aux)
    shapes = variable_shapes(variant, aux, classes)

    expected = {e[0] for e in entries}
    ignored = {k for k in keys if k.endswith(".num_batches_tracked")}
    missing, unexpected = expected - keys, keys - expected - ignored
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_format_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_format_keys(unexpected)}")
        raise ValueError(f"state_dict does not match the {variant} googlenet (aux heads: {aux}): " + "; ".join(parts))

    variables: dict = {}
    bad_shapes = []
    for torch_key, collection, path, kind in entries:
        array = _as_numpy(state_dict[torch_key])
        want = _torch_shape(shapes[(collection, path)], kind)
        if array.shape != want:
            bad_shapes.append(f"{torch_key} has shape {tuple(array.shape)}, expected {want}")
            continue
        node = variables.setdefault(collection, {})
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = _to_flax_layout(array, kind)
    if bad_shapes:
        raise ValueError("state_dict shapes do not match the googlenet: " + "; ".join(bad_shapes))
    return variables


def flax_to_torchvision(variables: Mapping[str, Any], *, num_batches_tracked: int = 0,
                        return_numpy: bool = False) -> dict:
    """Converts Flax variables back to a torchvision googlenet state_dict (torchvision key order).

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
    classes = int(np.shape(params["fc"]["kernel"])[-1])
    shapes = variable_shapes(variant, aux, classes)

    given = {(c, p): leaf for c in variables for p, leaf in _flatten(variables[c])}
    missing, unexpected = set(shapes) - set(given), set(given) - set(shapes)
    if missing or unexpected:
        name = lambda items: _format_keys(["/".join((c,) + p) for c, p in items])  # noqa: E731
        parts = ([f"missing: {name(missing)}"] if missing else []) + ([f"unexpected: {name(unexpected)}"] if unexpected else [])
        raise ValueError(f"variables do not match the {variant} googlenet (aux heads: {aux}): " + "; ".join(parts))
    bad = [f"{'/'.join((c,) + p)} has shape {tuple(np.shape(given[(c, p)]))}, expected {s}"
           for (c, p), s in shapes.items() if tuple(np.shape(given[(c, p)])) != s]
    if bad:
        raise ValueError("variable shapes do not match the googlenet: " + "; ".join(bad))

    state_dict = {}
    for torch_key, collection, path, kind in _entries(variant, aux):
        state_dict[torch_key] = _to_torch_layout(np.asarray(given[(collection, path)]), kind)
        if torch_key.endswith(".bn.running_var"):
            state_dict[torch_key[: -len("running_var")] + "num_batches_tracked"] = np.array(num_batches_tracked, np.int64)
    if return_numpy:
        return state_dict
    torch = _import_torch()
    return {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ImportError("reading and writing .pth files needs PyTorch: pip install torch") from error
    return torch


def load_torch_state_dict(path: str) -> dict:
    """Reads a .pth file: a state_dict, or a checkpoint dict holding one under "state_dict" or "model".

    A "module." prefix (DataParallel) is removed.
    """
    torch = _import_torch()
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        first = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
        raise ValueError(f"{path}: not a readable PyTorch file ({type(error).__name__}: {first})") from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(hasattr(v, "shape") for v in loaded.values()):
        raise ValueError(f"{path}: does not hold a state_dict (a mapping of names to tensors)")
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return dict(loaded)


def save_variables(path: str, variables: Mapping[str, Any]) -> None:
    """Writes variables as an orbax checkpoint directory (it must not exist yet)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    if os.path.exists(path):
        raise ValueError(f"{path}: already exists; refusing to overwrite it")
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, dict(variables))


def load_variables(path: str) -> dict:
    """Reads variables written by save_variables, as numpy arrays."""
    from googlenet_jax.training.checkpointing import restore_as_numpy

    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"{path}: no such checkpoint directory")
    try:
        return restore_as_numpy(path)
    except Exception as error:  # orbax raises many types for a damaged checkpoint
        raise ValueError(f"{path}: not a readable orbax checkpoint ({type(error).__name__})") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m googlenet_jax.convert",
        description="Convert GoogLeNet weights between a torchvision .pth file and an orbax checkpoint.")
    commands = parser.add_subparsers(dest="command", required=True)
    to_flax = commands.add_parser("to-flax", help="torchvision .pth -> orbax checkpoint directory")
    to_flax.add_argument("pth", help="torchvision googlenet state_dict (.pth)")
    to_flax.add_argument("checkpoint", help="output orbax checkpoint directory (must not exist)")
    to_flax.add_argument("--variant", default="torchvision", choices=sorted(model_lib.VARIANTS))
    to_torch = commands.add_parser("to-torch", help="orbax checkpoint directory -> torchvision .pth")
    to_torch.add_argument("checkpoint", help="orbax checkpoint directory written by to-flax")
    to_torch.add_argument("pth", help="output .pth file (must not exist)")
    args = parser.parse_args(argv)
    try:
        if args.command == "to-flax":
            from googlenet_jax import weights

            variables = torchvision_to_flax(load_torch_state_dict(args.pth), variant=args.variant)
            save_variables(args.checkpoint, variables)
            # Beside the arrays, what predict / evaluate / export need (class names included).
            weights.write_model_info(args.checkpoint, weights.pretrained_info(
                args.variant, int(variables["params"]["fc"]["kernel"].shape[-1]),
                aux_logits="aux1" in variables["params"]))
            print(f"wrote {args.checkpoint}")
        else:
            if os.path.exists(args.pth):
                raise ValueError(f"{args.pth}: already exists; refusing to overwrite it")
            state_dict = flax_to_torchvision(load_variables(args.checkpoint))
            _import_torch().save(state_dict, args.pth)
            print(f"wrote {args.pth}")
    except (ValueError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
