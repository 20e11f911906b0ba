"""ImageNet through tfds's real `imagenet2012` builder, end to end.

A tiny ILSVRC 2012 in its distribution format is cut from real photos: ILSVRC2012_img_train.tar
holds one `<wnid>.tar` per class of `<wnid>_<n>.JPEG` files, ILSVRC2012_img_val.tar holds
`ILSVRC2012_val_<8 digits>.JPEG` files. Two training files carry names that tfds's builder
special-cases, as in the real archive: a PNG saved as .JPEG and a CMYK JPEG. train.py with
configs/imagenet_torchvision.py prepares it with tfds's own code, trains the tiny test network
2 steps and evaluates. References: tfds's shipped label files read directly, and our own construction.
"""
import io
import json
import os
import tarfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from googlenet_jax import data

import helpers
from helpers import run_command

pytestmark = pytest.mark.slow  # subprocesses and training runs

TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
_TFDS_IMAGENET = os.path.join(os.path.dirname(tfds.__file__), "datasets", "imagenet2012")
PNG_NAME = "n02105855_2933.JPEG"  # a PNG in the real archive (tfds's PNG_IMAGES)
CMYK_NAME = "n01739381_1309.JPEG"  # a CMYK JPEG in the real archive (tfds's CMYK_IMAGES)
# file name -> (photo, crop width, crop height). The synsets of the first three are the labels
# of validation images 1-3; n01739381 is there for its CMYK file.
TRAIN = {
    "n01739381_77.JPEG": ("rocket", 48, 40),
    CMYK_NAME: ("rocket", 40, 56),
    "n01751748_1024.JPEG": ("cat", 56, 48),
    "n01751748_3.JPEG": ("cat", 44, 44),
    "n02105855_118.JPEG": ("coffee", 64, 48),
    PNG_NAME: ("coffee", 48, 60),
    "n09193705_9001.JPEG": ("astronaut", 40, 40),
    "n09193705_12.JPEG": ("hubble", 60, 44),
}
# Images 1-4 (1-based, like the names); tfds labels them by their sorted position, which is
# the image number only for a run of names starting at 1 (as in the full archive).
VAL = {f"ILSVRC2012_val_{i:08d}.JPEG": ("camera" if i == 4 else "astronaut", 40 + 4 * i, 52)
       for i in (1, 2, 3, 4)}
# The tiny test network: the subject here is the data path, not the network.
SMALL = [
    "--config.model.variant=tiny", "--config.image_size=32", "--config.batch_size=8", "--config.eval_batch_size=8",
    "--config.num_train_steps=2", "--config.log_every_steps=1", "--config.eval_every_steps=1",
    "--config.checkpoint_every_steps=2", "--config.cache=False",
]


def _lines(name):
    with open(os.path.join(_TFDS_IMAGENET, name)) as f:
        return f.read().split()


WNIDS = _lines("labels.txt")  # label i is line i (0-based)
VAL_WNIDS = _lines("validation_labels.txt")  # image n's WordNet id is line n (1-based)


def _expected_label(file_name):
    if file_name.startswith("ILSVRC2012_val_"):
        return WNIDS.index(VAL_WNIDS[int(file_name[len("ILSVRC2012_val_"):-len(".JPEG")]) - 1])
    return WNIDS.index(file_name.split("_")[0])


def _crop(photo, width, height, seed):
    """A random crop of a scikit-image sample photo, resized to width x height, as RGB uint8."""
    rng = np.random.default_rng(seed)
    image = Image.open(helpers.photo(photo)).convert("RGB")
    side = int(min(image.size) * rng.uniform(0.3, 0.8))
    left = int(rng.integers(0, image.size[0] - side))
    top = int(rng.integers(0, image.size[1] - side))
    return image.crop((left, top, left + side, top + side)).resize((width, height))


def _encode(image, file_name):
    buf = io.BytesIO()
    if file_name == PNG_NAME:
        image.save(buf, "PNG")
    elif file_name == CMYK_NAME:
        image.convert("CMYK").save(buf, "JPEG", quality=95)
    else:
        image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, payload in members:
            _add(tar, name, payload)
    return buf.getvalue()


