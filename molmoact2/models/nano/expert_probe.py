"""Re-running Nano's flow-matching expert on a context you choose: the experiments of
notebooks/04_flow_matching.ipynb (fewer Euler steps, one LM layer's K/V zeroed or swapped).

    out = model.predict_action(..., generator=torch.Generator().manual_seed(0), return_context=True)
    noise = initial_noise(model, norm_tag, seed=0)        # the very draw predict_action made
    states = denoise_from_context(model, out["context_kv"], out["context_mask"], noise, norm_tag=norm_tag)
    # == out["denoising_states"][:, 0]; now change the context:
    ctx = with_layer_context(out["context_kv"], [2], "zeros")

Why a helper: the expert only reads the per-layer (K, V) cache and the key mask (molmoact2.md §6),
so the VLM pass is done once and the expert re-run on edited contexts costs a few ms each. The
normalization and horizon rules are predict_action's own (inference.py), so an unedited context
reproduces its `denoising_states` exactly (tests/test_nano_expert_probe.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from molmoact2.models.nano.normalization import stats_dim, unnormalize_actions
from molmoact2.models.nano.relative_actions import from_expert_space, relative_dims, state_shift


def _meta(model: Any, norm_tag: str) -> dict[str, Any]:
    stats = model.norm_stats
    if norm_tag not in stats["metadata_by_tag"]:
        raise ValueError(f"unknown norm_tag {norm_tag!r}. Valid tags: {', '.join(sorted(stats['metadata_by_tag']))}")
    return stats["metadata_by_tag"][norm_tag] | {"_norm_mode": stats.get("norm_mode", "min_max")}


def chunk_horizon(model: Any, norm_tag: str) -> int:
    """The horizon the expert denoises for this tag (predict_action's rule)."""
    return int(_meta(model, norm_tag).get("action_horizon", model.config.max_action_horizon))


def initial_noise(model: Any, norm_tag: str, seed: int):
    """x0 ~ N(0, I) [1, horizon, max_action_dim]: the first draw predict_action makes from
    `torch.Generator().manual_seed(seed)` (continuous mode draws nothing before it)."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((1, chunk_horizon(model, norm_tag), model.config.max_action_dim), generator=g,
                       device=model.device, dtype=torch.float32)


def with_layer_context(context_kv: Sequence[tuple[np.ndarray, np.ndarray]], layers: Sequence[int],
                       source: str | Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """A copy of `context_kv` (per-layer (K, V) [1, T, kv_dim], as predict_action returns with
    return_context=True) whose `layers` come from `source`: "zeros" or another observation's
    context_kv. The expert uses ONE key mask for every layer, so a swapped-in context must have the
    same token count T (same prompt length: e.g. the same task later in the episode)."""
    ctx = [(np.asarray(k), np.asarray(v)) for k, v in context_kv]
    n = len(ctx)
    bad = [int(i) for i in layers if not 0 <= int(i) < n]
    if bad:
        raise ValueError(f"with_layer_context: layers must be in 0..{n - 1} (the LM has {n} layers), got {bad}")
    if isinstance(source, str):
        if source != "zeros":
            raise ValueError(f"with_layer_context: source must be 'zeros' or another context_kv list, got {source!r}")
        for i in layers:
            k, v = ctx[int(i)]
            ctx[int(i)] = (np.zeros_like(k), np.zeros_like(v))
        return ctx
    other = [(np.asarray(k), np.asarray(v)) for k, v in source]
    if len(other) != n:
        raise ValueError(f"with_layer_context: source has {len(other)} layers, the context has {n}")
    for i in layers:
        k, v = ctx[int(i)]
        ok, ov = other[int(i)]
        if ok.shape != k.shape or ov.shape != v.shape:
            raise ValueError(f"with_layer_context: layer {int(i)} of the source is K{list(ok.shape)} V{list(ov.shape)}, "
                             f"the context's is K{list(k.shape)} V{list(v.shape)}; the expert shares one key mask "
                             f"across layers, so both prompts must have the same token count")
        ctx[int(i)] = (ok, ov)
    return ctx


def denoise_from_context(model: Any, context_kv: Sequence[tuple[Any, Any]], context_mask: Any, noise: Any, *,
                         norm_tag: str, num_steps: int | None = None, n_action_steps: int | None = None,
                         normalized: bool = False, state: Any = None) -> np.ndarray:
    """Euler-integrate the expert from `noise` [1, H, 32] on the given per-layer context.
    Returns every state [steps + 1, n_action_steps, action_dim]: robot units (default) or the
    model's normalized space (`normalized=True`). Same rules as predict_action (horizon, padded-dim
    mask, executed steps, un-normalization). An expert with `relative_dims` needs the raw `state` the
    context was made from (its plan is a change from it)."""
    import torch

    from molmoact2.models.nano.action_expert import euler_integrate

    cfg = model.config
    meta = _meta(model, norm_tag)
    layers = cfg.text_config.num_hidden_layers
    if len(context_kv) != layers:
        raise ValueError(f"denoise_from_context: expected {layers} per-layer (K, V) pairs, got {len(context_kv)}")
    horizon = chunk_horizon(model, norm_tag)
    noise = torch.as_tensor(noise, dtype=torch.float32)
    if tuple(noise.shape) != (1, horizon, cfg.max_action_dim):
        raise ValueError(f"denoise_from_context: noise must be [1, {horizon}, {cfg.max_action_dim}], "
                         f"got {list(noise.shape)}")
    action_dim = stats_dim(meta["action_stats"], "action")
    n_exec = int(n_action_steps or meta.get("n_action_steps") or horizon)
    if not 1 <= n_exec <= horizon:
        raise ValueError(f"denoise_from_context: n_action_steps must be in 1..{horizon}, got {n_exec}")
    if relative_dims(cfg) and state is None:
        raise ValueError(f"denoise_from_context: this expert plans relative to the state on dims {relative_dims(cfg)}; "
                         f"pass state= (the raw state the context was made from)")
    steps = int(num_steps or cfg.flow_matching_num_steps)
    dev, dt = model.device, model.dtype
    contexts = [(torch.as_tensor(np.asarray(k)).to(dev, dt), torch.as_tensor(np.asarray(v)).to(dev, dt))
                for k, v in context_kv]
    mask = torch.as_tensor(np.asarray(context_mask)).to(dev).bool()
    dim_mask = None
    if cfg.mask_action_dim_padding:
        dim_mask = torch.zeros(cfg.max_action_dim, device=dev)
        dim_mask[:action_dim] = 1.0
        dim_mask = dim_mask.to(dt)
    with torch.no_grad():
        states = euler_integrate(model.action_expert, noise.to(dev, dt), contexts, mask, steps, dim_mask)
    shift = None if state is None else state_shift(cfg, state, meta["action_stats"], meta["_norm_mode"])
    normed = from_expert_space(torch.stack(states).float().cpu().numpy(), shift)[:, 0, :n_exec, :action_dim]
    if normalized:
        return normed
    return unnormalize_actions(normed, meta["action_stats"], meta["_norm_mode"])
