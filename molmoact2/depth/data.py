"""Depth frames for training and evaluating the VQ-VAE, from the simulator (or the fallback boxes scene).

Source selection (`MOLMOACT2_DEPTH_SOURCE` = sim | boxes | auto, default auto): `molmoact2.sim`
when it imports, else `molmoact2.depth.boxes`. Both yield `CameraFrame`s with metric `depth_m`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from molmoact2.depth.preprocess import disparity_to_uint8, metric_to_inverse_depth, nearest_resize
from molmoact2.models.base import CameraFrame

SOURCE = os.environ.get("MOLMOACT2_DEPTH_SOURCE", "auto")


def _sim_available() -> bool:
    try:
        from molmoact2.sim import make_env  # noqa: F401
    except ImportError:
        return False
    return True


def source() -> str:
    if SOURCE == "auto":
        return "sim" if _sim_available() else "boxes"
    if SOURCE not in ("sim", "boxes"):
        raise ValueError(f"MOLMOACT2_DEPTH_SOURCE: expected sim | boxes | auto, got {SOURCE!r}")
    return SOURCE


def available_tasks() -> list[str]:
    if source() == "boxes":
        return ["boxes"]
    from molmoact2.sim import SimEnv

    return list(SimEnv.task_names())  # the single-arm SO-101 tasks


def render_frames(task: str, seed: int, cameras: list[str], n_frames: int, rng_seed: int | None = None) -> Iterator[tuple[dict, CameraFrame]]:
    """Yield ({task, seed, camera, frame}, CameraFrame) for `n_frames` arm poses of one scene seed.

    Frame 0 is the scene right after reset; later frames follow random actions so the arm (and the
    wrist camera) are seen in varied poses.
    """
    if task == "boxes" or source() == "boxes":
        from molmoact2.depth.boxes import render_boxes_frame

        for k in range(n_frames):
            yield {"task": "boxes", "seed": seed, "camera": "front", "frame": k}, render_boxes_frame(seed * 1000 + k)
        return
    from molmoact2.sim import make_env

    # No segmentation: it is not needed here and costs a render per camera per step.
    env = make_env(task, seed=seed, cameras=tuple(cameras), segmentation=False)
    rng = np.random.default_rng(seed if rng_seed is None else rng_seed)
    try:
        obs, _ = env.reset(seed=seed)
        for k in range(n_frames):
            for cam in cameras:
                if cam not in obs.cameras:
                    raise KeyError(f"render_frames: expected camera {cam!r} in the {task} simulator, got {list(obs.cameras)}")
                yield {"task": task, "seed": seed, "camera": cam, "frame": k}, obs.cameras[cam]
            if k + 1 < n_frames:
                obs = _random_moves(env, obs, rng)
    finally:
        close = getattr(env, "close", None)
        if close:
            close()


def _random_moves(env, obs, rng: np.random.Generator, n_steps: int = 4, reach: float = 0.3):
    """Drive the joints towards a random target near the current pose (`reach` x joint range)."""
    low, high = np.asarray(env.action_low, np.float64), np.asarray(env.action_high, np.float64)
    start = np.asarray(obs.state, np.float64)
    target = np.clip(start + rng.uniform(-reach, reach, start.shape) * (high - low), low, high)
    for a in np.linspace(0.0, 1.0, n_steps + 1)[1:]:
        obs, _r, terminated, truncated, _info = env.step((1 - a) * start + a * target)
        if terminated or truncated:
            break
    return obs


def depth_to_u8_320(depth_m: np.ndarray) -> np.ndarray:
    """Metric depth -> the uint8 320x320 map the VQ-VAE sees (before the [-1, 1] mapping)."""
    return nearest_resize(disparity_to_uint8(metric_to_inverse_depth(depth_m)), 320)


def training_frames(tasks: list[str], seeds: list[int], cameras: list[str], frames_per_seed: int,
                    progress: bool = True) -> np.ndarray:
    """uint8 [N, 320, 320] preprocessed depth maps over tasks x seeds x poses x cameras."""
    from tqdm.auto import tqdm

    out = []
    jobs = [(t, s) for t in tasks for s in seeds]
    for task, seed in tqdm(jobs, desc="rendering depth frames", unit="scene", disable=not progress):
        for _, frame in render_frames(task, seed, cameras, frames_per_seed):
            if frame.depth_m is None:
                raise ValueError(f"training_frames: the {task} simulator returned a camera without depth_m")
            if np.isfinite(frame.depth_m).sum() < 16:
                continue  # a camera pressed against an object: nothing to learn
            out.append(depth_to_u8_320(frame.depth_m))
    if not out:
        raise RuntimeError("training_frames: no usable depth frames were rendered")
    return np.stack(out)
