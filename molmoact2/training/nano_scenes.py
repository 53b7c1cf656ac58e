"""Spatial questions from many scene layouts, without demos (`molmoact2 train scenes`).

    build_scene_qa(SceneQAConfig(scenes=3000, first_seed=1000), "/tmp/nano_scenes")   # ~0.2 s per scene

Why: an expert demo costs ~2.5 s and yields one layout; Nano's pointing generalised poorly from the 160 layouts
of its demo cache (pointing on training scenes 54% vs held-out 30% after answers-only practice, README
"Does training longer help?"). A layout for a question costs one scene build and one render. To keep the
images like those the policy sees while acting, the scripted expert first runs a random number of ticks (so the
arm is at a realistic pose, sometimes occluding, sometimes having pushed things) before the front camera renders.

The cache holds only what questions need: `scenes.npz` (front RGB at `store_size`), `qa.json` (items carry
`"scene"` instead of `"episode"`/`"frame"`), `qa_seg.npz` (segmentation per scene, key `s<idx>`) and `meta.json`
(format `molmoact2_nano_data.v1`, `"kind": "qa_scenes"`, no episodes, no norm stats). Train on it next to a demo
cache: `molmoact2 train nano --data DEMO_CACHE SCENE_CACHE ...` (the demo cache comes first: its norm stats are
the checkpoint's).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from molmoact2.training.nano_data import DATA_FORMAT, SINGLE_ARM_TASKS, DataConfig, _resize, partial_dir, spatial_qa

SCENES_KIND = "qa_scenes"


@dataclass(frozen=True)
class SceneQAConfig:
    scenes: int = 1000
    # Demo caches use seeds < ~300 and evaluation seeds >= 10000: scene seeds default to neither.
    first_seed: int = 1000
    tasks: tuple[str, ...] = SINGLE_ARM_TASKS  # cycled: pick_place scenes have a bin, the others do not
    render_size: int = 224
    store_size: int = 96
    # Ticks of the scripted expert before the render, drawn uniformly from [0, max]; 0 keeps the home pose.
    max_expert_ticks: int = 240


def _seed_ticks(cfg: SceneQAConfig, seed: int) -> int:
    return int(np.random.default_rng([seed, 23]).integers(0, cfg.max_expert_ticks + 1))


def render_scene(env, seed: int, cfg: SceneQAConfig, data_cfg: DataConfig) -> tuple[np.ndarray, np.ndarray,
                                                                                     list[dict], int]:
    """(front RGB at store size, segmentation int16, questions, expert ticks run) of one layout."""
    env.reset(seed=seed)
    ticks = _seed_ticks(cfg, seed)
    expert = env.expert()
    done = 0
    while done < ticks:
        for action in expert.act(None):
            if done >= ticks:
                break
            env.step(action, observe=False)
            done += 1
    obs = env.observe()
    front = obs.cameras["front"]
    if front.depth_m is None or front.segmentation is None:
        raise ValueError("render_scene: the env must render front depth and segmentation")
    seg = front.segmentation.astype(np.int16)
    qa = spatial_qa(seg, front.depth_m, env.scene.objects, np.random.default_rng([seed, 11]), data_cfg)
    return _resize(front.rgb, cfg.store_size), seg, qa, done


def build_scene_qa(cfg: SceneQAConfig, out: str | os.PathLike, *, progress: bool = True,
                   overwrite: bool = False) -> Path:
    from tqdm.auto import tqdm

    from molmoact2.evaluation.nano_eval import HELD_OUT_FIRST_SEED
    from molmoact2.sim import make_env

    if cfg.scenes < 1:
        raise ValueError(f"scenes: expected at least 1, got {cfg.scenes}")
    if cfg.first_seed < 0 or cfg.first_seed + cfg.scenes > HELD_OUT_FIRST_SEED:
        # Evaluation draws its layouts from seeds >= 10000: a question scene there would leak held-out layouts.
        raise ValueError(f"seeds {cfg.first_seed}..{cfg.first_seed + cfg.scenes - 1}: expected training seeds in "
                         f"0..{HELD_OUT_FIRST_SEED - 1} (evaluation owns seeds >= {HELD_OUT_FIRST_SEED})")
    out = Path(out)
    tmp = partial_dir(out, overwrite, "build_scene_qa")
    data_cfg = DataConfig(render_size=cfg.render_size, store_size=cfg.store_size)
    t0 = time.perf_counter()
    images, seg, qa, scenes = [], {}, [], []
    envs = {}
    bar = tqdm(total=cfg.scenes, desc="scene questions", unit="scene", file=sys.stderr, disable=not progress)
    try:
        for i in range(cfg.scenes):
            seed = cfg.first_seed + i
            task = cfg.tasks[i % len(cfg.tasks)]
            if task not in envs:
                envs[task] = make_env(task, image_size=cfg.render_size, cameras=("front",), depth=True,
                                      segmentation=True)
            rgb, s, items, ticks = render_scene(envs[task], seed, cfg, data_cfg)
            images.append(rgb)
            seg[f"s{i}"] = s
            qa += [item | {"scene": i} for item in items]
            scenes.append({"seed": seed, "task": task, "expert_ticks": ticks})
            bar.update(1)
            bar.set_postfix(qa=len(qa))
    finally:
        bar.close()
        for env in envs.values():
            env.close()
    np.savez_compressed(tmp / "scenes.npz", front=np.stack(images))
    np.savez_compressed(tmp / "qa_seg.npz", **seg)
    (tmp / "qa.json").write_text(json.dumps(qa, indent=0))
    meta = {"format": DATA_FORMAT, "kind": SCENES_KIND, "config": asdict(cfg), "episodes": [], "scenes": scenes,
            "frames": 0, "qa_items": len(qa), "build_seconds": round(time.perf_counter() - t0, 1)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    tmp.rename(out)  # whole or not at all
    return out
