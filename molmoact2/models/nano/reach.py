"""Reach supervision (`train nano --reach-weight`): tell the context the action expert reads where the named
object is.

Why: `scripts/probe_reach.py` found that the front image tokens hold where things are (the bin's distance from the
arm's base: R^2 0.78 held-out) but the language model's K/V at the prompt's last position, which the expert
cross-attends to, hold neither the named object's distance nor even the bin's (R^2 about 0), and neither does the
plan. So the expert is never handed "how far", only roughly "which way".

What: in a robot example whose front image shows the instruction's object, the first two channels of layer
`layer`'s value vector (its first key-value head) at the prompt's last position are regressed onto that object's
centre in the front image (mean squared error), each coordinate standardized over the training frames: in our
scenes the objects' image rows vary far less than their columns (sd 0.15 against 0.39 of the half-width), and the
row is the one that says how far to reach, so an unscaled loss would teach the bearing and leave the distance.
Centre, not metres: the demo caches record the object's pixels per frame (`target_px48`), and the centre alone
gives its distance from the base almost exactly (the probe's "perfect detector" row: R^2 0.98). Two designated channels rather than a learned read-out
head: nothing is added to the model or its checkpoint, a resumed run needs no extra state, and the quantity sits
in exactly the tensor the expert's block for that layer reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

REACH_CHANNELS = 2  # x, y of the object's centre in the front image


def reach_target(mask: Any) -> np.ndarray:
    """The named object's centre in the image as (x, y) in [-1, 1] (-1 = left / top edge), from its pixel mask
    (any resolution, e.g. the caches' 48x48 grid). Raises on an empty mask: a hidden object has no centre."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"reach mask: expected a 2-D [H, W] mask of the named object, got shape {list(m.shape)}")
    ys, xs = np.nonzero(m)
    if not len(xs):
        raise ValueError("reach mask: the named object has no pixels in the front image (hidden); skip this frame")
    h, w = m.shape
    # pixel centres: column c covers [c, c + 1) of w columns
    return np.array([2 * (xs.mean() + 0.5) / w - 1, 2 * (ys.mean() + 0.5) / h - 1], dtype=np.float32)


def standardizer(masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) of `reach_target` over every visible mask of an iterable of [H, W] masks (hidden frames skipped)."""
    targets = np.array([reach_target(m) for m in masks if np.asarray(m).any()])
    if not len(targets):
        raise ValueError("reach: no frame shows the named object; the reach loss has nothing to learn from")
    return targets.mean(0), targets.std(0) + 1e-6


def collate_reach(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor] | None:
    """(sample rows, query positions, targets [n, 2]) of the examples that carry a reach target; None if none do."""
    hits = [(i, e["reach"]) for i, e in enumerate(examples) if e.get("reach") is not None]
    if not hits:
        return None
    return {"rows": torch.tensor([i for i, _ in hits]), "positions": torch.tensor([r["position"] for _, r in hits]),
            "target": torch.as_tensor(np.stack([r["target"] for _, r in hits]))}


def reach_loss(cache, layer: int, reach: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error between the designated value channels of `layer` at the query positions and the targets."""
    n_layers = len(cache.values)
    if not -n_layers <= layer < n_layers:
        raise ValueError(f"reach layer {layer}: expected {-n_layers}..{n_layers - 1} "
                         f"(the language model has {n_layers} layers)")
    values = cache.values[layer]  # [B, kv_heads, T, head_dim]; channel 0.. of head 0 = the context V's first columns
    got = values[reach["rows"], 0, reach["positions"], :REACH_CHANNELS].float()
    return torch.nn.functional.mse_loss(got, reach["target"].float())

