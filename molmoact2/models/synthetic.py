"""Deterministic synthetic Steps with every field filled: for viewer tests, benchmarks and demos.

Nothing here is a model: the numbers are smooth made-up signals (a table plane seen by a camera,
a sinusoidal action chunk, a straight-ish end-effector path) so views have something plausible to
draw. Use a real backend for anything that claims to be a prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from molmoact2.geometry.pointcloud import project_points
from molmoact2.models.base import CameraFrame, Observation, Step

SO101_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world pose (OpenCV: x right, y down, z forward) looking from eye at target, world z up."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def _camera(size: int, eye: Sequence[float], rng: np.random.Generator) -> CameraFrame:
    K = np.array([[size * 0.9, 0, size / 2], [0, size * 0.9, size / 2], [0, 0, 1]])
    T = _look_at(np.asarray(eye, float), np.zeros(3))
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ T[:3, :3].T
    # Intersect each ray with the table plane z = 0: metric z-depth along the optical axis.
    t = -T[2, 3] / np.where(np.abs(rays[..., 2]) > 1e-6, rays[..., 2], np.nan)
    depth = np.where(t > 0, t, np.nan).astype(np.float32)
    shade = np.clip(np.nan_to_num(depth, nan=3.0) / 3.0, 0, 1)
    rgb = np.stack([200 - 120 * shade, 170 - 90 * shade, 140 - 60 * shade], -1)
    rgb = (rgb + rng.normal(0, 4, rgb.shape)).clip(0, 255).astype(np.uint8)
    return CameraFrame(rgb=rgb, depth_m=depth, K=K, T_world_cam=T)


def synthetic_step(
    index: int = 0,
    *,
    cameras: Sequence[str] = ("front", "wrist"),
    size: int = 224,
    horizon: int = 30,
    joint_names: Sequence[str] = SO101_JOINTS,
    denoising_steps: int = 4,
    control_dt_s: float = 0.1,
    seed: int = 0,
) -> Step:
    """A full Step for control step `index` (same seed + index -> same Step)."""
    rng = np.random.default_rng([seed, index])
    eyes = [(0.6, 0.0, 0.5), (0.15, 0.25, 0.3), (-0.5, 0.3, 0.6)]
    cams = {name: _camera(size, eyes[i % len(eyes)], rng) for i, name in enumerate(cameras)}
    dim = len(joint_names)
    t = (index * 8 + np.arange(horizon))[:, None] * control_dt_s
    phase = np.arange(dim)[None, :]
    actions = (0.6 * np.sin(0.8 * t + phase) + 0.05 * rng.normal(size=(horizon, dim))).astype(np.float32)
    noise = rng.normal(size=(horizon, dim)).astype(np.float32)
    alphas = np.linspace(0, 1, denoising_steps + 1, dtype=np.float32)[:, None, None]
    denoising = (1 - alphas) * noise + alphas * actions  # the straight flow-matching interpolation
    s = np.linspace(0, 1, horizon, dtype=np.float32)[:, None]
    start = np.array([0.25, -0.1, 0.15], np.float32) + 0.01 * index
    path_world = start + s * np.array([-0.1, 0.2, -0.1], np.float32) + 0.02 * np.sin(6 * s)
    main = cams[cameras[0]]
    return Step(
        index=index,
        timestamp_s=index * control_dt_s * 8,
        backend="synthetic",
        observation=Observation(
            cameras=cams,
            state=actions[0] + 0.02,
            instruction="pick up the red cube",
            state_names=tuple(joint_names),
            timestamp_s=index * control_dt_s * 8,
        ),
        prompt_text="<setup> pick up the red cube </setup> <control> <state> ...",
        prompt_token_ids=rng.integers(0, 50_000, 64),
        generated_text="<depth_start> ... <depth_end> <action_start> ... <action_end>",
        generated_token_ids=rng.integers(0, 50_000, 140),
        answer_text=f"step {index}: moving toward the cube",
        depth_bins=rng.integers(20, 90, 100),
        depth_update_mask=rng.random(100) < 0.25,
        depth_decoded=np.nan_to_num(main.depth_m, nan=0.0) * (1.0 + 0.05 * index),
        action_token_ids=rng.integers(0, 2048, 40),
        actions=actions,
        action_names=tuple(joint_names),
        action_units="rad",
        n_executed=8,
        denoising_states=denoising,
        planned_path_world=path_world,
        planned_path_px={name: project_points(path_world, cam.K, cam.T_world_cam).astype(np.float32) for name, cam in cams.items()},
        points_px={cameras[0]: np.array([[size * 0.45, size * 0.6]], np.float32)},
        timings_ms={"prefill": 40.0 + index % 3, "depth_decode": 6.5, "action_expert": 12.0, "total": 58.5 + index % 3},
        info={"denoising_paths_world": path_world[None] + (1 - alphas) * 0.05 * rng.normal(size=(denoising_steps + 1, horizon, 3))},
    )

