"""How good is a tokenizer on a set of chunks: tokens, compression, reconstruction error.

Baselines, counted per chunk of T steps x D dims:
* 256-bin per-dimension binning (RT-2 / OpenVLA style): one token per value, T*D tokens;
* raw floats: T*D float32 numbers (4 bytes each).
Errors are measured in normalized space and reported relative to each joint's range: in [-1, 1]
the 1st-99th percentile range is 2 wide, so relative error = |error| / 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BINNING_BINS = 256


@dataclass(frozen=True)
class TokenizerStats:
    num_chunks: int
    time_horizon: int
    action_dim: int
    tokens_mean: float
    tokens_p99: float
    tokens_min: int
    tokens_max: int
    binning_tokens: int  # T*D, one 256-bin token per value
    compression_vs_binning: float  # binning_tokens / tokens_mean
    mean_rel_error_pct: float  # mean over chunks, steps and joints of |err| / joint range, in %
    max_rel_error_pct: float
    per_joint_mean_rel_error_pct: tuple[float, ...]
    per_joint_max_rel_error_pct: tuple[float, ...]
    binning_mean_rel_error_pct: float  # the same metric for 256-bin binning, for scale
    skipped_out_of_range: int = 0  # chunks this tokenizer cannot represent (only with skip_unencodable)

    def as_dict(self) -> dict:
        return asdict(self)


def binning_roundtrip(normalized: np.ndarray, bins: int = BINNING_BINS) -> np.ndarray:
    """Uniform per-dimension binning of [-1, 1] into `bins` bins, decoded to bin centres."""
    x = np.clip(np.asarray(normalized, dtype=np.float64), -1.0, 1.0)
    idx = np.clip(np.floor((x + 1.0) / 2.0 * bins), 0, bins - 1)
    return (idx + 0.5) / bins * 2.0 - 1.0


def relative_error_pct(decoded: np.ndarray, normalized: np.ndarray) -> np.ndarray:
    """|decoded - original| / joint range (2 in normalized units), in percent, same shape as the input."""
    return np.abs(np.asarray(decoded, dtype=np.float64) - np.asarray(normalized, dtype=np.float64)) / 2.0 * 100.0


def evaluate(processor, normalized_chunks: np.ndarray, batch: int = 256, *,
             skip_unencodable: bool = False) -> TokenizerStats:
    """Encode and decode every [T, D] chunk of `normalized_chunks` [N, T, D]; raise on any failure.

    Held-out data can contain DCT integers the tokenizer never saw; with `skip_unencodable` those
    chunks are counted in `skipped_out_of_range` and left out instead of raising.
    """
    x = np.asarray(normalized_chunks)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"evaluate: expected [N, T, D] normalized chunks, got shape {list(x.shape)}")
    n_all, t, d = x.shape
    skipped = 0
    if skip_unencodable:
        keep = np.ones(n_all, dtype=bool)
        for i in range(0, n_all, batch):
            enc = processor.encode_detailed(x[i:i + batch], on_out_of_range="reference")
            keep[i:i + batch] = ~(enc.clipped.any(axis=1) | enc.unencodable.any(axis=1))
        skipped, x = int((~keep).sum()), x[keep]
        if x.shape[0] == 0:
            raise ValueError(f"evaluate: all {n_all} chunks are outside what this tokenizer represents")
    n = x.shape[0]
    lengths, decoded = [], []
    for i in range(0, n, batch):
        ids = processor.encode(x[i:i + batch])
        lengths += [len(s) for s in ids]
        decoded.append(processor.decode(ids, t, d))
    rel = relative_error_pct(np.concatenate(decoded), x)
    lengths = np.asarray(lengths)
    return TokenizerStats(
        num_chunks=n, time_horizon=t, action_dim=d,
        tokens_mean=float(lengths.mean()), tokens_p99=float(np.percentile(lengths, 99)),
        tokens_min=int(lengths.min()), tokens_max=int(lengths.max()),
        binning_tokens=t * d, compression_vs_binning=float(t * d / lengths.mean()),
        mean_rel_error_pct=float(rel.mean()), max_rel_error_pct=float(rel.max()),
        per_joint_mean_rel_error_pct=tuple(float(v) for v in rel.mean(axis=(0, 1))),
        per_joint_max_rel_error_pct=tuple(float(v) for v in rel.max(axis=(0, 1))),
        binning_mean_rel_error_pct=float(relative_error_pct(binning_roundtrip(x), x).mean()),
        skipped_out_of_range=skipped,
    )
