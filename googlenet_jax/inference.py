"""The jitted classifier: build once, call on images, get the top-k classes.

    from googlenet_jax import Classifier
    classify = Classifier("googlenet.pth")          # any source googlenet_jax.load reads
    classify(["cat.jpg", pil_image, uint8_array])   # per image: [Prediction(index, name, probability), ...]

Images are file paths, PIL images, or arrays (H, W[, C]) of any size: uint8 0..255 or
float in [0, 1]; grayscale, RGBA and CMYK become RGB. Preprocessing is the data pipeline's
own eval path (decode, shorter side to `resize_size` with antialiased bilinear, center crop
`image_size`, the variant's normalisation), so `predict`, `evaluate` and the trainer's eval
see the same pixels. For torchvision weights it is torchvision's `IMAGENET1K_V1.transforms()`.

For people who batch themselves: `predict(batch)` / `features(batch)` take a preprocessed
float32 (N, S, S, 3) batch of any N, and `predict_fn` / `features_fn` are the bare
`jax.jit` functions `(variables, batch) -> probabilities | features`. Batches are padded to a
few fixed sizes (powers of two up to `batch_size`), so a ragged last batch does not compile
again; with several devices the batch is sharded over a mesh of them.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from googlenet_jax import weights as weights_lib

AXIS_NAME = "batch"
FEATURES_DIM = 1024  # inception5b's channels, globally pooled


class ImageError(ValueError):
    """An image that cannot be read or converted; the message names it."""


class Prediction(NamedTuple):
    index: int
    name: str
    probability: float


# ----------------------------------------------------------------------------- image input


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
        from PIL import Image, UnidentifiedImageError
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
    import tensorflow as tf
    from googlenet_jax.data import preprocess
    return tf.function(preprocess.decode_image, input_signature=[tf.TensorSpec([], tf.string)])


def _decode(data: bytes) -> np.ndarray | None:
    """uint8 (H, W, 3) from the training pipeline's decoder, or None if it cannot read the bytes."""
    import tensorflow as tf
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
    import tensorflow as tf
    from googlenet_jax.data import pipeline

    def run(image):
        return pipeline.eval_preprocess(image, image_size=image_size, normalization=normalization,
                                        resize_size=resize_size)

    by_dtype = {dtype: tf.function(run, input_signature=[tf.TensorSpec([None, None, 3], dtype)])
                for dtype in (tf.uint8, tf.float32)}
    return lambda image: by_dtype[tf.uint8 if image.dtype == np.uint8 else tf.float32](image).numpy()


def preprocess_each(images: Sequence[Any], info: weights_lib.ModelInfo, *,
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


def preprocess_images(images: Sequence[Any], info: weights_lib.ModelInfo) -> np.ndarray:
    """Images -> float32 (N, S, S, 3) model inputs; raises the first image's ImageError."""
    out = preprocess_each(images, info)
    for item in out:
        if isinstance(item, ImageError):
            raise item
    if not out:
        return np.zeros((0, info.image_size, info.image_size, 3), np.float32)
    return np.stack(out)


# ----------------------------------------------------------------------------- classifier


def batch_buckets(batch_size: int, num_devices: int) -> list[int]:
    """The padded batch sizes: num_devices * 2^k below batch_size, then batch_size itself
    (batch_size rounded up to a multiple of num_devices)."""
    top = -(-batch_size // num_devices) * num_devices
    sizes, size = [], num_devices
    while size < top:
        sizes.append(size)
        size *= 2
    return sizes + [top]


class Classifier:
    """GoogLeNet inference on images, jitted once per padded batch size.

    Args:
      weights: a path any source `googlenet_jax.load` reads, or a `LoadedModel`.
      batch_size: the largest batch sent to the devices at once.
      dtype: compute dtype (jnp.bfloat16 is faster on GPU/TPU); outputs stay float32. None:
        float32 for a path, the LoadedModel's own otherwise.
      transform_input, use_average: passed to `googlenet_jax.load`.
      devices: the devices to shard batches over (default: every local device).
    """

    def __init__(self, weights: str | os.PathLike | weights_lib.LoadedModel, *, batch_size: int = 32,
                 dtype: Any = None, transform_input: bool | None = None,
                 use_average: bool = True, devices: Sequence[jax.Device] | None = None):
        if not isinstance(weights, weights_lib.LoadedModel):
            weights = weights_lib.load(weights, transform_input=transform_input,
                                       use_average=use_average, dtype=dtype or jnp.float32)
        elif dtype is not None:
            weights = weights._replace(model=weights.model.clone(dtype=dtype))
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model, self.info = weights.model, weights.info
        self.class_names = self.info.class_names
        self.devices = list(devices or jax.local_devices())
        mesh = Mesh(np.array(self.devices), (AXIS_NAME,))
        self._batch_sharding = NamedSharding(mesh, P(AXIS_NAME))
        self.variables = jax.device_put(weights.variables, NamedSharding(mesh, P()))
        self.buckets = batch_buckets(batch_size, len(self.devices))
        model = self.model

        @jax.jit
        def predict_fn(variables, images):
            logits = model.apply(variables, images, train=False)
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

        @jax.jit
        def features_fn(variables, images):
            return model.apply(variables, images, train=False, features=True).astype(jnp.float32)

        self.predict_fn, self.features_fn = predict_fn, features_fn

    @property
    def batch_size(self) -> int:
        return self.buckets[-1]

    def preprocess(self, images: Any) -> np.ndarray:
        """Images (one, a list, or an (N, H, W, C) array) -> float32 (N, S, S, 3), model-ready."""
        return preprocess_images(as_image_list(images), self.info)

    def _run(self, fn, batch, width: int) -> np.ndarray:
        """fn over `batch` in padded, sharded chunks; (N, width) float32 on the host.

        Any image size the model accepts works; each new size compiles once more.
        """
        batch = np.asarray(batch, np.float32)
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"expected a preprocessed (N, H, W, 3) batch, got shape {batch.shape}")
        outputs = [np.zeros((0, width), np.float32)]
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            padded_size = next(b for b in self.buckets if b >= len(chunk))
            padded = np.zeros((padded_size,) + chunk.shape[1:], np.float32)
            padded[:len(chunk)] = chunk
            out = fn(self.variables, jax.device_put(padded, self._batch_sharding))
            outputs.append(np.asarray(out)[:len(chunk)])
        return np.concatenate(outputs)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 (N, S, S, 3) -> class probabilities float32 (N, num_classes)."""
        return self._run(self.predict_fn, batch, self.info.num_classes)

    def features(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 (N, S, S, 3) -> pooled features float32 (N, 1024)."""
        return self._run(self.features_fn, batch, FEATURES_DIM)

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[list[Prediction]]:
        """Per row of (N, num_classes) probabilities, the k most likely classes, best first."""
        k = min(k, probabilities.shape[-1])
        order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
        return [[Prediction(int(i), self.class_names[i], float(row[i])) for i in top]
                for row, top in zip(probabilities, order)]

    def __call__(self, images: Any, top_k: int = 5) -> list[list[Prediction]]:
        """Images (one, a list, or an (N, H, W, C) array) -> per image its top_k Predictions."""
        return self.top_k(self.predict(self.preprocess(images)), top_k)
