"""Tests for molmoact2.spatial: Molmo2-ER answer parsing, scale conversions, drawing, prompts."""

import numpy as np
import pytest

from molmoact2 import spatial as S

# --------------------------------------------------------------------------------------------
# Molmo2 points / tracks
# --------------------------------------------------------------------------------------------


def test_points_two_images_with_alt():
    a = S.parse_answer('<points alt="white mugs" coords="1 1 098 629 2 162 629;2 3 142 418">mugs</points>')
    assert a.ok and a.problems == ()
    assert [(p.image, p.point_id, p.x, p.y) for p in a.points] == [(1, 1, 98, 629), (1, 2, 162, 629), (2, 3, 142, 418)]
    assert {p.label for p in a.points} == {"mugs"} and {p.alt for p in a.points} == {"white mugs"}
    assert all(p.scale == 1000 and p.source == "points" for p in a.points)
    assert a.text == "mugs" and a.count is None


def test_points_attribute_order_tab_separator_and_self_closing():
    a = S.parse_answer('Here: <points coords="1 1 500 500\t2 2 250 750" alt="x &amp; y">a &quot;b&quot;</points>.')
    assert [(p.image, p.point_id) for p in a.points] == [(1, 1), (2, 2)]
    assert a.points[0].alt == "x & y" and a.points[0].label == 'a "b"'
    assert a.text == 'Here: a "b".'
    b = S.parse_answer('<points coords="1 1 100 200"/>')
    assert len(b.points) == 1 and b.points[0].label == "" and b.ok


def test_tracks_have_timestamps():
    a = S.parse_answer('<tracks coords="0.0 1 210 640 2 700 100;0.5 1 260 600;1.0 1 330 560">gripper</tracks>')
    assert a.points == () and len(a.tracks) == 4
    assert [(t.time, t.point_id, t.x, t.y) for t in a.tracks] == [
        (0.0, 1, 210, 640), (0.0, 2, 700, 100), (0.5, 1, 260, 600), (1.0, 1, 330, 560)
    ]
    assert all(t.image is None and t.source == "tracks" for t in a.tracks)
    assert a.ok


def test_video_points_with_timestamp_prefix():
    a = S.parse_answer('<points coords="2.5 1 400 400;3.0 2 410 405">ball</points>')
    assert [(p.time, p.image) for p in a.points] == [(2.5, None), (3.0, None)]


# --------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------


def test_count_sentence():
    a = S.parse_answer('Counting the <points coords="1 1 120 410 2 402 388 3 731 420">apples</points> shows a total of 3.')
    assert a.count == 3 and len(a.points) == 3 and a.ok
    assert a.text == "Counting the apples shows a total of 3."


def test_count_then_point_none_and_bare_number():
    a = S.parse_answer('There are 2 <points coords="1 1 100 100 2 900 900">cats</points>.')
    assert a.count == 2 and a.ok and a.text == "There are 2 cats."
    n = S.parse_answer("There are none.")
    assert n.count == 0 and n.points == () and n.ok
    assert S.parse_answer("3").count == 3
    assert S.parse_answer("The cup is left of the plate.").count is None


def test_count_mismatch_is_a_problem():
    a = S.parse_answer('Counting the <points coords="1 1 120 410 2 402 388">apples</points> shows a total of 3.')
    assert a.count == 3 and len(a.points) == 2
    assert any("says a total of 3" in p and "holds 2" in p for p in a.problems)
    b = S.parse_answer('There are none. <points coords="1 1 120 410">apples</points>')
    assert any("'There are none.': expected no points or boxes, got 1 point(s)" in p for p in b.problems)


# --------------------------------------------------------------------------------------------
# boxes
# --------------------------------------------------------------------------------------------


def test_boxes_with_image_index_multi_image():
    a = S.parse_answer('<boxes coords="1 1 160 230 480 590 2 520 300 700 610;2 3 010 020 030 040">cups</boxes>')
    assert a.ok
    assert [(b.image, b.box_id, b.x1, b.y1, b.x2, b.y2) for b in a.boxes] == [
        (1, 1, 160, 230, 480, 590), (1, 2, 520, 300, 700, 610), (2, 3, 10, 20, 30, 40)
    ]
    assert a.boxes[0].scale == 1000 and a.boxes[0].label == "cups"


