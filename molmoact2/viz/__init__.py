"""Views of Steps: the Rerun entity layout, default blueprint and loggers.

Nothing here imports rerun at package import time: `layout` is plain Python, and the logger /
blueprint names below load their module (and rerun) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BackgroundLogger": "molmoact2.viz.logger",
    "LiveViewerStream": "molmoact2.viz.logger",
    "LoggerStats": "molmoact2.viz.logger",
    "StepLogger": "molmoact2.viz.logger",
    "VizConfig": "molmoact2.viz.logger",
    "iter_rrd_bytes": "molmoact2.viz.logger",
    "log_step": "molmoact2.viz.logger",
    "new_recording": "molmoact2.viz.logger",
    "save_rrd": "molmoact2.viz.logger",
    "default_blueprint": "molmoact2.viz.blueprint",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'molmoact2.viz' has no attribute {name!r}")
