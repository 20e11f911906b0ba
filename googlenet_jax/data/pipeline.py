"""Train and eval streams: host-local numpy batches for one JAX process.

Train (infinite, deterministic, resumable): epoch e is this process's part of the split,
shuffled with a seed drawn from (seed, process, e); the epochs are concatenated and each
example gets its position k in that endless stream. Every random op of example k is
seeded from (seed, process, k) with stateless ops, so batch n is always stream positions
[n * B, (n + 1) * B) with the same augmentation, and `start_step` skips straight there:
whole epochs are never read, the rest is skipped before any decoding.

Eval (finite, one pass): every example once, in a fixed order; the last batch is padded
and `mask` marks the real examples; every process yields the same number of batches.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf

from googlenet_jax.data import crops as crops_lib
from googlenet_jax.data import preprocess, sources

_ENDLESS = 2**62  # epochs


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Train-time augmentation: `AugmentConfig(**config.augment.to_dict())`; the fields, their defaults and
    what they mean are config.augment's (configs/default.py)."""
    inception_crop: bool
    min_area: float
    max_area: float
    min_aspect: float
    max_aspect: float
    flip: bool
    photometric: bool
    random_interpolation: bool


def local_batch_size(global_batch_size: int, num_devices: int, process_count: int) -> int:
    """global_batch_size // process_count, after checking it splits evenly over processes and devices."""
    if global_batch_size <= 0:
        raise ValueError(f"global batch size must be positive, got {global_batch_size}")
    for what, n in (("process count", process_count), ("device count", num_devices)):
        if global_batch_size % n:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by the {what} {n}")
    return global_batch_size // process_count


def _process(process_index, process_count) -> tuple[int, int]:
    return (jax.process_index() if process_index is None else process_index,
            jax.process_count() if process_count is None else process_count)


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = True
    return options


def _base_seed(seed: int, process_index: int, purpose: int) -> int:
    """A 63-bit integer from (seed, process, purpose): independent streams per process and use."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, process_index, purpose])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _derived_seed(base: int, counter: tf.Tensor) -> tf.Tensor:
    """int64 [2] seed for stateless ops, a pure function of (base, counter)."""
    return tf.random.stateless_uniform(
        [2], seed=tf.stack([tf.constant(base, tf.int64), tf.cast(counter, tf.int64)]),
        minval=None, maxval=None, dtype=tf.int64)


def train_preprocess(image: tf.Tensor, seed: tf.Tensor, *, image_size: int, normalization: str,
                     augment: AugmentConfig) -> tf.Tensor:
    """Encoded bytes or decoded uint8 (H, W, 3) -> float32 (image_size, image_size, 3), normalized."""
    crop_seed, resize_seed, flip_seed, color_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    if augment.inception_crop:
        image = preprocess.inception_crop(
            image, crop_seed, min_area=augment.min_area, max_area=augment.max_area,
            min_aspect=augment.min_aspect, max_aspect=augment.max_aspect)
    elif image.dtype == tf.string:
        image = preprocess.decode_image(image)
    if augment.random_interpolation:
        image = preprocess.random_resize(image, image_size, resize_seed)
    else:
        image = preprocess.resize(image, image_size, antialias=False)
    if augment.flip:
        image = preprocess.random_flip(image, flip_seed)
    if augment.photometric:
        image = preprocess.photometric_distort(image, color_seed)
    image = tf.ensure_shape(image, [image_size, image_size, 3])
    return preprocess.normalize(image, normalization)


def train_batches(*, dataset: str, data_dir: str | None, split: str, global_batch_size: int,
                  image_size: int, normalization: str, seed: int,
                  augment: AugmentConfig, start_step: int = 0,
                  num_devices: int = 1, process_index: int | None = None,
                  process_count: int | None = None, shuffle_buffer: int = 10_000,
                  cache: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Endless augmented batches for this process, from step `start_step` on.

    Yields {"image": float32 (B, image_size, image_size, 3), "label": int32 (B,)} with
    B = global_batch_size // process_count. Same arguments, same bytes, every run; the
    batches from `start_step=N` equal those an uninterrupted run yields from step N.
    cache=True keeps the decoded images in memory (for small datasets such as the demo).
    """
    preprocess.check_normalization(normalization)
    process_index, process_count = _process(process_index, process_count)
    batch = local_batch_size(global_batch_size, num_devices, process_count)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    part = sources.process_split(dataset, data_dir, split, process_index=process_index,
                                 process_count=process_count)
    n = part.num_examples
    if n == 0:
        raise ValueError(f"process {process_index} has no examples of {dataset} split {split!r}")
    base = part.dataset
    load = part.load
    if cache:
        @preprocess.graph_function
        def decode(record):
            ex = part.load(record)
            return {"image": preprocess.decode_image(ex["image"]), "label": ex["label"]}
        base = base.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
        load = lambda ex: ex  # noqa: E731
    shuffle_base = _base_seed(seed, process_index, 0)
    example_base = _base_seed(seed, process_index, 1)

    @preprocess.graph_function
    def epoch(e):
        shuffle_seed = _derived_seed(shuffle_base, e)[0]
        ds = base.shuffle(min(shuffle_buffer, n), seed=shuffle_seed, reshuffle_each_iteration=False)
        return ds.enumerate(start=e * n)

    first_epoch, offset = divmod(start_step * batch, n)
    ds = tf.data.Dataset.range(first_epoch, _ENDLESS).flat_map(epoch).skip(offset)

    @preprocess.graph_function
    def prepare(position, record):
        ex = load(record)
        image = train_preprocess(ex["image"], _derived_seed(example_base, position),
                                 image_size=image_size, normalization=normalization, augment=augment)
        return {"image": image, "label": tf.cast(ex["label"], tf.int32)}

    # Image folders are checked while listing; this only guards against a file that is
    # damaged inside (TF logs it) so that an epoch never crashes.
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
    ds = ds.batch(batch, drop_remainder=True).prefetch(2).with_options(_options())
    yield from ds.as_numpy_iterator()


