"""Think debugger tab in headless Chromium: load the boxes demo, scrub, move the threshold."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def _plot_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def test_think_tab_loads_scrubs_and_rethresholds(page, app_url):
    from playwright.sync_api import expect

    page.goto(app_url)
    page.get_by_role("tab", name="Think debugger").click()
    n_steps = page.locator("#think-nsteps input")
    n_steps.fill("6")
    page.locator("#think-load").click()
    status = page.locator("#think-status")
    expect(status).to_contain_text("6 steps", timeout=180_000)
    expect(status).to_contain_text("cells re-predicted per step")
    # the mask overlay and the decoded depth are images; the grid, curve and cloud are Plotly plots
    expect(page.locator("#think-mask img")).to_be_visible(timeout=60_000)
    expect(page.locator("#think-grid .js-plotly-plot")).to_be_visible(timeout=60_000)
    expect(page.locator("#think-curve .js-plotly-plot")).to_be_visible(timeout=60_000)
    expect(page.locator("#think-cloud .js-plotly-plot")).to_be_visible(timeout=60_000)
    info = page.locator("#think-step-info")
    expect(info).to_contain_text("step 0: 100 cells re-predicted", timeout=60_000)

    # scrub to step 3: a later step re-predicts fewer than 100 cells
    step_input = page.locator("#think-step input[type=number]")
    step_input.fill("3")
    step_input.press("Enter")
    expect(info).to_contain_text("step 3:", timeout=60_000)
    assert "100 cells re-predicted" not in info.inner_text()

    # threshold what-if: a lower threshold re-predicts no more cells, and the curve shows both thresholds
    import re

    def cells() -> int:
        return int(re.search(r"step 3: (\d+) cells", info.inner_text()).group(1))

    at_default = cells()
    thr = page.locator("#think-threshold input[type=number]")
    thr.fill("0.95")
    thr.press("Enter")
    expect(page.locator("#think-curve")).to_contain_text("re-predicted @ 0.9500", timeout=60_000)
    expect(page.locator("#think-curve")).to_contain_text("re-predicted @ 0.996 (model)")
    # wait until the step text itself was recomputed at the new threshold, or the comparison reads stale text
    expect(info).to_contain_text("at threshold 0.9500", timeout=60_000)
    assert cells() <= at_default
