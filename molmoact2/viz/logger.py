"""Log Steps to Rerun: inline (`log_step`), from a worker thread (`BackgroundLogger`), to a file
(`save_rrd`, atomic), or as a byte stream for the embedded Gradio viewer (`iter_rrd_bytes`).

Always explicit `rr.RecordingStream` objects, never the global recording, so several recordings
(one per app session, a file export, a test) can live in one process. Entity paths come from
`molmoact2.viz.layout` only.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from molmoact2.geometry.pointcloud import backproject_depth
from molmoact2.models.base import CameraFrame, Step
from molmoact2.viz import layout as L

log = logging.getLogger(__name__)

APPLICATION_ID = "molmoact2_workbench"

# tab10: distinct, colour-blind-tolerable, and the same joint gets the same colour in every recording.
PALETTE = np.array(
    [
        [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
        [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
    ],
    dtype=np.uint8,
)
PATH_COLOR = (255, 64, 160)  # planned path: magenta stands out on both sim and real scenes
POINT_COLOR = (0, 230, 118)
REPREDICTED_COLOR = (255, 140, 0)
REPLAYED_COLOR = (90, 90, 90)
NOT_AVAILABLE = "not available from this backend"


@dataclass(frozen=True)
class VizConfig:
    # None = fixed from the first decoded frame when logging live; `save_rrd` uses the whole
    # recording's min..max instead. Decoded depth is relative per frame, so an auto range per
    # frame would make equal colours mean different depths from one step to the next.
    depth_decoded_range: tuple[float, float] | None = None
    # 224x224 at stride 4 = 3136 points per camera: enough to read the scene, ~0.1 ms to log.
    point_cloud_stride: int = 4
    point_cloud_max_depth_m: float = 5.0
    path_radius_m: float = 0.004
    log_state: bool = True


def _color(i: int) -> list[int]:
    return PALETTE[i % len(PALETTE)].tolist()


def _code_colors(n: int = 128) -> np.ndarray:
    """A viridis-like ramp (dark blue -> green -> yellow) so nearby codes get nearby colours."""
    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float)
    x = np.linspace(0, len(anchors) - 1, n)
    lo = np.floor(x).astype(int).clip(0, len(anchors) - 2)
    t = (x - lo)[:, None]
    return ((1 - t) * anchors[lo] + t * anchors[lo + 1]).round().astype(np.uint8)


def pack_rgba(rgb: np.ndarray) -> np.ndarray:
    """uint8 [N, 3] -> uint32 0xRRGGBBFF: Rerun's native colour layout, ~3x cheaper to log than [N, 3]."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    return (rgb[:, 0] << 24) | (rgb[:, 1] << 16) | (rgb[:, 2] << 8) | np.uint32(0xFF)


