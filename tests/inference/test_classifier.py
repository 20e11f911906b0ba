"""The jitted classifier against torchvision's own model and transform, on real photos.

Measured on scikit-image's sample photos: from the same decoded pixels our eval
preprocessing is within 1.0 gray level (max) and 0.25-0.30 (mean) of torchvision's
`IMAGENET1K_V1.transforms()`, which rounds its PIL resize to uint8 (an error of up to 0.5
on its side alone); decoding JPEG files with the pipeline's accurate IDCT gives PIL's
pixels exactly, so files stay within the same bound.
"""
import dataclasses

import jax
import numpy as np
import pytest
import torch
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image
from torchvision import transforms
from torchvision.models import GoogLeNet_Weights

import googlenet_jax
from googlenet_jax import inference
from googlenet_jax.model.input_spec import IMAGENET_MEAN, IMAGENET_STD
from googlenet_jax.weights.info import info_from_config

import helpers

PIXEL_STD = 255.0 * np.array(IMAGENET_STD)  # normalised units -> 0..255 gray levels
# Bounds on |ours - torchvision| in gray levels (see the module docstring for the measurement).
MAX_LEVELS, MEAN_LEVELS = 1.5, 0.4


@pytest.fixture(scope="module")
def classifier(torchvision_pth):
    return googlenet_jax.Classifier(torchvision_pth[0], batch_size=8)


@pytest.mark.parametrize("name", ["rocket", "cat", "coffee", "hubble", "camera"])
def test_preprocessing_matches_torchvisions_transform_within_rounding(classifier, name):
    image = Image.open(helpers.photo(name)).convert("RGB")
    expected = helpers.torchvision_eval_input(image)[0]
    for source in (image, helpers.photo(name)):  # decoded by PIL, and our own file decoding
        levels = np.abs(classifier.preprocess(source)[0] - expected) * PIXEL_STD
        assert levels.max() <= MAX_LEVELS, (name, levels.max())
        assert levels.mean() <= MEAN_LEVELS, (name, levels.mean())


@pytest.mark.parametrize("width", [341, 342, 343])
def test_center_crop_offsets_round_half_to_even_like_torchvision(classifier, width):
    # The shorter side is already 256, so neither side resizes and only the crop offset
    # differs between candidate rules: (343 - 224) / 2 = 59.5 rounds to 60, not floor's 59.
    pixels = np.random.default_rng(width).integers(0, 256, (256, width, 3), dtype=np.uint8)
    for array in (pixels, pixels.transpose(1, 0, 2)):
        expected = helpers.torchvision_eval_input(Image.fromarray(np.ascontiguousarray(array)))
        np.testing.assert_allclose(classifier.preprocess(array), expected, atol=1e-5)


def test_top5_and_probabilities_match_torchvision_on_real_photos(classifier, torchvision_pth):
    _, net = torchvision_pth
    names = ["rocket", "cat", "coffee", "astronaut", "hubble"]
    results = classifier(helpers.photos(*names), top_k=5)
    for name, top in zip(names, results):
        with torch.no_grad():
            logits = net(torch.from_numpy(helpers.torchvision_eval_input(Image.open(helpers.photo(name)).convert("RGB"))
                                          .transpose(0, 3, 1, 2).copy()))
        expected = torch.softmax(logits, -1)[0].numpy()
        assert [p.index for p in top] == list(np.argsort(-expected)[:5]), name
        assert [p.name for p in top] == [classifier.class_names[p.index] for p in top]
        np.testing.assert_allclose([p.probability for p in top], expected[[p.index for p in top]],
                                   rtol=1e-2, err_msg=name)


def test_features_are_torchvisions_pooled_features(classifier, torchvision_pth):
    _, net = torchvision_pth
    batch = np.concatenate([helpers.torchvision_eval_input(Image.open(p).convert("RGB"))
                            for p in helpers.photos("cat", "rocket")])
    captured = {}
    hook = net.avgpool.register_forward_hook(lambda m, i, o: captured.setdefault("x", o.flatten(1)))
    with torch.no_grad():
        net(torch.from_numpy(batch.transpose(0, 3, 1, 2).copy()))
    hook.remove()
    ours = classifier.features(batch)
    assert ours.shape == (2, 1024)
    assert helpers.relative_error(ours, captured["x"].numpy()) < 1e-5


