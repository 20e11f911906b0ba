"""One loader for every weights source: `load(path) -> LoadedModel(model, variables, info)`.

`path` may be:
- a torchvision googlenet `.pth` (with or without aux heads; a paper-variant state_dict is
  recognised by its keys). `transform_input` is on for the torchvision variant, as
  torchvision's pretrained builder sets it for its ImageNet weights;
- a training workdir written by train.py (its config and latest checkpoint, the Polyak
  average when the run kept one), its `checkpoints/` folder, or one step folder
  `checkpoints/<step>`;
- the orbax checkpoint that `python -m googlenet_jax.convert to-flax` writes;
- BVLC Caffe's `bvlc_googlenet.caffemodel` (any `.caffemodel` of that net): the paper variant,
  aux heads when the file holds them (googlenet_jax/weights/caffe.py).

Each may be a local path or a gs:// URL (googlenet_jax/weights/paths.py).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np

from googlenet_jax.errors import first_line
from googlenet_jax.model import architecture as arch
from googlenet_jax.model import network
from googlenet_jax.weights import caffe, files, paths, torch_layout, trees
from googlenet_jax.weights.info import ModelInfo, WeightsError, info_from_config, pretrained_info, read_json

PTH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SOURCES_HELP = ("a torchvision googlenet .pth, BVLC's bvlc_googlenet.caffemodel, a training workdir (or its "
                "checkpoints/<step> folder), or an orbax checkpoint from `python -m googlenet_jax.convert to-flax`")
CAFFEMODEL_SUFFIX = ".caffemodel"


class LoadedModel(NamedTuple):
    """model: a GoogLeNet matching the variables; variables: {"params"[, "batch_stats"]} of
    numpy arrays; info: ModelInfo."""
    model: network.GoogLeNet
    variables: dict
    info: ModelInfo


def _load_pth(path: str) -> tuple[dict, ModelInfo]:
    try:
        state_dict = torch_layout.load_torch_state_dict(path)
    except ValueError as error:
        raise WeightsError(str(error)) from None
    keys = set(state_dict)
    if "fc.weight" not in keys or "conv1.conv.weight" not in keys:
        shown = ", ".join(sorted(keys)[:4])
        raise WeightsError(f"{path}: not a googlenet state_dict (no fc.weight / conv1.conv.weight; "
                           f"keys start {shown})")
    variant = torch_layout.detect_variant(keys)
    try:
        variables = torch_layout.torchvision_to_flax(state_dict, variant=variant)
    except ValueError as error:
        raise WeightsError(f"{path}: {error}") from None
    num_classes = int(variables["params"]["fc"]["kernel"].shape[-1])
    return variables, pretrained_info(variant, num_classes, aux_logits="aux1" in variables["params"])


def load_caffemodel(path: str) -> tuple[dict, ModelInfo]:
    """The paper variant's variables and ModelInfo from a BVLC GoogLeNet .caffemodel."""
    try:
        state_dict, aux = caffe.caffemodel_to_state_dict(path)
        variables = torch_layout.torchvision_to_flax(state_dict, variant="paper")
    except ValueError as error:
        raise WeightsError(first_line(error)) from None
    num_classes = int(variables["params"]["fc"]["kernel"].shape[-1])
    return variables, pretrained_info("paper", num_classes, aux_logits=aux)


def _load_workdir(workdir: str, step: int | None, use_average: bool) -> tuple[dict, ModelInfo]:
    config = read_json(os.path.join(workdir, files.CONFIG_FILE))
    checkpoint_dir = os.path.join(workdir, files.CHECKPOINT_DIR)
    if step is None:
        steps = files.step_folders(checkpoint_dir)
        if not steps:
            raise WeightsError(f"{workdir}: a training workdir without checkpoints "
                               f"(nothing in {checkpoint_dir})")
        step = steps[-1]
    step_dir = os.path.join(checkpoint_dir, str(step))
    try:
        state = files.restore_as_numpy(os.path.join(step_dir, files.ITEM_DIR))
    except Exception as error:  # orbax raises many types for a damaged checkpoint
        raise WeightsError(f"{step_dir}: checkpoint cannot be read "
                           f"({type(error).__name__}: {first_line(error, 200)})") from None
    if not isinstance(state, Mapping) or "params" not in state:
        raise WeightsError(f"{step_dir}: not a train.py checkpoint (no params)")
    averaged = use_average and bool(state.get("ema_params"))
    variables = {"params": state["ema_params"] if averaged else state["params"]}
    if state.get("batch_stats"):
        variables["batch_stats"] = state["batch_stats"]

    info_file = os.path.join(workdir, files.MODEL_INFO_FILE)
    if paths.exists(info_file):
        info = ModelInfo.from_json(read_json(info_file))
    else:  # a workdir from before model_info.json: ImageNet names, else class_<i>
        info = info_from_config(config, None)
    return variables, dataclasses.replace(info, workdir=workdir, step=step, averaged=averaged)