class StepLogger:
    """Maps Steps onto one RecordingStream. Holds the little state a recording needs to read well:
    static styling sent once, the fixed decoded-depth range, the chunk-plot scale, and which entities
    had data last step (they get a `Clear` when a later step lacks them, so the viewer never shows a
    stale answer next to a new frame)."""

    def __init__(self, rec: Any, config: VizConfig | None = None) -> None:
        import rerun as rr

        if not isinstance(rec, rr.RecordingStream):
            raise TypeError(f"StepLogger: expected an rr.RecordingStream, got {type(rec).__name__}")
        self.rr = rr
        self.rec = rec
        self.config = config or VizConfig()
        self.depth_range: tuple[float, float] | None = self.config.depth_decoded_range
        self.chunk_plot_dx: float | None = None
        self._static_done: set[str] = set()
        self._previous: set[str] = set()
        self._lock = threading.Lock()  # one Step at a time: the Clear bookkeeping is per recording
        self.steps_logged = 0

    # ---- static styling ----------------------------------------------------------------
    def _static(self, path: str, make: Callable[[], Any]) -> None:
        # `make` is called only the first time: building styling archetypes every step costs ~0.1 ms each.
        if path not in self._static_done:
            self.rec.log(path, make(), static=True)
            self._static_done.add(path)

    def _static_once(self) -> None:
        rr = self.rr
        if "__base__" in self._static_done:
            return
        colors = _code_colors()
        self.rec.log(
            L.DEPTH_CODES,
            rr.AnnotationContext([rr.ClassDescription(info=(i, f"code {i}", colors[i].tolist())) for i in range(128)]),
            static=True,
        )
        self.rec.log(
            L.DEPTH_UPDATE_MASK,
            rr.AnnotationContext(
                [
                    rr.ClassDescription(info=(0, "replayed from cache", REPLAYED_COLOR)),
                    rr.ClassDescription(info=(1, "re-predicted", REPREDICTED_COLOR)),
                ]
            ),
            static=True,
        )
        # MuJoCo and robot bases are z-up; the cameras themselves carry OpenCV (RDF) pinholes.
        self.rec.log(L.WORLD, rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        self._static_done.add("__base__")

    # ---- the mapping -------------------------------------------------------------------
    def log(self, step: Step) -> None:
        if not isinstance(step, Step):
            raise TypeError(f"log_step: expected a molmoact2 Step, got {type(step).__name__}")
        with self._lock:
            self._log(step)

    def _log(self, step: Step) -> None:
        rr, rec, cfg = self.rr, self.rec, self.config
        self._static_once()
        rec.set_time(L.STEP_TIMELINE, sequence=int(step.index))
        rec.set_time(L.TIME_TIMELINE, duration=float(step.timestamp_s))
        now: set[str] = set()
        missing: list[str] = []

        def put(path: str, *archetypes: Any) -> None:
            rec.log(path, *archetypes)
            now.add(path)

        obs = step.observation
        cams = obs.cameras if obs is not None else {}
        if obs is None:
            missing.append("cameras / robot state (no observation in this Step)")
        for cam, frame in cams.items():
            put(L.camera_rgb(cam), rr.Image(frame.rgb))
            pose = []  # the camera in the 3-D scene: its pose and/or its frustum, one row
            if frame.T_world_cam is not None:
                T = np.asarray(frame.T_world_cam, dtype=np.float64)
                pose.append(rr.Transform3D(translation=T[:3, 3], mat3x3=T[:3, :3]))
            if frame.K is not None:
                w, h = frame.size_wh
                K = np.asarray(frame.K, np.float32)
                pose.append(rr.Pinhole(image_from_camera=K, resolution=[w, h], image_plane_distance=0.1))
            if pose:
                put(L.world_camera(cam), *pose)
            if frame.depth_m is not None and frame.K is not None and frame.T_world_cam is not None:
                pts, colors = backproject_depth(
                    frame.depth_m, frame.K, frame.T_world_cam, frame.rgb, cfg.point_cloud_stride, cfg.point_cloud_max_depth_m
                )
                put(L.world_point_cloud(cam), rr.Points3D(pts, colors=pack_rgba(colors), radii=0.003))
        if obs is not None and cfg.log_state:
            names = obs.state_names or tuple(f"s{i}" for i in range(len(obs.state)))
            for i, (name, value) in enumerate(zip(names, np.asarray(obs.state, dtype=np.float64))):
                self._static(L.state(name), lambda: rr.SeriesLines(names=name, colors=[_color(i)]))
                rec.log(L.state(name), rr.Scalars(float(value)))

        # Spatial answer and planned path, in each camera's pixels.
        for cam, pts in (step.points_px or {}).items():
            put(L.camera_points(cam), rr.Points2D(np.asarray(pts, np.float32).reshape(-1, 2), colors=[POINT_COLOR], radii=3.0))
        for cam, path in (step.planned_path_px or {}).items():
            put(L.camera_planned_path(cam), rr.LineStrips2D([np.asarray(path, np.float32)], colors=[PATH_COLOR], radii=1.5))
        if step.points_px is None:
            missing.append("spatial points")

        self._log_depth(step, cams, put, missing)
        self._log_world_paths(step, put, missing)
        self._log_actions(step, put, missing)

        for stage, ms in step.timings_ms.items():
            rec.log(L.latency(stage), rr.Scalars(float(ms)))
        if not step.timings_ms:
            missing.append("latency per stage")

        for path, text, what in (
            (L.TEXT_PROMPT, step.prompt_text, "prompt text"),
            (L.TEXT_ANSWER, step.answer_text, "answer text"),
            (L.TEXT_GENERATED, step.generated_text, "generated text"),
        ):
            if text is not None:
                put(path, rr.TextDocument(text))
            else:
                missing.append(what)

        lines = [f"**step {step.index}** · backend `{step.backend}` · t = {step.timestamp_s:.3f} s", ""]
        lines += [f"- {what}: *{NOT_AVAILABLE}*" for what in missing] or ["- every view has data at this step"]
        put(L.TEXT_AVAILABILITY, rr.TextDocument("\n".join(lines), media_type=rr.MediaType.MARKDOWN))

        # Entities that had data last step but not now: clear them so views do not show stale data.
        for path in self._previous - now:
            rec.log(path, rr.Clear(recursive=False))
        self._previous = now
        self.steps_logged += 1

    def _log_depth(self, step: Step, cams: dict[str, CameraFrame], put: Callable, missing: list[str]) -> None:
        rr, rec, n = self.rr, self.rec, L.DEPTH_GRID
        if step.depth_bins is not None:
            codes = np.asarray(step.depth_bins).reshape(n, n)
            put(L.DEPTH_CODES, rr.SegmentationImage(codes.astype(np.uint8)))
            rows, cols = np.mgrid[0:n, 0:n]
            centers = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
            put(
                L.DEPTH_CODE_VALUES,
                rr.Boxes2D(
                    centers=centers,
                    half_sizes=np.full((n * n, 2), 0.5),  # one per box: half_sizes sets the instance count
                    labels=[str(int(c)) for c in codes.ravel()],
                    show_labels=True,
                    colors=[[20, 20, 20, 90]],  # faint cell outline: the segmentation colour stays readable
                    radii=0.02,
                ),
            )
        else:
            missing.append("depth codes")
        if step.depth_update_mask is not None:
            mask = np.asarray(step.depth_update_mask, dtype=bool)
            put(L.DEPTH_UPDATE_MASK, rr.SegmentationImage(mask.reshape(n, n).astype(np.uint8)))
            repredicted = int(mask.sum())
            saved = int(step.info.get("tokens_saved", mask.size - repredicted))
            rec.log(L.THINK_CELLS_REPREDICTED, rr.Scalars(float(repredicted)))
            rec.log(L.THINK_TOKENS_SAVED, rr.Scalars(float(saved)))
            if cams:
                # The grid lies over MolmoThink's main image: draw the re-predicted cells on it.
                main = next(iter(cams))
                w, h = cams[main].size_wh
                rr_idx, cc_idx = np.nonzero(mask.reshape(n, n))
                put(
                    L.camera_depth_update_mask(main),
                    rr.Boxes2D(
                        mins=np.stack([cc_idx * w / n, rr_idx * h / n], axis=1),
                        sizes=np.tile([w / n, h / n], (len(rr_idx), 1)),  # one per box (sets the count)
                        colors=[REPREDICTED_COLOR],
                        radii=0.75,
                    ),
                )
        else:
            missing.append("MolmoThink update mask")
        if step.depth_decoded is not None:
            depth = np.asarray(step.depth_decoded, dtype=np.float32)
            if self.depth_range is None:
                self.depth_range = _finite_range(depth)
            put(L.DEPTH_DECODED, rr.DepthImage(depth, depth_range=self.depth_range, colormap="viridis"))
        else:
            missing.append("decoded depth")

    def _log_world_paths(self, step: Step, put: Callable, missing: list[str]) -> None:
        rr, r = self.rr, self.config.path_radius_m
        if step.planned_path_world is not None:
            path = np.asarray(step.planned_path_world, np.float32)
            put(L.WORLD_PLANNED_PATH, rr.LineStrips3D([path], colors=[PATH_COLOR], radii=r))
        else:
            missing.append("planned path (3-D)")
        # Denoising states live in action space; their 3-D paths need forward kinematics, which the
        # producer (not the viewer) owns: it puts them in info["denoising_paths_world"] [S+1, H, 3].
        paths = step.info.get("denoising_paths_world")
        if paths is not None:
            paths = np.asarray(paths, np.float32)
            if paths.ndim != 3 or paths.shape[2] != 3:
                raise ValueError(
                    f"log_step: info['denoising_paths_world'] expected [S+1, H, 3] metres, got {list(paths.shape)}"
                )
            last = len(paths) - 1
            for i, p in enumerate(paths):
                t = i / max(last, 1)  # grey noise -> path colour at the final state
                color = (np.array(REPLAYED_COLOR) * (1 - t) + np.array(PATH_COLOR) * t).astype(np.uint8)
                put(L.world_denoising(i), rr.LineStrips3D([p], colors=[color], radii=r * 0.5))
        elif step.denoising_states is not None:
            missing.append("denoising paths in 3-D (the Step has action-space states but no info['denoising_paths_world'])")
        else:
            missing.append("denoising states")

    def _log_actions(self, step: Step, put: Callable, missing: list[str]) -> None:
        rr, rec = self.rr, self.rec
        if step.actions is None:
            missing.append("action chunk")
            return
        actions = np.asarray(step.actions, dtype=np.float64)
        horizon, dim = actions.shape
        names = step.action_names or tuple(f"a{j}" for j in range(dim))
        unit = f" [{step.action_units}]" if step.action_units else ""
        for j, name in enumerate(names):
            self._static(L.action(name), lambda: rr.SeriesLines(names=f"{name}{unit}", colors=[_color(j)]))
            if horizon:
                rec.log(L.action(name), rr.Scalars(float(actions[0, j])))
        if horizon == 0:
            return
        if self.chunk_plot_dx is None:
            # Fixed for the recording: about 1.5 wide per 1 tall for the first chunk's value range.
            span = float(np.nanmax(np.abs(actions))) if np.isfinite(actions).any() else 1.0
            self.chunk_plot_dx = max(2 * span, 1e-6) * 1.5 / max(horizon - 1, 1)
        x = np.arange(horizon) * self.chunk_plot_dx
        strips = [np.stack([x, -actions[:, j]], axis=1) for j in range(dim)]
        colors = [_color(j) for j in range(dim)]
        labels = list(names)
        radii = [0.004 * self.chunk_plot_dx * 10] * dim
        n_exec = step.n_executed
        if n_exec is not None and n_exec > 1:
            strips += [s[: min(n_exec, horizon)] for s in strips[:dim]]
            colors += colors[:dim]
            labels += [""] * dim
            radii += [0.012 * self.chunk_plot_dx * 10] * dim
        strips.append(np.array([[0.0, 0.0], [x[-1], 0.0]]))  # the zero line
        colors.append([160, 160, 160])
        labels.append("0")
        radii.append(0.002 * self.chunk_plot_dx * 10)
        put(L.ACTION_CHUNK_PLOT, rr.LineStrips2D(strips, colors=colors, labels=labels, radii=radii))


def _finite_range(a: np.ndarray) -> tuple[float, float]:
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi if hi > lo else lo + 1e-6)