def eval_preprocess(image: tf.Tensor, *, image_size: int, normalization: str,
                    crops: int = 1, resize_size: int | None = None) -> tf.Tensor:
    """Encoded bytes or decoded uint8 (H, W, 3) -> float32 (S, S, 3) for crops=1 or (crops, S, S, 3).

    crops=1: shorter side to resize_size (default round(S * 256 / 224)), center S x S crop;
    10 and 144: see crops.py.
    """
    if image.dtype == tf.string:
        image = preprocess.decode_image(image)
    return preprocess.normalize(crops_lib.eval_crops(image, image_size, crops, resize_size), normalization)


@functools.lru_cache(maxsize=4)
def _cached_eval_dataset(dataset, data_dir, split, image_size, normalization, crops, resize_size,
                         process_index, process_count):
    """Preprocessed eval examples kept in memory across calls (cache=True)."""
    part = sources.process_split(dataset, data_dir, split, process_index=process_index,
                                 process_count=process_count)
    return part, _eval_examples(part, image_size, normalization, crops, resize_size).cache()


def _eval_examples(part, image_size, normalization, crops, resize_size) -> tf.data.Dataset:
    @preprocess.graph_function
    def prepare(record):
        ex = part.load(record)
        image = eval_preprocess(ex["image"], image_size=image_size, normalization=normalization,
                                crops=crops, resize_size=resize_size)
        return {"image": image, "label": tf.cast(ex["label"], tf.int32), "mask": tf.constant(True)}
    return part.dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)


def eval_batches(*, dataset: str, data_dir: str | None, split: str, global_batch_size: int,
                 image_size: int, normalization: str, crops: int = 1,
                 resize_size: int | None = None, num_devices: int = 1,
                 process_index: int | None = None, process_count: int | None = None,
                 cache: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """One pass over this process's part of `split`; every example exactly once.

    resize_size: the shorter side before the 1 or 10 crops (default round(S * 256 / 224);
    S keeps the whole of a square image).
    Yields {"image": float32 (B, S, S, 3) for crops=1 or (B, crops, S, S, 3) for crops 10/144,
    "label": int32 (B,), "mask": bool (B,)}, B = global_batch_size // process_count. Padding
    rows (the tail of the last batch, and whole batches on processes with fewer examples) are
    zeros with mask False; every process yields ceil(max part size / B) batches.
    """
    preprocess.check_normalization(normalization)
    if crops not in crops_lib.EVAL_CROPS:
        raise ValueError(f"crops must be one of {crops_lib.EVAL_CROPS}, got {crops}")
    process_index, process_count = _process(process_index, process_count)
    batch = local_batch_size(global_batch_size, num_devices, process_count)
    if cache:
        part, ds = _cached_eval_dataset(dataset, data_dir, split, image_size, normalization, crops,
                                        resize_size, process_index, process_count)
    else:
        part = sources.process_split(dataset, data_dir, split, process_index=process_index,
                                     process_count=process_count)
        ds = _eval_examples(part, image_size, normalization, crops, resize_size)
    num_batches = math.ceil(max(part.num_examples_per_process) / batch)
    image_shape = [image_size, image_size, 3] if crops == 1 else [crops, image_size, image_size, 3]
    padding = tf.data.Dataset.from_tensors({
        "image": tf.zeros(image_shape, tf.float32),
        "label": tf.constant(0, tf.int32),
        "mask": tf.constant(False)}).repeat()
    ds = ds.concatenate(padding).take(num_batches * batch)
    ds = ds.batch(batch, drop_remainder=True).prefetch(2).with_options(_options())
    yield from ds.as_numpy_iterator()
