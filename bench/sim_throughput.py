"""Simulator throughput: control steps per second (30 Hz steps, 16 physics substeps each), 224x224.

    .venv/bin/python bench/sim_throughput.py [--steps 60] [--rounds 5]

All configurations are measured side by side in interleaved rounds (same scene, same moving expert
trajectory; each env built, warmed up, timed, closed), so load from other processes on the shared
cores hits every row alike; the table shows the median and the best round. The goal is 60 steps/s with both cameras
rendering RGB + depth.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import molmoact2  # noqa: F401  (MUJOCO_GL=egl before mujoco is imported)

CONFIGS = [
    ("physics only (no cameras)", (), False, False),
    ("front RGB", ("front",), False, False),
    ("front+wrist RGB", ("front", "wrist"), False, False),
    ("front+wrist RGB+depth", ("front", "wrist"), True, False),
    ("front+wrist RGB+depth+segmentation", ("front", "wrist"), True, True),
]


def make(cameras, depth, segmentation, size=224, seed=0):
    from molmoact2.sim import make_env

    env = make_env("pick_place", seed=seed, image_size=size, cameras=cameras or ("front",), depth=depth, segmentation=segmentation)
    obs, _ = env.reset(seed)
    if not cameras:  # physics + control + success check only: no rendering at all
        env.observe = lambda: obs  # noqa: E731 - bench only
    expert = env.expert()
    actions = np.concatenate([expert.act(obs) for _ in range(8)])  # a real moving trajectory
    for a in actions[:10]:  # warm-up (llvmpipe compiles shaders on the first frames)
        env.step(a)
    return env, actions


def one_round(env, actions, steps, offset):
    t0 = time.perf_counter()
    for i in range(steps):
        env.step(actions[(offset + i) % len(actions)])
    return steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    results: dict[str, list[float]] = {name: [] for name, *_ in CONFIGS}
    for r in range(args.rounds):
        for name, cams, depth, seg in CONFIGS:
            # One env alive at a time: several MuJoCo GL contexts side by side slow llvmpipe down.
            env, actions = make(cams, depth, seg)
            results[name].append(one_round(env, actions, args.steps, r * args.steps))
            env.close()
    print(f"{'configuration (224x224)':<38}{'median steps/s':>16}{'best':>8}{'median / 60':>13}")
    for name, vals in results.items():
        med = statistics.median(vals)
        print(f"{name:<38}{med:>16.1f}{max(vals):>8.1f}{med / 60:>13.2f}")


if __name__ == "__main__":
    main()
