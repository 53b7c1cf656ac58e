"""Ordinal embeddings for the 256 state-bin tokens (`<state_0>` .. `<state_255>`).

Why: the prompt carries the robot's state as one token per joint, its value binned into 256 levels
(molmoact2.md §3). Initialised like any other vocabulary row, bin 100 and bin 101 start as unrelated
random vectors, so the model can only use a state value after it has seen that very bin often enough;
a small model trained for minutes never does (the shipped Nano's neighbouring state rows have cosine
similarity 0.07, and its plans hardly move when the state tokens of another layout are swapped in).
Ordinal rows make neighbouring bins similar from the first step: row k is a fixed random projection of
Fourier features of the bin's position u = (k + 0.5) / 256 (plus u itself, so the order has a direction),
scaled to the typical norm of the model's other token rows. Only the initial values change: the token
layout, the prompt and the vocabulary stay the real model's, and the rows keep training as before.

    set_ordinal_state_embeddings(model, seed=0)     # before training; returns the rows it wrote
"""

from __future__ import annotations

import math

import torch

# Angular frequencies pi * f for f from 1 to 64 (f / 2 cycles over the 0..1 range): the slowest separates the two
# ends of the range, the fastest still turns by under a radian from one bin to the next (pi * 64 / 256).
NUM_FREQUENCIES = 16
MAX_FREQUENCY = 64.0


def ordinal_rows(num_bins: int, width: int, *, seed: int = 0, norm: float = 1.0) -> torch.Tensor:
    """[num_bins, width] rows: neighbouring bins nearly parallel, far bins nearly orthogonal, every row of `norm`."""
    features = 2 * NUM_FREQUENCIES + 1
    if width < features:
        raise ValueError(f"ordinal state embeddings need a width of at least {features}, got {width}")
    u = (torch.arange(num_bins, dtype=torch.float64) + 0.5) / num_bins
    freqs = torch.logspace(0.0, math.log10(MAX_FREQUENCY), NUM_FREQUENCIES, dtype=torch.float64)
    phase = math.pi * u[:, None] * freqs[None]
    phi = torch.cat([torch.cos(phase), torch.sin(phase), (u[:, None] - 0.5) * 2.0], dim=1)  # [bins, features]
    g = torch.Generator().manual_seed(int(seed))
    q, _ = torch.linalg.qr(torch.randn(width, features, generator=g, dtype=torch.float64))  # orthonormal columns
    rows = phi @ q.T
    return (rows / rows.norm(dim=1, keepdim=True) * norm).float()


@torch.no_grad()
def set_ordinal_state_embeddings(model, *, seed: int = 0) -> torch.Tensor:
    """Overwrite the state-bin rows of `model`'s input embedding with `ordinal_rows`, at the mean norm of the
    other rows (so they neither shout nor whisper next to the tokens the model already reads)."""
    cfg = model.config
    weight = model.lm.embed_tokens.weight
    start, n = int(cfg.state_token_start_id), int(cfg.num_state_tokens)
    if start < 0 or start + n > weight.shape[0]:
        raise ValueError(f"state tokens {start}..{start + n - 1} lie outside the input embedding "
                         f"({weight.shape[0]} rows)")
    others = torch.cat([weight[:start], weight[start + n:]]).float()
    rows = ordinal_rows(n, weight.shape[1], seed=seed, norm=float(others.norm(dim=1).mean()))
    weight[start:start + n] = rows.to(weight.dtype)
    return rows
