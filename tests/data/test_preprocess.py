"""Preprocessing ops, eagerly and inside tf.data, against PIL / numpy references."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from googlenet_jax.data import preprocess


def _encode(array, fmt, mode=None, **kw):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo():
    """A smooth 375x500 RGB image (JPEG-friendly) plus its JPEG bytes."""
    y, x = np.mgrid[0:375, 0:500]
    rgb = np.stack([x * 255 / 499, y * 255 / 374, (x + y) * 255 / 873], -1).astype(np.uint8)
    return rgb, _encode(rgb, "JPEG", quality=95)


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3), ("RGBA", 4)])
def test_decode_png_gives_rgb_like_pil(mode, channels):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (5, 7, channels) if channels > 1 else (5, 7), dtype=np.uint8)
    data = _encode(array, "PNG", mode)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    got = preprocess.decode_image(tf.constant(data)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_decode_grayscale_jpeg_gives_rgb(photo):
    gray = photo[0][..., 0]
    got = preprocess.decode_image(tf.constant(_encode(gray, "JPEG", "L", quality=95))).numpy()
    assert got.shape == (375, 500, 3)
    np.testing.assert_array_equal(got[..., 0], got[..., 2])
    assert np.abs(got[..., 0].astype(int) - gray).mean() < 2


def test_decode_jpeg_equals_pil(photo):
    # PIL decodes with libjpeg's accurate integer IDCT, as torchvision's loader does; TensorFlow's
    # default fast IDCT is off by up to 3 levels on 65% of this image's pixels.
    rgb, data = photo
    got = preprocess.decode_image(tf.constant(data)).numpy()
    np.testing.assert_array_equal(got, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_image_shape_reads_jpeg_and_png_headers(photo):
    assert preprocess.image_shape(tf.constant(photo[1])).numpy().tolist() == [375, 500]
    png = _encode(photo[0][:10, :20], "PNG")
    assert preprocess.image_shape(tf.constant(png)).numpy().tolist() == [10, 20]


@pytest.mark.parametrize("top, left", [(40, 100), (41, 101)])  # on and off the 2x2 chroma grid
def test_fused_jpeg_crop_equals_pil_decode_then_slice(photo, top, left):
    fused = preprocess.decode_and_crop(tf.constant(photo[1]), tf.constant([top, left, 200, 150])).numpy()
    full = np.asarray(Image.open(io.BytesIO(photo[1])).convert("RGB"))
    np.testing.assert_array_equal(fused, full[top:top + 200, left:left + 150])


def test_png_crop_is_exact_slice(photo):
    data = tf.constant(_encode(photo[0], "PNG"))
    got = preprocess.decode_and_crop(data, tf.constant([3, 4, 50, 60])).numpy()
    np.testing.assert_array_equal(got, photo[0][3:53, 4:64])


def test_inception_boxes_respect_area_and_aspect_ranges():
    shape = tf.constant([375, 500])
    areas, aspects = [], []
    for i in range(200):
        top, left, h, w = preprocess.sample_inception_box(shape, tf.constant([i, 7])).numpy()
        assert 0 <= top and top + h <= 375 and 0 <= left and left + w <= 500
        areas.append(h * w / (375 * 500))
        aspects.append(w / h)
    areas, aspects = np.array(areas), np.array(aspects)
    assert areas.min() >= 0.08 - 0.01 and areas.max() <= 1.0
    # Integer box sides make aspect ratios slightly inexact.
    assert aspects.min() >= 0.75 - 0.02 and aspects.max() <= 4 / 3 + 0.02
    assert areas.min() < 0.2 and areas.max() > 0.7  # Spread over the range, not one size.


def test_inception_box_parameters_are_configurable():
    for i in range(50):
        _, _, h, w = preprocess.sample_inception_box(
            tf.constant([300, 300]), tf.constant([i, 1]), min_area=0.5, max_area=0.6,
            min_aspect=1.0, max_aspect=1.0).numpy()
        assert 0.49 <= h * w / 90000 <= 0.61 and abs(h - w) <= 1


def test_inception_crop_same_seed_same_crop_eager_and_in_tf_data(photo):
    data = tf.constant(photo[1])
    seed = tf.constant([3, 4], tf.int64)
    eager = preprocess.inception_crop(data, seed).numpy()
    ds = tf.data.Dataset.from_tensors((data, seed)).map(preprocess.inception_crop)
    np.testing.assert_array_equal(next(iter(ds)).numpy(), eager)
    other = preprocess.inception_crop(data, tf.constant([5, 4], tf.int64)).numpy()
    assert other.shape != eager.shape or not np.array_equal(other, eager)


def test_inception_crop_of_decoded_image_is_a_slice(photo):
    rgb = photo[0]
    seed = tf.constant([1, 2])
    top, left, h, w = preprocess.sample_inception_box(tf.constant([375, 500]), seed).numpy()
    got = preprocess.inception_crop(tf.constant(rgb), seed).numpy()
    np.testing.assert_array_equal(got, rgb[top:top + h, left:left + w])


def test_random_flip_is_identity_or_mirror_and_both_happen():
    image = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    flipped = 0
    for i in range(40):
        out = preprocess.random_flip(tf.constant(image), tf.constant([i, 0])).numpy()
        if np.array_equal(out, image[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(out, image)
    assert 5 < flipped < 35


def test_resize_matches_pil_bilinear_on_downscale(photo):
    got = preprocess.resize(tf.constant(photo[0]), 224).numpy()
    ref = np.asarray(Image.fromarray(photo[0]).resize((224, 224), Image.BILINEAR), np.float32)
    assert got.dtype == np.float32 and got.shape == (224, 224, 3)
    assert np.abs(got - ref).mean() < 1.0


def test_random_resize_picks_one_of_the_methods():
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    refs = [preprocess.resize(image, 8, m, antialias=False).numpy() for m in preprocess.RANDOM_RESIZE_METHODS]
    used = set()
    for i in range(30):
        out = preprocess.random_resize(image, 8, tf.constant([i, 9])).numpy()
        matches = [k for k, r in enumerate(refs) if np.allclose(out, r)]
        assert matches
        used.add(matches[0])
    assert len(used) >= 3


def test_photometric_distort_is_deterministic_bounded_and_changes_colours():
    image = tf.constant(np.random.default_rng(2).uniform(0, 255, (16, 16, 3)), tf.float32)
    a = preprocess.photometric_distort(image, tf.constant([1, 1])).numpy()
    b = preprocess.photometric_distort(image, tf.constant([1, 1])).numpy()
    c = preprocess.photometric_distort(image, tf.constant([2, 1])).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 255
    assert np.abs(a - image.numpy()).mean() > 1 and not np.array_equal(a, c)


def test_normalize_torchvision_and_paper_match_numpy():
    x = np.random.default_rng(3).integers(0, 256, (4, 5, 3)).astype(np.float32)
    tv = (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(preprocess.normalize(tf.constant(x), "torchvision").numpy(), tv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(preprocess.normalize(tf.constant(x), "paper").numpy(), x - [123, 117, 104])
    assert preprocess.normalize(tf.constant(x.astype(np.uint8)), "paper").dtype == tf.float32


def test_unknown_normalization_is_an_error():
    with pytest.raises(ValueError, match="normalization"):
        preprocess.normalize(tf.zeros([1, 1, 3]), "imagenet")


def test_ops_compose_inside_tf_data(photo):
    def op(data, seed):
        seeds = tf.random.experimental.stateless_split(seed, 3)
        x = preprocess.inception_crop(data, seeds[0])
        x = preprocess.random_resize(x, 32, seeds[1])
        x = preprocess.random_flip(x, seeds[2])
        return preprocess.normalize(preprocess.photometric_distort(x, seeds[0]), "paper")
    seeds = tf.constant([[i, 0] for i in range(4)], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: op(tf.constant(photo[1]), s))
    batch = np.stack(list(ds.as_numpy_iterator()))
    eager = np.stack([op(tf.constant(photo[1]), s).numpy() for s in seeds])
    assert batch.shape == (4, 32, 32, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, eager, atol=1e-4)
