"""Ask a model a spatial question about one image: the logic behind the app's Spatial reasoning tab.

    scene = sim_scene("touch", seed=0)                     # the simulator's front camera (rgb, depth, K, pose)
    policy, err = get_policy(default_spatial_spec())       # 'nano-er' when shipped; err: a plain sentence
    result = ask_scene(policy, scene, question_from_template("point", "the red cube"))
    print(result.summary_md); save_spatial_rrd(result, "/tmp/ask.rrd")

What one question gives: the answer text, the Molmo2-ER parse (points, count, every problem listed, never
raising), the points drawn on the image, for a Nano checkpoint where its grounded attention head looked while
writing the first point (`head_overlay`), and for a simulator scene the depth codes of the depth map (the depth
VQ-VAE), their decoded depth and the points lifted to 3-D with the rendered metric depth. An uploaded image has
no depth: those parts say so instead.

Model specs and their health check are the Control tab's (`molmoact2.control_session.check_spec`),
minus `expert`, which acts but does not answer questions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from molmoact2 import spatial
from molmoact2.models.base import CameraFrame, Observation, Step

DEFAULT_CAMERA = "front"
IMAGE_SIZE = 224
DEFAULT_HEAD = (3, 0)  # the head `train nano --ground-weight` teaches unless told otherwise: (layer, head)
LIFT_WINDOW_PX = 2  # median depth over a 5x5 box: a point on an object's edge still lifts onto the object

# Template name -> (button label, prompt builder). The prompts are Molmo2-ER's (molmoact2.spatial).
TEMPLATES: dict[str, tuple[str, Callable[[str], str]]] = {
    "point": ("Point to X", spatial.point_prompt),
    "point_all": ("Point to all X", spatial.point_all_prompt),
    "count": ("How many X?", lambda label: spatial.count_prompt(plural_phrase(label))),
    "count_point": ("Count, then point", lambda label: spatial.count_and_point_prompt(plural_phrase(label))),
}


def plural_phrase(label: str) -> str:
    """'the red cube' -> 'red cubes': counting prompts want a bare plural ("How many red cubes are there?").

    Naive English, enough for our object names (cube, cylinder, bin, bowl); a label already ending
    in 's' is kept as it is.
    """
    words = label.strip().split()
    if words and words[0].lower() in ("the", "a", "an"):
        words = words[1:]
    if not words:
        return label.strip()
    last = words[-1]
    if not last.lower().endswith("s"):
        words[-1] = last + ("es" if last.lower().endswith(("x", "ch", "sh")) else "s")
    return " ".join(words)

NANO_SIM_ONLY_NOTE = ("Nano was trained on our simulator only: on an uploaded real photo it runs mechanically, "
                      "but its answers are not meaningful.")


def question_from_template(template: str, label: str) -> str:
    """The Molmo2-ER prompt for `template` (a key of TEMPLATES) about `label` (e.g. 'the red cube')."""
    if template not in TEMPLATES:
        raise ValueError(f"template: expected one of {sorted(TEMPLATES)}, got {template!r}")
    return TEMPLATES[template][1](label)


# ---- the image ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpatialScene:
    """One image to ask about. `frame` carries depth/K/pose when the source is the simulator."""

    frame: CameraFrame
    source: Literal["sim", "upload"]
    camera: str = DEFAULT_CAMERA
    task: str | None = None
    seed: int | None = None
    instruction: str = ""

    @property
    def rgb(self) -> np.ndarray:
        return self.frame.rgb


def sim_scene(task: str, seed: int = 0, *, camera: str = DEFAULT_CAMERA, image_size: int = IMAGE_SIZE) -> SpatialScene:
    """Reset the simulator for (task, seed) and take one camera's frame (rgb, depth_m, K, T_world_cam).

    The world is built, rendered and closed in THIS thread: MuJoCo's EGL context belongs to the thread
    that made it, and a UI callback may run on any thread."""
    from molmoact2.sim import make_env, task_names
    from molmoact2.sim.render import release_thread_gl_contexts

    if task not in task_names():
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(task_names())}")
    env = make_env(task, seed=int(seed), image_size=image_size, depth=True, segmentation=False)
    try:
        obs, _ = env.reset(int(seed))
        if camera not in obs.cameras:
            raise ValueError(f"camera {camera!r} not in this world; it has {sorted(obs.cameras)}")
        frame, instruction = obs.cameras[camera], obs.instruction
    finally:
        env.close()
        release_thread_gl_contexts()
    return SpatialScene(frame=frame, source="sim", camera=camera, task=task, seed=int(seed), instruction=instruction)


def upload_scene(image: Any) -> SpatialScene:
    """An uploaded image (uint8 [H, W, 3|4] or grey [H, W]) as a scene without depth."""
    if image is None:
        raise ValueError("no image uploaded; expected an RGB image")
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"uploaded image: expected [H, W, 3] RGB, got shape {list(img.shape)}")
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return SpatialScene(frame=CameraFrame(rgb=np.ascontiguousarray(img[..., :3])), source="upload", camera="image_1")


# ---- the model -----------------------------------------------------------------------------------------
def default_spatial_spec() -> str:
    """`nano-er` (Nano taught to answer questions) when it is shipped, else `nano`."""
    from molmoact2.models.registry import NANO_ER_SPEC, REPO_NANO_ER_DIR

    return NANO_ER_SPEC if (REPO_NANO_ER_DIR / "config.json").is_file() else "nano"


_POLICY_LOCK = threading.Lock()
_POLICY_CACHE: dict[str, Any] = {}  # one loaded model at a time: the last spec asked


def load_spatial_policy(spec: str) -> Any:
    """load_policy(spec), refusing what cannot answer questions, with a plain-words error."""
    from molmoact2.models.registry import load_policy

    s = str(spec or "").strip()
    if not s:
        raise ValueError("empty model spec; expected 'nano-er', 'nano', 'nano:DIR', a checkpoint directory or an "
                         "http(s) URL")
    if s.lower() == "expert":
        raise ValueError("'expert' is the simulator's scripted controller: it acts but cannot answer questions")
    policy = load_policy(s)
    if not callable(getattr(policy, "ask", None)):
        raise ValueError(f"the {type(policy).__name__} backend for {s!r} does not answer free-form questions "
                         "(no ask()); use a Nano or local checkpoint")
    return policy


def get_policy(spec: str) -> tuple[Any | None, str | None]:
    """(policy, None), or (None, a sentence saying why not). Never raises for a bad or missing model."""
    s = str(spec or "").strip()
    with _POLICY_LOCK:
        if s in _POLICY_CACHE:
            return _POLICY_CACHE[s], None
        try:
            policy = load_spatial_policy(s)
        except Exception as exc:  # noqa: BLE001 - every load failure becomes a message in the page
            return None, f"{type(exc).__name__}: {exc}"
        for old in _POLICY_CACHE.values():
            if hasattr(old, "close"):
                old.close()
        _POLICY_CACHE.clear()
        _POLICY_CACHE[s] = policy
        return policy, None


def format_load_error(spec: str, error: str) -> str:
    """The page's message when the model cannot be loaded (the 'not shipped yet' case named as such)."""
    head = f"❌ **Could not load the model `{spec}`.**"
    if "not shipped yet" in error:
        head = (f"❌ **Nano is not shipped yet**, so `{spec}` cannot answer. Use `nano:DIR` with a Nano checkpoint "
                "directory (e.g. a random test one, meaningless answers) or a local MolmoAct2 checkpoint directory; "
                "/act servers take actions only, not questions.")
    return f"{head}\n\n{_md(error)}"


