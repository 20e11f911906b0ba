"""tfds sources: the embedded digits builder (really built) and other datasets by name."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from googlenet_jax import data

import helpers


@pytest.fixture(scope="module")
def digits_dir(digits_data_dir):
    return str(digits_data_dir)


def _reference_digits():
    """The 1,797 scans as uint8 RGB (0..16 -> 0..255), from scikit-learn directly."""
    raw = load_digits()
    images = np.round(raw.images * 255 / 16).astype(np.uint8)
    return np.repeat(images[..., None], 3, -1), raw.target


def test_digits_is_registered_under_its_tfds_name():
    assert "sklearn_digits" in tfds.list_builders()


def test_digits_info_and_fixed_split(digits_dir):
    info = data.get_dataset_info("sklearn_digits", digits_dir)
    assert info == data.DatasetInfo(10, 1437, 360, tuple("0123456789"))


def test_digits_images_are_the_scikit_learn_scans_as_uint8_rgb(digits_dir):
    builder = tfds.builder("sklearn_digits", data_dir=digits_dir)
    images, labels = _reference_digits()
    reference = {(im.tobytes(), int(l)) for im, l in zip(images, labels)}
    stored = {}
    for split in ("train", "test"):
        stored[split] = [(ex["image"].tobytes(), int(ex["label"]))
                         for ex in tfds.as_numpy(builder.as_dataset(split=split))]
        assert all(len(b) == 8 * 8 * 3 for b, _ in stored[split])
    assert set(stored["train"]) | set(stored["test"]) == reference
    assert len(stored["train"]) + len(stored["test"]) == 1797
    # Stratified: every digit has about 20% of its examples in test.
    test_counts = np.bincount([l for _, l in stored["test"]], minlength=10)
    all_counts = np.bincount(labels, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1)


def test_digits_train_batches_shapes_and_values(digits_dir):
    it = data.train_batches(dataset="sklearn_digits", data_dir=digits_dir, split="train",
                            global_batch_size=16, image_size=32, normalization="torchvision",
                            seed=0, augment=helpers.augment_config(), cache=True)
    b = next(it)
    assert b["image"].shape == (16, 32, 32, 3) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32 and set(b["label"]) <= set(range(10))
    lo, hi = (0 - 0.485) / 0.229, (1 - 0.406) / 0.225
    assert b["image"].min() >= lo - 1e-4 and b["image"].max() <= hi + 1e-4


def test_digits_eval_counts_every_test_example(digits_dir):
    batches = list(data.eval_batches(dataset="sklearn_digits", data_dir=digits_dir, split="test",
                                     global_batch_size=64, image_size=16, normalization="paper",
                                     cache=True))
    assert len(batches) == 6  # ceil(360 / 64)
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 360 and not mask[360:].any()
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                  np.bincount(_reference_digits()[1], minlength=10)
                                  - np.bincount(_split_train_labels(digits_dir), minlength=10))


def _split_train_labels(d):
    builder = tfds.builder("sklearn_digits", data_dir=d)
    return [int(ex["label"]) for ex in tfds.as_numpy(builder.as_dataset(split="train"))]


def test_digits_eval_image_is_resized_then_center_cropped(digits_dir):
    # 8x8 -> shorter side round(16 * 256 / 224) = 18 -> center 16x16 crop (rows/cols 1..16).
    from PIL import Image
    b = next(data.eval_batches(dataset="sklearn_digits", data_dir=digits_dir, split="test",
                               global_batch_size=8, image_size=16, normalization="paper"))
    builder = tfds.builder("sklearn_digits", data_dir=digits_dir)
    first = next(iter(tfds.as_numpy(builder.as_dataset(split="test"))))["image"]
    ref = np.asarray(Image.fromarray(first).resize((18, 18), Image.BILINEAR), np.float32)[1:17, 1:17]
    got = b["image"][0] + np.array([123.0, 117.0, 104.0])
    assert np.abs(got - ref).mean() < 12  # bilinear upsampling conventions differ slightly


def test_digits_multi_process_train_parts_are_disjoint(digits_dir):
    firsts = []
    for p in range(2):
        it = data.train_batches(dataset="sklearn_digits", data_dir=digits_dir, split="train",
                                global_batch_size=8, image_size=8, normalization="paper", seed=0,
                                augment=helpers.augment_config(inception_crop=False, flip=False),
                                process_index=p, process_count=2, shuffle_buffer=1)
        firsts.append(next(it))
        assert firsts[-1]["image"].shape == (4, 8, 8, 3)
    assert not np.array_equal(firsts[0]["image"], firsts[1]["image"])


def test_imagenet_without_tar_files_says_where_they_go(tmp_path):
    with pytest.raises(ValueError) as e:
        data.get_dataset_info("imagenet2012", str(tmp_path))
    message = str(e.value)
    assert "\n" not in message
    assert os.path.join(str(tmp_path), "downloads", "manual") in message
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message


def test_unprepared_dataset_is_an_error_not_a_download(tmp_path):
    with pytest.raises(ValueError, match="not prepared"):
        data.get_dataset_info("mnist", str(tmp_path))
    assert not os.path.exists(tmp_path / "downloads" / "mnist")


def test_unknown_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        data.get_dataset_info("no_such_dataset_xyz", str(tmp_path))


@pytest.fixture
def mock_imagenet(tmp_path):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        (manual / name).write_bytes(b"")
    with tfds.testing.mock_data(num_examples=10):
        yield str(tmp_path)


def test_imagenet_through_generic_tfds_path(mock_imagenet):
    info = data.get_dataset_info("imagenet2012", mock_imagenet, eval_split="validation")
    assert info.num_classes == 1000 and len(info.class_names) == 1000
    it = data.train_batches(dataset="imagenet2012", data_dir=mock_imagenet, split="train",
                            global_batch_size=4, image_size=16, normalization="torchvision",
                            seed=0, augment=helpers.augment_config(photometric=True))
    b = next(it)
    assert b["image"].shape == (4, 16, 16, 3) and b["label"].dtype == np.int32
    batches = list(data.eval_batches(dataset="imagenet2012", data_dir=mock_imagenet,
                                     split="validation", global_batch_size=4, image_size=16,
                                     normalization="torchvision"))
    assert len(batches) == 3 and sum(b["mask"].sum() for b in batches) == 10
