"""Averaging a point over shifted copies of the image (`molmoact2.point_ensemble`): the shifts, the arithmetic
of shifting back, and the shipped Nano-ER through it on held-out simulator scenes (what README "Nano-ER" measures
on 575-597 questions per set)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from molmoact2.point_ensemble import ShiftEnsemble, ask_shifted, draw_copies, ensemble_note, shift_image


def test_shift_moves_the_content_and_repeats_the_edge():
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    out = shift_image(img, 2, -1)  # right by 2, up by 1
    assert out.shape == img.shape
    np.testing.assert_array_equal(out[0:4, 2:], img[1:5, :4])
    np.testing.assert_array_equal(out[:, 0], out[:, 1])  # the strip it leaves repeats the edge column
    np.testing.assert_array_equal(out[4], out[3])
    np.testing.assert_array_equal(shift_image(img, 0, 0), img)


def test_shifts_scale_with_the_image_and_bad_settings_are_refused():
    e = ShiftEnsemble()
    assert e.shifts_px(96, 96) == [(0, 0), (-3, 0), (3, 0), (0, -3), (0, 3)]
    assert e.shifts_px(224, 224) == [(0, 0), (-7, 0), (7, 0), (0, -7), (0, 7)]
    assert ShiftEnsemble(step_frac=0.001).shifts_px(96, 96)[1] == (-1, 0)  # never a zero shift for a non-zero offset
    with pytest.raises(ValueError, match=r"\(0, 0\) first"):
        ShiftEnsemble(offsets=((1, 0), (0, 0)))
    with pytest.raises(ValueError, match="fraction of the side"):
        ShiftEnsemble(step_frac=0.5)


def test_rings_are_drawn_where_the_copies_pointed():
    img = np.zeros((60, 60, 3), np.uint8)
    out = draw_copies(img, [[30.0, 30.0], None])
    assert out.shape == img.shape and not out[:, :5].any()  # nothing far from the ring
    assert out[25:36, 25:36].any() and img.sum() == 0  # drawn on a copy
    assert "not used" in ensemble_note({"applied": False, "why": "none"})


torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import one_thread_fixture  # noqa: E402
from molmoact2.models.registry import REPO_NANO_ER_DIR  # noqa: E402

one_thread = one_thread_fixture()
needs_er = pytest.mark.skipif(not (REPO_NANO_ER_DIR / "config.json").is_file(), reason="no Nano-ER checkpoint")


@pytest.fixture(scope="module")
def er():
    from molmoact2.models.registry import load_policy

    return load_policy("nano-er", seed=0)


@pytest.fixture(scope="module")
def scene():
    from molmoact2.spatial_session import sim_scene

    return sim_scene("touch", seed=10003)  # held out: training layouts are below 10000


@needs_er
def test_the_point_is_the_mean_of_the_copies_shifted_back(er, scene):
    from molmoact2 import spatial

    question = spatial.point_prompt("the bin")
    step = ask_shifted(er, scene.rgb, question)
    info = step.info["shift_ensemble"]
    plain = er.ask([scene.rgb], question).answer_text
    assert info["applied"] and info["single_pass_answer"] == plain
    # recompute every copy by hand: ask the shifted picture, move its point back by the shift
    h, w = scene.rgb.shape[:2]
    by_hand = []
    for dx, dy in ShiftEnsemble().shifts_px(w, h):
        text = er.ask([shift_image(scene.rgb, dx, dy)], question).answer_text
        pts = spatial.parse_answer(text).points_px(width=w, height=h)
        if len(pts) == 1:
            by_hand.append((pts[0][0] - dx, pts[0][1] - dy))
    assert info["used"] == len(by_hand) >= 3
    want = np.mean(by_hand, axis=0)
    got = spatial.parse_answer(step.answer_text, strict=True).points_px(width=w, height=h)[0]
    assert np.abs(got - want).max() <= 0.6 * max(w, h) / 1000  # only the rounding to whole 0..1000 units
    assert re.fullmatch(r'<points coords="1 1 \d{3} \d{3}">bin</points>', step.answer_text), step.answer_text
    assert step.points_px["image_1"].shape == (1, 2)


@needs_er
def test_answers_without_one_point_are_left_as_they_are(er, scene):
    from molmoact2 import spatial

    question = spatial.count_prompt("bins")  # a counting sentence, or none: not one point to average
    step = ask_shifted(er, scene.rgb, question)
    info = step.info["shift_ensemble"]
    plain = er.ask([scene.rgb], question).answer_text
    if len(spatial.parse_answer(plain).points) == 1 and spatial.parse_answer(plain).ok:
        pytest.skip(f"this model answered the count with one point: {plain!r}")
    assert not info["applied"] and "not exactly one point" in info["why"]
    assert step.answer_text == plain
    with pytest.raises(ValueError, match="expected one image"):
        ask_shifted(er, [scene.rgb, scene.rgb], question)


@needs_er
def test_the_spatial_session_draws_the_copies_and_says_so(er, scene):
    from molmoact2 import spatial
    from molmoact2.spatial_session import ask_scene

    one = ask_scene(er, scene, spatial.point_prompt("the bin"))
    five = ask_scene(er, scene, spatial.point_prompt("the bin"), ensemble=ShiftEnsemble())
    assert "shifted copies" in five.summary_md and "shifted copies" not in one.summary_md
    assert five.step.info["shift_ensemble"]["applied"]
    assert (five.drawn != one.drawn).any()  # the rings (and possibly a moved dot)
    assert len(five.points_world) == 1  # the averaged point is the one lifted to 3-D
