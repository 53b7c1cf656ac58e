"""Suite-wide settings: offline everywhere, and a private HF_HOME so remote code never lands in ~/.cache."""

from __future__ import annotations

import os
import tempfile

import molmoact2  # noqa: F401  (applies the offline settings)

os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="mact2-hf-home-"))