# ---- asking ---------------------------------------------------------------------------------------------
@dataclass
class SpatialResult:
    step: Step
    answer: spatial.SpatialAnswer
    drawn: np.ndarray  # uint8 [H, W, 3]: the answer drawn on the image
    points_px: np.ndarray  # float32 [N, 2] on the image
    points_world: np.ndarray | None  # float32 [N, 3] metres (NaN where no depth), sim scenes only
    depth_bins: np.ndarray | None  # int64 [100] codes of the sim depth map
    depth_decoded: np.ndarray | None  # float32 [S, S] relative disparity decoded from the codes
    notes: list[str] = field(default_factory=list)
    head_image: np.ndarray | None = None  # uint8 [H, W, 3]: where the grounded head looked (Nano), see head_overlay
    head_caption: str = ""

    @property
    def problems(self) -> tuple[str, ...]:
        return self.answer.problems

    @property
    def summary_md(self) -> str:
        a = self.answer
        lines = [f"**Answer:** {_md(self.step.answer_text or '')}" if self.step.answer_text
                 else "**Answer:** *(the model generated no text)*"]
        lines.append(f"- {len(a.points)} point(s) parsed" + (f"; count **{a.count}**" if a.count is not None else ""))
        if self.points_world is not None and len(self.points_world):
            xyz = "; ".join("(" + ", ".join(f"{v:.3f}" for v in p) + ")" for p in self.points_world[:5])
            lines.append(f"- points in 3-D (world, m): {xyz}")
        lines += [f"- ⚠ {_md(p)}" for p in a.problems]
        lines += [f"- {n}" for n in self.notes]
        ms = self.step.timings_ms.get("total_ms")
        if ms is not None:
            lines.append(f"- model time {ms:.0f} ms")
        return "\n".join(lines)


