"""One loader for every weights source: `load(path) -> LoadedModel(model, variables, info)`.

`path` may be:
- a torchvision googlenet `.pth` (with or without aux heads; a paper-variant state_dict is
  recognised by its keys). `transform_input` is on for the torchvision variant, as
  torchvision's pretrained builder sets it for its ImageNet weights;
- a training workdir written by train.py (its config and latest checkpoint, the Polyak
  average when the run kept one), its `checkpoints/` folder, or one step folder
  `checkpoints/<step>`;
- the orbax checkpoint that `python -m googlenet_jax.convert to-flax` writes.

`info` (a ModelInfo) says how to feed and read the model: variant, class count, input size,
eval resize, normalisation, class names, and for a workdir its dataset. The trainer and the
converter write it as `model_info.json`, so a model carries its own metadata.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping, NamedTuple

import jax.numpy as jnp
import numpy as np

from googlenet_jax import class_names as class_names_lib
from googlenet_jax import model as model_lib
from googlenet_jax.training import checkpointing

MODEL_INFO_FILE = "model_info.json"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR, ITEM_DIR = checkpointing.CHECKPOINT_DIR, checkpointing.ITEM_DIR
PTH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SOURCES_HELP = ("a torchvision googlenet .pth, a training workdir (or its checkpoints/<step> folder), "
                "or an orbax checkpoint from `python -m googlenet_jax.convert to-flax`")


class WeightsError(ValueError):
    """A weights path that cannot be loaded; the message is one line naming the path."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a user of the weights needs besides the arrays.

    Eval preprocessing: resize the shorter side to `resize_size` (antialiased bilinear),
    center crop `image_size`, normalise (`normalization`: "torchvision" = ImageNet mean/std,
    "paper" = minus the Caffe mean pixel). `transform_input` is a field of the model.
    """
    variant: str
    num_classes: int
    class_names: tuple[str, ...]
    image_size: int = 224
    resize_size: int = 256
    normalization: str = "torchvision"
    transform_input: bool = False
    aux_logits: bool = False  # the variables hold the aux heads
    dataset: str | None = None  # training data (workdirs); evaluate's default
    data_dir: str | None = None
    eval_split: str | None = None
    source: str = ""  # "torchvision_pth", "workdir" or "orbax"
    path: str = ""
    workdir: str | None = None  # the train.py workdir the weights come from
    step: int | None = None  # the checkpoint step of a workdir
    averaged: bool = False  # the Polyak-averaged parameters were loaded

    def to_json(self) -> dict[str, Any]:
        """The fields that travel with the weights (not where or how they were loaded)."""
        data = dataclasses.asdict(self) | {"class_names": list(self.class_names)}
        return {k: v for k, v in data.items() if k not in _LOAD_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelInfo":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["class_names"] = tuple(values.get("class_names", ()))
        return cls(**values)


# Set by `load` from where the weights were found; never written to model_info.json.
_LOAD_FIELDS = ("source", "path", "workdir", "step", "averaged")


class LoadedModel(NamedTuple):
    """model: a GoogLeNet matching the variables; variables: {"params"[, "batch_stats"]} of
    numpy arrays; info: ModelInfo."""
    model: model_lib.GoogLeNet
    variables: dict
    info: ModelInfo


def write_model_info(directory: str, info: ModelInfo) -> None:
    with open(os.path.join(directory, MODEL_INFO_FILE), "w") as f:
        json.dump(info.to_json(), f, indent=2)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise WeightsError(f"{path}: not a readable JSON file ({type(error).__name__}: {error})") from None


def info_from_config(config: Mapping[str, Any], class_names: tuple[str, ...] | None) -> ModelInfo:
    """ModelInfo of a model trained with a train.py config (a ConfigDict or its JSON dict)."""
    num_classes = int(config["num_classes"])
    image_size = int(config["image_size"])
    return ModelInfo(
        variant=config["model"]["variant"], num_classes=num_classes,
        class_names=class_names_lib.resolve(num_classes, dataset=config["dataset"],
                                            dataset_names=class_names),
        image_size=image_size, resize_size=round(image_size / config["eval_crop_fraction"]),
        normalization=config["normalization"], transform_input=bool(config["model"]["transform_input"]),
        aux_logits=True, dataset=config["dataset"], data_dir=config.get("data_dir"),
        eval_split=config.get("eval_split"))


def pretrained_info(variant: str, num_classes: int, *, aux_logits: bool,
                    transform_input: bool | None = None) -> ModelInfo:
    """ModelInfo of converted torchvision-layout weights: 224 crops of a 256 resize, the
    variant's own normalisation; transform_input on for torchvision (its pretrained builder's
    setting), off for the paper variant, unless given."""
    if transform_input is None:
        transform_input = variant == "torchvision"
    return ModelInfo(
        variant=variant, num_classes=num_classes,
        class_names=class_names_lib.resolve(num_classes), normalization=variant,
        transform_input=transform_input, aux_logits=aux_logits)


# ----------------------------------------------------------------------------- sources


def _load_pth(path: str) -> tuple[dict, ModelInfo]:
    from googlenet_jax import convert

    try:
        state_dict = convert.load_torch_state_dict(path)
    except ValueError as error:
        raise WeightsError(str(error)) from None
    keys = set(state_dict)
    if "fc.weight" not in keys or "conv1.conv.weight" not in keys:
        shown = ", ".join(sorted(keys)[:4])
        raise WeightsError(f"{path}: not a googlenet state_dict (no fc.weight / conv1.conv.weight; "
                           f"keys start {shown})")
    variant = "torchvision" if any(".bn." in k for k in keys) else "paper"
    try:
        variables = convert.torchvision_to_flax(state_dict, variant=variant)
    except ValueError as error:
        raise WeightsError(f"{path}: {error}") from None
    num_classes = int(variables["params"]["fc"]["kernel"].shape[-1])
    info = pretrained_info(variant, num_classes, aux_logits="aux1" in variables["params"])
    return variables, info


def _latest_step(checkpoint_dir: str) -> int | None:
    """The newest complete step folder (orbax writes into a temporary name and renames)."""
    steps = [int(name) for name in os.listdir(checkpoint_dir)
             if name.isdigit() and os.path.isdir(os.path.join(checkpoint_dir, name))]
    return max(steps) if steps else None


def _workdir_class_names(config: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The dataset's class names for a workdir written before the trainer recorded them
    (None when the data is not on disk any more)."""
    from googlenet_jax import data
    return data.known_class_names(config["dataset"], config.get("data_dir"))


