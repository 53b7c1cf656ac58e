"""Offline settings, applied by every entry point of the package (CLI, app, notebooks).

Why here and not only in the Makefile: `python -m app`, a Jupyter kernel or a user's own
script must behave the same as `make app` -- nothing may reach the network at run time.
`setdefault` so a user can still override a value on purpose.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # MuJoCo renders headless through EGL (Mesa); there is no display on our machines.
    "MUJOCO_GL": "egl",
    "PYOPENGL_PLATFORM": "egl",
    # Must be set BEFORE `import rerun`: the notebook viewer is served by the kernel, not a CDN.
    "RERUN_NOTEBOOK_ASSET": "serve-local",
}


def apply_offline_env() -> dict[str, str]:
    """Set the offline variables that are not already set; return the effective values."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in OFFLINE_ENV}
