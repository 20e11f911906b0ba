"""Preprocessing ops on one image; each works eagerly and inside tf.data.

Images are HWC: uint8 straight from the decoder, float32 (0..255 scale) after a resize.
Random ops are stateless: they take a `seed`, an int32/int64 tensor of shape [2], so the
same seed always gives the same output (determinism and exact resumption rest on this).
"""
from __future__ import annotations

import tensorflow as tf

from googlenet_jax.model.input_spec import CAFFE_MEAN_RGB, IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS


def graph_function(fn):
    """`fn` for tf.data as written, without autograph's rewriting: these functions branch on
    tensors with tf.cond and on Python values only, and converting them took ~2 s of every
    train.py start."""
    return tf.autograph.experimental.do_not_convert(fn)


# Interpolations drawn by `random_resize` (the paper's "random interpolation methods").
RANDOM_RESIZE_METHODS = ("bilinear", "area", "bicubic", "nearest")


# libjpeg's accurate integer IDCT: the pixels PIL (and so torchvision) decodes, bit for bit;
# TensorFlow's default (the fast IDCT) differs by up to 16 levels, about 1 on average.
JPEG_DCT_METHOD = "INTEGER_ACCURATE"


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """JPEG, PNG, GIF or BMP bytes -> uint8 (H, W, 3); grayscale is replicated, alpha dropped."""
    def jpeg():
        return tf.io.decode_jpeg(encoded, channels=3, dct_method=JPEG_DCT_METHOD)

    def other():
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    image.set_shape([None, None, 3])
    return image


def image_shape(image_or_encoded: tf.Tensor) -> tf.Tensor:
    """int32 [height, width] of a decoded image, or of encoded JPEG/PNG bytes (header only for JPEG)."""
    if image_or_encoded.dtype != tf.string:
        return tf.shape(image_or_encoded)[:2]
    return tf.cond(
        tf.io.is_jpeg(image_or_encoded),
        lambda: tf.image.extract_jpeg_shape(image_or_encoded)[:2],
        lambda: tf.shape(decode_image(image_or_encoded))[:2])


def sample_inception_box(shape: tf.Tensor, seed: tf.Tensor, *, min_area: float = 0.08,
                         max_area: float = 1.0, min_aspect: float = 3 / 4,
                         max_aspect: float = 4 / 3) -> tf.Tensor:
    """A random crop box [top, left, height, width] (int32) of an image of `shape` [H, W].

    Area is a fraction in [min_area, max_area] of the image, width/height in
    [min_aspect, max_aspect]; after 10 failed draws the whole image.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([tf.cast(shape, tf.int32), [3]], 0),
        bounding_boxes=tf.zeros([1, 0, 4], tf.float32),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(min_aspect, max_aspect),
        area_range=(min_area, max_area),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def crop(image: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """image[top:top+height, left:left+width] for box [top, left, height, width]."""
    return image[box[0]:box[0] + box[2], box[1]:box[1] + box[3]]


def decode_and_crop(encoded: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """Decodes only `box` of a JPEG (fused, much faster); decodes then crops a PNG. uint8 (h, w, 3)."""
    def jpeg():
        return tf.image.decode_and_crop_jpeg(encoded, box, channels=3, dct_method=JPEG_DCT_METHOD)
    image = tf.cond(tf.io.is_jpeg(encoded), jpeg, lambda: crop(decode_image(encoded), box))
    image.set_shape([None, None, 3])
    return image


def inception_crop(image_or_encoded: tf.Tensor, seed: tf.Tensor, **box_args) -> tf.Tensor:
    """Random area/aspect crop (see sample_inception_box) of a decoded image or of encoded bytes.

    Encoded JPEGs use the fused decode_and_crop. Returns uint8 (h, w, 3), not resized.
    """
    box = sample_inception_box(image_shape(image_or_encoded), seed, **box_args)
    if image_or_encoded.dtype == tf.string:
        return decode_and_crop(image_or_encoded, box)
    return crop(image_or_encoded, box)


def resize(image: tf.Tensor, size, method: str = "bilinear", antialias: bool = True) -> tf.Tensor:
    """Resize to `size` (int -> square, or (height, width)); float32 0..255 (bicubic clipped).

    antialias=True filters when shrinking (like PIL; used for evaluation); training uses
    False, about twice as fast on the random crops, as in the reference TF pipelines.
    """
    size = (size, size) if isinstance(size, int) else size
    antialias = antialias and method != "nearest"
    out = tf.image.resize(tf.cast(image, tf.float32), size, method=method, antialias=antialias)
    return tf.clip_by_value(out, 0.0, 255.0)


def random_resize(image: tf.Tensor, size, seed: tf.Tensor,
                  methods: tuple[str, ...] = RANDOM_RESIZE_METHODS,
                  antialias: bool = False) -> tf.Tensor:
    """`resize` with an interpolation drawn uniformly from `methods`."""
    index = tf.random.stateless_uniform([], seed, 0, len(methods), dtype=tf.int32)
    return tf.switch_case(index, [lambda m=m: resize(image, size, m, antialias) for m in methods])


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirror left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def photometric_distort(image: tf.Tensor, seed: tf.Tensor, *, brightness: float = 32 / 255,
                        contrast: tuple[float, float] = (0.5, 1.5),
                        saturation: tuple[float, float] = (0.5, 1.5),
                        hue: float = 0.2) -> tf.Tensor:
    """Random brightness, contrast, saturation and hue (Howard 2013 / TF-slim ranges).

    float32 0..255 in, float32 0..255 out (clipped). Applied in a fixed order.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    x = tf.cast(image, tf.float32) / 255.0
    x = tf.image.stateless_random_brightness(x, brightness, seeds[0])
    x = tf.image.stateless_random_contrast(x, contrast[0], contrast[1], seeds[1])
    x = tf.clip_by_value(x, 0.0, 1.0)
    x = tf.image.stateless_random_saturation(x, saturation[0], saturation[1], seeds[2])
    x = tf.image.stateless_random_hue(x, hue, seeds[3])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def normalize(image: tf.Tensor, kind: str) -> tf.Tensor:
    """0..255 pixels -> what the model variant expects, float32.

    "torchvision": (x/255 - mean) / std with ImageNet statistics.
    "paper": x - (123, 117, 104), the Caffe mean pixel in RGB order.
    """
    x = tf.cast(image, tf.float32)
    if kind == "torchvision":
        return (x / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    if kind == "paper":
        return x - tf.constant(CAFFE_MEAN_RGB)
    raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMALIZATIONS}")


def check_normalization(kind: str) -> None:
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}; expected one of {NORMALIZATIONS}")