def lift_to_world(points_px: np.ndarray, frame: CameraFrame, window: int = LIFT_WINDOW_PX) -> np.ndarray:
    """Pixel points [N, 2] as `molmoact2.spatial` gives them -> world points [N, 3] with the frame's metric
    depth, K and camera pose.

    Two pixel conventions meet here: `spatial` maps 0..1000 onto the image's edges (pixel i covers
    [i, i+1), so its centre is i + 0.5), while K follows OpenCV (pixel centres at integers). Shifting
    by half a pixel keeps a point and its 3-D lift on the same pixel. Points on the far edge
    (x == width) land on the last pixel rather than being refused.
    """
    from molmoact2.geometry.pointcloud import lift_points_px

    if frame.depth_m is None or frame.K is None:
        raise ValueError("lift_to_world: the frame needs depth_m and K (a simulator frame)")
    h, w = frame.depth_m.shape
    pts = np.asarray(points_px, np.float64).reshape(-1, 2) - 0.5
    pts = np.stack([np.clip(pts[:, 0], 0, w - 1), np.clip(pts[:, 1], 0, h - 1)], axis=1)
    return lift_points_px(pts, frame.depth_m, frame.K, frame.T_world_cam, window=window)


def _codec():
    from molmoact2.depth.codec import default_codec

    return default_codec()


def ask_scene(policy: Any, scene: SpatialScene, question: str, *, codec: Any = None,
              max_new_tokens: int = 64, policy_kind: str | None = None, ensemble: Any = None) -> SpatialResult:
    """Ask `policy` about `scene`; parse, draw, encode depth and lift points. Model output never raises here
    (malformed answers are listed in `problems`); a model that fails to run does. `ensemble`: a
    `molmoact2.point_ensemble.ShiftEnsemble` to average a one-point answer over shifted copies of the image (each
    copy's point drawn as a small ring), or None for one pass."""
    if not str(question or "").strip():
        raise ValueError("empty question; type one or pick a template")
    notes: list[str] = []
    if ensemble is None:
        step = policy.ask(scene.rgb, question, max_new_tokens=max_new_tokens)
    else:
        from molmoact2.point_ensemble import ask_shifted, ensemble_note

        step = ask_shifted(policy, scene.rgb, question, ensemble, max_new_tokens=max_new_tokens)
        notes.append(ensemble_note(step.info["shift_ensemble"]))
    text = step.answer_text if step.answer_text is not None else (step.generated_text or "")
    answer = spatial.parse_answer(text, strict=False, num_images=1)
    h, w = scene.rgb.shape[:2]
    points_px = answer.points_px(width=w, height=h, image=1)
    base = scene.rgb
    copies = (step.info.get("shift_ensemble") or {}).get("points_px")
    if copies:
        from molmoact2.point_ensemble import draw_copies

        base = draw_copies(scene.rgb, copies)
    drawn = spatial.draw_answer(base, answer, image_index=1)
    bins = decoded = world = None
    frame = scene.frame
    if scene.source == "sim" and frame.depth_m is not None:
        try:
            codec = codec or _codec()
            bins = np.asarray(codec.encode(depth_m=frame.depth_m), np.int64)
            decoded = np.asarray(codec.decode(bins), np.float32)
        except Exception as exc:  # noqa: BLE001 - no depth codec must not hide the answer
            notes.append(f"depth codes unavailable: {type(exc).__name__}: {exc}")
        if frame.K is not None:
            world = lift_to_world(points_px, frame) if len(points_px) else np.zeros((0, 3), np.float32)
    else:
        notes.append("Uploaded image: no depth, so no depth codes and no 3-D points.")
        if (policy_kind or "") == "nano" or "nano" in type(policy).__name__.lower():
            notes.append(NANO_SIM_ONLY_NOTE)
    cam = scene.camera
    obs = Observation(cameras={cam: frame}, state=np.zeros(0, np.float32), instruction=scene.instruction)
    info = dict(step.info)
    info.update({"question": question, "source": scene.source, "task": scene.task, "seed": scene.seed,
                 "count": answer.count, "problems": list(answer.problems)})
    if world is not None:
        info["points_world"] = world
    out = Step(backend=step.backend, observation=obs, prompt_text=question, prompt_token_ids=step.prompt_token_ids,
               generated_text=step.generated_text, generated_token_ids=step.generated_token_ids, answer_text=text,
               depth_bins=bins, depth_decoded=decoded, points_px={cam: points_px} if len(points_px) else None,
               timings_ms=dict(step.timings_ms), info=info)
    try:
        head_image, head_caption = head_overlay(policy, scene.rgb, question, text)
    except Exception as exc:  # noqa: BLE001 - the picture of the head must not hide the answer
        head_image, head_caption = None, f"Where the model looked: unavailable ({type(exc).__name__}: {exc})"
    return SpatialResult(out, answer, drawn, points_px, world, bins, decoded, notes, head_image, head_caption)


