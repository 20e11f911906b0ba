"""What the network's input is, as numbers: normalisation, the eval resize and crop schemes.

Shared by the model (`transform_input`), the data pipeline, the weights' metadata and the
tools, so that none of them writes a constant or a formula a second time. Pure Python: the
commands read it before they load JAX.

"torchvision": (pixel / 255 - IMAGENET_MEAN) / IMAGENET_STD, the statistics torchvision's
ImageNet weights expect (and that the model's `transform_input` undoes).
"paper": pixel - CAFFE_MEAN_RGB, the mean pixel of BVLC Caffe's GoogLeNet, in RGB order.
"""
from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # on 0..1 pixels
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_RGB = (123.0, 117.0, 104.0)  # on 0..255 pixels
NORMALIZATIONS = ("torchvision", "paper")
# torchvision's ImageNet eval: the shorter side resized to 256, then a center 224 crop.
IMAGENET_CROP_FRACTION = 224 / 256
# Evaluation views per image: a center crop, 10 crops, the paper's 144 crops (its Table 3).
EVAL_CROPS = (1, 10, 144)


def mean_std_255(kind: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel on 0..255 pixels: the model input is (pixel - mean) / std."""
    if kind == "torchvision":
        return tuple(255.0 * m for m in IMAGENET_MEAN), tuple(255.0 * s for s in IMAGENET_STD)
    if kind == "paper":
        return CAFFE_MEAN_RGB, (1.0, 1.0, 1.0)
    raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMALIZATIONS}")


def eval_resize_size(image_size: int, crop_fraction: float = IMAGENET_CROP_FRACTION) -> int:
    """The shorter side before a center `image_size` crop that keeps `crop_fraction` of it:
    256 for 224 at 224/256; the paper's 144-crop scales 256..352 are fractions 224/256..224/352."""
    return int(round(image_size / crop_fraction))
