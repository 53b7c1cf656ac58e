"""Actions relative to the current state: the expert's output space when `action_expert_config.relative_dims`
is set (a workbench extension; the real model and the shipped Nano predict absolute targets).

Why: the expert reads the state (as tokens) and the absolute target of an arm joint is mostly the state plus a
small change, so a plan can look right by copying the state forward without reading the pictures. Predicting
`normalized(action) - normalized(state)` on the arm dims removes that shortcut: what is left to predict is the
motion itself. Both sides are normalized with the ACTION stats (the state is in the same joint units), so the
conversion is an exact shift the un-normalizer never sees: the policy and the OpenFAST tokens stay absolute.

    shift = state_shift(model.config, raw_state, meta["action_stats"], norm_mode)   # [max_action_dim] or None
    target = to_expert_space(normalized_chunk, shift)     # training target
    plan = from_expert_space(expert_output, shift)        # back to absolute, normalized
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from molmoact2 import tokens as T
from molmoact2.models.nano.normalization import stats_dim


def relative_dims(config: Any) -> list[int]:
    expert = getattr(config, "action_expert_config", None)
    return list(getattr(expert, "relative_dims", None) or [])


def state_shift(config: Any, raw_state: Any, action_stats: Mapping[str, Any], norm_mode: str) -> np.ndarray | None:
    """The normalized state on the relative dims, 0 on the others, padded to `max_action_dim`; None when the
    expert predicts every dim absolute."""
    dims = relative_dims(config)
    if not dims:
        return None
    state = np.asarray(raw_state, dtype=np.float32).reshape(-1)
    action_dim = stats_dim(action_stats, "action")
    if state.shape[0] != action_dim or max(dims) >= action_dim:
        raise ValueError(f"relative_dims {dims}: the state has {state.shape[0]} dims and the actions {action_dim}; a "
                         f"relative action is action minus state, so both must list the same joints, each "
                         f"relative dim among them")
    normed = T.normalize_state(state, action_stats, norm_mode)
    shift = np.zeros(int(config.max_action_dim), dtype=np.float32)
    shift[dims] = normed[dims]
    return shift


def to_expert_space(normalized: Any, shift: np.ndarray | None) -> Any:
    """Absolute normalized actions [..., D <= max_action_dim] -> the expert's space (unchanged without a shift)."""
    if shift is None:
        return normalized
    return normalized - _fit(shift, normalized)


def from_expert_space(expert_out: Any, shift: np.ndarray | None) -> Any:
    """The expert's space -> absolute normalized actions; numpy arrays or torch tensors."""
    if shift is None:
        return expert_out
    return expert_out + _fit(shift, expert_out)


def _fit(shift: np.ndarray, like: Any) -> Any:
    s = shift[: like.shape[-1]]
    if hasattr(like, "detach"):  # a torch tensor: same device and dtype
        import torch

        return torch.as_tensor(s, device=like.device, dtype=like.dtype)
    return s.astype(np.asarray(like).dtype, copy=False)
