"""MolmoThink change masks and spans on hand-made frames."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from molmoact2.depth import think


def _scene(obj_xy=(100, 60), size=(480, 640), seed=0) -> np.ndarray:
    """Textured table (noise keeps every patch non-flat) with a red 60x60 block at obj_xy (x, y)."""
    rng = np.random.default_rng(seed)
    img = (rng.integers(80, 160, (*size, 3))).astype(np.uint8)
    x, y = obj_xy
    img[y:y + 60, x:x + 60] = (220, 30, 30)
    return img


def _cells_touched(x0, y0, x1, y1, size=(480, 640)) -> set[int]:
    """Cells of the 10x10 grid that the box [x0, x1) x [y0, y1) (original pixels) overlaps, with 1 px bilinear slack."""
    h, w = size
    cx = lambda x: min(9, max(0, int(x * 320 / w // 32)))  # noqa: E731
    cy = lambda y: min(9, max(0, int(y * 320 / h // 32)))  # noqa: E731
    return {r * 10 + c for r in range(cy(y0 - 2), cy(y1 + 2) + 1) for c in range(cx(x0 - 2), cx(x1 + 2) + 1)}


def test_identical_frames_change_nothing():
    a = _scene()
    m = think.update_mask(a, a.copy())
    assert m.shape == (100,) and m.dtype == bool and not m.any()
    assert think.update_spans(m) == [think.Span(0, 100, False)]


def test_moved_object_changes_only_its_cells():
    before, after = _scene((100, 60)), _scene((300, 300))
    m = think.update_mask(after, before)
    allowed = _cells_touched(100, 60, 160, 120) | _cells_touched(300, 300, 360, 360)
    changed = set(np.flatnonzero(m).tolist())
    assert changed, "moving a block must change some cells"
    assert changed <= allowed
    # the cells fully covered by the old and by the new block position must be flagged
    assert {1 * 10 + 2, 6 * 10 + 5} <= changed


def _colourful(seed=0) -> np.ndarray:
    """16x16-pixel blocks of random colours: texture that survives the 2x bilinear downscale."""
    blocks = np.random.default_rng(seed).integers(0, 256, (30, 40, 3))
    return np.kron(blocks, np.ones((16, 16, 1))).astype(np.uint8)


def test_global_brightness_change_flips_every_cell():
    a = _colourful()
    brighter = np.clip(a.astype(np.int16) + 40, 0, 255).astype(np.uint8)
    assert think.update_mask(brighter, a).all()
    # Cosine of raw RGB ignores a pure gain: dimming by 30% (no clipping) changes no cell.
    dimmer = (a.astype(np.float32) * 0.7).round().astype(np.uint8)
    assert not think.update_mask(dimmer, a).any()
    # A colour cast (warm light) changes the RGB direction of every cell, even on the grey-ish table.
    warm = np.clip(_scene().astype(np.float32) * np.array([1.1, 1.0, 0.85], np.float32), 0, 255).astype(np.uint8)
    assert think.update_mask(warm, _scene()).all()


def test_threshold_is_a_parameter_and_similarity_matches_definition():
    a = _scene()
    b = a.copy()
    b[:48, :64] = np.clip(b[:48, :64].astype(int) + 12, 0, 255)  # exactly cell 0 (48x64 -> 32x32 after resize)
    sims = think.cell_similarity(b, a)
    assert sims.dtype == np.float32 and sims.shape == (100,)
    # cell 0 by hand: PIL bilinear 320x320, raw float32 patches, cosine
    ra = np.asarray(Image.fromarray(a).resize((320, 320), Image.BILINEAR)).astype(np.float32)[:32, :32].ravel()
    rb = np.asarray(Image.fromarray(b).resize((320, 320), Image.BILINEAR)).astype(np.float32)[:32, :32].ravel()
    assert np.isclose(sims[0], ra @ rb / (np.linalg.norm(ra) * np.linalg.norm(rb)), atol=1e-6)
    assert sims[0] < 1.0
    assert think.update_mask(b, a, threshold=float(sims[0]) - 1e-4).sum() == 0
    assert think.update_mask(b, a, threshold=float(sims[0]) + 1e-4)[0]


def test_black_patches_count_as_unchanged_and_float_images_are_scaled():
    a = np.zeros((320, 320, 3), np.uint8)
    b = a.copy()
    b[:32, :32] = 200
    m = think.update_mask(b, a)
    # cell 0: one norm is zero -> similarity 1.0 by definition -> unchanged; every other cell black vs black.
    assert not m.any()
    f = _scene().astype(np.float32) / 255.0
    assert not think.update_mask(f, (f * 255).astype(np.uint8)).any()
    with pytest.raises(ValueError, match="image"):
        think.update_mask(np.zeros((4,)), a)


def test_spans_are_contiguous_row_major_runs():
    m = np.zeros(100, bool)
    m[[0, 1, 5, 99]] = True
    spans = think.update_spans(m)
    assert [(s.start, s.end, s.changed) for s in spans] == [(0, 2, True), (2, 5, False), (5, 6, True), (6, 99, False), (99, 100, True)]
    assert sum(s.length for s in spans) == 100
    cost = think.decode_cost(m)
    assert (cost.cells_repredicted, cost.tokens_saved, cost.forward_passes) == (4, 96, 6)
    assert think.update_spans(np.ones(100, bool)) == [think.Span(0, 100, True)]


def test_carry_forward_and_trace():
    prev = np.arange(100)
    new = (np.arange(100) + 7) % 128
    m = np.zeros(100, bool)
    m[10:20] = True
    out = think.carry_forward(prev, new, m)
    assert np.array_equal(out[10:20], new[10:20]) and np.array_equal(out[:10], prev[:10])
    assert np.array_equal(think.carry_forward(None, new, m), new)
    with pytest.raises(ValueError, match="mask"):
        think.carry_forward(prev, new, m[:50])

    frames = [_scene((100, 60)), _scene((100, 60)), _scene((300, 300))]
    codes = np.stack([np.full(100, 1), np.full(100, 2), np.full(100, 3)])
    tr = think.trace_masks(frames, codes)
    assert tr.masks[0].all() and not tr.masks[1].any() and 0 < tr.masks[2].sum() < 100
    assert (tr.buffers[1] == 1).all()  # nothing changed: the frame-0 codes are carried forward
    assert set(np.unique(tr.buffers[2]).tolist()) == {1, 3}
    # re-thresholding the stored similarities equals recomputing from images
    for thr in (0.9, 0.99, 0.999):
        assert np.array_equal(think.masks_from_similarities(tr.similarities, thr).masks, think.trace_masks(frames, threshold=thr).masks)


def test_cache_first_frame_full_then_selective():
    cache = think.ThinkCache()
    a = _scene()
    assert cache.mask_for(a).all()
    cache.update(a, np.zeros(100, np.int64))
    assert not cache.mask_for(a).any()
    cache.depth_bins = np.zeros(50, np.int64)  # a cache of the wrong size -> full decode
    assert cache.mask_for(a).all()


def _reference_similarity(cur: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """The documented reference computation (molmoact2.md §5), spelled out plainly as a test oracle."""
    def grid(img):
        img = np.asarray(img)
        if img.shape[:2] != (320, 320):
            img = np.asarray(Image.fromarray(img).resize((320, 320), Image.BILINEAR))
        return img.astype(np.float32).reshape(10, 32, 10, 32, 3).transpose(0, 2, 1, 3, 4).reshape(10, 10, -1)

    a, b = grid(cur), grid(prev)
    dot = np.sum(a * b, axis=-1)
    denom = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(denom < 1e-8, 1.0, dot / (denom + 1e-12)).reshape(-1)


@pytest.mark.parametrize("shape", [(224, 224), (480, 640), (320, 320), (97, 131)])
def test_similarities_are_bit_identical_to_the_reference(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    ref = _reference_similarity(b, a)
    ours = think.cell_similarity(b, a)
    assert np.array_equal(ours, ref.astype(np.float32))
    assert np.array_equal(think.update_mask(b, a), ref < 0.996)
    cache = think.ThinkCache()
    cache.update(a, np.zeros(100, np.int64))
    assert np.array_equal(cache.mask_for(b), ref < 0.996)
