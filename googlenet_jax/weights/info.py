"""ModelInfo: what a user of the weights needs besides the arrays, written beside them.

The trainer and the converter write it as `model_info.json`, so a model carries its own
metadata: variant, class count and names, input size, eval resize, normalisation, and for a
training workdir its dataset.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

from googlenet_jax.model import input_spec
from googlenet_jax.weights import class_names as class_names_lib
from googlenet_jax.weights import paths
from googlenet_jax.weights.files import MODEL_INFO_FILE


class WeightsError(ValueError):
    """A weights path that cannot be loaded; the message is one line naming the path."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a user of the weights needs besides the arrays.

    Eval preprocessing: resize the shorter side to `resize_size` (antialiased bilinear),
    center crop `image_size`, normalise (`normalization`: "torchvision" = ImageNet mean/std,
    "paper" = minus the Caffe mean pixel). `transform_input` is a field of the model.
    `model`: the network's fields as the run's config.model gave them (`GoogLeNet(**model)`;
    empty for weights made before they were recorded, and for converted ones: the defaults);
    `variant`, `transform_input` and `aux_logits` above take precedence over its entries.
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
    source: str = ""  # "torchvision_pth", "caffemodel", "workdir" or "orbax"
    path: str = ""
    workdir: str | None = None  # the train.py workdir the weights come from
    step: int | None = None  # the checkpoint step of a workdir
    averaged: bool = False  # the Polyak-averaged parameters were loaded
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The fields that travel with the weights (not where or how they were loaded)."""
        data = dataclasses.asdict(self) | {"class_names": list(self.class_names), "model": dict(self.model)}
        return {k: v for k, v in data.items() if k not in _LOAD_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelInfo":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["class_names"] = tuple(values.get("class_names", ()))
        values["model"] = dict(values.get("model") or {})
        return cls(**values)


# Set by `load` from where the weights were found; never written to model_info.json.
_LOAD_FIELDS = ("source", "path", "workdir", "step", "averaged")


def write_model_info(directory: str, info: ModelInfo) -> None:
    with paths.open_file(os.path.join(directory, MODEL_INFO_FILE), "w") as f:
        json.dump(info.to_json(), f, indent=2)


def read_json(path: str) -> dict:
    """A JSON file's contents, or a WeightsError naming the file."""
    try:
        with paths.open_file(path) as f:
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
        image_size=image_size, resize_size=input_spec.eval_resize_size(image_size, config["eval_crop_fraction"]),
        normalization=config["normalization"], transform_input=bool(config["model"]["transform_input"]),
        aux_logits=True, dataset=config["dataset"], data_dir=config.get("data_dir"),
        eval_split=config.get("eval_split"), model=dict(config["model"]))


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
