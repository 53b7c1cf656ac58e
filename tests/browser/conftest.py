"""Fixtures for browser tests: the real app in a subprocess, driven by headless system Chromium.

Why a subprocess: the app is tested exactly as a user starts it (`python -m molmoact2 app`).
Why system Chromium: `playwright install` downloads a browser, which cannot work offline.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags verified on our machines (environment.md); swiftshader gives the Rerun viewer software WebGL.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--enable-unsafe-swiftshader",
]
APP_START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url():
    port = _free_port()
    log_path = Path(tempfile.mkdtemp(prefix="mact2-app-")) / "app.log"
    log = open(log_path, "w")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "molmoact2", "app", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode} before serving:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"app did not answer on {url} within {APP_START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need Debian's chromium at {CHROMIUM}; run `bash scripts/setup.sh`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(app_url)
    yield pg
    context.close()


RRD_MAGIC = (b"RRF2", b"RRF0", b"RRIS")  # Rerun's file headers across 0.2x-0.39


@pytest.fixture
def rrd_download(page):
    """A check shared by the tabs that offer a recording: the download link under `selector` serves a real .rrd."""

    def check(selector: str, min_bytes: int = 10_000) -> bytes:
        link = page.locator(f"{selector} a").first
        link.wait_for(timeout=60_000)
        href = link.get_attribute("href")
        assert href and href.split("?")[0].endswith(".rrd"), f"expected a link to an .rrd, got {href!r}"
        body = page.request.get(href).body()
        assert len(body) > min_bytes and body[:4] in RRD_MAGIC, f"not a Rerun recording: {len(body)} bytes, {body[:4]!r}"
        return body

    return check