def test_boxes_without_image_index_and_scale_100():
    a = S.parse_answer('<boxes coords="1 10 15 25 30 2 35 40 50 60">car</boxes>', box_scale=100)
    assert a.ok and [(b.image, b.box_id, b.scale) for b in a.boxes] == [(1, 1, 100), (1, 2, 100)]
    bad = S.parse_answer('<boxes coords="1 1 160 230 480 590">cups</boxes>', box_scale=100)
    assert bad.boxes == () and any("expected x1 y1 x2 y2 in 0..100" in p for p in bad.problems)


def test_boxes_problems():
    a = S.parse_answer('<boxes coords="1 1 500 500 400 600 2 100 100 200 200">cups</boxes>')
    assert [b.box_id for b in a.boxes] == [2]
    assert any("expected x1 <= x2 and y1 <= y2" in p for p in a.problems)
    b = S.parse_answer('<boxes coords="1 1 100 100 200 200 7">cups</boxes>')
    assert any("5k+1 numbers" in p and "got 7 numbers" in p for p in b.problems)
    assert [b.box_id for b in b.boxes] == [1]  # the complete box is kept
    c = S.parse_answer("<boxes>cups</boxes>")
    assert any("expected a coords" in p for p in c.problems)


# --------------------------------------------------------------------------------------------
# legacy formats
# --------------------------------------------------------------------------------------------


def test_legacy_molmo_v1_point_and_points():
    a = S.parse_answer('<point x="61.5" y="40.2" alt="red block">red block</point>')
    assert [(p.x, p.y, p.scale, p.source, p.point_id) for p in a.points] == [(61.5, 40.2, 100, "point_v1", 1)]
    assert a.points[0].alt == "red block" and a.ok
    b = S.parse_answer('<points x1="20.0" y1="30.5" x2="70.1" y2="33.0" alt="bowls">bowls</points>')
    assert [(p.point_id, p.x, p.y, p.source) for p in b.points] == [
        (1, 20.0, 30.5, "points_v1"), (2, 70.1, 33.0, "points_v1")
    ]
    c = S.parse_answer('<point x="161.5" y="40.2">x</point>')
    assert c.points == () and any("in 0..100" in p for p in c.problems)


def test_molmoact_v1_trace():
    a = S.parse_answer("The trajectory of the end effector in the first image is [[112, 84], [118, 96], [131,120]].")
    assert len(a.traces) == 1 and a.traces[0].points == ((112, 84), (118, 96), (131, 120))
    assert a.traces[0].scale == 256 and a.ok
    b = S.parse_answer("[[12, 34], [256, 10], [1.5, 2]]")
    assert b.traces[0].points == ((12, 34),)
    assert sum("expected integer (x, y) in [0, 256)" in p for p in b.problems) == 2


# --------------------------------------------------------------------------------------------
# partial parses and strict mode
# --------------------------------------------------------------------------------------------

MALFORMED = (
    'Counting the <points coords="1 1 500 500 2 1200 300">cups</points> shows a total of 3. '
    '<points coords="1 1 400 400">plates'
)


def test_partial_parse_lists_problems_and_keeps_good_points():
    a = S.parse_answer(MALFORMED)
    assert not a.ok
    assert [(p.x, p.y) for p in a.points] == [(500, 500), (400, 400)]
    joined = " | ".join(a.problems)
    assert "point 2: expected x/y in 0..1000, got 1200; dropped" in joined
    assert "expected a closing </points>" in joined
    assert "says a total of 3, but its tag holds 1" in joined
    assert a.text == "Counting the cups shows a total of 3. plates"


@pytest.mark.parametrize(
    "text,needle",
    [
        ('<points coords="1 2 500 500 3 100 100">x</points>', "expected point ids to run 1..2"),
        ('<points coords="1 1 500 500 2 100">x</points>', "got 5 numbers (2 left over, ignored)"),
        ('<points coords="3 1 500 500">x</points>', "image index 3 but only 2 image(s)"),
        ('<points coords="0 1 500 500">x</points>', "expected a 1-based image index, got 0"),
        ('<points coords="1 1 5a0 500">x</points>', "expected non-negative numbers"),
        ('<points coords=1 1 500 500>x</points>', "unparsed text"),
        ('Look: <points coords="1 1 500 5', "got a truncated '<points"),
        ('<tracks alt="x">y</tracks>', "expected a coords"),
        ('<points foo="1">x</points>', "expected coords="),
        ("the cups</points> are here", "stray closing tag"),
    ],
)
def test_problems_name_what_was_expected(text, needle):
    a = S.parse_answer(text, num_images=2)
    assert any(needle in p for p in a.problems), a.problems
    with pytest.raises(S.SpatialFormatError, match="problem"):
        S.parse_answer(text, strict=True, num_images=2)


