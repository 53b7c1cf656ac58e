"""`molmoact2 rrd`: demo / export / summary through the real CLI entry point (in-process)."""

from __future__ import annotations

import pytest

pytest.importorskip("rerun")

from molmoact2.cli import main  # noqa: E402
from molmoact2.models.recording import Recording  # noqa: E402
from molmoact2.models.synthetic import synthetic_step  # noqa: E402
from molmoact2.viz.inspect import summarize_rrd  # noqa: E402


def test_demo_then_summary(tmp_path, capsys):
    out = tmp_path / "demo.rrd"
    assert main(["rrd", "demo", str(out), "--steps", "3", "--size", "32"]) == 0
    assert summarize_rrd(out)["entities"]["/cameras/front/rgb"].components["Image:buffer"] == 3
    capsys.readouterr()
    assert main(["rrd", "summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 recording(s), 1 blueprint(s)" in text
    assert "/depth/codes" in text and "step,time" in text
    assert "2D cameras/front" in text and "3D world" in text


def test_export_a_saved_recording(tmp_path, capsys):
    Recording.from_steps(tmp_path / "run", [synthetic_step(i, size=32, horizon=5) for i in range(2)])
    out = tmp_path / "run.rrd"
    assert main(["rrd", "export", str(tmp_path / "run"), str(out), "--depth-range", "0", "3"]) == 0
    assert "2 steps" in capsys.readouterr().out
    ents = summarize_rrd(out)["entities"]
    assert ents["/actions/gripper"].components["Scalars:scalars"] == 2
    with pytest.raises(FileNotFoundError, match="recording.json"):
        main(["rrd", "export", str(tmp_path / "missing"), str(out)])


def test_demo_rejects_zero_steps(tmp_path):
    with pytest.raises(SystemExit, match="expected --steps >= 1, got 0"):
        main(["rrd", "demo", str(tmp_path / "x.rrd"), "--steps", "0"])
