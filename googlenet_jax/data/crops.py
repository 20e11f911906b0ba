"""Evaluation crop geometry: center crop, 10 crops and the paper's 144 crops.

A view of an image is: resize the whole image to `resize_hw`, cut `box`
([top, left, height, width] in the resized image), resize that box to the model's input
size if it is not already that size, and mirror it if `flip`. Geometry is computed with
TensorFlow ops so it works on the dynamic shapes inside tf.data; called eagerly with
Python ints it gives concrete numbers (the tests check them against hand-computed boxes).

Rounding follows torchvision: resizing the shorter side to s makes the longer side
floor(long * s / short); a centered box of side c in length L starts at round((L - c) / 2)
with Python's round-half-to-even (so 117 / 2 -> 58 but 119 / 2 -> 60).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from googlenet_jax.data import preprocess
from googlenet_jax.model.input_spec import EVAL_CROPS, eval_resize_size

# The paper's test scales for a 224 input: the shorter side resized to each of these.
PAPER_SCALES_224 = (256, 288, 320, 352)


@dataclasses.dataclass(frozen=True)
class View:
    resize_hw: tf.Tensor  # int32 [2]
    box: tf.Tensor  # int32 [4]: top, left, height, width in the resized image
    flip: bool
    resize_box: bool  # the box is larger than the model input and is resized down to it


def resize_shorter_side_hw(height, width, size) -> tf.Tensor:
    """int32 [new_h, new_w] with min(new_h, new_w) == size, the other floor(long * size / short)."""
    h, w = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    s = tf.cast(size, tf.int64)
    new_h = tf.where(h <= w, s, s * h // w)
    new_w = tf.where(h <= w, s * w // h, s)
    return tf.cast(tf.stack([new_h, new_w]), tf.int32)


def center_offset(length, size) -> tf.Tensor:
    """int32 start of a centered `size` box in `length`: torchvision's int(round((length - size) / 2)).

    tf.round rounds half to even, as Python's round does.
    """
    slack = tf.cast(tf.cast(length, tf.int32) - size, tf.float64)
    return tf.cast(tf.round(slack / 2.0), tf.int32)


def center_box(height, width, size) -> tf.Tensor:
    """[top, left, size, size] of the centered size x size box."""
    return tf.stack([center_offset(height, size), center_offset(width, size), tf.constant(size),
                     tf.constant(size)])


def five_boxes(height, width, size) -> tf.Tensor:
    """int32 [5, 4]: top-left, top-right, bottom-left, bottom-right, center size x size boxes."""
    h, w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    s = tf.constant(size, tf.int32)
    zero = tf.constant(0, tf.int32)
    corners = [(zero, zero), (zero, w - s), (h - s, zero), (h - s, w - s)]
    boxes = [tf.stack([t, l, s, s]) for t, l in corners]
    return tf.stack(boxes + [center_box(h, w, size)])


def three_squares(height, width) -> tf.Tensor:
    """int32 [3, 4]: squares of side min(h, w) at left/center/right (landscape) or top/center/bottom."""
    h, w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    side = tf.minimum(h, w)
    slack = tf.maximum(h, w) - side
    offsets = [tf.constant(0, tf.int32), slack // 2, slack]
    landscape = w >= h
    boxes = []
    for o in offsets:
        top = tf.where(landscape, 0, o)
        left = tf.where(landscape, o, 0)
        boxes.append(tf.stack([top, left, side, side]))
    return tf.stack(boxes)


def center_crop_views(height, width, image_size: int, resize_size: int | None = None) -> list[View]:
    """1 view: shorter side to resize_size (default eval_resize_size(image_size)), centered
    image_size box. resize_size=image_size keeps the whole (square) image."""
    hw = resize_shorter_side_hw(height, width, resize_size or eval_resize_size(image_size))
    return [View(hw, center_box(hw[0], hw[1], image_size), False, False)]


def ten_crop_views(height, width, image_size: int, resize_size: int | None = None) -> list[View]:
    """10 views (torchvision TenCrop order): the 5 boxes of `five_boxes`, then their mirrors."""
    hw = resize_shorter_side_hw(height, width, resize_size or eval_resize_size(image_size))
    boxes = five_boxes(hw[0], hw[1], image_size)
    return [View(hw, boxes[i], flip, False) for flip in (False, True) for i in range(5)]


def multi_crop_144_views(height, width, image_size: int) -> list[View]:
    """The paper's 144 views, in this order (outermost first):

    4 scales (shorter side 256, 288, 320, 352 for image_size 224, scaled with image_size)
    x 3 squares (`three_squares`) x 6 crops (the square's 4 corner and center image_size boxes,
    then the whole square resized to image_size) x 2 (as is, mirrored).
    """
    views = []
    for scale in PAPER_SCALES_224:
        hw = resize_shorter_side_hw(height, width, eval_resize_size(image_size, 224 / scale))
        squares = three_squares(hw[0], hw[1])
        for q in range(3):
            square = squares[q]
            side = square[2]
            inner = five_boxes(side, side, image_size) + tf.stack([square[0], square[1], 0, 0])
            crops = [(inner[i], False) for i in range(5)] + [(square, True)]
            for box, resize_box in crops:
                for flip in (False, True):
                    views.append(View(hw, box, flip, resize_box))
    return views


def views_for(height, width, image_size: int, crops: int, resize_size: int | None = None) -> list[View]:
    """resize_size (the shorter side before cropping) applies to 1 and 10 crops; the 144-crop
    scheme has its own four scales."""
    if crops == 1:
        return center_crop_views(height, width, image_size, resize_size)
    if crops == 10:
        return ten_crop_views(height, width, image_size, resize_size)
    if crops == 144:
        return multi_crop_144_views(height, width, image_size)
    raise ValueError(f"crops must be one of {EVAL_CROPS}, got {crops}")


def extract_views(image: tf.Tensor, views: list[View], image_size: int,
                  method: str = "bilinear") -> tf.Tensor:
    """float32 (len(views), image_size, image_size, 3), 0..255, from a decoded (H, W, 3) image."""
    resized = {}  # One resize per scale, shared by its views.
    out = []
    for v in views:
        key = id(v.resize_hw)
        if key not in resized:
            resized[key] = preprocess.resize(image, v.resize_hw, method)
        x = preprocess.crop(resized[key], v.box)
        if v.resize_box:
            x = preprocess.resize(x, image_size, method)
        x = tf.ensure_shape(x, [image_size, image_size, 3])
        out.append(tf.image.flip_left_right(x) if v.flip else x)
    return tf.stack(out)


def eval_crops(image: tf.Tensor, image_size: int, crops: int = 1, resize_size: int | None = None) -> tf.Tensor:
    """Decoded uint8 (H, W, 3) -> float32 0..255: (S, S, 3) for crops=1, else (crops, S, S, 3)."""
    shape = tf.shape(image)
    views = views_for(shape[0], shape[1], image_size, crops, resize_size)
    out = extract_views(image, views, image_size)
    return out[0] if crops == 1 else out
