"""Input normalisation constants, shared by the model, the data pipeline and the tools.

"torchvision": (pixel / 255 - IMAGENET_MEAN) / IMAGENET_STD, the statistics torchvision's
ImageNet weights expect (and that the model's `transform_input` undoes).
"paper": pixel - CAFFE_MEAN_RGB, the mean pixel of BVLC Caffe's GoogLeNet, in RGB order.
"""
from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # on 0..1 pixels
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_RGB = (123.0, 117.0, 104.0)  # on 0..255 pixels
NORMALIZATIONS = ("torchvision", "paper")


def mean_std_255(kind: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel on 0..255 pixels: the model input is (pixel - mean) / std."""
    if kind == "torchvision":
        return tuple(255.0 * m for m in IMAGENET_MEAN), tuple(255.0 * s for s in IMAGENET_STD)
    if kind == "paper":
        return CAFFE_MEAN_RGB, (1.0, 1.0, 1.0)
    raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMALIZATIONS}")
