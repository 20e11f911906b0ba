"""Class names: ImageNet-1k shipped with the package, a dataset's own, or `class_<i>`.

`imagenet_classes.tsv` lists the 1000 ILSVRC 2012 classes as index, WordNet id and short
name, in the sorted-WordNet-id order that tfds `imagenet2012` and torchvision use (the
tests check it against both, so it cannot drift from either).
"""
from __future__ import annotations

import functools
import os
from typing import NamedTuple, Sequence

IMAGENET_NUM_CLASSES = 1000
IMAGENET_DATASETS = ("imagenet2012", "imagenet2012_subset", "imagenet2012_real")
_IMAGENET_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.tsv")


class ImageNetClass(NamedTuple):
    index: int
    wordnet_id: str
    name: str


@functools.lru_cache(maxsize=None)
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """The 1000 ImageNet-1k classes, index i at position i."""
    classes = []
    with open(_IMAGENET_FILE, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            index, wordnet_id, name = line.rstrip("\n").split("\t")
            classes.append(ImageNetClass(int(index), wordnet_id, name))
    assert [c.index for c in classes] == list(range(IMAGENET_NUM_CLASSES)), _IMAGENET_FILE
    return tuple(classes)


def imagenet_names() -> tuple[str, ...]:
    """Short names of the 1000 ImageNet classes ("tench", "goldfish", ...)."""
    return tuple(c.name for c in imagenet_classes())


def placeholder_names(num_classes: int) -> tuple[str, ...]:
    """("class_0", "class_1", ...) for a model whose classes nobody named."""
    return tuple(f"class_{i}" for i in range(num_classes))


def resolve(num_classes: int, *, dataset: str | None = None,
            dataset_names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The names to show for a model's classes.

    ImageNet-1k names for a 1000-class model of an ImageNet dataset (or of unknown data,
    e.g. torchvision's weights) and for names that are the ImageNet WordNet ids; else the
    dataset's own names (image folder class folders, a tfds dataset's label names); else
    `class_<i>`.
    """
    wordnet_ids = [c.wordnet_id for c in imagenet_classes()]
    if num_classes == IMAGENET_NUM_CLASSES and (
            dataset in IMAGENET_DATASETS
            or (dataset is None and dataset_names is None)
            or (dataset_names is not None and list(dataset_names) == wordnet_ids)):
        return imagenet_names()
    if dataset_names is not None and len(dataset_names) == num_classes:
        return tuple(str(n) for n in dataset_names)
    return placeholder_names(num_classes)