def grounded_head(policy: Any) -> tuple[int, int, bool]:
    """(layer, head, taught): the attention head `train nano --ground-weight` taught this Nano checkpoint to put on
    the named object (from its training_args.json), or, untaught, the head that option would teach (the last layer
    when the model has fewer)."""
    import json
    from pathlib import Path

    args_path = Path(str(getattr(policy, "checkpoint_dir", "") or "")) / "training_args.json"
    try:
        cfg = json.loads(args_path.read_text()).get("config", {})
    except (OSError, ValueError):
        cfg = {}
    if float(cfg.get("ground_weight") or 0) > 0:
        return int(cfg.get("ground_layer", DEFAULT_HEAD[0])), int(cfg.get("ground_head", DEFAULT_HEAD[1])), True
    return min(DEFAULT_HEAD[0], len(policy.model.lm.layers) - 1), DEFAULT_HEAD[1], False


def head_overlay(policy: Any, image: np.ndarray, question: str, answer_text: str) -> tuple[np.ndarray | None, str]:
    """(image with a heatmap of where the grounded head looked while the answer's first point was written, caption),
    or (None, why not): only Nano exposes its attention here, and only an answer with a point has coordinates."""
    if not (hasattr(policy, "model") and hasattr(policy, "processor")) or "nano" not in type(policy).__name__.lower():
        return None, "Where the model looked: shown for Nano checkpoints only."
    from molmoact2.evaluation.qa_check import head_cells
    from molmoact2.viz.depth import cell_heat_overlay

    layer, head, taught = grounded_head(policy)
    cells = head_cells(policy.model, policy.processor, image, question, answer_text or "", None, layer, head)
    if cells is None:
        return None, "Where the model looked: the answer has no point, so there is nothing to look for."
    attention = cells[0].reshape(policy.processor.image_grid)
    caption = (f"Head {layer}.{head} while the first point was written: {'trained' if taught else 'NOT trained'} "
               f"to look at the named object; {100 * attention.sum():.0f}% of its attention on the image tokens.")
    return cell_heat_overlay(image, attention), caption


SPATIAL_POINTS_ENTITY = "world/spatial_points"


def save_spatial_rrd(result: SpatialResult, path: Any) -> Any:
    """The result's Step as an .rrd (default blueprint), plus the lifted points at world/spatial_points
    (in the 3-D view). Written to `path.partial`, then renamed, like `save_rrd`."""
    import os
    from pathlib import Path

    import rerun as rr

    from molmoact2.viz.logger import StepLogger, blueprint_for, new_recording

    path = Path(path)
    if path.suffix != ".rrd":
        raise ValueError(f"save_spatial_rrd: expected a path ending in .rrd, got {path}")
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = new_recording()
    try:
        rec.save(partial, default_blueprint=blueprint_for(result.step))
        StepLogger(rec).log(result.step)
        world = result.points_world
        if world is not None and len(world):
            ok = np.isfinite(world).all(axis=1)
            labels = [str(i + 1) for i in range(len(world))]
            rec.log(SPATIAL_POINTS_ENTITY, rr.Points3D(world[ok], radii=0.012, colors=[[255, 40, 40]],
                                                       labels=[lab for lab, k in zip(labels, ok) if k]))
        rec.flush()
        rec.disconnect()
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _md(text: str) -> str:
    # Answers are full of <tags>; markdown renderers would take them for HTML and hide them.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
