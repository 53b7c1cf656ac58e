"""The Spatial reasoning tab in a real browser: default spec `nano-er` (`nano` when it is not shipped), a simulator
scene, a prompt template, Ask -> an answer or the plain 'not shipped' message (never an error toast or a
traceback); Check -> the health indicator."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def _open_tab(page) -> None:
    page.locator("#tab-spatial-button, button[role=tab]:has-text('Spatial reasoning')").first.click()
    page.wait_for_selector("#sp-ask", state="visible", timeout=60_000)


def test_ask_and_check(page):
    from molmoact2.spatial_session import default_spatial_spec

    _open_tab(page)
    expect(page.locator("#sp-spec textarea, #sp-spec input").first).to_have_value(default_spatial_spec())
    expect(page.locator("#sp-intro")).to_contain_text("only")  # Nano knows only our simulator

    page.locator("#sp-show").click()
    answer = page.locator("#sp-answer")
    expect(answer).to_contain_text("Scene: simulator", timeout=60_000)
    expect(page.locator("#sp-image img")).to_be_visible()

    page.locator("#sp-tpl-point").click()
    question = page.locator("#sp-question textarea").first
    expect(question).to_have_value("Point to the red cube\nPlease say 'There are none.' if it is not in the image.",
                                   timeout=30_000)

    expect(page.locator("#sp-copies input")).to_be_checked()
    page.locator("#sp-ask").click()
    # Either the model answered (a shipped Nano) or the page says plainly why it cannot.
    page.wait_for_function(
        """() => { const t = document.querySelector('#sp-answer').innerText;
                   return t.includes('Answer:') || t.includes('not shipped') || t.includes('Could not load'); }""",
        timeout=120_000)
    text = answer.inner_text()
    assert "Traceback" not in text
    if "Answer:" not in text:
        assert "not shipped" in text or "no Nano checkpoint" in text, text
    elif "Head " in text:  # an answer with a point: the grounded head's heatmap is beside it
        expect(page.locator("#sp-head img")).to_be_visible(timeout=30_000)
        # the copies are on by default: one point, averaged over the shifted copies, and the page says so
        assert "shifted copies" in text, text
    else:
        assert "Where the model looked" in text, text
    assert page.locator(".toast-body.error").count() == 0

    page.locator("#sp-check").click()
    health = page.locator("#sp-health")
    page.wait_for_function(
        "() => { const t = document.querySelector('#sp-health').innerText; return t.includes('ok') || "
        "t.includes('error'); }", timeout=60_000)
    text = health.inner_text()
    assert "(`nano`)" in text or "(nano)" in text or "nano" in text
    assert "Traceback" not in text


@pytest.fixture(scope="module")
def random_nano(tmp_path_factory):
    from molmoact2.models.nano.factory import make_random_checkpoint

    return make_random_checkpoint(tmp_path_factory.mktemp("nano") / "nano_random")


def test_random_nano_answers_with_depth_codes(random_nano, page):
    _open_tab(page)
    page.locator("#sp-spec textarea, #sp-spec input").first.fill(f"nano:{random_nano}")
    page.locator("#sp-tpl-point_all").click()
    expect(page.locator("#sp-question textarea").first).to_have_value('Point to all occurrences of "the red cube"',
                                                                      timeout=30_000)
    # (The .rrd the viewer gets is checked in tests/test_spatial_session.py: waiting here for the wasm viewer to
    # start costs ~60 s on 2 busy cores, see test_inspector_tab.py for that check.)
    page.locator("#sp-ask").click()
    answer = page.locator("#sp-answer")
    expect(answer).to_contain_text("point(s) parsed", timeout=120_000)  # whatever the random model said
    # The depth codes of the simulator's depth were decoded and shown (the 10x10 Plotly grid itself takes ~25 s
    # to draw here while the viewer's wasm loads: its codes are checked in tests/test_spatial_session.py).
    expect(page.locator("#sp-depth img")).to_be_visible(timeout=30_000)
    expect(page.locator("#sp-viewer")).to_be_visible()
    assert "Traceback" not in answer.inner_text() and page.locator(".toast-body.error").count() == 0
