"""Images in, model inputs out: files, PIL images or arrays -> the eval preprocessing.

Images are file paths, PIL images, or arrays (H, W[, C]) of any size: uint8 0..255 or
float in [0, 1]; grayscale, RGBA and CMYK become RGB. Preprocessing is the data pipeline's
own eval path (decode, shorter side to `resize_size` with antialiased bilinear, center crop
`image_size`, the variant's normalisation), so `predict`, `evaluate` and the trainer's eval
see the same pixels. For torchvision weights it is torchvision's `IMAGENET1K_V1.transforms()`.
TensorFlow (the pipeline's decoder and resize) is imported on the first image.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from googlenet_jax.weights import ModelInfo


class ImageError(ValueError):
    """An image that cannot be read or converted; the message names it."""



def _describe(image: Any, position: int | None) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return f"image {position}" if position is not None else type(image).__name__


def _pil_to_array(image) -> np.ndarray:
    """Any PIL mode (L, P, RGBA, CMYK, I;16, ...) -> uint8 RGB (H, W, 3)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """uint8 or [0, 1] float (H, W), (H, W, 1|3|4) -> uint8 or float32 0..255 (H, W, 3)."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageError(f"{name}: expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, "
                         f"got shape {array.shape}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]  # RGBA: drop alpha, as PIL's convert("RGB") does
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if low < 0.0 or high > 1.0 or not np.isfinite(low + high):
            raise ImageError(f"{name}: float images must hold values in [0, 1], got [{low:g}, {high:g}] "
                             "(pass uint8 for 0..255 pixels)")
        return array.astype(np.float32) * 255.0
    raise ImageError(f"{name}: unsupported dtype {array.dtype}; pass uint8 (0..255) or float in [0, 1]")


def read_image(image: Any, position: int | None = None) -> np.ndarray:
    """One image as an (H, W, 3) array: uint8, or float32 on the 0..255 scale.

    Files are decoded by the data pipeline's own decoder (JPEG, PNG, GIF, BMP), so a file
    gives the very pixels training and `evaluate` see; other formats (TIFF, WebP, ...) and
    modes go through PIL. Raises ImageError naming the image (its path, or its position).
    """
    name = _describe(image, position)
    if isinstance(image, (str, os.PathLike)):
        try:
            with open(image, "rb") as f:
                data = f.read()
        except OSError as error:
            raise ImageError(f"{name}: cannot read ({error.strerror or error})") from None
        decoded = _decode(data)
        if decoded is not None:
            return decoded
        try:
            with Image.open(image) as opened:
                return _pil_to_array(opened)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise ImageError(f"{name}: not a readable image ({error})") from None
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        return _pil_to_array(image)
    if hasattr(image, "__array__"):
        return _array_to_rgb(np.asarray(image), name)
    raise ImageError(f"{name}: expected a file path, a PIL image or an array, got {type(image).__name__}")


@functools.lru_cache(maxsize=1)
def _tf_decoder():
    # TensorFlow on the first image only: `from googlenet_jax import Classifier` stays light.
    import tensorflow as tf

    from googlenet_jax.data import preprocess
    return tf.function(preprocess.decode_image, input_signature=[tf.TensorSpec([], tf.string)])


def _decode(data: bytes) -> np.ndarray | None:
    """uint8 (H, W, 3) from the training pipeline's decoder, or None if it cannot read the bytes."""
    import tensorflow as tf  # loaded already by _tf_decoder
    try:
        return _tf_decoder()(tf.constant(data)).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return None


def as_image_list(images: Any) -> list:
    """A batch of images as a list: a list/tuple as is, a 4-D array split, one image wrapped."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if hasattr(images, "__array__") and not hasattr(images, "convert") and np.ndim(images) == 4:
        return list(np.asarray(images))
    return [images]


@functools.lru_cache(maxsize=8)
def _eval_preprocessor(image_size: int, resize_size: int, normalization: str):
    """Compiled TF functions: an (H, W, 3) uint8 or float32 image -> normalised (S, S, 3)."""
    import tensorflow as tf  # on the first image, as _tf_decoder

    from googlenet_jax.data import pipeline

    def run(image):
        return pipeline.eval_preprocess(image, image_size=image_size, normalization=normalization,
                                        resize_size=resize_size)

    by_dtype = {dtype: tf.function(run, input_signature=[tf.TensorSpec([None, None, 3], dtype)])
                for dtype in (tf.uint8, tf.float32)}
    return lambda image: by_dtype[tf.uint8 if image.dtype == np.uint8 else tf.float32](image).numpy()


def preprocess_each(images: Sequence[Any], info: ModelInfo, *,
                    threads: int = 4) -> list[np.ndarray | ImageError]:
    """Per image (see read_image): its float32 (S, S, 3) model input, or the ImageError that
    stopped it. Images are read and preprocessed on `threads` threads (TF ops release the GIL)."""
    run = _eval_preprocessor(info.image_size, info.resize_size, info.normalization)

    def one(item):
        position, image = item
        try:
            return run(read_image(image, position))
        except ImageError as error:
            return error

    with concurrent.futures.ThreadPoolExecutor(max(1, min(threads, len(images)))) as pool:
        return list(pool.map(one, enumerate(images)))


def preprocess_images(images: Sequence[Any], info: ModelInfo) -> np.ndarray:
    """Images -> float32 (N, S, S, 3) model inputs; raises the first image's ImageError."""
    out = preprocess_each(images, info)
    for item in out:
        if isinstance(item, ImageError):
            raise item
    if not out:
        return np.zeros((0, info.image_size, info.image_size, 3), np.float32)
    return np.stack(out)


