"""Small, deterministic action data for the OpenFAST tests (built in-process, nothing on disk)."""

from __future__ import annotations

import numpy as np


def smooth_chunks(n: int, horizon: int = 30, dims: int = 6, seed: int = 0, amplitude: float = 1.0) -> np.ndarray:
    """[n, horizon, dims] smooth sinusoid-plus-ramp chunks in about [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, horizon)[None, :, None]
    a = rng.uniform(-0.8, 0.8, (n, 1, dims))
    f = rng.uniform(0.2, 1.5, (n, 1, dims))
    p = rng.uniform(0, 2 * np.pi, (n, 1, dims))
    ramp = rng.uniform(-0.3, 0.3, (n, 1, dims)) * t
    return np.clip(amplitude * (a * np.sin(2 * np.pi * f * t + p) + ramp), -1, 1)


def smooth_episode(steps: int, dims: int = 6, seed: int = 0, low: float = -100.0, high: float = 100.0) -> np.ndarray:
    """One [steps, dims] trajectory in raw 'degree-like' units."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None] / 30.0
    f = rng.uniform(0.1, 0.6, (1, dims))
    p = rng.uniform(0, 2 * np.pi, (1, dims))
    mid, half = (low + high) / 2, (high - low) / 2
    return mid + 0.8 * half * np.sin(2 * np.pi * f * t + p)
