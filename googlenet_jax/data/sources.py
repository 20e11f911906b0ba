"""Where examples come from: tfds datasets by name, the demo, or an image folder.

Every source hands out one JAX process's disjoint part of a split as a tf.data stream of
`{"image": encoded JPEG/PNG bytes (tf.string), "label": int64}`, in a fixed order, so the
pipeline (pipeline.py) decodes and augments all of them the same way.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
from collections.abc import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

from googlenet_jax.data import digits, preprocess
from googlenet_jax.errors import first_line

IMAGE_FOLDER = "image_folder"
DEMO = digits.NAME
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs to know about a dataset before reading it."""
    num_classes: int
    num_train_examples: int  # size of the train split
    num_eval_examples: int  # size of the eval split
    class_names: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class ProcessSplit:
    """One process's part of a split.

    dataset: finite tf.data stream of records in a fixed order; `load(record)` turns one into
      {"image": encoded bytes (tf.string), "label": tf.int64}. Loading is separate so that
      shuffling and skipping (resumption) can run on cheap records such as file paths.
    num_examples: len(dataset).
    num_examples_per_process: sizes of every process's part (for equal eval batch counts).
    """
    dataset: tf.data.Dataset
    num_examples: int
    num_examples_per_process: tuple[int, ...]
    load: Callable[[dict], dict] = lambda record: record


def even_split_bounds(num_examples: int, process_count: int) -> list[tuple[int, int]]:
    """[start, end) of each process's part; the first `num_examples % process_count` get one more.

    Same rule as `tfds.even_splits(..., drop_remainder=False)`.
    """
    base, extra = divmod(num_examples, process_count)
    bounds, start = [], 0
    for i in range(process_count):
        end = start + base + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


# ----------------------------------------------------------------------------- image folder


@dataclasses.dataclass(frozen=True)
class FolderSplit:
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]