def test_strict_passes_good_answers_and_raises_with_all_problems():
    S.parse_answer('<points coords="1 1 500 500">x</points>', strict=True)
    with pytest.raises(S.SpatialFormatError) as info:
        S.parse_answer(MALFORMED, strict=True)
    msg = str(info.value)
    assert msg.startswith("3 problem(s)") and "expected x/y in 0..1000, got 1200" in msg
    assert isinstance(info.value, ValueError)


def test_parse_answer_argument_errors():
    with pytest.raises(TypeError):
        S.parse_answer(None)
    with pytest.raises(ValueError, match="box_scale: expected 1000 or 100"):
        S.parse_answer("x", box_scale=256)


# --------------------------------------------------------------------------------------------
# conversions
# --------------------------------------------------------------------------------------------


def test_scale_conversions():
    assert S.points_1000_to_px([[500, 250]], width=200, height=100).tolist() == [[100.0, 25.0]]
    assert S.px_to_points_1000([[100, 25]], width=200, height=100).tolist() == [[500.0, 250.0]]
    assert S.points_100_to_px([[50, 100]], width=640, height=480).tolist() == [[320.0, 480.0]]
    assert S.px_to_points_100([[320, 120]], width=640, height=480).tolist() == [[50.0, 25.0]]
    assert S.trace_256_to_px([[128, 64]], width=512, height=256).tolist() == [[256.0, 64.0]]
    assert S.px_to_trace_256([[256, 64]], width=512, height=256).tolist() == [[128.0, 64.0]]
    assert S.convert_points([[12.5, 3]], from_unit="points_100", to_unit="points_1000", width=7, height=9).tolist() == [
        [125.0, 30.0]
    ]
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, (50, 2))
    for unit in ("points_100", "trace_256", "px"):
        there = S.convert_points(xy, from_unit="points_1000", to_unit=unit, width=333, height=211)
        back = S.convert_points(there, from_unit=unit, to_unit="points_1000", width=333, height=211)
        assert np.allclose(back, xy)


def test_conversions_require_explicit_size_and_valid_units():
    with pytest.raises(TypeError):
        S.points_1000_to_px([[1, 2]])  # no default image size
    with pytest.raises(ValueError, match="positive integer width and height"):
        S.points_1000_to_px([[1, 2]], width=0, height=10)
    with pytest.raises(ValueError, match="unit: expected one of"):
        S.convert_points([[1, 2]], from_unit="points_10", to_unit="px", width=1, height=1)
    with pytest.raises(ValueError, match=r"shape \[..., 2\]"):
        S.points_1000_to_px([1, 2, 3], width=1, height=1)


def test_answer_pixel_helpers():
    a = S.parse_answer('<points coords="1 1 500 500;2 2 100 900">x</points>')
    assert a.points_px(width=200, height=100, image=1).tolist() == [[100.0, 50.0]]
    assert a.points_px(width=200, height=100, image=2).tolist() == [[20.0, 90.0]]
    assert S.pixel_index(200.0, 100.0, width=200, height=100) == (199, 99)  # right/bottom edge → last pixel
    assert S.pixel_index(10.7, 3.2, width=200, height=100) == (10, 3)
    box = S.parse_answer('<boxes coords="1 1 100 100 900 900">b</boxes>').boxes[0]
    assert box.xyxy_px(width=200, height=100) == (20.0, 10.0, 180.0, 90.0)


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------