def test_every_image_kind_gives_the_same_input(classifier):
    path = helpers.photo("cat")
    rgb = Image.open(path).convert("RGB")
    pixels = np.asarray(rgb)
    expected = classifier.preprocess(path)
    rgba = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    for image in (rgb, rgb.convert("RGBA"), pixels, rgba, [pixels], pixels[None]):
        np.testing.assert_array_equal(classifier.preprocess(image), expected)
    np.testing.assert_allclose(classifier.preprocess(pixels / 255.0), expected, atol=1e-4)
    gray = np.asarray(Image.open(helpers.photo("camera")))
    assert gray.ndim == 2
    as_rgb = classifier.preprocess(np.repeat(gray[..., None], 3, -1))
    for image in (gray, gray[..., None], Image.fromarray(gray), helpers.photo("camera")):
        np.testing.assert_array_equal(classifier.preprocess(image), as_rgb)
    cmyk = rgb.convert("CMYK")
    np.testing.assert_array_equal(classifier.preprocess(cmyk), classifier.preprocess(cmyk.convert("RGB")))


@pytest.mark.parametrize("image, message", [
    (np.full((20, 30, 3), 2.0), "float images must hold values in [0, 1]"),
    (np.zeros((20, 30, 3), np.int16), "unsupported dtype int16"),
    (np.zeros((20, 30, 2), np.uint8), "got shape (20, 30, 2)"),
    (object(), "expected a file path, a PIL image or an array"),
    ("/nonexistent/cat.jpg", "/nonexistent/cat.jpg: cannot read"),
])
def test_bad_images_are_named(classifier, image, message):
    with pytest.raises(inference.ImageError) as error:
        classifier.preprocess([np.zeros((8, 8, 3), np.uint8), image])
    assert message in str(error.value)
    if not isinstance(image, str):
        assert str(error.value).startswith("image 1")


