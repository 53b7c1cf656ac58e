"""Action (un)normalization with `norm_stats.json` conventions (molmoact2.md §2).

Normalizing reuses `molmoact2.tokens.normalize_state` (the same rules apply to any stats block);
un-normalizing is its inverse for the value range the model outputs ([-1, 1] in bounded modes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from molmoact2 import tokens as T

_EPS = 1e-6


def normalize_actions(actions: Any, stats: Mapping[str, Any], norm_mode: str) -> np.ndarray:
    return T.normalize_state(actions, stats, norm_mode)


def unnormalize_actions(normed: Any, stats: Mapping[str, Any], norm_mode: str) -> np.ndarray:
    """Model-space actions [..., D] -> robot units (float32). Masked-out dims pass through."""
    x = np.asarray(normed, dtype=np.float32)
    dim = x.shape[-1]

    def get(key: str) -> np.ndarray:
        if stats.get(key) is None:
            raise ValueError(f"norm_mode={norm_mode!r} needs action stats {key!r}; the stats have {sorted(stats)}")
        arr = np.asarray(stats[key], dtype=np.float32).reshape(-1)
        if arr.shape[0] != dim:
            raise ValueError(f"action stats {key!r} has {arr.shape[0]} values but the actions have {dim} dims")
        return arr

    if norm_mode == "none":
        out = x
    elif norm_mode == "mean_std":
        out = x * np.maximum(get("std"), _EPS) + get("mean")
    elif norm_mode in ("min_max", "q01_q99", "q10_q90"):
        lo_key, hi_key = ("min", "max") if norm_mode == "min_max" else norm_mode.split("_")
        lo, hi = get(lo_key), get(hi_key)
        out = (x + np.float32(1.0)) / np.float32(2.0) * np.maximum(hi - lo, _EPS) + lo
    else:
        raise ValueError(f"norm_mode: expected one of {T.NORM_MODES}, got {norm_mode!r}")
    if stats.get("mask") is not None:
        out = np.where(np.asarray(stats["mask"], dtype=bool).reshape(-1), out, x)
    return out.astype(np.float32)


def stats_dim(stats: Mapping[str, Any], what: str) -> int:
    for key in ("min", "max", "mean", "std", "q01", "q99", "names"):
        if stats.get(key) is not None:
            return len(stats[key])
    raise ValueError(f"{what} stats have no array to read the dimension from (keys {sorted(stats)})")
