"""Simulator throughput: control steps per second (30 Hz steps, 16 physics substeps each), 224x224.

    .venv/bin/python bench/sim_throughput.py [--steps 150]

Rows are measured side by side in one run on the same scene: physics only, then with cameras.
Ratios are relative to the goal of 60 steps/s with both cameras (RGB + depth).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import molmoact2  # noqa: F401  (MUJOCO_GL=egl before mujoco is imported)


def measure(cameras, depth, segmentation, steps, size=224, seed=0):
    from molmoact2.sim import make_env

    env = make_env("pick_place", seed=seed, image_size=size, cameras=cameras or ("front",), depth=depth, segmentation=segmentation)
    obs, _ = env.reset(seed)
    if not cameras:  # physics + control only: skip rendering by stubbing observe to state
        env.observe = lambda: obs  # noqa: E731 - bench only: measure the step without any camera
    expert = env.expert()
    actions = np.concatenate([expert.act(obs) for _ in range(8)])  # a real moving trajectory
    for a in actions[:10]:  # warm-up (llvmpipe compiles shaders on first frames)
        env.step(a)
    t0 = time.perf_counter()
    for i in range(steps):
        env.step(actions[i % len(actions)])
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=150)
    args = p.parse_args()
    rows = [
        ("physics only (no cameras)", (), False, False),
        ("front RGB", ("front",), False, False),
        ("front+wrist RGB", ("front", "wrist"), False, False),
        ("front+wrist RGB+depth", ("front", "wrist"), True, False),
        ("front+wrist RGB+depth+segmentation", ("front", "wrist"), True, True),
    ]
    print(f"{'configuration (224x224)':<38}{'steps/s':>9}{'x goal 60':>11}")
    for name, cams, depth, seg in rows:
        sps = measure(cams, depth, seg, args.steps)
        print(f"{name:<38}{sps:>9.1f}{sps / 60:>11.2f}")


if __name__ == "__main__":
    main()