def make_imagenet_tars(manual_dir):
    """Writes the two tars; returns {file name: encoded bytes as written}."""
    os.makedirs(manual_dir, exist_ok=True)
    encoded = {name: _encode(_crop(photo, w, h, seed), name)
               for seed, (name, (photo, w, h)) in enumerate({**TRAIN, **VAL}.items())}
    synsets = sorted({name.split("_")[0] for name in TRAIN})
    with tarfile.open(os.path.join(manual_dir, TRAIN_TAR), "w") as tar:
        for wnid in synsets:
            inner = [(n, encoded[n]) for n in sorted(TRAIN) if n.startswith(wnid + "_")]
            _add(tar, f"{wnid}.tar", _tar_bytes(inner))
    # Reversed: tfds must label validation images by name, not by position in the tar.
    with tarfile.open(os.path.join(manual_dir, VAL_TAR), "w") as tar:
        for name in sorted(VAL, reverse=True):
            _add(tar, name, encoded[name])
    return encoded


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory, jax_cache):
    root = tmp_path_factory.mktemp("imagenet")
    data_dir, workdir = root / "tfds", root / "workdir"
    encoded = make_imagenet_tars(data_dir / "downloads" / "manual")
    proc = run_command(["train.py", "--config", "configs/imagenet_torchvision.py",
                        f"--config.data_dir={data_dir}", *SMALL, "--workdir", workdir],
                       cache_dir=jax_cache)
    return {"data_dir": str(data_dir), "workdir": workdir, "encoded": encoded, "proc": proc}


def test_the_special_file_names_are_those_tfds_special_cases():
    from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as builder
    assert PNG_NAME in builder.PNG_IMAGES and CMYK_NAME in builder.CMYK_IMAGES


def test_train_py_prepares_trains_and_evaluates_every_validation_image(imagenet):
    final = json.loads((imagenet["workdir"] / "final_metrics.json").read_text())
    assert final["step"] == 2
    assert final["eval_count"] == len(VAL)
    assert 0 <= final["eval_top1"] <= final["eval_top5"] <= 1
    assert f"({len(TRAIN)} images, 1000 classes)" in imagenet["proc"].stdout


def test_an_evaluation_before_the_last_step_also_covers_every_validation_image(imagenet):
    """eval_every_steps=1 of 2 steps: step 1's evaluation runs mid-training, step 2's is the final one."""
    counts = {}
    for path in imagenet["workdir"].glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "eval_count":
                    counts[event.step] = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") \
                        else value.simple_value
    assert counts == {1: len(VAL), 2: len(VAL)}
    assert "step 1: eval top1 " in imagenet["proc"].stdout


def test_model_info_names_the_1000_imagenet_classes_in_tfds_order(imagenet):
    import torchvision
    info = json.loads((imagenet["workdir"] / "model_info.json").read_text())
    assert info["num_classes"] == 1000
    # torchvision's names, in its order (sorted WordNet ids, like tfds's labels.txt).
    assert WNIDS == sorted(WNIDS)
    assert info["class_names"] == torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]


def _examples(data_dir, split, *, decode=True):
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    assert builder.is_prepared()
    assert builder.info.features["label"].names == WNIDS
    decoders = None if decode else {"image": tfds.decode.SkipDecoding()}
    return {ex["file_name"].decode(): ex
            for ex in tfds.as_numpy(builder.as_dataset(split=split, decoders=decoders))}


def test_prepared_splits_hold_every_file_with_the_label_tfds_ships(imagenet):
    builder = tfds.builder("imagenet2012", data_dir=imagenet["data_dir"])
    assert set(builder.info.splits) == {"train", "validation"}  # the test tar is optional
    for split, files in (("train", TRAIN), ("validation", VAL)):
        examples = _examples(imagenet["data_dir"], split)
        assert builder.info.splits[split].num_examples == len(files)
        assert sorted(examples) == sorted(files)
        for name, (_, width, height) in files.items():
            assert int(examples[name]["label"]) == _expected_label(name), name
            assert examples[name]["image"].shape == (height, width, 3), name
    # The validation labels of images 1-3 are classes built here; image 4's is not.
    assert {_expected_label(n) for n in list(VAL)[:3]} <= {_expected_label(n) for n in TRAIN}
    assert _expected_label(list(VAL)[3]) not in {_expected_label(n) for n in TRAIN}


@pytest.mark.parametrize("name", [PNG_NAME, CMYK_NAME])
def test_png_and_cmyk_files_are_stored_as_rgb_jpegs_of_the_same_picture(imagenet, name):
    example = _examples(imagenet["data_dir"], "train")[name]
    # What PIL makes of the file as it is in the tar (PNG, or CMYK with PIL's colour conversion).
    reference = np.asarray(Image.open(io.BytesIO(imagenet["encoded"][name])).convert("RGB"), np.float32)
    assert example["image"].shape == reference.shape
    # tfds re-encodes them as JPEGs with 4:2:0 chroma: about 3.4 gray levels off on average
    # here; inverted CMYK or another picture would be off by 100 or more.
    assert np.abs(example["image"].astype(np.float32) - reference).mean() < 8.0


