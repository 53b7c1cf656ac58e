"""The Output inspector in a real browser: click an example, see it parsed, drawn and sent to the viewer."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

VIEWER_LOAD_MS = 180_000  # the Rerun wasm viewer takes ~45 s to start on 2 busy cores (software WebGL)


def _open_inspector(page):
    page.locator("#tab-inspector-button, button[role=tab]:has-text('Output inspector')").first.click()
    page.wait_for_selector("#inspector-viewer canvas", state="visible", timeout=VIEWER_LOAD_MS)


def test_example_is_parsed_drawn_and_logged_to_viewer(page):
    _open_inspector(page)
    # The viewer fetches the recording the callback wrote: that response proves the data reached it.
    with page.expect_response(lambda r: r.url.endswith(".rrd"), timeout=90_000) as rrd_info:
        page.get_by_text("MolmoAct2-Think: depth + discrete action", exact=True).first.click()

    summary = page.locator("#inspector-summary")
    summary.get_by_text("style `robot_depth_action`").or_(summary.get_by_text("robot_depth_action")).first.wait_for()
    assert "100 codes" in summary.inner_text()
    # The depth grid heatmap rendered (Plotly draws an SVG with one text label per cell).
    page.wait_for_function(
        "document.querySelectorAll('#inspector-grid .heatmap-label text, #inspector-grid text.heatmap-label').length === 100 || document.querySelectorAll('#inspector-grid svg text').length >= 100", timeout=60_000
    )
    actions = page.locator("#inspector-actions textarea, #inspector-actions input").first
    page.wait_for_function(
        "() => { const e = document.querySelector('#inspector-actions textarea, #inspector-actions input');"
        " return e && e.value.trim().split(/\\s+/).length > 3 }",
        timeout=30_000,
    )
    assert all(tok.isdigit() for tok in actions.input_value().split())
    rrd = rrd_info.value
    assert rrd.status == 200 and len(rrd.body()) > 1000, "the Rerun viewer did not get a real recording"


def test_malformed_example_explains_instead_of_crashing(page):
    _open_inspector(page)
    page.get_by_text("malformed: 99 depth codes, no <action_end>", exact=True).first.click()
    summary = page.locator("#inspector-summary")
    summary.get_by_text("Malformed MolmoAct2 output").first.wait_for()
    text = summary.inner_text()
    assert "expected exactly 100" in text and "99" in text
    # No Gradio error toast: the problem is shown as content, not as an exception.
    assert page.locator(".toast-body.error").count() == 0
