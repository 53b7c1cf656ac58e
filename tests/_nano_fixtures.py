"""Shared builders for the Nano tests: a tiny random model, images, and a trained-on-nothing OpenFAST tokenizer."""

from __future__ import annotations

import numpy as np

TAG = "so101_sim_molmoact2"
TASK = "Pick up the red cube."
STATE = np.array([10.0, -20.0, 30.0, 0.0, 5.0, 50.0], dtype=np.float32)


def tiny(seed: int = 0, **kw):
    from molmoact2.models.nano.factory import build_random_nano

    return build_random_nano("tiny", seed=seed, **kw)


def image(seed: int, h: int = 320, w: int = 320) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 235, (h, w, 3), dtype=np.uint8)


def randomize_(module, seed: int = 0, std: float = 0.05) -> None:
    """Give every parameter (including the zero-initialized adaLN/output layers) random values, so
    conditioning paths are live in tests that need a non-trivial expert."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)


def openfast(horizon: int = 30, dim: int = 6, extra=()):
    from molmoact2.openfast import OpenFastProcessor

    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, horizon)[:, None]
    chunks = [np.clip(np.sin(2 * np.pi * (t * rng.uniform(0.2, 1.0) + rng.uniform(0, 1, dim))) * 0.8, -1, 1)
              for _ in range(64)]
    chunks += [np.asarray(c) for c in extra] * 2  # BPE keeps merges seen at least twice
    return OpenFastProcessor.fit(chunks, vocab_size=256, scale=10, time_horizon=horizon, action_dim=dim)


def _one_thread():
    """Run a test module's torch work on one thread, restoring the setting afterwards: on a shared
    2-core machine OpenMP's spin-waiting makes tiny models 10-50x slower with 2 threads under load."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def one_thread_fixture():
    import pytest

    return pytest.fixture(scope="module", autouse=True)(_one_thread)
