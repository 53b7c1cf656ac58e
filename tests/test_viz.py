"""Rerun views of Steps: layout, logger, background worker, atomic .rrd, byte stream.

Real Rerun 0.39 recordings, read back with `rerun.chunk.RrdReader` (via molmoact2.viz.inspect).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

rr = pytest.importorskip("rerun")

from molmoact2.models.base import CameraFrame, Observation, Step  # noqa: E402
from molmoact2.models.recording import Recording  # noqa: E402
from molmoact2.models.synthetic import SO101_JOINTS, synthetic_step  # noqa: E402
from molmoact2.viz import layout as L  # noqa: E402
from molmoact2.viz.blueprint import default_blueprint  # noqa: E402
from molmoact2.viz.inspect import blueprint_views, summarize_rrd  # noqa: E402
from molmoact2.viz.logger import (  # noqa: E402
    NOT_AVAILABLE,
    BackgroundLogger,
    LiveViewerStream,
    StepLogger,
    VizConfig,
    iter_rrd_bytes,
    log_step,
    new_recording,
    save_rrd,
)

N_STEPS = 4


def steps(n: int = N_STEPS, size: int = 64, horizon: int = 10) -> list[Step]:
    return [synthetic_step(i, size=size, horizon=horizon) for i in range(n)]


def ent(path: str) -> str:
    return "/" + path  # RrdReader prints absolute entity paths


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("rrd") / "run.rrd"
    save_rrd(steps(), path)
    return path, summarize_rrd(path)


def test_import_molmoact2_and_viz_does_not_import_rerun():
    code = (
        "import sys, molmoact2, molmoact2.viz, molmoact2.viz.layout, molmoact2.models.recording;"
        "assert 'rerun' not in sys.modules, 'rerun imported eagerly';"
        "assert 'gradio_rerun' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["front", "shoulder_pan.pos", "left arm", "observation.images/top", "a:b\\c"])
def test_layout_escapes_parts_like_rerun(name):
    assert L.part(name) == rr.escape_entity_path_part(name)
    assert L.camera_rgb(name).count("/") - L.camera_rgb(name).count("\\/") == 2  # never extra levels


def test_layout_rejects_empty_names():
    with pytest.raises(ValueError, match="non-empty name"):
        L.action("")


def test_saved_recording_has_every_entity_with_one_row_per_step(saved):
    path, summary = saved
    assert summary["recordings"] == 1 and summary["blueprints"] == 1
    ents = summary["entities"]
    expected = {
        L.camera_rgb("front"): "Image:buffer",
        L.camera_rgb("wrist"): "Image:buffer",
        L.camera_points("front"): "Points2D:positions",
        L.camera_planned_path("front"): "LineStrips2D:strips",
        L.camera_planned_path("wrist"): "LineStrips2D:strips",
        L.camera_depth_update_mask("front"): "Boxes2D:half_sizes",
        L.DEPTH_CODES: "SegmentationImage:buffer",
        L.DEPTH_CODE_VALUES: "Boxes2D:centers",
        L.DEPTH_UPDATE_MASK: "SegmentationImage:buffer",
        L.DEPTH_DECODED: "DepthImage:buffer",
        L.world_point_cloud("front"): "Points3D:positions",
        L.WORLD_PLANNED_PATH: "LineStrips3D:strips",
        L.world_denoising(0): "LineStrips3D:strips",
        L.world_denoising(4): "LineStrips3D:strips",
        L.world_camera("front"): "Pinhole:image_from_camera",
        L.world_camera("wrist"): "Transform3D:translation",
        L.ACTION_CHUNK_PLOT: "LineStrips2D:strips",
        L.latency("total"): "Scalars:scalars",
        L.latency("prefill"): "Scalars:scalars",
        L.THINK_CELLS_REPREDICTED: "Scalars:scalars",
        L.THINK_TOKENS_SAVED: "Scalars:scalars",
        L.TEXT_PROMPT: "TextDocument:text",
        L.TEXT_ANSWER: "TextDocument:text",
        L.TEXT_AVAILABILITY: "TextDocument:text",
    }
    expected.update({L.action(j): "Scalars:scalars" for j in SO101_JOINTS})
    expected.update({L.state(j): "Scalars:scalars" for j in SO101_JOINTS})
    for path_, component in expected.items():
        assert ent(path_) in ents, f"missing entity {path_}; have {sorted(ents)}"
        e = ents[ent(path_)]
        assert e.components.get(component) == N_STEPS, f"{path_}: {component} rows {e.components}"
        assert {L.STEP_TIMELINE, L.TIME_TIMELINE} <= e.timelines
        assert sorted(set(e.times[L.STEP_TIMELINE])) == list(range(N_STEPS))
    # `time` is Step.timestamp_s in seconds (stored as ns).
    times_ns = sorted(set(ents[ent(L.camera_rgb("front"))].times[L.TIME_TIMELINE]))
    assert times_ns == [round(s.timestamp_s * 1e9) for s in steps()]
    # Styling (annotation contexts, series names) is static: logged once, not per step.
    assert ents[ent(L.DEPTH_CODES)].static_rows == 1
    assert ents[ent(L.action("gripper"))].static_rows == 1


def test_saved_blueprint_has_the_default_views(saved):
    path, _ = saved
    views = {(v["class"], v["origin"]) for v in blueprint_views(path)}
    expected = {
        ("2D", "cameras/front"),
        ("2D", "cameras/wrist"),
        ("2D", L.DEPTH_CODES),
        ("2D", L.DEPTH_UPDATE_MASK),
        ("2D", L.DEPTH_DECODED),
        ("2D", L.ACTION_CHUNK_PLOT),
        ("3D", L.WORLD),
        ("TimeSeries", L.ACTIONS),
        ("TimeSeries", L.STATE),
        ("TimeSeries", L.LATENCY),
        ("TimeSeries", L.THINK),
        ("TextDocument", L.TEXT_PROMPT),
        ("TextDocument", L.TEXT_ANSWER),
        ("TextDocument", L.TEXT_AVAILABILITY),
    }
    assert expected <= views, f"missing views: {expected - views}"


def _column(path, entity: str, component: str) -> list:
    """Per-row values of one component of one entity (temporal rows only, nulls skipped)."""
    from rerun.chunk import RrdReader

    out = []
    for chunk in RrdReader(path).stream():
        if chunk.entity_path == ent(entity) and not chunk.is_static:
            batch = chunk.to_record_batch()
            if component in batch.schema.names:
                out += [v for v in batch.column(component).to_pylist() if v is not None]
    return out


def test_every_instance_is_logged_not_just_the_first(saved):
    # Rerun sizes a batch by its primary component: a single broadcast half-size would draw ONE box.
    path, _ = saved
    seq = steps()
    labels = _column(path, L.DEPTH_CODE_VALUES, "Boxes2D:labels")
    half_sizes = _column(path, L.DEPTH_CODE_VALUES, "Boxes2D:half_sizes")
    assert [len(h) for h in half_sizes] == [100] * N_STEPS
    assert labels[0] == [str(int(c)) for c in seq[0].depth_bins]
    mask_boxes = _column(path, L.camera_depth_update_mask("front"), "Boxes2D:half_sizes")
    assert [len(b) for b in mask_boxes] == [int(s.depth_update_mask.sum()) for s in seq]
    codes = _column(path, L.DEPTH_CODES, "SegmentationImage:buffer")
    assert bytes(codes[0][0]) == bytes(seq[0].depth_bins.astype(np.uint8))
    cloud = _column(path, L.world_point_cloud("front"), "Points3D:positions")
    assert len(cloud[0]) == (64 // 4) ** 2  # stride 4 on a 64x64 table view: every ray hits the table


def test_saved_file_is_finalized_and_verifies_with_the_rerun_cli(saved):
    from pathlib import Path

    from rerun.chunk import RrdReader

    path, _ = saved
    assert len(RrdReader(path).store()) > 0  # LazyStore needs the footer/manifest written on close
    cli = Path(sys.executable).parent / "rerun"
    if not cli.exists():
        pytest.skip(f"rerun CLI not found next to {sys.executable}")
    out = subprocess.run([str(cli), "rrd", "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_atomic_save_leaves_no_partial_and_failure_keeps_old_file(tmp_path):
    path = tmp_path / "out.rrd"
    save_rrd(steps(2), path)
    assert path.is_file() and not (tmp_path / "out.rrd.partial").exists()
    before = path.read_bytes()
    # With a fixed depth range there is no pre-pass: the bad item fails mid-write, after the
    # .partial file exists, which is the case atomicity is for.
    fixed = VizConfig(depth_decoded_range=(0.0, 3.0))
    with pytest.raises(TypeError, match="expected a molmoact2 Step, got str"):
        save_rrd([synthetic_step(0, size=32), "not a step"], path, config=fixed)
    assert path.read_bytes() == before, "a failed save must not touch the previous file"
    assert not (tmp_path / "out.rrd.partial").exists()
    with pytest.raises(TypeError, match="save_rrd: expected a molmoact2 Step, got int"):
        save_rrd([synthetic_step(0, size=32), 3], path)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match=r"expected a path ending in .rrd"):
        save_rrd(steps(1), tmp_path / "out.txt")


def test_decoded_depth_range_is_fixed_across_the_recording(saved):
    from rerun.chunk import RrdReader

    path, _ = saved
    ranges = []
    for chunk in RrdReader(path).stream():
        if chunk.entity_path == ent(L.DEPTH_DECODED) and not chunk.is_static:
            col = chunk.to_record_batch().column("DepthImage:depth_range")
            ranges += [tuple(np.asarray(v).ravel()) for v in col.to_pylist() if v is not None]
    lo = min(np.nanmin(s.depth_decoded) for s in steps())
    hi = max(np.nanmax(s.depth_decoded) for s in steps())
    assert len(ranges) == N_STEPS and len(set(ranges)) == 1
    np.testing.assert_allclose(ranges[0], [lo, hi], rtol=1e-6)


def test_none_fields_are_skipped_cleared_and_explained(tmp_path):
    cam = {"top": CameraFrame(rgb=np.zeros((8, 8, 3), np.uint8))}
    seq = [
        synthetic_step(0, size=32, horizon=5),
        Step(index=1, timestamp_s=1.0, observation=Observation(cameras=cam, state=np.zeros(2), instruction="x")),
        Step(index=2, timestamp_s=2.0),  # everything None
        Step(index=3, timestamp_s=3.0, actions=np.zeros((4, 2), np.float32)),  # unnamed actions
    ]
    rec = new_recording()
    stream = rec.binary_stream()
    logger = StepLogger(rec)
    for s in seq:
        logger.log(s)
    path = tmp_path / "none.rrd"
    path.write_bytes(stream.read())
    ents = summarize_rrd(path)["entities"]
    # Step 0's answer must not linger at step 1: a Clear row follows it.
    assert ents[ent(L.TEXT_ANSWER)].components == {"TextDocument:text": 1, "Clear:is_recursive": 1}
    assert ents[ent(L.action("a0"))].components["Scalars:scalars"] == 1
    assert ents[ent(L.TEXT_AVAILABILITY)].components["TextDocument:text"] == 4
    texts = _texts(path, L.TEXT_AVAILABILITY)
    assert "every view has data" in texts[0]
    assert f"depth codes: *{NOT_AVAILABLE}*" in texts[1] and "cameras" not in texts[1]
    assert "no observation in this Step" in texts[2] and "action chunk" in texts[2]
    assert "action chunk" not in texts[3]


def _texts(path, entity: str) -> list[str]:
    from rerun.chunk import RrdReader

    out = []
    for chunk in RrdReader(path).stream():
        if chunk.entity_path == ent(entity) and not chunk.is_static:
            out += [t for t in chunk.to_record_batch().column("TextDocument:text").to_pylist() if t is not None]
    return [t[0] if isinstance(t, list) else t for t in out]


def test_bad_info_and_inputs_raise_clear_errors():
    rec = new_recording()
    rec.binary_stream()  # keep data in memory, not a global sink
    bad = synthetic_step(0, size=32, horizon=5)
    bad.info["denoising_paths_world"] = np.zeros((3, 5, 2))
    with pytest.raises(ValueError, match=r"denoising_paths_world'\] expected \[S\+1, H, 3\] metres, got \[3, 5, 2\]"):
        log_step(rec, bad)
    with pytest.raises(TypeError, match="expected an rr.RecordingStream, got str"):
        StepLogger("rec")
    with pytest.raises(ValueError, match="expected at least one camera"):
        default_blueprint([], None)


def test_background_logger_drops_when_full_and_flushes_on_close():
    release = threading.Event()
    seen: list[int] = []

    def slow_sink(step: Step) -> None:
        release.wait(5)  # the worker is stuck on the first step until we release it
        time.sleep(0.005)
        seen.append(step.index)

    bg = BackgroundLogger(sink=slow_sink, max_queue=2)
    work = [Step(index=i) for i in range(20)]
    t0 = time.perf_counter()
    accepted = [bg.submit(s) for s in work]
    submit_ms = (time.perf_counter() - t0) * 1000
    assert submit_ms < 200, f"submit must never wait for the sink, 20 calls took {submit_ms:.1f} ms"
    stats = bg.stats
    # At most 1 step in the worker's hands + 2 in the queue; everything else is dropped and counted.
    assert 2 <= stats.submitted <= 3 and stats.dropped == 20 - stats.submitted
    assert sum(accepted) == stats.submitted
    release.set()
    final = bg.close(timeout_s=10)
    assert final.logged == final.submitted and final.queued == 0 and final.errors == 0
    assert seen == [i for i, ok in enumerate(accepted) if ok]  # order kept, nothing accepted was lost
    assert final.mean_log_ms >= 5
    with pytest.raises(RuntimeError, match="logger is closed"):
        bg.submit(work[0])


def test_background_logger_counts_sink_errors():
    def failing(step: Step) -> None:
        raise RuntimeError(f"boom {step.index}")

    bg = BackgroundLogger(sink=failing, max_queue=8)
    for i in range(3):
        bg.submit(Step(index=i))
    stats = bg.close(timeout_s=10)
    assert stats.errors == 3 and stats.logged == 0 and "boom 2" in stats.last_error


def test_background_logger_writes_a_real_recording(tmp_path):
    rec = new_recording()
    path = tmp_path / "bg.rrd"
    rec.save(path)
    with BackgroundLogger(rec, max_queue=16) as bg:
        for s in steps(3):
            assert bg.submit(s)
    assert bg.stats.logged == 3 and bg.stats.dropped == 0
    rec.disconnect()
    ents = summarize_rrd(path)["entities"]
    assert ents[ent(L.camera_rgb("front"))].components["Image:buffer"] == 3


def test_two_recordings_coexist(tmp_path):
    a, b = new_recording(), new_recording()
    a.save(tmp_path / "a.rrd")
    b.save(tmp_path / "b.rrd")
    for s in steps(3):
        log_step(a, s)
    log_step(b, synthetic_step(7, size=32, horizon=5))
    a.disconnect()
    b.disconnect()
    ea = summarize_rrd(tmp_path / "a.rrd")["entities"]
    eb = summarize_rrd(tmp_path / "b.rrd")["entities"]
    assert ea[ent(L.camera_rgb("front"))].times[L.STEP_TIMELINE] == [0, 1, 2]
    assert eb[ent(L.camera_rgb("front"))].times[L.STEP_TIMELINE] == [7]


def test_iter_rrd_bytes_streams_a_readable_recording(tmp_path):
    chunks = list(iter_rrd_bytes(steps(3)))
    assert len(chunks) >= 3 and all(isinstance(c, bytes) and c for c in chunks)
    # Each read() is a self-contained RRD segment (own header): the viewer appends them; here we
    # read each one and add up.
    blueprints, codes = _sum_segments(tmp_path, chunks, L.DEPTH_CODES, "SegmentationImage:buffer")
    assert blueprints == 1 and codes == 3
    assert _sum_segments(tmp_path, chunks[:1], L.DEPTH_CODES, "SegmentationImage:buffer")[0] == 1  # blueprint first


def test_save_rrd_from_a_saved_recording(tmp_path):
    rec = Recording.from_steps(tmp_path / "run", steps(2))
    out = save_rrd(rec, tmp_path / "run.rrd", config=VizConfig(depth_decoded_range=(0.0, 3.0)))
    ents = summarize_rrd(out)["entities"]
    assert ents[ent(L.ACTION_CHUNK_PLOT)].components["LineStrips2D:strips"] == 2


def test_point_cloud_lands_on_the_table_plane(saved):
    # The synthetic cameras look at a table at world z = 0: every logged cloud point must lie on it,
    # which checks the depth -> world chain (K, T_world_cam, OpenCV frame) end to end.
    path, _ = saved
    for cam in ("front", "wrist"):
        clouds = _column(path, L.world_point_cloud(cam), "Points3D:positions")
        assert len(clouds) == N_STEPS
        pts = np.asarray(clouds[0], dtype=np.float64)
        assert len(pts) > 100
        np.testing.assert_allclose(pts[:, 2], 0.0, atol=1e-4)


def _sum_segments(tmp_path, segments: list[bytes], entity: str, component: str) -> tuple[int, int]:
    """(blueprints, rows of component) over self-contained RRD segments (each read() is one)."""
    blueprints = rows = 0
    for i, seg in enumerate(segments):
        path = tmp_path / f"seg{i}.rrd"
        path.write_bytes(seg)
        summary = summarize_rrd(path)
        blueprints += summary["blueprints"]
        e = summary["entities"].get(ent(entity))
        rows += e.components.get(component, 0) if e else 0
    return blueprints, rows


def test_live_viewer_stream_feeds_bytes_while_a_loop_submits(tmp_path):
    live = LiveViewerStream(cameras=["front", "wrist"], joint_names=SO101_JOINTS, max_queue=16)
    produced = steps(5, size=32, horizon=5)

    def control_loop():
        for s in produced:
            live.submit(s)
            time.sleep(0.01)
        live.close()

    thread = threading.Thread(target=control_loop)
    thread.start()
    segments = []
    deadline = time.monotonic() + 20
    while not live.closed or live.pending:
        assert time.monotonic() < deadline, "live stream never closed"
        chunk = live.read()
        if chunk:
            segments.append(chunk)
        time.sleep(0.02)
    thread.join()
    segments.append(live.read_rest())
    segments = [s for s in segments if s]
    blueprints, rgb_rows = _sum_segments(tmp_path, segments, L.camera_rgb("front"), "Image:buffer")
    assert blueprints == 1 and rgb_rows == 5
    assert live.logger.stats.logged == 5 and live.logger.stats.dropped == 0


def test_cell_heat_overlay_puts_the_heat_where_the_values_are():
    from molmoact2.viz.depth import cell_heat_overlay

    image = np.full((60, 90, 3), 100, np.uint8)
    values = np.zeros((6, 6), np.float32)
    values[2, 4] = 0.7  # one hot cell: rows 20-29, columns 60-74 of the image
    out = cell_heat_overlay(image, values)
    assert out.shape == image.shape and out.dtype == np.uint8
    brightness = out.astype(int).sum(axis=2)
    assert brightness[20:30, 60:75].min() > brightness[:20].max()  # hot cell brighter than every cold one
    assert np.ptp(brightness[:20]) == 0  # cold cells all alike
    with pytest.raises(ValueError, match=r"values \[rows, cols\]"):
        cell_heat_overlay(image, values.ravel())
