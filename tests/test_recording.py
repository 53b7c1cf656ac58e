"""Recording: append Steps to a directory, reopen it, iterate lazily."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _step_factory import assert_same, make_full_step

from molmoact2.models.base import Step
from molmoact2.models.recording import INDEX_NAME, Recording


def test_append_iterate_and_reopen(tmp_path):
    steps = [make_full_step(seed=i, index=i) for i in range(3)]
    rec = Recording(tmp_path / "run", meta={"robot": "so101"})
    for s in steps:
        rec.append(s)
    assert len(rec) == 3
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [INDEX_NAME, "step_000000", "step_000001", "step_000002"]

    again = Recording.open(tmp_path / "run")
    assert len(again) == 3 and again.meta == {"robot": "so101"}
    assert [r["index"] for r in again.rows] == [0, 1, 2]
    for original, loaded in zip(steps, again):
        assert_same(original, loaded)
    assert_same(steps[-1], again[-1])
    assert not list((tmp_path / "run").glob("*.partial"))


def test_reopened_recording_keeps_appending(tmp_path):
    Recording.from_steps(tmp_path / "r", [Step(index=0), Step(index=1)])
    rec = Recording(tmp_path / "r")
    rec.append(Step(index=2, actions=np.ones((2, 2), np.float32)))
    assert [s.index for s in Recording.open(tmp_path / "r")] == [0, 1, 2]
    assert (tmp_path / "r" / "step_000002" / "step.json").is_file()


def test_recording_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"recording.json \(written by Recording.append\), not found"):
        Recording.open(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="non-empty directory without recording.json"):
        Recording(tmp_path / "junk")
    rec = Recording.from_steps(tmp_path / "r", [Step()])
    with pytest.raises(IndexError, match=r"expected a step index in \[0, 1\), got 5"):
        rec.load(5)
    with pytest.raises(TypeError, match="expected a Step, got dict"):
        rec.append({"index": 1})
    index = tmp_path / "r" / INDEX_NAME
    index.write_text(json.dumps({"format": "other", "steps": []}))
    with pytest.raises(ValueError, match="expected format 'molmoact2_workbench_recording.v1'"):
        Recording(tmp_path / "r")