def test_garbage_file_is_named(classifier, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(inference.ImageError, match="broken.jpg: not a readable image"):
        classifier([str(bad)])


def _small(torchvision_pth, **kwargs):
    """The .pth model fed 32x32 crops, so compilations stay cheap."""
    loaded = googlenet_jax.load(torchvision_pth[0])
    info = dataclasses.replace(loaded.info, image_size=32, resize_size=32)
    return googlenet_jax.Classifier(loaded._replace(info=info), **kwargs)


def test_compiles_once_per_padded_batch_size(torchvision_pth):
    clf = _small(torchvision_pth, batch_size=8, devices=jax.devices()[:1])
    assert clf.buckets == [1, 2, 4, 8]
    batch = np.random.default_rng(0).standard_normal((11, 32, 32, 3)).astype(np.float32)
    for n in (3, 4, 3, 11, 8, 11):  # 11 = 8 + 3: buckets 8 and 4
        assert clf.predict(batch[:n]).shape == (n, 1000)
    assert clf.predict_fn._cache_size() == 2  # 4 and 8 only


def test_eight_devices_shard_the_batch_and_agree_with_one(torchvision_pth):
    many = _small(torchvision_pth, batch_size=16)
    one = _small(torchvision_pth, batch_size=16, devices=jax.devices()[:1])
    assert len(many.devices) == 8 and many.buckets == [8, 16]
    batch = np.random.default_rng(1).standard_normal((5, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(many.predict(batch), one.predict(batch), rtol=1e-5, atol=1e-7)
    padded = np.zeros((8, 32, 32, 3), np.float32)
    sharding = NamedSharding(Mesh(np.array(many.devices), ("batch",)), PartitionSpec("batch"))
    out = many.predict_fn(many.variables, jax.device_put(padded, sharding))
    assert len(out.sharding.device_set) == 8


def test_paper_weights_use_the_caffe_mean_pixel(tmp_path):
    net = helpers.torch_reference("paper", aux_logits=False, seed=4).eval()
    with torch.no_grad():  # random weights give logits of spread ~90: a one-hot softmax that hides
        net.fc.weight.mul_(0.02)  # any input error; at ~2 every probability carries information
    torch.save(net.state_dict(), tmp_path / "paper.pth")
    clf = googlenet_jax.Classifier(tmp_path / "paper.pth")
    assert clf.info.normalization == "paper" and not clf.info.transform_input
    image = Image.open(helpers.photo("coffee")).convert("RGB")
    # Caffe's preprocessing by hand: torchvision's resize and crop, then minus the mean pixel.
    resized = GoogLeNet_Weights.IMAGENET1K_V1.transforms(mean=(0, 0, 0), std=(1, 1, 1))  # 256, then 224
    pixels = resized(image).numpy().transpose(1, 2, 0)[None] * 255.0 - np.array([123.0, 117.0, 104.0])
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(pixels.transpose(0, 3, 1, 2).astype(np.float32))), -1)
    # Resizing differs from PIL's by a little (0.6% at most here); the RGB mean subtracted in BGR
    # order, or none, moves probabilities by 20% and more.
    assert expected.max() < 0.5  # unsaturated
    np.testing.assert_allclose(clf.predict(clf.preprocess(image)), expected.numpy(), rtol=2e-2)
    top = clf([image], top_k=3)[0]
    assert [p.index for p in top] == list(np.argsort(-expected.numpy()[0])[:3])


def test_a_workdirs_eval_crop_fraction_sets_the_classifiers_resize():
    """A model trained with eval_crop_fraction=1 is served the whole center square, as its runs
    evaluated it: torchvision's Resize(S) and CenterCrop(S), not the default 256/224 resize."""
    config = {"num_classes": 3, "image_size": 32, "eval_crop_fraction": 1.0, "normalization": "torchvision",
              "dataset": "image_folder", "model": {"variant": "tiny", "transform_input": False}}
    model = googlenet_jax.GoogLeNet(num_classes=3, variant="tiny")
    # Random values of the traced shapes: preprocessing needs a Classifier, not a trained (or compiled) one.
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), train=False))
    variables = jax.tree.map(lambda s: np.ones(s.shape, np.float32), shapes)
    info = info_from_config(config, ("a", "b", "c"))
    clf = googlenet_jax.Classifier(googlenet_jax.LoadedModel(model, variables, info))
    image = Image.open(helpers.photo("coffee")).convert("RGB")  # 600x400: the crop cuts the longer side
    expected = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(32), transforms.ToTensor(),
                                   transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(image).numpy().transpose(1, 2, 0)
    levels = np.abs(clf.preprocess(image)[0] - expected) * PIXEL_STD  # measured: max 0.67, mean 0.26
    assert levels.max() <= MAX_LEVELS and levels.mean() <= MEAN_LEVELS, (levels.max(), levels.mean())


def test_use_average_false_serves_a_workdirs_raw_parameters(tmp_path):
    """Classifier(workdir, use_average=False) runs the raw parameters of a run that kept a Polyak
    average; by default the average."""
    from flax import traverse_util

    from googlenet_jax.configs import demo
    from googlenet_jax.training import checkpointing
    from googlenet_jax.training.train_state import TrainState

    config = demo.get_config()
    config.model.variant, config.image_size = "tiny", 32
    (tmp_path / "config.json").write_text(config.to_json())
    model = googlenet_jax.GoogLeNet(num_classes=config.num_classes, variant="tiny")
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32), train=False))
    rng = np.random.default_rng(2)
    variables = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes)
    averaged = jax.tree.map(lambda p: p * 0.5, variables["params"])
    state = TrainState(step=np.int32(3), params=variables["params"], batch_stats=variables["batch_stats"],
                       opt_state={}, ema_params=averaged, rng=np.zeros(2, np.uint32))
    saver = checkpointing.Checkpointer(tmp_path / "checkpoints", every_steps=1, keep=1)
    saver.save(3, state)
    saver.wait()
    saver.close()
    for use_average, expected in ((False, variables["params"]), (True, averaged)):
        clf = googlenet_jax.Classifier(tmp_path, use_average=use_average, fold_batch_norm=False)
        got, want = traverse_util.flatten_dict(clf.variables["params"]), traverse_util.flatten_dict(expected)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=f"{use_average}: {key}")
