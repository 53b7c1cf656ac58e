"""The OpenFAST tab in a real browser: fit, step through the stages, then break the ids in the lab."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser


def test_openfast_step_through_and_decode_failure_lab(page):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="OpenFAST").click()
    page.locator("#openfast-source").get_by_text("Synthetic smooth (labelled, built-in)").click()
    page.locator("#openfast-run").click()

    status = page.locator("#openfast-status")
    expect(status).to_contain_text("This chunk:", timeout=90_000)
    expect(status).to_contain_text("SYNTHETIC")
    expect(page.locator("#openfast-plot .js-plotly-plot")).to_be_visible(timeout=30_000)
    expect(page.locator("#openfast-stats")).to_contain_text("OpenFAST (DCT + BPE)")
    expect(page.locator("#openfast-stats")).to_contain_text("256-bin per-dim binning")
    expect(page.locator("#openfast-joints")).to_contain_text("gripper.pos")

    # Step through every stage with "Next": the caption and the figure title follow.
    for title in ("2. DCT-II", "3. × scale", "4. BPE pieces", "5. Decoded vs original"):
        page.locator("#openfast-next").click()
        expect(page.locator("#openfast-plot")).to_contain_text(title, timeout=30_000)
    expect(page.locator("#openfast-caption")).to_contain_text("inverse DCT")

    ids_box = page.locator("#openfast-ids textarea")
    expect(ids_box).to_have_value(re.compile(r"^\d+(, \d+)+$"), timeout=30_000)
    n_ids = len(ids_box.input_value().split(","))

    # Valid ids decode.
    page.locator("#openfast-decode").click()
    diag = page.locator("#openfast-diagnostics textarea")
    expect(diag).to_have_value(re.compile("DECODED OK"), timeout=30_000)

    # Drop the first id: diagnostics, not zeros.
    page.locator("#openfast-apply").click()
    # Wait for the edit to land (the box already held valid ids before it, so a pattern would race).
    page.wait_for_function(
        "n => { const e = document.querySelector('#openfast-ids textarea');"
        " return e && e.value.split(',').length === n }",
        arg=n_ids - 1, timeout=30_000,
    )
    expect(ids_box).to_have_value(re.compile(r"^\d+(, \d+)*$"))
    page.locator("#openfast-decode").click()
    expect(diag).to_have_value(re.compile("OpenFAST decode failed"), timeout=30_000)
    expect(diag).to_have_value(re.compile("expected 180 DCT coefficients"))
    expect(diag).to_have_value(re.compile("middle of every joint's range"))
    expect(page.locator("#openfast-lab-table")).to_contain_text("zeros fallback command")
    expect(page.locator("#openfast-lab-plot .js-plotly-plot")).to_be_visible()

    # An invalid id is named with its position.
    ids_box.fill("5, 999999, 7")
    page.locator("#openfast-decode").click()
    expect(diag).to_have_value(re.compile(r"999999 at position 1"), timeout=30_000)

    # The shipped simulator demos (the default source when the asset is present) work too.
    sim = page.locator("#openfast-source").get_by_text("Simulator demos (shipped)")
    if sim.count():
        sim.click()
        page.locator("#openfast-run").click()
        expect(status).to_contain_text("demo_actions.npz", timeout=90_000)
