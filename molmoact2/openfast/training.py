"""Fit an OpenFAST tokenizer on raw episodes: normalize (1-99 pct), cut chunks, fit, report.

One function used by the CLI (`molmoact2 fast fit`), the bench, the app tab and the asset build, so
they all produce the same thing from the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from molmoact2.openfast.chunks import chunk_episodes
from molmoact2.openfast.metrics import TokenizerStats, evaluate
from molmoact2.openfast.normalize import QuantileNormalizer
from molmoact2.openfast.processor import OpenFastProcessor


@dataclass
class FitOutcome:
    processor: OpenFastProcessor
    normalizer: QuantileNormalizer | None  # None: the episodes were already normalized (normalize=False)
    train_chunks: np.ndarray  # [N, T, D] normalized chunks the BPE saw
    stats: TokenizerStats  # on the training chunks


def fit_on_episodes(episodes: list[np.ndarray], horizon: int, *, scale: float = 10, vocab_size: int = 1024,
                    stride: int = 1, names=None, normalizer: QuantileNormalizer | None = None,
                    normalize: bool = True, show_progress: bool = False) -> FitOutcome:
    """Stats from all frames (unless given), sliding windows of `horizon` steps, BPE fit.

    normalize=False: the episodes are already in [-1, 1]; they are used as they are (no clipping).
    """
    if normalize:
        norm = normalizer or QuantileNormalizer.from_data(list(episodes), names=names)
        chunks = chunk_episodes([norm.normalize(e) for e in episodes], horizon, stride)
    else:
        norm = None
        chunks = chunk_episodes([np.asarray(e, dtype=np.float64) for e in episodes], horizon, stride)
    proc = OpenFastProcessor.fit(chunks, vocab_size=vocab_size, scale=scale, show_progress=show_progress)
    stats = evaluate(proc, chunks)
    return FitOutcome(proc, norm, chunks, stats)


def save_outcome(outcome: FitOutcome, directory, *, source: str, command: str) -> None:
    """Tokenizer files + normalization.json + the fit report in openfast_fit.json."""
    outcome.processor.save(directory, extra_fit_info={"source": source, "command": command,
                                                      "train_stats": outcome.stats.as_dict()})
    if outcome.normalizer is not None:
        outcome.normalizer.save(directory, source=source)
