"""The package's promises: a cheap import, offline settings from every entry point, a CLI that lists its commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "gradio", "rerun", "mujoco", "open3d", "transformers", "plotly", "scipy")


def _run(code: str, env: dict | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "GRADIO_ANALYTICS_ENABLED",
                                                              "MUJOCO_GL", "RERUN_NOTEBOOK_ASSET")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **(env or {})},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_pulls_no_heavy_library():
    # Why not a timed test: machines are noisy; what makes the import slow is a heavy dependency.
    loaded = _run(f"import sys, molmoact2, molmoact2.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert loaded.strip() == "", f"import molmoact2 loaded heavy modules: {loaded}"


def test_import_applies_offline_settings_without_overriding_the_user():
    out = _run("import os, molmoact2; print(os.environ['HF_HUB_OFFLINE'], os.environ['GRADIO_ANALYTICS_ENABLED'],"
               " os.environ['RERUN_NOTEBOOK_ASSET'], os.environ['MUJOCO_GL'])", env={"MUJOCO_GL": "osmesa"})
    assert out.split() == ["1", "False", "serve-local", "osmesa"]


def test_cli_help_lists_every_registered_command():
    from molmoact2.cli import COMMAND_MODULES

    out = subprocess.run([sys.executable, "-m", "molmoact2", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    for module in COMMAND_MODULES:
        assert f"    {module.rsplit('.', 1)[-1]}" in out.stdout, out.stdout


def test_cli_without_command_prints_help_and_fails():
    out = subprocess.run([sys.executable, "-m", "molmoact2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "commands" in out.stdout


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("molmoact2")
    assert script.exists(), f"expected the console script at {script}; run `bash scripts/setup.sh`"
    out = subprocess.run([str(script), "app", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--port" in out.stdout


def test_python_dash_m_app_is_the_same_entry_point():
    out = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "127.0.0.1" in out.stdout
