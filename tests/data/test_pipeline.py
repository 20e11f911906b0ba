"""The image-folder source and the streams built on it, on small synthetic files.

Each image is one solid colour that identifies it, so batches can be traced back to files
whatever the crop, flip or resize (normalization "paper" is undone by adding the mean).
"""
import io
import logging
import os

import numpy as np
import pytest
from PIL import Image

from googlenet_jax import data

import helpers

MEAN = np.array([123.0, 117.0, 104.0])


def _colour(split, i):
    return (10 + 20 * i, 200 - 10 * i, 100 if split == "train" else 30)


def _write(path, colour, fmt="PNG", mode="RGB", size=(6, 5)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.new("RGB", size, colour).convert(mode)
    image.save(path, fmt, **({"quality": 100} if fmt == "JPEG" else {}))


def make_folder(root, sizes=(("train", 10), ("test", 11)), classes=("b_cat", "a_dog", "c_emu")):
    """Returns {split: [(path, colour, label)]}; labels follow sorted class names."""
    written = {}
    for split, n in sizes:
        written[split] = []
        for i in range(n):
            name = classes[i % len(classes)]
            path = os.path.join(root, split, name, f"img{i:02d}.png")
            _write(path, _colour(split, i))
            written[split].append((path, _colour(split, i), sorted(classes).index(name)))
    return written


def _ids(images, split):
    """Index i of the solid colour of each image (paper normalization undone)."""
    colours = np.round(images.mean(axis=(1, 2)) + MEAN).astype(int)
    lookup = {_colour(split, i): i for i in range(30)}
    return [lookup[tuple(c)] for c in colours]


ARGS = dict(dataset="image_folder", image_size=8, normalization="paper")


@pytest.fixture
def folder(tmp_path):
    return str(tmp_path), make_folder(str(tmp_path))


def test_info_counts_classes_sorted_by_folder_name(folder):
    root, _ = folder
    info = data.get_dataset_info("image_folder", root)
    assert info == data.DatasetInfo(3, 10, 11, ("a_dog", "b_cat", "c_emu"))


def test_labels_are_sorted_class_folders_same_for_train_and_test(folder):
    root, written = folder
    for split in ("train", "test"):
        batches = list(data.eval_batches(split=split, data_dir=root, global_batch_size=4, **ARGS))
        images = np.concatenate([b["image"][b["mask"]] for b in batches])
        labels = np.concatenate([b["label"][b["mask"]] for b in batches])
        expected = {i: label for i, (_, _, label) in enumerate(written[split])}
        assert {i: int(l) for i, l in zip(_ids(images, split), labels)} == expected


def test_a_test_split_without_a_class_keeps_the_label_ids_of_train(tmp_path):
    root = str(tmp_path)
    make_folder(root, sizes=(("train", 6),))
    written = make_folder(root, sizes=(("test", 4),), classes=("c_emu", "a_dog"))  # no b_cat
    (batch,) = data.eval_batches(split="test", data_dir=root, global_batch_size=4, **ARGS)
    by_id = dict(zip(_ids(batch["image"], "test"), batch["label"].tolist()))
    # train's sorted classes: a_dog 0, b_cat 1, c_emu 2; the test split's own would make c_emu 1.
    assert by_id == {i: {"a_dog": 0, "c_emu": 2}[os.path.basename(os.path.dirname(p))]
                     for i, (p, _, _) in enumerate(written["test"])}


def test_a_class_absent_from_train_is_an_error_naming_it(tmp_path):
    root = str(tmp_path)
    make_folder(root, sizes=(("train", 3),))
    make_folder(root, sizes=(("test", 2),), classes=("a_dog", "d_fox"))
    with pytest.raises(ValueError, match=r"class folder .*test/d_fox has no counterpart in .*train"):
        data.get_dataset_info("image_folder", root)


def test_jpeg_png_gray_rgba_all_become_rgb(tmp_path):
    root = str(tmp_path)
    _write(f"{root}/train/x/gray.png", (90, 90, 90), mode="L")
    _write(f"{root}/train/x/rgba.png", (10, 200, 30), mode="RGBA")
    _write(f"{root}/train/y/photo.jpg", (200, 40, 60), fmt="JPEG")
    _write(f"{root}/train/y/gray.jpeg", (50, 50, 50), fmt="JPEG", mode="L")
    (b,) = data.eval_batches(split="train", data_dir=root, global_batch_size=4, **ARGS)
    colours = b["image"].reshape(4, -1, 3).mean(1) + MEAN
    expected = [(90, 90, 90), (10, 200, 30), (50, 50, 50), (200, 40, 60)]  # sorted file names per class
    np.testing.assert_allclose(colours, expected, atol=3)
    assert b["image"].shape == (4, 8, 8, 3) and b["image"].dtype == np.float32


def test_corrupt_and_truncated_images_are_skipped_with_warnings(tmp_path, caplog):
    root = str(tmp_path)
    make_folder(root, (("train", 6),))
    good = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(good, "JPEG")
    with open(f"{root}/train/a_dog/truncated.jpg", "wb") as f:
        f.write(good.getvalue()[: len(good.getvalue()) // 2])
    with open(f"{root}/train/a_dog/garbage.png", "wb") as f:
        f.write(b"not an image at all")
    with caplog.at_level(logging.WARNING):
        info = data.get_dataset_info("image_folder", root, eval_split="train")
        batches = data.train_batches(split="train", data_dir=root, global_batch_size=3, seed=0,
                                     augment=helpers.augment_config(), **ARGS)
        for _ in range(5):  # several epochs: never a crash
            assert next(batches)["image"].shape == (3, 8, 8, 3)
    assert info.num_train_examples == 6
    text = caplog.text
    assert "truncated.jpg" in text and "garbage.png" in text and "skipped 2" in text


def test_missing_split_is_a_one_line_error_naming_the_path(folder):
    root, _ = folder
    with pytest.raises(ValueError, match=f"{root}/validation") as e:
        next(data.eval_batches(split="validation", data_dir=root, global_batch_size=2, **ARGS))
    assert "\n" not in str(e.value)


def test_empty_class_folder_is_an_error_naming_it(folder):
    root, _ = folder
    os.makedirs(f"{root}/train/d_empty")
    with pytest.raises(ValueError, match="d_empty"):
        data.get_dataset_info("image_folder", root)


def test_global_batch_must_divide_by_processes_and_devices(folder):
    root, _ = folder
    common = dict(split="train", data_dir=root, seed=0, augment=helpers.augment_config(), **ARGS)
    with pytest.raises(ValueError, match="process count 4"):
        next(data.train_batches(global_batch_size=6, process_index=0, process_count=4, **common))
    with pytest.raises(ValueError, match="device count 4"):
        next(data.train_batches(global_batch_size=6, num_devices=4, **common))
    with pytest.raises(ValueError, match="device count 8"):
        next(data.eval_batches(split="test", data_dir=root, global_batch_size=4, num_devices=8, **ARGS))


def _train(root, *, seed=0, start_step=0, steps=6, batch=4, **kw):
    it = data.train_batches(split="train", data_dir=root, global_batch_size=batch, seed=seed,
                            start_step=start_step, augment=kw.pop("augment", helpers.augment_config()),
                            **ARGS, **kw)
    return [next(it) for _ in range(steps)]


def test_train_stream_is_byte_identical_run_to_run(folder):
    root, _ = folder
    augment = helpers.augment_config(photometric=True, random_interpolation=True)
    a, b = _train(root, augment=augment), _train(root, augment=augment)
    for x, y in zip(a, b):
        assert x["image"].tobytes() == y["image"].tobytes()
        assert x["label"].tobytes() == y["label"].tobytes()
    c = _train(root, seed=1, augment=augment)
    assert any(x["image"].tobytes() != z["image"].tobytes() for x, z in zip(a, c))


def test_resume_from_step_equals_uninterrupted_run(folder):
    root, _ = folder
    augment = helpers.augment_config(photometric=True)
    full = _train(root, steps=9, augment=augment)  # 10 examples, batch 4: epochs cross mid-batch
    for start in (1, 2, 3, 5, 7):
        resumed = _train(root, start_step=start, steps=2, augment=augment)
        for x, y in zip(full[start:], resumed):
            assert x["image"].tobytes() == y["image"].tobytes()
            np.testing.assert_array_equal(x["label"], y["label"])


def test_each_epoch_visits_every_example_once_in_a_new_order(folder):
    root, _ = folder
    batches = _train(root, steps=5, batch=4)  # 20 positions = 2 epochs of 10
    ids = sum((_ids(b["image"], "train") for b in batches), [])
    assert sorted(ids[:10]) == list(range(10)) and sorted(ids[10:]) == list(range(10))
    assert ids[:10] != ids[10:]
    assert all(b["image"].dtype == np.float32 and b["label"].dtype == np.int32 for b in batches)


def test_processes_read_disjoint_parts_of_the_train_split(folder):
    root, _ = folder
    seen = []
    for p in range(2):
        (b,) = _train(root, steps=1, batch=10, process_index=p, process_count=2)
        assert b["image"].shape == (5, 8, 8, 3)
        seen.append(set(_ids(b["image"], "train")))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(10))


def test_without_inception_crop_the_whole_image_is_resized(tmp_path):
    root = str(tmp_path)
    left = np.zeros((4, 8, 3), np.uint8)
    left[:, 4:] = 255  # left half black, right half white
    os.makedirs(f"{root}/train/x")
    Image.fromarray(left).save(f"{root}/train/x/a.png")
    it = data.train_batches(split="train", data_dir=root, global_batch_size=1, seed=0,
                            augment=helpers.augment_config(inception_crop=False, flip=False), **ARGS)
    image = next(it)["image"][0] + MEAN
    assert image.shape == (8, 8, 3)
    np.testing.assert_allclose(image[:, :3], 0, atol=1)
    np.testing.assert_allclose(image[:, 5:], 255, atol=1)


def test_eval_pads_last_batch_and_masks_it(folder):
    root, _ = folder
    batches = list(data.eval_batches(split="test", data_dir=root, global_batch_size=4, **ARGS))
    assert len(batches) == 3  # 11 examples
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.dtype == bool and masks.tolist() == [True] * 11 + [False]
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    assert sorted(_ids(images, "test")) == list(range(11))


@pytest.mark.parametrize("process_count,global_batch", [(2, 4), (3, 6), (4, 4)])
def test_eval_multi_process_every_example_once_same_batch_count(folder, process_count, global_batch):
    root, _ = folder
    counts, ids = [], []
    for p in range(process_count):
        batches = list(data.eval_batches(split="test", data_dir=root, global_batch_size=global_batch,
                                         process_index=p, process_count=process_count, **ARGS))
        counts.append(len(batches))
        for b in batches:
            assert b["image"].shape[0] == global_batch // process_count
            ids += _ids(b["image"][b["mask"]], "test")
            assert not b["image"][~b["mask"]].any()
    assert len(set(counts)) == 1
    assert sorted(ids) == list(range(11))


def test_eval_crops_shapes(folder):
    root, _ = folder
    for crops in (10, 144):
        b = next(data.eval_batches(split="test", data_dir=root, global_batch_size=2, crops=crops, **ARGS))
        assert b["image"].shape == (2, crops, 8, 8, 3) and b["mask"].shape == (2,)


def test_eval_cache_gives_the_same_batches(folder):
    root, _ = folder
    plain = list(data.eval_batches(split="test", data_dir=root, global_batch_size=4, **ARGS))
    for _ in range(2):
        cached = list(data.eval_batches(split="test", data_dir=root, global_batch_size=4, cache=True, **ARGS))
        for x, y in zip(plain, cached):
            np.testing.assert_array_equal(x["image"], y["image"])
            np.testing.assert_array_equal(x["mask"], y["mask"])


def test_the_augment_configs_area_and_aspect_ranges_bound_the_train_crop(tmp_path):
    """AugmentConfig's min/max area and aspect reach the Inception crop: area 1 and aspect 2 on a
    16x8 image leave one box, the whole image, for every example."""
    root = str(tmp_path)
    rows, cols = np.mgrid[0:8, 0:16]
    ramp = np.stack([16 * cols, 32 * rows, np.full_like(rows, 7)], axis=-1).astype(np.uint8)
    os.makedirs(f"{root}/train/x")
    Image.fromarray(ramp).save(f"{root}/train/x/a.png")
    augment = helpers.augment_config(min_area=1.0, max_area=1.0, min_aspect=2.0, max_aspect=2.0, flip=False)
    it = data.train_batches(split="train", data_dir=root, global_batch_size=4, seed=0, augment=augment, **ARGS)
    images = next(it)["image"] + MEAN  # 4 stream positions, 4 crop seeds
    # The whole 8x16 image to 8x8 by bilinear with half-pixel centres: output column i samples
    # input column 2i + 0.5, the mean of columns 2i and 2i + 1; rows stay.
    expected = np.stack([np.broadcast_to(16 * (2 * np.arange(8) + 0.5), (8, 8)),
                         np.broadcast_to(32 * np.arange(8)[:, None], (8, 8)), np.full((8, 8), 7.0)], axis=-1)
    for image in images:
        np.testing.assert_allclose(image, expected, atol=1e-3)