def _looks_complete(path: str) -> bool:
    """Cheap check that a file is a whole JPEG or PNG: magic bytes at the start, end marker at the end.

    Catches truncated files and non-images before they reach the decoder, so the set of
    examples (and hence every position in the stream) is fixed before training starts.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, size - 1024))
            tail = f.read()
    except OSError:
        return False
    if head[:3] == b"\xff\xd8\xff":
        return b"\xff\xd9" in tail
    if head == b"\x89PNG\r\n\x1a\n":
        return b"IEND" in tail[-64:]
    return False


def _class_folders(split_dir: str) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir())


def list_image_folder(data_dir: str | None, split: str) -> FolderSplit:
    """Lists `data_dir/<split>/<label>/<image>`; label ids are the sorted class folders of `train`.

    Raises ValueError (one line, naming the path) for a missing split, a split without class
    folders, an empty class folder, or a class absent from `train`. Unreadable images are
    skipped with a warning naming each file and a count at the end.
    """
    if not data_dir:
        raise ValueError("dataset='image_folder' needs data_dir (the folder holding train/ and test/)")
    split_dir = os.path.join(data_dir, split)
    if not os.path.isdir(split_dir):
        raise ValueError(f"image folder split not found: {split_dir} (expected {data_dir}/<split>/<label>/<image>)")
    train_dir = os.path.join(data_dir, "train")
    class_names = _class_folders(train_dir if os.path.isdir(train_dir) else split_dir)
    if not class_names:
        raise ValueError(f"no class folders in {train_dir if os.path.isdir(train_dir) else split_dir}")
    label_of = {name: i for i, name in enumerate(class_names)}
    paths, labels, skipped = [], [], 0
    for name in _class_folders(split_dir):
        if name not in label_of:
            raise ValueError(f"class folder {os.path.join(split_dir, name)} has no counterpart in {train_dir}")
        class_dir = os.path.join(split_dir, name)
        files = sorted(f for f in os.listdir(class_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise ValueError(f"empty class folder (no .jpg/.jpeg/.png files): {class_dir}")
        for f in files:
            path = os.path.join(class_dir, f)
            if _looks_complete(path):
                paths.append(path)
                labels.append(label_of[name])
            else:
                skipped += 1
                _log.warning("skipping corrupt or truncated image: %s", path)
    if skipped:
        _log.warning("skipped %d unreadable image(s) in %s", skipped, split_dir)
    if not paths:
        raise ValueError(f"no readable images in {split_dir}")
    return FolderSplit(tuple(paths), tuple(labels), tuple(class_names))


def _image_folder_split(data_dir, split, process_index, process_count) -> ProcessSplit:
    listing = list_image_folder(data_dir, split)
    bounds = even_split_bounds(len(listing.paths), process_count)
    start, end = bounds[process_index]
    ds = tf.data.Dataset.from_tensor_slices({
        "path": list(listing.paths[start:end]) or tf.zeros([0], tf.string),
        "label": tf.constant(listing.labels[start:end], tf.int64, shape=[end - start]),
    })
    return ProcessSplit(ds, end - start, tuple(e - s for s, e in bounds), _read_image_file)


def _read_image_file(record: dict) -> dict:
    return {"image": tf.io.read_file(record["path"]), "label": record["label"]}


# ----------------------------------------------------------------------------- tfds


def _manual_dir(data_dir: str | None) -> str:
    root = data_dir or tfds.core.constants.DATA_DIR
    return os.path.join(os.path.expanduser(root), "downloads", "manual")


def _prepared_builder(dataset: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """A tfds builder whose data is on disk; prepares only what needs no download."""
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"unknown dataset {dataset!r}: not a tfds name, {IMAGE_FOLDER!r} or {DEMO!r}") from e
    if builder.is_prepared():
        return builder
    if dataset == DEMO:
        # Builds from scikit-learn's bundled data in a few seconds; tfds's progress bars
        # (a process-wide switch) would only clutter the training log.
        tfds.disable_progress_bar()
        builder.download_and_prepare()
        return builder
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        manual_dir = _manual_dir(data_dir)
        needed = IMAGENET_MANUAL_FILES if builder.name == "imagenet2012" else ()
        # tf.io.gfile: the tars may sit in a bucket (gs://...), where tfds reads them too.
        missing = [f for f in needed if not tf.io.gfile.exists(os.path.join(manual_dir, f))]
        if missing or not tf.io.gfile.isdir(manual_dir):
            files = " and ".join(needed) if needed else "the files its tfds page lists"
            what = f"missing {' and '.join(missing)}" if missing else f"no folder {manual_dir}"
            raise ValueError(
                f"{builder.name} is not prepared and tfds cannot download it ({what}): put {files} "
                f"in {manual_dir}/ (see docs/data.md)")
        # Reads the user's own archives; nothing is fetched from the network. tfds writes into
        # a temporary folder and renames it at the end, so a failed or killed run leaves nothing
        # that looks prepared.
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        except (tarfile.TarError, tf.errors.OpError, EOFError) as e:  # an empty, cut or damaged tar
            raise ValueError(
                f"cannot prepare {builder.name} from the tars in {manual_dir}/ ({type(e).__name__}: "
                f"{first_line(e)}); is one of them damaged or still downloading?") from e
        return builder
    raise ValueError(
        f"{dataset} is not prepared in {builder.data_dir}; this code never downloads: run "
        f"`tfds build {dataset} --data_dir {data_dir or tfds.core.constants.DATA_DIR}` first")


def _resolve_split(builder: tfds.core.DatasetBuilder, split: str) -> str:
    """'test' means 'validation' for datasets without a test split, and for imagenet2012: tfds
    makes a test split from ILSVRC2012_img_test.tar when that is in the manual folder, but
    without labels (all -1), so evaluating on it would silently score 0."""
    known = builder.info.splits
    if split == "test" and known and "validation" in known and (
            "test" not in known or builder.name == "imagenet2012"):
        return "validation"
    return split


def _feature_keys(builder: tfds.core.DatasetBuilder) -> tuple[str, str]:
    features = builder.info.features
    image = "image" if "image" in features else next(
        (k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
    label = "label" if "label" in features else next(
        (k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None)
    if image is None or label is None:
        raise ValueError(f"{builder.name} is not an image-classification dataset (features: {list(features)})")
    return image, label


def _tfds_read(builder, split: str) -> tf.data.Dataset:
    image_key, label_key = _feature_keys(builder)
    ds = builder.as_dataset(
        split=split, shuffle_files=False,
        decoders={image_key: tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(try_autocache=False, interleave_cycle_length=1))
    return ds.map(preprocess.graph_function(
        lambda ex: {"image": ex[image_key], "label": tf.cast(ex[label_key], tf.int64)}))


def _split_size(builder, split: str) -> int:
    try:
        return int(builder.info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError):  # Unknown sizes (e.g. under tfds.testing.mock_data).
        n = int(_tfds_read(builder, split).cardinality())
        if n < 0:
            raise ValueError(f"cannot tell the size of split {split!r} of {builder.name}") from None
        return n


def _tfds_split(dataset, data_dir, split, process_index, process_count) -> ProcessSplit:
    builder = _prepared_builder(dataset, data_dir)
    split = _resolve_split(builder, split)
    parts = [tfds.split_for_jax_process(split, process_index=i, process_count=process_count)
             for i in range(process_count)]
    ds = _tfds_read(builder, parts[process_index])
    sizes = []
    for part in parts:
        n = int(_tfds_read(builder, part).cardinality())  # What as_dataset really yields.
        sizes.append(n if n >= 0 else _split_size(builder, part))
    return ProcessSplit(ds, sizes[process_index], tuple(sizes))


# ----------------------------------------------------------------------------- public


def process_split(dataset: str, data_dir: str | None, split: str, *,
                  process_index: int, process_count: int) -> ProcessSplit:
    """Process `process_index`'s disjoint part (of `process_count`) of `split`."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if dataset == IMAGE_FOLDER:
        return _image_folder_split(data_dir, split, process_index, process_count)
    return _tfds_split(dataset, data_dir, split, process_index, process_count)


def get_dataset_info(dataset: str, data_dir: str | None, *, train_split: str = "train",
                     eval_split: str = "test") -> DatasetInfo:
    """Class count, split sizes and class names; prepares the demo if needed.

    For datasets without a `test` split (imagenet2012) eval_split "test" means "validation".
    """
    if dataset == IMAGE_FOLDER:
        train = list_image_folder(data_dir, train_split)
        evals = list_image_folder(data_dir, eval_split)
        return DatasetInfo(len(train.class_names), len(train.paths), len(evals.paths), train.class_names)
    builder = _prepared_builder(dataset, data_dir)
    _, label_key = _feature_keys(builder)
    label = builder.info.features[label_key]
    names = tuple(label.names) if label.names else None
    return DatasetInfo(
        num_classes=int(label.num_classes),
        num_train_examples=_split_size(builder, _resolve_split(builder, train_split)),
        num_eval_examples=_split_size(builder, _resolve_split(builder, eval_split)),
        class_names=names)
