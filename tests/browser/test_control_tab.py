"""The Control tab in a real browser: the default is `nano` when it ships (else `expert`); the `expert` runs in
closed loop through the safety guard and streams to the viewer with a downloadable .rrd; the shipped Nano steps
in Think mode and reports its per-stage latency, and with discrete actions under the OpenFAST length grammar; the model selector's health indicator checks OUR /act
server (a random tiny Nano served by `molmoact2 serve` in its own process) and shows a readable error for
a closed port."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from playwright.sync_api import expect

from molmoact2.models.registry import nano_default_dir

pytestmark = pytest.mark.browser

VIEWER_LOAD_MS = 180_000  # the Rerun wasm viewer takes ~45 s to start on 2 busy cores (software WebGL)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def nano_server(tmp_path_factory):
    """A random tiny Nano checkpoint built by the factory, served by `molmoact2 serve --policy nano:DIR --schema
    so101` on a free loopback port, both in one background process started BEFORE the app (tests request this
    fixture first), so its start-up overlaps the app's. Yields a function that waits for /healthz -> URL."""
    ckpt = tmp_path_factory.mktemp("nano") / "nano_random"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    port = _free_port()
    log = open(tmp_path_factory.mktemp("serve") / "serve.log", "w+")
    py = shlex.quote(sys.executable)
    script = (f"{py} -m molmoact2.models.nano.factory --out {shlex.quote(str(ckpt))} && exec {py} -m molmoact2 serve "
              f"--policy nano:{shlex.quote(str(ckpt))} --schema so101 --port {port}")
    proc = subprocess.Popen(["sh", "-c", script], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group: the factory step is stopped too
    url = f"http://127.0.0.1:{port}"

    def wait_up(timeout_s: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"molmoact2 serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "molmoact2 serve did not answer /healthz in time"
            time.sleep(0.2)  # polling interval of a condition wait, not a fixed delay

    yield wait_up
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _open_tab(page) -> None:
    page.locator("#tab-control-button, button[role=tab]:has-text('Control')").first.click()
    page.wait_for_selector("#ctl-run", state="visible", timeout=60_000)


def test_expert_runs_closed_loop_and_records(nano_server, page, rrd_download):  # nano_server: started early, used below
    _open_tab(page)
    # Said plainly whether Nano ships (the app subprocess sees the same assets/ and env as this process).
    shipped = (nano_default_dir() / "config.json").is_file()
    spec = page.locator("#ctl-spec textarea, #ctl-spec input").first
    expect(spec).to_have_value("nano" if shipped else "expert")
    expect(page.locator("#ctl-intro")).to_contain_text("Nano is available" if shipped else "not shipped yet")
    spec.fill("expert")
    # The streaming viewer fetches the run event's output as HLS-style segments: /gradio_api/stream/.../*.ts
    segments = []
    page.on("response", lambda r: segments.append(r) if "/stream/" in r.url and r.url.endswith(".ts") else None)

    status = page.locator("#ctl-status")
    # Step: exactly one chunk, then paused; Run continues the SAME episode (the session lives across clicks).
    page.locator("#ctl-step").click()
    expect(status).to_contain_text("chunks executed 1 ", timeout=120_000)
    expect(status).to_contain_text("paused")
    page.locator("#ctl-run").click()
    status.get_by_text("success").wait_for(timeout=120_000)
    text = status.inner_text()
    assert "chunks executed" in text and "loop rate" in text and "Hz" in text and "safety refusals 0" in text
    chunks = int(text.split("chunks executed")[1].split()[0])
    assert chunks >= 2

    rrd_download("#ctl-download")
    if not segments:  # the viewer fetches its playlist once its wasm app runs (slow on 2 busy cores)
        page.wait_for_event("response", lambda r: "/stream/" in r.url and r.url.endswith(".ts"), timeout=VIEWER_LOAD_MS)
    assert segments, "the viewer received no recording data"
    first = segments[0].body()
    assert first[:4] in (b"RRF2", b"RRF0"), f"the viewer's first segment is not RRD: {first[:16]!r}"

    # Reset: a new episode of the same task and seed, nothing executed yet.
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text("ready", timeout=60_000)
    expect(status).to_contain_text("chunks executed 0 ")

    # Same layout, other words: name another of the objects the status lists; a name it lacks is an error.
    head, names = status.inner_text().split("objects it can name:", 1)
    names = [n.strip() for n in names.split("\n")[0].split(",")]
    other = next(n for n in names if n not in head)
    page.locator("#ctl-target textarea, #ctl-target input").first.fill(other)
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text(f"the {other}", timeout=60_000)  # only the instruction says "the <object>"
    expect(status).to_contain_text("ready")
    page.locator("#ctl-target textarea, #ctl-target input").first.fill("golden teapot")
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text("golden teapot", timeout=60_000)
    expect(status).to_contain_text(names[0])
    # Euler steps: a fraction is refused in words before anything loads
    page.locator("#ctl-flow-steps input").first.fill("2.5")
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text("Euler steps must be 0", timeout=60_000)
    page.locator("#ctl-flow-steps input").first.fill("0")
    page.locator("#ctl-carry input").first.fill("30")
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text("Carry steps must be 0", timeout=60_000)


def test_shipped_nano_steps_in_think_mode(page):
    if not (nano_default_dir() / "config.json").is_file():
        pytest.skip(f"no Nano checkpoint at {nano_default_dir()}")
    _open_tab(page)
    expect(page.locator("#ctl-spec textarea, #ctl-spec input").first).to_have_value("nano")
    page.locator("#ctl-think input").check()
    page.locator("#ctl-flow-steps input").first.fill("3")
    # carry-over needs a rest of the plan: the shipped Nano executes its whole plan, and the tab says so
    page.locator("#ctl-carry input").first.fill("5")
    page.locator("#ctl-task input").first.wait_for(state="visible")
    status = page.locator("#ctl-status")
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text("nothing is left to carry", timeout=180_000)
    page.locator("#ctl-carry input").first.fill("0")
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text("ready", timeout=180_000)
    page.locator("#ctl-step").click()
    expect(status).to_contain_text("chunks executed 1 ", timeout=180_000)
    text = status.inner_text()
    assert "think" in text and "safety refusals 0" in text and "3 Euler steps" in text, text
    # the named object is watched from the first chunk on; no carry-over is claimed
    assert "carries" not in text and "named object: " in text, text
    # the model's own stage split: MolmoThink decoded depth before the expert produced the chunk
    for stage in ("vision", "prefill", "depth", "action expert"):
        assert f"{stage} " in text.split("last predict by stage:")[1], text


def test_shipped_nano_steps_with_discrete_actions_under_the_length_grammar(page):
    if not (nano_default_dir() / "config.json").is_file():
        pytest.skip(f"no Nano checkpoint at {nano_default_dir()}")
    _open_tab(page)
    page.locator("#ctl-actions").get_by_text("discrete (OpenFAST, length grammar)").click()
    status = page.locator("#ctl-status")
    page.locator("#ctl-reset").click()
    expect(status).to_contain_text("discrete (OpenFAST, length grammar)", timeout=180_000)
    expect(status).to_contain_text("ready", timeout=180_000)
    page.locator("#ctl-step").click()
    expect(status).to_contain_text("chunks executed 1 ", timeout=180_000)
    text = status.inner_text()
    assert "length grammar changed" in text and "of 1 chunks" in text, text
    assert "discrete decode " in text.split("last predict by stage:")[1], text


def test_health_indicator_ok_and_error(nano_server, page):
    _open_tab(page)
    url = nano_server()
    spec = page.locator("#ctl-spec textarea, #ctl-spec input").first
    health = page.locator("#ctl-health")

    spec.fill(url)
    page.locator("#ctl-check").click()
    health.get_by_text("ok", exact=False).first.wait_for(timeout=60_000)
    expect(health).to_contain_text("so101_sim_molmoact2", timeout=30_000)
    expect(health).to_contain_text("round trip")
    expect(health).to_contain_text("so101")
    assert "✅" in health.inner_text()

    closed = f"http://127.0.0.1:{_free_port()}"
    spec.fill(closed)
    page.locator("#ctl-check").click()
    expect(health).to_contain_text("error", timeout=60_000)
    expect(health).to_contain_text("cannot reach")
    text = health.inner_text()
    assert closed.split("//")[1] in text and "Traceback" not in text
