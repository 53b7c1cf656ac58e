"""Build Nano's training data from the simulator ONCE and cache it on disk (`molmoact2 train data`).

    build_dataset(DataConfig(episodes_per_task=25), "/tmp/nano_data")   # scripted-expert demos, ~6 min

For every successful scripted-expert episode (single-arm SO-101 tasks) the cache keeps, per frame
(the observation BEFORE each executed action):
  * `front`, `wrist`: RGB already resized (PIL bilinear, as the processor does) to `store_size`, so
    the processor sees exactly what it would see when resizing a `render_size` frame at run time;
  * `state`, `action`: raw robot units (the action is the commanded absolute joint target);
  * `depth_codes`: the depth VQ-VAE's 100 codes of the front (main) camera's metric depth;
  * `target_px48`: the front camera's pixels of the object the instruction names, counted per cell of a
    48x48 grid [frames, 48, 48] uint8 (0 everywhere when it is hidden): the target of the action grounding
    loss (`train nano --ground-actions`); 48 divides every token grid Nano uses (6, 8, 12, 16, 24);
  * `target_offset_m`: the named object's centre minus the jaw's midpoint, world frame, metres [frames, 3]: the
    target of the expert's offset loss (`train nano --offset-weight`, models/nano/offset.py);
  * `think_mask`, `depth_buffer`: MolmoThink (molmoact2.md §5) along the frames a policy is queried
    at (every `think_stride` frames): the mask of cells that changed since the previous query and the
    carried-forward buffer (changed cells take the new code, others keep the previous buffer's) --
    the depth training target. The first query of a chain has every cell changed.
Spatial QA (`qa.json`) comes from scene ground truth at a few front frames per episode: pointing at
the segmentation mask's most central pixel, counting per shape, "which is closer" from metric depth,
boxes from mask extents, and "There are none." for absent objects. Their segmentation maps are kept
(`qa_seg.npz`) so answers can be checked against the masks. `norm_stats.json` holds demo statistics
(min/max, mean/std, q01/q99) under the `so101_sim_molmoact2` tag; Nano uses `q01_q99`, the same
normalization the OpenFAST tokenizer was fitted with.

With `takeover` set (`train data --takeover-policy nano`), a policy drives each layout for a few chunks first and
the expert finishes from there (molmoact2/training/takeover.py); only the expert's part is recorded, each episode's
meta says where the policy had left the arm.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from molmoact2 import spatial
from molmoact2.training.takeover import TakeoverConfig, layout_signature

DATA_FORMAT = "molmoact2_nano_data.v1"
SINGLE_ARM_TASKS = ("pick_place", "push_left", "push_right", "touch")
_PLURAL = {"cube": "cubes", "cylinder": "cylinders", "block": "blocks"}
_ABSENT_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink")


@dataclass(frozen=True)
class DataConfig:
    tasks: tuple[str, ...] = SINGLE_ARM_TASKS
    episodes_per_task: int = 25
    first_seed: int = 0
    # The app and evaluation render at 224: Think masks and depth codes come from that resolution.
    render_size: int = 224
    # Frames are stored at the "small" model's input size (96): 5x less disk/RAM, identical model input.
    store_size: int = 96
    cameras: tuple[str, ...] = ("front", "wrist")
    # Frames between two policy queries (= n_action_steps written to norm_stats): the previous depth
    # cache of frame t is the one of frame t - think_stride, as in a closed loop executing 15 of 30 steps.
    # (The shipped Nano's norm stats were edited to 30 afterwards: executing the whole chunk measured better on the
    # choosing layouts, within noise on fresh ones, docs/nano_experiments.md#whole-chunk and #fresh-layouts; its
    # Think examples were still built at 15.)
    think_stride: int = 15
    qa_frames_per_episode: int = 3
    min_visible_px: int = 20  # an object with fewer mask pixels is "not visible" (no point/count for it)
    closer_margin_m: float = 0.01  # "which is closer" only when the median depths differ by more
    max_attempts_factor: int = 3  # give up on a task after episodes * factor seeds
    # Demos per layout, each naming a different object (up to the layout's candidates). With 1, a layout's
    # words and its picture always go together; with more, only the words say which object to act on.
    targets_per_layout: int = 1
    # A policy drives first and the expert takes over from its state (None: the expert alone, from home).
    takeover: TakeoverConfig | None = None
    # Two opposite tasks (push_left, push_right) recorded as pairs: the second task's demo on the first one's
    # layout and object, so one picture comes with both directions and only the words say which way.
    # Seeds whose layout cannot host both on one object are skipped; `episodes_per_task` counts pairs.
    direction_pairs: bool = False
    # With direction_pairs: each demo of a pair starts after the OTHER word's expert drove this many ticks
    # (min, max; drawn per seed and word), so the arm is heading the wrong way and only the word can turn it
    # (takeover.WrongWayRollIn). None: both demos start at home.
    wrong_way_ticks: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.targets_per_layout < 1:
            raise ValueError(f"targets_per_layout: expected >= 1, got {self.targets_per_layout}")
        if self.direction_pairs:
            if len(self.tasks) != 2 or self.tasks[0] == self.tasks[1]:
                raise ValueError(f"direction_pairs: expected two different tasks (e.g. push_left,push_right), "
                                 f"got {self.tasks}")
            if self.targets_per_layout != 1:
                raise ValueError("direction_pairs: targets_per_layout must be 1 (a pair already names one object "
                                 "twice)")
        if self.wrong_way_ticks is not None:
            if not self.direction_pairs:
                raise ValueError("wrong_way_ticks: needs direction_pairs (the opposite word's expert starts each "
                                 "demo on the pair's shared layout)")
            if self.takeover is not None:
                raise ValueError("wrong_way_ticks: the roll-in is the opposite word's expert; do not also give "
                                 "a takeover policy")
            lo, hi = self.wrong_way_ticks
            if not 1 <= lo <= hi:
                raise ValueError(f"wrong_way_ticks: expected 1 <= min <= max ticks, got {lo}-{hi}")


@dataclass
class EpisodeRecord:
    task: str
    seed: int
    instruction: str
    target: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    qa: list[dict[str, Any]] = field(default_factory=list)
    qa_seg: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> segmentation [H, W] int16
    takeover: dict[str, Any] | None = None  # where the roll-in policy left the arm (PolicyRollIn's info)


TARGET_GRID = 48  # cells per side of `target_px48`


def grid_pixel_counts(mask_hw: np.ndarray, grid: int = TARGET_GRID) -> np.ndarray:
    """Pixels of a [H, W] bool mask in each cell of a grid x grid partition (row-major cells, integer bounds as
    in grounding.cell_fractions), uint8: a 224 px frame's cells hold at most 5x5 pixels."""
    mask = np.asarray(mask_hw, dtype=bool)
    h, w = mask.shape
    if h < grid or w < grid or h // grid > 15 or w // grid > 15:
        raise ValueError(f"grid_pixel_counts: expected a frame between {grid} and {15 * grid} px a side, got {h}x{w}")
    rows = np.add.reduceat(mask.astype(np.uint16), np.arange(grid) * h // grid, axis=0)
    return np.add.reduceat(rows, np.arange(grid) * w // grid, axis=1).astype(np.uint8)


# ---- spatial QA from ground truth ----------------------------------------------------------------
def central_pixel(mask: np.ndarray) -> tuple[int, int]:
    """(col, row) of the mask pixel nearest the mask's centroid: the centroid itself can fall outside
    a non-convex (e.g. partly occluded) mask, a point target must not."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("central_pixel: expected a non-empty mask, got no pixels")
    cy, cx = rows.mean(), cols.mean()
    i = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    return int(cols[i]), int(rows[i])


def pixel_to_1000(col: int, row: int, width: int, height: int) -> tuple[int, int]:
    """Pixel centre -> integer 0..1000 coordinates that map back into the same pixel (spatial.py convention)."""
    x = int(round((col + 0.5) / width * 1000))
    y = int(round((row + 0.5) / height * 1000))
    back = spatial.pixel_index(x / 1000 * width, y / 1000 * height, width=width, height=height)
    if back != (col, row):  # only possible for images wider than ~2000 px
        raise ValueError(f"pixel_to_1000: pixel ({col}, {row}) of {width}x{height} does not round-trip on 0..1000")
    return x, y


def spatial_qa(segmentation: np.ndarray, depth_m: np.ndarray, objects: list[Any], rng: np.random.Generator,
               cfg: DataConfig) -> list[dict[str, Any]]:
    """Questions and Molmo2-ER answers about one front image. `objects` are the scene's SceneObjects
    (name, shape, label); the segmentation holds their label ids."""
    h, w = segmentation.shape
    visible: dict[str, dict[str, Any]] = {}
    for obj in objects:
        mask = segmentation == obj.label
        if int(mask.sum()) < cfg.min_visible_px:
            continue
        col, row = central_pixel(mask)
        rows, cols = np.nonzero(mask)
        depth = depth_m[mask]
        depth = depth[np.isfinite(depth)]
        visible[obj.name] = {"obj": obj, "point": pixel_to_1000(col, row, w, h),
                             "box": (int(round(cols.min() / w * 1000)), int(round(rows.min() / h * 1000)),
                                     int(round((cols.max() + 1) / w * 1000)), int(round((rows.max() + 1) / h * 1000))),
                             "depth_m": float(np.median(depth)) if depth.size else float("nan")}
    out: list[dict[str, Any]] = []
    for name, v in visible.items():
        out.append({"kind": "point", "question": spatial.point_prompt(f"the {name}"),
                    "answer": spatial.format_points({1: [v["point"]]}, name), "labels": [int(v["obj"].label)]})
        out.append({"kind": "box", "question": f"Detect the {name} with a bounding box.",
                    "answer": spatial.format_boxes({1: [v["box"]]}, name), "labels": [int(v["obj"].label)]})
    # An object that is not in the scene: the model must learn to say so instead of pointing anywhere.
    present = {o.name for o in objects}
    absent = [f"{c} {s}" for c in _ABSENT_COLOURS for s in _PLURAL if f"{c} {s}" not in present]
    if absent:
        name = absent[int(rng.integers(len(absent)))]
        out.append({"kind": "point_absent", "question": spatial.point_prompt(f"the {name}"),
                    "answer": "There are none.", "labels": []})
    for shape, plural in _PLURAL.items():
        hits = [v for v in visible.values() if v["obj"].shape == shape]
        if not hits and any(o.shape == shape for o in objects):
            continue  # present but hidden: the image cannot answer it, skip rather than teach a wrong 0
        answer = spatial.format_points({1: [v["point"] for v in hits]}, plural, mode="point_then_count") if hits \
            else "There are none."
        out.append({"kind": "count", "question": spatial.count_prompt(plural), "answer": answer,
                    "labels": [int(v["obj"].label) for v in hits], "count": len(hits)})
    names = [n for n, v in visible.items() if np.isfinite(v["depth_m"])]
    if len(names) >= 2:
        a, b = rng.choice(len(names), size=2, replace=False)
        va, vb = visible[names[a]], visible[names[b]]
        if abs(va["depth_m"] - vb["depth_m"]) > cfg.closer_margin_m:
            near = names[a] if va["depth_m"] < vb["depth_m"] else names[b]
            out.append({"kind": "closer", "question": f"Which is closer to the camera, the {names[a]} or the {names[b]}?",
                        "answer": spatial.format_points({1: [visible[near]["point"]]}, near),
                        "labels": [int(visible[near]["obj"].label)]})
    return out


# ---- recording ---------------------------------------------------------------------------------
def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.BILINEAR))


def think_chains(front_images: list[np.ndarray], codes: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(think_mask bool [T, 100], depth_buffer int64 [T, 100]) with frame t's previous query at t - stride."""
    from molmoact2.depth import think

    t = len(front_images)
    masks = np.ones((t, think.NUM_CELLS), dtype=bool)
    buffers = np.zeros((t, think.NUM_CELLS), dtype=np.int64)
    for start in range(min(stride, t)):
        idx = np.arange(start, t, stride)
        trace = think.trace_masks([front_images[i] for i in idx], codes[idx])
        masks[idx], buffers[idx] = trace.masks, trace.buffers
    return masks, buffers


def layout_targets(env, seed: int, k: int) -> list[str | None]:
    """The seed's own target (None) first, then up to k-1 other objects of the same layout, in a
    seed-fixed random order."""
    if k <= 1:
        return [None]
    env.reset(seed)
    others = [n for n in env.target_options() if n != env.instance.target]
    order = np.random.default_rng([seed, 13]).permutation(len(others))
    return [None] + [others[i] for i in order[: k - 1]]


def paired_target(env_a, env_b, seed: int) -> str | None:
    """The object both tasks can aim at on one layout of `seed`, or None when they cannot share one.

    `SimEnv.reset` redraws the layout until its task fits, so two tasks see the same layout for a seed only
    when both fit the first draw; and task b must be able to name task a's object (Task.retarget)."""
    env_a.reset(seed)
    env_b.reset(seed)
    target = env_a.instance.target
    same_layout = layout_signature(env_a) == layout_signature(env_b)
    return target if same_layout and target in env_b.target_options() else None


def record_episode(env, seed: int, cfg: DataConfig, codec, target: str | None = None,
                   roll_in=None) -> EpisodeRecord | None:
    """Run the scripted expert on `seed` (aimed at `target` if given); None if it failed (failed demos are
    not training data). With `roll_in` (a takeover.PolicyRollIn) a policy drives first and a fresh expert
    plans from the state it leaves; None too when the policy's part already ended the episode."""
    from molmoact2.models.nano.factory import NANO_CAMERAS
    from molmoact2.sim.rollout import run_episode

    if tuple(cfg.cameras) != NANO_CAMERAS:
        raise ValueError(f"cameras: Nano's norm tag expects {NANO_CAMERAS} in that order, got {cfg.cameras}")
    full_front, depth, seg, stored = [], [], [], {c: [] for c in cfg.cameras}
    jaw_m, object_after_m = [], []

    def grab(i, obs, action, info):
        front = obs.cameras["front"]
        if front.depth_m is None or front.segmentation is None:
            raise ValueError("record_episode: the env must render front depth and segmentation")
        full_front.append(front.rgb)
        depth.append(front.depth_m)
        seg.append(front.segmentation.astype(np.int16))
        for c in cfg.cameras:
            stored[c].append(_resize(obs.cameras[c].rgb, cfg.store_size))
        jaw_m.append(env.kinematics(0).path_world(np.asarray(obs.state, np.float32)[None, :6])[0])
        # on_step runs after the tick; the object before it is where the previous tick left it
        object_after_m.append(env.object_pos(env.instance.target))

    takeover = None
    if roll_in is not None:
        takeover = roll_in(env, seed, target)
        if takeover["ended"] is not None:
            return None
        res = run_episode(env, seed, on_step=grab, keep=True, reset=False)
    else:
        res = run_episode(env, seed, on_step=grab, keep=True, target=target)
    if not res.success:
        return None
    codes = encode_depth(codec, depth)
    mask, buffer = think_chains(full_front, codes, cfg.think_stride)
    rec = EpisodeRecord(res.task, seed, res.instruction, env.instance.target, takeover=takeover)
    (label,) = [o.label for o in env.scene.objects if o.name == env.instance.target]
    rec.arrays = {c: np.stack(stored[c]) for c in cfg.cameras}
    rec.arrays |= {"state": np.stack(res.states).astype(np.float32), "action": np.stack(res.actions).astype(np.float32),
                   "depth_codes": codes, "think_mask": mask, "depth_buffer": buffer,
                   "target_px48": np.stack([grid_pixel_counts(s == label) for s in seg]),
                   "target_offset_m": object_offsets_m(jaw_m, object_after_m)}
    rng = np.random.default_rng([seed, 11])
    n = len(full_front)
    frames = sorted({int(f) for f in np.linspace(0, n - 1, cfg.qa_frames_per_episode).round()})
    for f in frames:
        for item in spatial_qa(seg[f], depth[f], env.scene.objects, rng, cfg):
            rec.qa.append(item | {"frame": f})
        rec.qa_seg[f] = seg[f]
    return rec


def object_offsets_m(jaw_m: list[np.ndarray], object_after_m: list[np.ndarray]) -> np.ndarray:
    """Per frame, the named object's centre minus the jaw [frames, 3] float32, both as they were BEFORE the
    frame's tick (the observation's moment). `object_after_m[i]` is read after tick i, so frame i's object is
    entry i - 1; frame 0's is entry 0, one tick late (objects rest when a demo starts; at a takeover's hand-over one
    tick moves a shoved object by millimetres at most)."""
    jaw, after = np.asarray(jaw_m, np.float64), np.asarray(object_after_m, np.float64)
    if jaw.shape != after.shape or jaw.ndim != 2 or jaw.shape[1] != 3:
        raise ValueError(f"object_offsets_m: expected two [frames, 3] lists of the same length, got "
                         f"{list(jaw.shape)} and {list(after.shape)}")
    before = np.concatenate([after[:1], after[:-1]]) if len(after) else after
    return (before - jaw).astype(np.float32)


def encode_depth(codec, depth_frames: list[np.ndarray], batch: int = 32) -> np.ndarray:
    inputs = np.stack([codec.to_input(depth_m=d) for d in depth_frames])
    return np.concatenate([codec.encode_inputs(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])


# ---- norm stats --------------------------------------------------------------------------------
def demo_norm_stats(states: np.ndarray, actions: np.ndarray, n_action_steps: int, horizon: int = 30) -> dict[str, Any]:
    """`molmoact2_norm_stats.v1` for our sim tag from demo frames; norm_mode q01_q99 (as OpenFAST's fit)."""
    from molmoact2.models.nano.factory import NANO_CAMERAS, NANO_CONTROL, NANO_NORM_TAG, NANO_SETUP, SO101_NAMES

    def block(x: np.ndarray) -> dict[str, Any]:
        x = np.asarray(x, dtype=np.float64)
        return {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
                "std": x.std(0).tolist(), "q01": np.quantile(x, 0.01, axis=0).tolist(),
                "q99": np.quantile(x, 0.99, axis=0).tolist(), "names": list(SO101_NAMES), "count": int(len(x))}

    return {"format": "molmoact2_norm_stats.v1", "norm_mode": "q01_q99", "metadata_by_tag": {NANO_NORM_TAG: {
        "action_stats": block(actions), "state_stats": block(states), "action_horizon": int(horizon),
        "n_action_steps": int(n_action_steps), "setup_type": NANO_SETUP, "control_mode": NANO_CONTROL,
        "camera_keys": list(NANO_CAMERAS)}}}


# ---- the whole build ---------------------------------------------------------------------------
def partial_dir(out: Path, overwrite: bool, who: str) -> Path:
    """A fresh `<out>.partial` to build in; renamed to `out` at the end so a cache appears whole or not at all.
    Refuses to replace a non-empty `out` unless `overwrite`."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{who}: {out} exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def build_dataset(cfg: DataConfig, out: str | os.PathLike, *, progress: bool = True, overwrite: bool = False) -> Path:
    """Record `episodes_per_task` successful expert episodes per task and write the cache to `out`."""
    from tqdm.auto import tqdm

    from molmoact2.depth.codec import DepthCodec
    from molmoact2.sim import make_env

    out = Path(out)
    tmp = partial_dir(out, overwrite, "build_dataset")
    (tmp / "episodes").mkdir()
    codec = DepthCodec.load()
    roll_in = None
    if cfg.takeover is not None:
        from molmoact2.training.takeover import PolicyRollIn

        roll_in = PolicyRollIn(cfg.takeover)
    t0 = time.perf_counter()
    episodes, qa, seg, states, actions, failed = [], [], {}, [], [], {}
    bar = tqdm(total=len(cfg.tasks) * cfg.episodes_per_task, desc="nano data", unit="ep", file=sys.stderr,
               disable=not progress)

    def keep(rec: EpisodeRecord, task: str, seed: int, retargeted: bool) -> None:
        idx = len(episodes)
        name = f"episodes/ep_{idx:05d}.npz"
        np.savez_compressed(tmp / name, **rec.arrays)
        episodes.append({"file": name, "task": task, "seed": seed, "instruction": rec.instruction,
                         "target": rec.target, "retargeted": retargeted, "length": len(rec.arrays["action"])}
                        | ({"takeover": rec.takeover} if rec.takeover else {}))
        qa.extend(item | {"episode": idx} for item in rec.qa)
        seg.update({f"{idx}_{f}": s for f, s in rec.qa_seg.items()})
        states.append(rec.arrays["state"])
        actions.append(rec.arrays["action"])
        bar.update(1)
        bar.set_postfix(task=task, frames=sum(e["length"] for e in episodes), qa=len(qa))

    def record(env, task: str, seed: int, target: str | None, way=None) -> EpisodeRecord | None:
        who = way or roll_in  # a pair's wrong-way roll-in, the takeover policy, or None (from home)
        rec = record_episode(env, seed, cfg, codec, target, who)
        if rec is None and (who is None or who.last["ended"] is None):  # else: counted in its endings
            failed[task].append(seed if target is None else f"{seed}:{target}")
        return rec

    def make(task: str):
        return make_env(task, image_size=cfg.render_size, cameras=tuple(cfg.cameras), depth=True, segmentation=True)

    def out_of_seeds(kept: int, seed: int, what: str, factor: int) -> None:
        if seed - cfg.first_seed >= cfg.episodes_per_task * factor:
            raise RuntimeError(f"build_dataset: only {kept}/{cfg.episodes_per_task} successful {what} "
                               f"in {seed - cfg.first_seed} seeds (the budget: episodes x {factor}; `train data "
                               f"--max-attempts-factor` raises it, e.g. for takeovers that rarely qualify)")

    unpaired = 0
    try:
        if cfg.direction_pairs:
            (task_a, task_b), failed = cfg.tasks, {t: [] for t in cfg.tasks}
            env_a, env_b = make(task_a), make(task_b)
            # Each demo's roll-in world is the other word's: the roll-in for task a's demo drives env_b.
            ways = (None, None)
            if cfg.wrong_way_ticks is not None:
                from molmoact2.training.takeover import WrongWayRollIn

                ways = (WrongWayRollIn(env_b, *cfg.wrong_way_ticks), WrongWayRollIn(env_a, *cfg.wrong_way_ticks))
            kept, seed = 0, cfg.first_seed
            try:
                while kept < cfg.episodes_per_task:
                    # About one seed in six has a layout and an object both directions fit (push_left and
                    # push_right from seed 1000: 120 pairs in 733 seeds), hence the larger seed budget.
                    out_of_seeds(kept, seed, f"{task_a}/{task_b} pairs", 8 * cfg.max_attempts_factor)
                    target = paired_target(env_a, env_b, seed)
                    if target is None:
                        unpaired += 1
                        seed += 1
                        continue
                    rec_a = record(env_a, task_a, seed, None, ways[0])
                    rec_b = record(env_b, task_b, seed, target, ways[1]) if rec_a is not None else None
                    if rec_b is not None:  # a pair or nothing: a lone direction would teach the picture again
                        keep(rec_a, task_a, seed, False)
                        keep(rec_b, task_b, seed, True)  # aimed at task a's object by name
                        kept += 1
                    seed += 1
            finally:
                env_a.close()
                env_b.close()
        else:
            for task in cfg.tasks:
                env = make(task)
                kept, seed = 0, cfg.first_seed
                failed[task] = []
                try:
                    while kept < cfg.episodes_per_task:
                        out_of_seeds(kept, seed, f"{task} episodes", cfg.max_attempts_factor)
                        for target in layout_targets(env, seed, cfg.targets_per_layout):
                            if kept >= cfg.episodes_per_task:
                                break
                            rec = record(env, task, seed, target)
                            if rec is not None:
                                keep(rec, task, seed, target is not None)
                                kept += 1
                        seed += 1
                finally:
                    env.close()
    finally:
        bar.close()
    np.savez_compressed(tmp / "qa_seg.npz", **seg)
    (tmp / "qa.json").write_text(json.dumps(qa, indent=0))
    stats = demo_norm_stats(np.concatenate(states), np.concatenate(actions), cfg.think_stride)
    (tmp / "norm_stats.json").write_text(json.dumps(stats, indent=1))
    meta = {"format": DATA_FORMAT, "config": asdict(cfg), "episodes": episodes,
            "frames": int(sum(e["length"] for e in episodes)), "qa_items": len(qa), "failed_seeds": failed,
            "build_seconds": round(time.perf_counter() - t0, 1)}
    if cfg.direction_pairs:  # seeds passed over: no layout and object both tasks fit
        meta["unpaired_seeds"] = unpaired
    if roll_in is not None:  # how the policy's parts ended: "taken_over", or "success" (solved alone), ...
        meta["takeover_endings"] = dict(roll_in.counts)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    tmp.rename(out)  # the cache appears whole or not at all
    return out


def load_meta(data_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the cache with `molmoact2 train data --out {data_dir}`")
    meta = json.loads(path.read_text())
    if meta.get("format") != DATA_FORMAT:
        raise ValueError(f"{path}: expected format {DATA_FORMAT!r}, got {meta.get('format')!r}")
    return meta
