"""Evaluation crop geometry against boxes computed by hand for full-size images."""
import numpy as np
import pytest
import tensorflow as tf

from googlenet_jax.data import crops
from googlenet_jax.model.input_spec import eval_resize_size


def _views(views):
    return [(tuple(int(x) for x in v.resize_hw), tuple(int(x) for x in v.box), v.flip, v.resize_box)
            for v in views]


# A 500 wide x 375 high photo. Shorter side 375 -> 256 makes the longer side
# floor(500 * 256 / 375) = floor(341.33) = 341.
H, W = 375, 500


def test_center_crop_box_500x375():
    assert _views(crops.center_crop_views(H, W, 224)) == [((256, 341), (16, 58, 224, 224), False, False)]


def test_center_crop_box_portrait_375x500():
    assert _views(crops.center_crop_views(W, H, 224)) == [((341, 256), (58, 16, 224, 224), False, False)]


def test_center_crop_offset_rounds_half_to_even_like_torchvision():
    # 256x343: the slack 343 - 224 = 119 gives int(round(59.5)) = 60 in torchvision (floor: 59);
    # the 500x375 case above (slack 117 -> 58) tells it from rounding half up.
    assert _views(crops.center_crop_views(256, 343, 224)) == [((256, 343), (16, 60, 224, 224), False, False)]


def test_center_crop_with_a_given_resize_size_500x375():
    # Shorter side 375 -> 224 makes the longer side floor(500 * 224 / 375) = 298; the
    # centered 224 box starts at (298 - 224) // 2 = 37: the whole height is kept.
    assert _views(crops.center_crop_views(H, W, 224, resize_size=224)) == [
        ((224, 298), (0, 37, 224, 224), False, False)]


def test_eval_resize_size_scales_with_image_size():
    assert eval_resize_size(224) == 256
    assert eval_resize_size(64) == 73  # 64 * 256 / 224 = 73.14
    assert eval_resize_size(299) == 342  # 341.7


def test_ten_crop_boxes_500x375():
    boxes = [(0, 0), (0, 117), (32, 0), (32, 117), (16, 58)]  # tl, tr, bl, br, center
    expected = [((256, 341), (t, l, 224, 224), flip, False) for flip in (False, True) for t, l in boxes]
    assert _views(crops.ten_crop_views(H, W, 224)) == expected


# Per scale, by hand: resized (h, w) of the 500x375 image, left offsets of the left/center/right
# squares (side = shorter side; slack = w - side), and the square's inner 224 boxes.
SCALES_500x375 = [
    # resized hw   square lefts     inner (top, left) boxes: tl, tr, bl, br, center
    ((256, 341), (0, 42, 85), [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)]),
    ((288, 384), (0, 48, 96), [(0, 0), (0, 64), (64, 0), (64, 64), (32, 32)]),
    ((320, 426), (0, 53, 106), [(0, 0), (0, 96), (96, 0), (96, 96), (48, 48)]),
    ((352, 469), (0, 58, 117), [(0, 0), (0, 128), (128, 0), (128, 128), (64, 64)]),
]


def test_144_crop_boxes_500x375():
    expected = []
    for hw, lefts, inner in SCALES_500x375:
        side = hw[0]
        for left in lefts:
            boxes = [((t, left + l, 224, 224), False) for t, l in inner] + [((0, left, side, side), True)]
            for box, resize_box in boxes:
                for flip in (False, True):
                    expected.append((hw, box, flip, resize_box))
    got = _views(crops.multi_crop_144_views(H, W, 224))
    assert len(got) == 144
    assert got == expected


def test_144_crop_first_scale_portrait_375x500_uses_top_center_bottom_squares():
    got = _views(crops.multi_crop_144_views(W, H, 224))[:36]
    squares = [v for v in got if v[3]]
    assert [s[1] for s in squares[::2]] == [(0, 0, 256, 256), (42, 0, 256, 256), (85, 0, 256, 256)]
    assert got[2] == ((341, 256), (0, 32, 224, 224), False, False)  # top square, top-right crop
    assert got[30] == ((341, 256), (85 + 32, 32, 224, 224), False, False)  # bottom square, br crop


@pytest.fixture(scope="module")
def image_256x341():
    # Already at the first eval scale, so views are plain slices of it.
    return np.random.default_rng(0).integers(0, 256, (256, 341, 3), dtype=np.uint8)


def test_ten_crop_pixels_are_slices_and_mirrors(image_256x341):
    out = crops.eval_crops(tf.constant(image_256x341), 224, crops=10).numpy()
    assert out.shape == (10, 224, 224, 3) and out.dtype == np.float32
    tl = image_256x341[:224, :224].astype(np.float32)
    br = image_256x341[32:, 117:].astype(np.float32)
    center = image_256x341[16:240, 58:282].astype(np.float32)
    np.testing.assert_allclose(out[0], tl, atol=1e-3)
    np.testing.assert_allclose(out[3], br, atol=1e-3)
    np.testing.assert_allclose(out[4], center, atol=1e-3)
    np.testing.assert_allclose(out[9], center[:, ::-1], atol=1e-3)


def test_144_crop_pixels_first_scale(image_256x341):
    out = crops.eval_crops(tf.constant(image_256x341), 224, crops=144).numpy()
    assert out.shape == (144, 224, 224, 3)
    square = image_256x341[:, 42:298]  # center square at scale 256
    np.testing.assert_allclose(out[12], square[:224, :224], atol=1e-3)  # its tl crop
    np.testing.assert_allclose(out[13], square[:224, :224][:, ::-1], atol=1e-3)
    np.testing.assert_allclose(out[20], square[16:240, 16:240], atol=1e-3)  # its center crop
    # Whole square resized to 224: a smoothed copy of the square, close to a PIL resize.
    from PIL import Image
    ref = np.asarray(Image.fromarray(square).resize((224, 224), Image.BILINEAR), np.float32)
    assert np.abs(out[22] - ref).mean() < 3.0


def test_eval_crops_work_inside_tf_data(image_256x341):
    ds = tf.data.Dataset.from_tensors(image_256x341).map(lambda x: crops.eval_crops(x, 224, 10))
    np.testing.assert_allclose(next(iter(ds)).numpy(), crops.eval_crops(image_256x341, 224, 10).numpy())


def test_unknown_crop_count_is_an_error():
    with pytest.raises(ValueError, match="crops"):
        crops.views_for(10, 10, 8, 5)
