"""The Simulator tab in a real browser: run the expert, see it succeed, get a downloadable .rrd."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

VIEWER_LOAD_MS = 180_000  # the Rerun wasm viewer takes ~45 s to start on 2 busy cores (software WebGL)


def test_run_expert_streams_to_viewer_and_offers_recording(page, rrd_download):
    page.locator("#tab-simulator-button, button[role=tab]:has-text('Simulator')").first.click()
    page.wait_for_selector("#sim-viewer", state="attached", timeout=60_000)

    # Choose the quickest task and a seed.
    task = page.locator("#sim-task input").first
    task.click()
    task.fill("touch")
    page.get_by_role("option", name="touch", exact=True).click()
    seed = page.locator("#sim-seed input").first
    seed.fill("3")
    page.locator("#sim-run").click()

    status = page.locator("#sim-status")
    status.get_by_text("expert succeeded").wait_for(timeout=180_000)
    text = status.inner_text()
    assert "touch" in text and "seed 3" in text and "Recording:" in text

    # The recording is offered for download and is a real .rrd (starts with Rerun's magic bytes).
    rrd_download("#sim-download")
    # The embedded viewer is up (its canvas is drawn once the wasm app started).
    page.wait_for_selector("#sim-viewer canvas", state="visible", timeout=VIEWER_LOAD_MS)