def _load_workdir(workdir: str, step: int | None, use_average: bool) -> tuple[dict, ModelInfo]:
    config = _read_json(os.path.join(workdir, CONFIG_FILE))
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    if step is None:
        step = _latest_step(checkpoint_dir) if os.path.isdir(checkpoint_dir) else None
        if step is None:
            raise WeightsError(f"{workdir}: a training workdir without checkpoints "
                               f"(nothing in {checkpoint_dir})")
    step_dir = os.path.join(checkpoint_dir, str(step))
    try:
        state = checkpointing.restore_as_numpy(os.path.join(step_dir, checkpointing.ITEM_DIR))
    except Exception as error:  # orbax raises many types for a damaged checkpoint
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise WeightsError(f"{step_dir}: checkpoint cannot be read "
                           f"({type(error).__name__}: {first[:200]})") from None
    if not isinstance(state, Mapping) or "params" not in state:
        raise WeightsError(f"{step_dir}: not a train.py checkpoint (no params)")
    averaged = use_average and bool(state.get("ema_params"))
    variables = {"params": state["ema_params"] if averaged else state["params"]}
    if state.get("batch_stats"):
        variables["batch_stats"] = state["batch_stats"]

    info_file = os.path.join(workdir, MODEL_INFO_FILE)
    if os.path.exists(info_file):
        info = ModelInfo.from_json(_read_json(info_file))
    else:
        info = info_from_config(config, _workdir_class_names(config))
    return variables, dataclasses.replace(info, workdir=workdir, step=step, averaged=averaged)


