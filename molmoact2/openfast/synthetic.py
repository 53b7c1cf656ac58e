"""Clearly-labelled SYNTHETIC smooth trajectories, for when no recorded demo is at hand.

They are sums of slow sinusoids and ramps in SO-101-like units (joints about -100..100, gripper
0..100): smooth like a scripted expert, but they are not robot data. Anything built from them says so.
"""

from __future__ import annotations

import numpy as np

SO101_JOINTS = ("shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
                "gripper.pos")


def synthetic_episodes(num_episodes: int = 4, steps: int = 300, seed: int = 0) -> list[np.ndarray]:
    """`num_episodes` [steps, 6] trajectories at 30 fps in SO-101-like units."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None] / 30.0
    lo = np.array([-100, -100, -100, -100, -100, 0.0])
    hi = np.array([100, 100, 100, 100, 100, 100.0])
    out = []
    for _ in range(num_episodes):
        centre = rng.uniform(lo + 0.3 * (hi - lo), hi - 0.3 * (hi - lo))
        x = np.zeros((steps, 6)) + centre
        for _k in range(3):  # three slow components per joint
            amp = rng.uniform(0.03, 0.15, 6) * (hi - lo)
            freq = rng.uniform(0.05, 0.5, 6)
            phase = rng.uniform(0, 2 * np.pi, 6)
            x = x + amp * np.sin(2 * np.pi * freq * t + phase)
        out.append(np.clip(x, lo, hi))
    return out