# One StepLogger per RecordingStream, so `log_step(rec, step)` keeps its per-recording state
# (static styling once, fixed depth range) without the caller holding it.
_LOGGERS: "weakref.WeakKeyDictionary[Any, StepLogger]" = weakref.WeakKeyDictionary()
_LOGGERS_LOCK = threading.Lock()


def step_logger_for(rec: Any, config: VizConfig | None = None) -> StepLogger:
    with _LOGGERS_LOCK:
        logger = _LOGGERS.get(rec)
        if logger is None:
            logger = _LOGGERS[rec] = StepLogger(rec, config)
        return logger


def log_step(rec: Any, step: Step, config: VizConfig | None = None) -> None:
    """Log one Step to `rec` on the `step` and `time` timelines; None fields are skipped and named
    in `text/availability`. `config` only matters on the first call for a given `rec`."""
    step_logger_for(rec, config).log(step)


def new_recording(application_id: str = APPLICATION_ID, recording_id: str | None = None) -> Any:
    """A fresh explicit RecordingStream (random recording id unless given), never the global one."""
    import rerun as rr

    return rr.RecordingStream(application_id, recording_id=recording_id or uuid.uuid4().hex)


# ---- background logging --------------------------------------------------------------------
@dataclass(frozen=True)
class LoggerStats:
    submitted: int
    logged: int
    dropped: int
    errors: int
    queued: int
    mean_log_ms: float
    last_error: str | None