def _load_orbax(path: str) -> tuple[dict, ModelInfo]:
    try:
        variables = files.load_variables(path)
    except ValueError as error:
        raise WeightsError(str(error)) from None
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise WeightsError(f"{path}: an orbax checkpoint without 'params'; expected {SOURCES_HELP}")
    info_file = os.path.join(path, files.MODEL_INFO_FILE)
    if paths.exists(info_file):
        return variables, ModelInfo.from_json(read_json(info_file))
    params = variables["params"]
    if "fc" not in params:
        raise WeightsError(f"{path}: an orbax checkpoint without params/fc; not GoogLeNet weights")
    variant = "torchvision" if variables.get("batch_stats") else "paper"
    return variables, pretrained_info(variant, int(np.shape(params["fc"]["kernel"])[-1]),
                                      aux_logits="aux1" in params)


def _is_pth(path: str) -> bool:
    with paths.open_file(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (or, in old releases, a pickle starting 0x80).
    return path.lower().endswith(PTH_SUFFIXES) or head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _read_source(path: str, use_average: bool) -> tuple[dict, ModelInfo, str]:
    """(variables, info, source kind) for any supported path."""
    try:
        found, is_file = paths.exists(path), paths.isfile(path)
    except OSError as error:  # a bucket that cannot be read; the message names the path
        raise WeightsError(first_line(error, 200)) from None
    if not found:
        raise WeightsError(f"{path}: no such file or directory; expected {SOURCES_HELP}")
    if is_file:
        if path.lower().endswith(CAFFEMODEL_SUFFIX):
            return (*load_caffemodel(path), "caffemodel")
        if not _is_pth(path):
            raise WeightsError(f"{path}: not a recognised weights file; expected {SOURCES_HELP}")
        try:
            return (*_load_pth(path), "torchvision_pth")
        except ImportError as error:
            raise WeightsError(f"{path}: {error}") from None
    if os.path.basename(path) == files.ITEM_DIR and os.path.basename(os.path.dirname(path)).isdigit():
        path = os.path.dirname(path)  # checkpoints/<step>/default: the step folder's item
    name, parent = os.path.basename(path), os.path.dirname(path)
    if paths.exists(os.path.join(path, files.CONFIG_FILE)):
        return (*_load_workdir(path, None, use_average), "workdir")
    if name == files.CHECKPOINT_DIR and paths.exists(os.path.join(parent, files.CONFIG_FILE)):
        return (*_load_workdir(parent, None, use_average), "workdir")
    if name.isdigit() and os.path.basename(parent) == files.CHECKPOINT_DIR:
        return (*_load_workdir(os.path.dirname(parent), int(name), use_average), "workdir")
    if files.is_orbax_checkpoint(path):
        return (*_load_orbax(path), "orbax")
    raise WeightsError(f"{path}: a folder that is none of {SOURCES_HELP}")


def build_model(info: ModelInfo, path: str, dtype: Any = jnp.float32) -> network.GoogLeNet:
    """The GoogLeNet the weights were made for: `GoogLeNet(**info.model)` with the info's
    variant, class count, transform_input and aux heads, in the compute dtype asked for."""
    fields = {**info.model, "variant": info.variant, "transform_input": info.transform_input,
              "aux_logits": info.aux_logits, "dtype": dtype}
    unknown = sorted(set(fields) - {field.name for field in dataclasses.fields(network.GoogLeNet)})
    if unknown:
        raise WeightsError(f"{path}: model_info.json's model field(s) {', '.join(unknown)} are not "
                           "fields of this GoogLeNet (weights of a fork?)")
    try:
        model = network.GoogLeNet(num_classes=info.num_classes, **fields)
        model.backbone()  # an unknown variant or block
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{path}: model_info.json's model does not build: {first_line(error, 200)}") from None
    return model


def check_variables(variables: Mapping[str, Any], model: network.GoogLeNet, path: str) -> None:
    """Raises WeightsError naming every missing, unexpected or mis-shaped array."""
    expected = trees.model_shapes(model.clone(dtype=jnp.float32))
    difference = trees.shape_difference(expected, trees.variables_shapes(variables))
    if difference:
        raise WeightsError(f"{path}: weights do not match a {model.variant} GoogLeNet with "
                           f"{model.num_classes} classes: {difference}")


def load(path: str | os.PathLike, *, transform_input: bool | None = None, use_average: bool = True,
         dtype: Any = jnp.float32) -> LoadedModel:
    """Loads GoogLeNet weights from any supported source (see the module docstring).

    transform_input: None keeps the source's setting (on for a torchvision .pth), True/False
      overrides it.
    use_average: for a workdir whose run kept a Polyak average, load the average (default)
      rather than the raw parameters.
    dtype: the compute dtype of the returned model (parameters stay float32).
    Raises WeightsError (a ValueError) with one line naming the path and what was expected.
    """
    path = paths.absolute(path)
    variables, info, source = _read_source(path, use_average)
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats") and v}
    if transform_input is not None:
        info = dataclasses.replace(info, transform_input=bool(transform_input))
    info = dataclasses.replace(info, source=source, path=path)
    if not arch.known_variant(info.variant):
        raise WeightsError(f"{path}: unknown variant {info.variant!r}")
    model = build_model(info, path, dtype)
    check_variables(variables, model, path)
    return LoadedModel(model, variables, info)
