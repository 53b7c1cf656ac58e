"""The Output inspector's library side: every example parses, bad outputs are explained, never raised."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2 import tokens
from molmoact2.examples import output_examples
from molmoact2.inspect_output import MAX_TEXT_CHARS, inspect_output


@pytest.mark.parametrize("example", output_examples(), ids=lambda e: e.name)
def test_every_example_is_inspected_without_raising(example):
    result = inspect_output(example.text)
    assert result.kind == example.kind
    assert result.ok is (not example.malformed)
    assert bool(result.problems) is example.malformed
    assert result.summary_md and result.image is not None and result.image.dtype == np.uint8


def test_generated_output_gives_depth_grid_and_ids_and_a_step():
    rng = np.random.default_rng(1)
    bins, ids = rng.integers(0, 128, 100), rng.integers(0, 2048, 9)
    text = tokens.format_depth(bins) + tokens.format_actions(ids)
    result = inspect_output(text)
    np.testing.assert_array_equal(result.depth_bins, bins)
    np.testing.assert_array_equal(result.action_ids, ids)
    np.testing.assert_array_equal(result.step.depth_bins, bins)
    assert "9 OpenFAST ids" in result.summary_md


def test_malformed_generated_output_names_expected_and_got_and_survives_markdown():
    result = inspect_output(tokens.format_depth(np.zeros(100, int)).replace("<depth_0>", "", 1))
    assert not result.ok and result.step is None
    assert "99" in result.problems[0] and "100" in result.problems[0]
    # Tags are escaped so a markdown view shows them instead of swallowing them as HTML.
    assert "&lt;depth_end&gt;" in result.summary_md and "<depth_end>" not in result.summary_md


def test_points_are_drawn_where_the_answer_says_on_the_given_image():
    image = np.zeros((200, 400, 3), np.uint8)
    result = inspect_output('<points coords="1 1 500 500">cup</points>', image)
    assert result.ok
    x_px, y_px = result.points_table[0][5:7]
    assert (x_px, y_px) == (200.0, 100.0)
    assert result.image[100, 200].any() and not result.image[10, 10].any()
    np.testing.assert_allclose(result.step.points_px["image_1"], [[200.0, 100.0]])
    assert image.sum() == 0, "the input image must not be modified"


def test_partial_parse_lists_problems_and_keeps_the_good_points():
    result = inspect_output('<points coords="1 1 500 500 2 1200 300">cup</points>')
    assert not result.ok and len(result.points_table) == 1
    assert any("1200" in p for p in result.problems)


def test_empty_and_oversized_text_are_explained():
    assert inspect_output("   ").kind == "empty"
    huge = inspect_output("x" * (MAX_TEXT_CHARS + 1))
    assert not huge.ok and str(MAX_TEXT_CHARS) in huge.problems[0]


def test_bad_image_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected an RGB image \[H, W, 3\]"):
        inspect_output('<points coords="1 1 5 5">a</points>', np.zeros((4, 4, 2), np.uint8))


def test_grayscale_and_float_images_are_accepted():
    gray = inspect_output('<points coords="1 1 500 500">a</points>', np.full((10, 10), 7, np.uint8))
    assert gray.image.shape == (10, 10, 3)


def test_app_callback_writes_a_recording_the_viewer_can_read(tmp_path):
    from app.tabs.inspector import run_inspection
    from molmoact2.viz.inspect import summarize_rrd

    text = tokens.format_depth(np.arange(100) % 128) + tokens.format_actions([5, 6, 7])
    summary, image, fig, table, ids, rrd = run_inspection(text, None)
    assert ids == "5 6 7" and image is not None
    entities = summarize_rrd(rrd)["entities"]
    assert any(path.startswith("/depth/codes") for path in entities), sorted(entities)
    assert any(path.startswith("/cameras/image_1") for path in entities), sorted(entities)