_STOP = object()


class BackgroundLogger:
    """Log Steps from a worker thread so the control loop never waits for the viewer.

    `submit(step)` never blocks: when the bounded queue is full the Step is dropped and counted
    (a late frame is worth less than a steady control rate). `close()` logs everything still queued,
    flushes the recording and returns the final stats. The Step is queued by reference: do not
    mutate its arrays after submitting (producers build a new Step per control step anyway).

    `sink` replaces the default `StepLogger(rec).log` (tests use a slow one to force drops).
    """

    def __init__(
        self,
        rec: Any = None,
        *,
        max_queue: int = 8,
        config: VizConfig | None = None,
        sink: Callable[[Step], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"BackgroundLogger: expected max_queue >= 1, got {max_queue}")
        if rec is None and sink is None:
            raise ValueError("BackgroundLogger: expected an rr.RecordingStream or a sink, got neither")
        self.rec = rec
        self._sink = sink or step_logger_for(rec, config).log
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._submitted = self._logged = self._dropped = self._errors = 0
        self._log_s = 0.0
        self._last_error: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="molmoact2-rerun-logger", daemon=True)
        self._thread.start()

    def submit(self, step: Step) -> bool:
        """Queue `step` for logging; returns False (and counts a drop) if the queue is full."""
        if self._closed:
            raise RuntimeError("BackgroundLogger.submit: the logger is closed; create a new one")
        try:
            self._queue.put_nowait(step)
        except queue.Full:
            with self._lock:
                self._dropped += 1
            return False
        with self._lock:
            self._submitted += 1
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            t0 = time.perf_counter()
            try:
                self._sink(item)
            except Exception as exc:  # never kill the worker; count and report instead
                with self._lock:
                    self._errors += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning("BackgroundLogger: logging step %s failed: %s", getattr(item, "index", "?"), exc)
            else:
                with self._lock:
                    self._logged += 1
                    self._log_s += time.perf_counter() - t0

    @property
    def stats(self) -> LoggerStats:
        with self._lock:
            return LoggerStats(
                submitted=self._submitted,
                logged=self._logged,
                dropped=self._dropped,
                errors=self._errors,
                queued=self._queue.qsize(),
                mean_log_ms=1000 * self._log_s / self._logged if self._logged else float("nan"),
                last_error=self._last_error,
            )

    def close(self, timeout_s: float | None = None) -> LoggerStats:
        """Log everything queued, stop the worker, flush the recording; return the final stats."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)  # blocking is fine here: the worker is draining the queue
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"BackgroundLogger.close: worker still busy after {timeout_s} s ({self.stats})")
        if self.rec is not None:
            self.rec.flush()
        return self.stats

    def __enter__(self) -> "BackgroundLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---- files and streams ---------------------------------------------------------------------
def _peek(steps: Iterable[Step]) -> tuple[Step | None, Iterable[Step]]:
    it = iter(steps)
    first = next(it, None)
    return first, (itertools.chain([first], it) if first is not None else [])


def blueprint_for(step: Step | None) -> Any:
    """The default blueprint for recordings shaped like `step` (its cameras and action names)."""
    from molmoact2.viz.blueprint import default_blueprint

    cams = list(step.observation.cameras) if step is not None and step.observation is not None else []
    names = step.action_names if step is not None else None
    return default_blueprint(cams or ["main"], names)


def save_rrd(
    steps: Iterable[Step],
    path: str | os.PathLike,
    *,
    config: VizConfig | None = None,
    application_id: str = APPLICATION_ID,
    recording_id: str | None = None,
) -> Path:
    """Write `steps` (a list, a generator or a `Recording`) to an `.rrd` with the default blueprint.

    Atomic: written to `path.partial`, then renamed, so a reader never sees half a file and a crash
    leaves the previous `path` intact. Without an explicit range, decoded depth uses the min..max of
    the whole recording (one extra pass over the steps).
    """
    path = Path(path)
    if path.suffix != ".rrd":
        raise ValueError(f"save_rrd: expected a path ending in .rrd, got {path}")
    config = config or VizConfig()
    if config.depth_decoded_range is None:
        steps = steps if isinstance(steps, Sequence) or hasattr(steps, "rows") else list(steps)
        lo, hi = np.inf, -np.inf
        for s in steps:
            if not isinstance(s, Step):
                raise TypeError(f"save_rrd: expected a molmoact2 Step, got {type(s).__name__}")
            if s.depth_decoded is not None:
                a, b = _finite_range(np.asarray(s.depth_decoded, np.float32))
                lo, hi = min(lo, a), max(hi, b)
        if np.isfinite(lo):
            config = dataclasses.replace(config, depth_decoded_range=(lo, hi))
    first, steps = _peek(steps)
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = new_recording(application_id, recording_id)
    try:
        rec.save(partial, default_blueprint=blueprint_for(first))
        logger = StepLogger(rec, config)
        for step in steps:
            logger.log(step)
        rec.flush()
        rec.disconnect()  # finalizes the file sink: footer written, file closed
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def iter_rrd_bytes(
    steps: Iterable[Step],
    *,
    config: VizConfig | None = None,
    application_id: str = APPLICATION_ID,
    recording_id: str | None = None,
) -> Iterator[bytes]:
    """Log `steps` one by one and yield the new RRD bytes after each, for `gradio_rerun.Rerun`.

    The generator is the Gradio callback's body (gradio-rerun 0.39 README, "Streaming" tab)::

        from gradio_rerun import Rerun
        viewer = Rerun(streaming=True, height=700, elem_id="rerun-viewer")
        def replay(episode):
            yield from iter_rrd_bytes(run_episode(episode))   # Steps as they are produced
        button.click(replay, inputs=[episode], outputs=[viewer])

    Each session gets its own RecordingStream (random `recording_id` unless given), so concurrent
    app sessions never mix data. The first chunk carries the default blueprint. Each yielded chunk
    is a self-contained RRD segment (it starts with its own header): the viewer appends them; to
    keep a file, save the Steps with `save_rrd` instead of concatenating chunks.
    """
    first, steps = _peek(steps)
    rec = new_recording(application_id, recording_id)
    stream = rec.binary_stream()
    rec.send_blueprint(blueprint_for(first))
    logger = StepLogger(rec, config)
    for step in steps:
        logger.log(step)
        chunk = stream.read()
        if chunk:
            yield chunk
    rec.flush()
    tail = stream.read()
    if tail:
        yield tail


class LiveViewerStream:
    """A live recording for the embedded Gradio viewer: the control loop `submit`s Steps (never
    waits; logged by a `BackgroundLogger`), the Gradio callback polls `read()` and yields the bytes.

        live = LiveViewerStream(cameras=["front", "wrist"], joint_names=SO101_JOINTS)
        threading.Thread(target=run_episode, kwargs={"on_step": live.submit}, daemon=True).start()

        def viewer_feed():                       # outputs=[gradio_rerun.Rerun(streaming=True)]
            while not live.closed or live.pending:
                chunk = live.read()
                if chunk:
                    yield chunk
                time.sleep(0.25)                 # batches bytes; the viewer lags on 2 cores anyway
            yield live.read_rest()
    """

    def __init__(
        self,
        cameras: Sequence[str],
        joint_names: Sequence[str] | None = None,
        *,
        max_queue: int = 8,
        config: VizConfig | None = None,
        application_id: str = APPLICATION_ID,
        recording_id: str | None = None,
    ) -> None:
        from molmoact2.viz.blueprint import default_blueprint

        self.rec = new_recording(application_id, recording_id)
        self._stream = self.rec.binary_stream()
        self.rec.send_blueprint(default_blueprint(list(cameras), joint_names))
        self.logger = BackgroundLogger(self.rec, max_queue=max_queue, config=config)
        self.closed = False

    def submit(self, step: Step) -> bool:
        return self.logger.submit(step)

    @property
    def pending(self) -> bool:
        return self.logger.stats.queued > 0

    def read(self) -> bytes | None:
        """New bytes since the last read, without waiting for in-flight data (never blocks the UI)."""
        return self._stream.read(flush=False)

    def close(self) -> LoggerStats:
        stats = self.logger.close()
        self.closed = True
        return stats

    def read_rest(self) -> bytes:
        """Everything still buffered after `close()` (flushes first)."""
        return self._stream.read(flush=True) or b""
