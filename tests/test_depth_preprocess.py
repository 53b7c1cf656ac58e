"""The VQ-VAE input pipeline: inverse depth, per-frame uint8 min-max (truncation), nearest resize, [-1, 1]."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from molmoact2.depth import preprocess as pp


def test_metric_to_inverse_depth_marks_missing_returns_far():
    d = np.array([[0.5, 2.0], [np.nan, -1.0]], np.float32)
    inv = pp.metric_to_inverse_depth(d)
    assert inv.dtype == np.float32
    np.testing.assert_allclose(inv, [[2.0, 0.5], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        pp.metric_to_inverse_depth(np.zeros((2, 2, 1)))


def test_uint8_minmax_truncates_not_rounds():
    disp = np.array([[0.0, 1.0], [0.999, 0.5]], np.float32)
    u8 = pp.disparity_to_uint8(disp)
    assert u8.dtype == np.uint8
    # 0.999 * 255 = 254.745 -> 254 (truncation), 0.5 * 255 = 127.5 -> 127
    assert u8.tolist() == [[0, 255], [254, 127]]
    assert pp.disparity_to_uint8(np.full((3, 3), 7.0)).max() == 0  # flat map -> zeros, not NaN
    with pytest.raises(ValueError, match="finite"):
        pp.disparity_to_uint8(np.array([[np.nan, 1.0]]))


def test_nearest_resize_pil_mode_matches_pil_and_cv2_mode_uses_floor_of_dst():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (240, 427), dtype=np.uint8)
    ours = pp.nearest_resize(img, 320, mode="pil")
    ref = np.asarray(Image.fromarray(img).resize((320, 320), Image.NEAREST))
    assert np.array_equal(ours, ref)
    cv = pp.nearest_resize(img, 320, mode="cv2")
    # cv2.INTER_NEAREST: dst x -> src floor(x * w / size)
    assert cv[5, 7] == img[int(5 * 240 / 320), int(7 * 427 / 320)]
    with pytest.raises(ValueError, match="mode"):
        pp.nearest_resize(img, 320, mode="bicubic")


def test_metric_depth_to_vq_input_range_and_orientation():
    depth = np.full((48, 64), 2.0, np.float32)
    depth[10:20, 10:20] = 0.5  # near object
    depth[0, 0] = np.nan  # no return -> farthest
    x = pp.metric_depth_to_vq_input(depth)
    assert x.shape == (320, 320) and x.dtype == np.float32
    assert x.max() == 1.0 and x.min() == -1.0
    # nearest = +1 (disparity is larger when nearer)
    assert x[80, 80] == 1.0  # src row 12, col 16: inside the object
    assert x[0, 0] == -1.0
    # background: disparity 0.5 of range [0, 2] -> uint8 int(63.75) = 63
    assert np.isclose(x[300, 300], (63 / 255 - 0.5) / 0.5, atol=1e-6)


def test_uint8_to_vq_input_exact_values():
    u8 = np.array([[0, 255, 128]], np.uint8)
    np.testing.assert_allclose(pp.uint8_to_vq_input(u8), [[-1.0, 1.0, 128 / 255 * 2 - 1]], atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        pp.uint8_to_vq_input(u8.astype(np.float32))


def test_decoded_normalisations():
    d = np.array([[-0.5, 0.5]], np.float32)
    np.testing.assert_allclose(pp.decoded_to_unit(d), [[0.0, 1.0]])
    np.testing.assert_allclose(pp.vq_output_to_unit_fixed(d), [[0.25, 0.75]])
    assert pp.decoded_to_unit(np.ones((2, 2))).max() == 0.0