def _load_orbax(path: str) -> tuple[dict, ModelInfo]:
    from googlenet_jax import convert

    try:
        variables = convert.load_variables(path)
    except ValueError as error:
        raise WeightsError(str(error)) from None
    if not isinstance(variables, Mapping) or "params" not in variables:
        raise WeightsError(f"{path}: an orbax checkpoint without 'params'; expected {SOURCES_HELP}")
    info_file = os.path.join(path, MODEL_INFO_FILE)
    if os.path.exists(info_file):
        return variables, ModelInfo.from_json(_read_json(info_file))
    params = variables["params"]
    if "fc" not in params:
        raise WeightsError(f"{path}: an orbax checkpoint without params/fc; not GoogLeNet weights")
    variant = "torchvision" if variables.get("batch_stats") else "paper"
    return variables, pretrained_info(variant, int(np.shape(params["fc"]["kernel"])[-1]),
                                      aux_logits="aux1" in params)


def _is_orbax_checkpoint(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("_CHECKPOINT_METADATA", "_METADATA"))


def _read_source(path: str, use_average: bool) -> tuple[dict, ModelInfo, str]:
    """(variables, info, source kind) for any supported path."""
    if not os.path.exists(path):
        raise WeightsError(f"{path}: no such file or directory; expected {SOURCES_HELP}")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
        # torch.save writes a zip archive (or, in old releases, a pickle starting 0x80).
        if path.lower().endswith(PTH_SUFFIXES) or head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
            try:
                return (*_load_pth(path), "torchvision_pth")
            except ImportError as error:
                raise WeightsError(f"{path}: {error}") from None
        raise WeightsError(f"{path}: not a recognised weights file; expected {SOURCES_HELP}")
    if os.path.basename(path) == ITEM_DIR and os.path.basename(os.path.dirname(path)).isdigit():
        path = os.path.dirname(path)  # checkpoints/<step>/default: the step folder's item
    name, parent = os.path.basename(path), os.path.dirname(path)
    if os.path.exists(os.path.join(path, CONFIG_FILE)):
        return (*_load_workdir(path, None, use_average), "workdir")
    if name == CHECKPOINT_DIR and os.path.exists(os.path.join(parent, CONFIG_FILE)):
        return (*_load_workdir(parent, None, use_average), "workdir")
    if name.isdigit() and os.path.basename(parent) == CHECKPOINT_DIR:
        return (*_load_workdir(os.path.dirname(parent), int(name), use_average), "workdir")
    if _is_orbax_checkpoint(path):
        return (*_load_orbax(path), "orbax")
    raise WeightsError(f"{path}: a folder that is none of {SOURCES_HELP}")


def check_variables(variables: Mapping[str, Any], info: ModelInfo, path: str) -> None:
    """Raises WeightsError naming every missing, unexpected or mis-shaped array."""
    from googlenet_jax import convert
    from flax import traverse_util

    expected = convert.variable_shapes(info.variant, info.aux_logits, info.num_classes)
    given = {(collection, key): tuple(np.shape(leaf))
             for collection, tree in variables.items() if tree
             for key, leaf in traverse_util.flatten_dict(dict(tree)).items()}
    problems = [f"missing {'/'.join((c,) + k)}" for c, k in expected if (c, k) not in given]
    problems += [f"unexpected {'/'.join((c,) + k)}" for c, k in given if (c, k) not in expected]
    problems += [f"{'/'.join((c,) + k)} has shape {given[(c, k)]}, expected {shape}"
                 for (c, k), shape in expected.items() if (c, k) in given and given[(c, k)] != shape]
    if problems:
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise WeightsError(f"{path}: weights do not match a {info.variant} GoogLeNet with "
                           f"{info.num_classes} classes: {shown}")


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
    path = os.path.abspath(os.fspath(path))
    variables, info, source = _read_source(path, use_average)
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats") and v}
    if transform_input is not None:
        info = dataclasses.replace(info, transform_input=bool(transform_input))
    info = dataclasses.replace(info, source=source, path=path)
    if info.variant not in model_lib.VARIANTS:
        raise WeightsError(f"{path}: unknown variant {info.variant!r}")
    check_variables(variables, info, path)
    model = model_lib.GoogLeNet(
        num_classes=info.num_classes, variant=info.variant, aux_logits=info.aux_logits,
        transform_input=info.transform_input, dtype=dtype)
    return LoadedModel(model, variables, info)