def test_draw_points_changes_expected_pixels():
    img = np.zeros((100, 200, 3), np.uint8)
    a = S.parse_answer('<points coords="1 1 500 500;2 2 100 100">x</points>')
    out = S.draw_answer(img, a, image_index=1, radius_px=4)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert tuple(out[50, 100]) == S.color_for(1)  # the dot sits on (x_px, y_px) = (100, 50)
    assert tuple(out[10, 20]) == (0, 0, 0)  # the image-2 point is not drawn on image 1
    assert tuple(out[95, 5]) == (0, 0, 0)
    assert not img.any()  # input untouched
    out2 = S.draw_answer(img, a, image_index=2, radius_px=4)
    assert tuple(out2[10, 20]) == S.color_for(2) and tuple(out2[50, 100]) == (0, 0, 0)
    assert np.array_equal(out, S.draw_answer(img, a, image_index=1, radius_px=4))  # deterministic


def test_draw_boxes_tracks_and_traces():
    img = np.full((100, 200, 3), 255, np.uint8)
    boxes = S.parse_answer('<boxes coords="1 1 100 100 900 900">b</boxes>')
    out = S.draw_answer(img, boxes)
    assert tuple(out[50, 20]) == S.color_for(1)  # left edge at x1_px = 20
    assert tuple(out[50, 180]) == S.color_for(1)  # right edge at x2_px = 180
    assert tuple(out[50, 100]) == (255, 255, 255)  # inside stays clear

    trace = S.parse_answer("[[0, 128], [255, 128]]")
    out = S.draw_answer(np.zeros((256, 256, 3), np.uint8), trace)
    assert tuple(out[128, 128]) == S.color_for(1) and tuple(out[20, 128]) == (0, 0, 0)

    track = S.parse_answer('<tracks coords="0.0 1 100 500;1.0 1 900 500">g</tracks>')
    out = S.draw_answer(np.zeros((100, 100, 3), np.uint8), track)
    assert tuple(out[50, 50]) == S.color_for(1)


def test_draw_validates_image_and_colors_are_stable():
    with pytest.raises(ValueError, match="expected uint8"):
        S.draw_answer(np.zeros((4, 4, 3), np.float32), S.parse_answer("x"))
    with pytest.raises(ValueError, match="got shape"):
        S.draw_points_px(np.zeros((4, 4, 2), np.uint8), [[1, 1]])
    gray = S.draw_points_px(np.zeros((20, 20), np.uint8), [[10, 10]], radius_px=2)
    assert gray.shape == (20, 20, 3) and tuple(gray[10, 10]) == S.color_for(1)
    assert S.color_for("cup") == S.color_for("cup") and S.color_for("cup") in S.PALETTE
    assert S.color_for(11) == S.color_for(1)


# --------------------------------------------------------------------------------------------
# prompts, formatting, examples
# --------------------------------------------------------------------------------------------


def test_prompt_templates():
    assert S.point_prompt("the red cup") == "Point to the red cup\nPlease say 'There are none.' if it is not in the image."
    assert S.point_all_prompt("mug") == 'Point to all occurrences of "mug"'
    assert S.count_prompt("apples") == "How many apples are there?"
    assert S.count_and_point_prompt("apples") == "Count the apples in the image, then point to them."
    with pytest.raises(ValueError, match="label: expected a non-empty string"):
        S.point_prompt("  ")


def test_format_points_matches_training_format_and_round_trips():
    text = S.format_points({2: [(142.2, 418)], 1: [(162, 629), (98, 629)]}, "boats", alt="boats")
    assert text == '<points alt="boats" coords="1 1 098 629 2 162 629;2 3 142 418">boats</points>'
    a = S.parse_answer(text)
    assert [(p.image, p.point_id, p.x, p.y) for p in a.points] == [(1, 1, 98, 629), (1, 2, 162, 629), (2, 3, 142, 418)]
    counted = S.format_points({1: [(5, 6)]}, "dot", mode="point_then_count")
    assert counted == 'Counting the <points coords="1 1 005 006">dot</points> shows a total of 1.'
    assert S.format_points({1: []}, "dot") == "There are none."
    assert S.format_boxes({1: [(1, 2, 3, 4)]}, "b", scale=100) == '<boxes coords="1 1 01 02 03 04">b</boxes>'


def test_examples_parse_cleanly_except_malformed():
    ex = S.examples()
    assert len(ex) >= 7
    for name, text in ex.items():
        a = S.parse_answer(text)
        if name.startswith("malformed"):
            assert a.problems
        else:
            assert a.ok, (name, a.problems)
            assert a.points or a.boxes or a.tracks or a.traces or a.count is not None