def test_ordinary_jpegs_are_stored_byte_for_byte(imagenet):
    for split, files in (("train", TRAIN), ("validation", VAL)):
        examples = _examples(imagenet["data_dir"], split, decode=False)
        for name in files:
            if name not in (PNG_NAME, CMYK_NAME):
                assert examples[name]["image"] == imagenet["encoded"][name], name
    stored = _examples(imagenet["data_dir"], "train", decode=False)
    for name in (PNG_NAME, CMYK_NAME):  # re-encoded by tfds as RGB JPEGs
        assert stored[name]["image"][:3] == b"\xff\xd8\xff", name


def test_with_the_optional_test_tar_eval_still_reads_the_labelled_validation_split(tmp_path):
    manual = tmp_path / "downloads" / "manual"
    encoded = make_imagenet_tars(manual)
    test_names = ["ILSVRC2012_test_00000001.JPEG", "ILSVRC2012_test_00000002.JPEG"]
    with tarfile.open(manual / "ILSVRC2012_img_test.tar", "w") as tar:
        for name, payload in zip(test_names, (encoded[n] for n in VAL)):
            _add(tar, name, payload)
    info = data.get_dataset_info("imagenet2012", str(tmp_path))  # eval_split "test", as in demo.py
    assert (info.num_train_examples, info.num_eval_examples) == (len(TRAIN), len(VAL))
    # tfds did build the test split, unlabelled.
    test = _examples(str(tmp_path), "test")
    assert sorted(test) == test_names and {int(ex["label"]) for ex in test.values()} == {-1}


# ----------------------------------------------------------------------------- missing tars


@pytest.mark.parametrize("present", [(), (TRAIN_TAR,), (VAL_TAR,)])
def test_a_missing_tar_is_one_line_naming_the_folder_and_the_files(tmp_path, present):
    manual = tmp_path / "downloads" / "manual"
    if present:
        manual.mkdir(parents=True)
        for name in present:
            (manual / name).write_bytes(b"")
    with pytest.raises(ValueError) as error:
        data.get_dataset_info("imagenet2012", str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert str(manual) in message and TRAIN_TAR in message and VAL_TAR in message
    missing = [n for n in (TRAIN_TAR, VAL_TAR) if n not in present]
    assert f"missing {' and '.join(missing)}" in message
    assert not (tmp_path / "imagenet2012").exists()


def _cut(path):
    payload = path.read_bytes()
    path.write_bytes(payload[:len(payload) // 2])


@pytest.mark.parametrize("damage", [
    lambda manual: (manual / TRAIN_TAR).write_bytes(b""),
    lambda manual: _cut(manual / VAL_TAR),
], ids=["empty train tar", "cut val tar"])
def test_a_damaged_tar_is_one_line_and_leaves_nothing_that_looks_prepared(tmp_path, damage):
    manual = tmp_path / "downloads" / "manual"
    make_imagenet_tars(manual)
    good = {name: (manual / name).read_bytes() for name in (TRAIN_TAR, VAL_TAR)}
    damage(manual)
    with pytest.raises(ValueError) as error:
        data.get_dataset_info("imagenet2012", str(tmp_path))
    assert "\n" not in str(error.value) and str(manual) in str(error.value)
    assert not tfds.builder("imagenet2012", data_dir=str(tmp_path)).is_prepared()
    assert not list((tmp_path / "imagenet2012").glob("*incomplete*"))
    for name, payload in good.items():  # the repaired tars prepare as if nothing had happened
        (manual / name).write_bytes(payload)
    info = data.get_dataset_info("imagenet2012", str(tmp_path), eval_split="validation")
    assert (info.num_train_examples, info.num_eval_examples) == (len(TRAIN), len(VAL))


def test_train_py_without_the_tars_fails_in_one_line(tmp_path):
    proc = run_command(["train.py", "--config", "configs/imagenet_torchvision.py",
                        f"--config.data_dir={tmp_path}", *SMALL, "--workdir", tmp_path / "w"], check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:")
    assert str(tmp_path / "downloads" / "manual") in last and TRAIN_TAR in last and VAL_TAR in last
    assert not (tmp_path / "w" / "checkpoints").exists()
