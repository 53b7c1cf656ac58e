"""Offset supervision for the action expert (`train nano --offset-weight`): tell each step of the plan where the
named object is from the jaw.

Why: `scripts/probe_grasp.py` found that Nano's pick_place grasp closes on the expert's schedule but 3-4 cm off the
object's centre, although in about half the layouts the open jaw had passed within 1.5 cm at grasp height a few
ticks before. The expert plans the path without knowing how far the jaw still is from the object at each step, so
it cannot close on arrival.

What: in a robot example, the action expert's residual stream after its last block (the input of `final_norm`)
at chunk step h has its first three channels regressed (mean squared error) onto the object-minus-jaw vector at
frame f + h of the demo (`target_offset_m`, world frame; past the episode's end the last frame repeats, as the
action chunk does), each axis standardized over the training frames. Designated channels rather than a read-out
head, for the reason reach.py gives: nothing is added to the model or its checkpoint, and a resumed run needs no
extra state. The loss trains only the expert, so it can run with `--expert-only`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

OFFSET_CHANNELS = 3  # x, y, z of object minus jaw


def standardizer(offsets_m: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) per axis over every frame of an iterable of [frames, 3] arrays."""
    rows = [np.asarray(o, np.float64) for o in offsets_m]
    if not rows or not sum(len(r) for r in rows):
        raise ValueError("offset: no demo frames to standardize the object-minus-jaw target over")
    bad = [list(r.shape) for r in rows if r.ndim != 2 or r.shape[1] != OFFSET_CHANNELS]
    if bad:
        raise ValueError(f"offset: expected [frames, {OFFSET_CHANNELS}] arrays (target_offset_m), got {bad[0]}")
    allr = np.concatenate(rows)
    return allr.mean(0).astype(np.float32), (allr.std(0) + 1e-6).astype(np.float32)


def collate_offset(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor] | None:
    """(sample rows, targets [n, H, 3], masks [n, H]) of the examples that carry an offset target; None if none do."""
    hits = [(i, e["offset"]) for i, e in enumerate(examples) if e.get("offset") is not None]
    if not hits:
        return None
    return {"rows": torch.tensor([i for i, _ in hits]),
            "target": torch.as_tensor(np.stack([o["target"] for _, o in hits])),
            "mask": torch.as_tensor(np.stack([o["mask"] for _, o in hits]))}


class ExpertStream:
    """Captures the action expert's residual stream [B, H, width] as it enters `final_norm` (training-time forward)."""

    def __init__(self, expert) -> None:
        self.expert = expert
        self.stream: torch.Tensor | None = None
        self._hook = None

    def __enter__(self) -> "ExpertStream":
        def grab(_module, args):
            self.stream = args[0]

        self._hook = self.expert.final_norm.register_forward_pre_hook(grab)
        return self

    def __exit__(self, *exc) -> None:
        self._hook.remove()


def offset_loss(stream: torch.Tensor, n_samples: int, samples: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
    """Masked MSE of the designated channels. `stream` [K * B, H, width] (draw-major, as flow_matching_loss repeats
    the batch), `samples` [N] indices into the B samples, `target` [N, H, 3], `mask` [N, H] (1 = a real step)."""
    if stream is None or stream.shape[0] % n_samples:
        raise RuntimeError(f"offset loss: expected the expert's stream for a multiple of {n_samples} samples, got "
                           f"{None if stream is None else list(stream.shape)}")
    k, h = stream.shape[0] // n_samples, stream.shape[1]
    if target.shape[1] != h:
        raise ValueError(f"offset loss: targets cover {target.shape[1]} chunk steps, the expert ran {h}")
    got = stream.view(k, n_samples, h, -1)[:, samples, :, :OFFSET_CHANNELS].float()  # [K, N, H, 3]
    m = mask.float()[None, :, :, None]
    err = (got - target.float()[None]) ** 2 * m
    return err.sum() / (k * OFFSET_CHANNELS * m.sum()).clamp(min=1.0)
