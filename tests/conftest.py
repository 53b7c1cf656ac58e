"""Suite-wide settings: offline everywhere, a private HF_HOME so remote code never lands in ~/.cache, and one
temporary root for the whole run (recordings, app uploads, notebook outputs, pytest's tmp_path), removed when the
run passes and kept for a look when it fails."""

from __future__ import annotations

import os
import shutil
import tempfile

import molmoact2  # noqa: F401  (applies the offline settings)

# TMPDIR reaches what the tests start (the app in the browser tests, notebook kernels); tempfile.tempdir is this
# process, whose tempfile module may already have read the old TMPDIR.
_SUITE_TMP = tempfile.mkdtemp(prefix="mact2-tests-")
os.environ["TMPDIR"] = _SUITE_TMP
tempfile.tempdir = _SUITE_TMP

os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="mact2-hf-home-"))


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(_SUITE_TMP, ignore_errors=True)
    else:
        print(f"\ntemporary files of this run kept in {_SUITE_TMP}")
