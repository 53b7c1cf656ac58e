"""Cut episodes into fixed-length action chunks (the unit FAST tokenizes: 1 s at the dataset's fps)."""

from __future__ import annotations

import numpy as np


def chunk_episodes(episodes: list[np.ndarray], horizon: int, stride: int | None = None) -> np.ndarray:
    """[T_i, D] episodes -> [N, horizon, D] windows (stride defaults to horizon = non-overlapping).

    Episodes shorter than `horizon` contribute nothing; if that leaves no chunk at all we say so.
    """
    if horizon <= 0:
        raise ValueError(f"chunk_episodes: horizon must be a positive number of steps, got {horizon}")
    stride = horizon if stride is None else stride
    if stride <= 0:
        raise ValueError(f"chunk_episodes: stride must be positive, got {stride}")
    dims = {np.asarray(e).shape[-1] for e in episodes}
    if len(dims) > 1:
        raise ValueError(f"chunk_episodes: episodes disagree on the action dim: {sorted(dims)}")
    out = []
    for ep in episodes:
        ep = np.asarray(ep)
        if ep.ndim != 2:
            raise ValueError(f"chunk_episodes: expected episodes [T, D], got shape {list(ep.shape)}")
        for start in range(0, ep.shape[0] - horizon + 1, stride):
            out.append(ep[start:start + horizon])
    if not out:
        lengths = [int(np.asarray(e).shape[0]) for e in episodes]
        raise ValueError(f"chunk_episodes: no episode is at least {horizon} steps long (lengths {lengths})")
    return np.stack(out)
