"""One call behind the app's OpenFAST tab and the notebook: fit on a source, inspect one chunk.

    ex = explore(load_actions(path), scale=10, vocab_size=1024, episode=0, start=0)
    ex.insp            # every stage of the chunk (see inspect.py)
    stats_table(ex)    # rows for a table: OpenFAST vs binning vs floats, over the chunk and the data set
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from molmoact2.openfast.inspect import ChunkInspection, inspect_chunk
from molmoact2.openfast.sources import ActionSource
from molmoact2.openfast.training import FitOutcome, fit_on_episodes

DEFAULT_FPS = 30.0


@dataclass
class Exploration:
    source: ActionSource
    outcome: FitOutcome
    horizon: int
    fps: float
    fps_assumed: bool  # True when the file carried no fps and DEFAULT_FPS was used (say so in the UI)
    episode: int
    start: int
    insp: ChunkInspection

    @property
    def names(self) -> list[str]:
        return list(self.source.names or [f"dim{i}" for i in range(self.source.action_dim)])


def horizon_for(source: ActionSource, fps: float | None = None) -> tuple[int, float, bool]:
    """1-second chunks: (steps, fps, whether the fps was assumed)."""
    if source.prechunked:
        return int(source.episodes[0].shape[0]), float(fps or source.fps or DEFAULT_FPS), source.fps is None
    use = source.fps or fps
    return int(round(use or DEFAULT_FPS)), float(use or DEFAULT_FPS), source.fps is None and fps is None


def fit_source(source: ActionSource, horizon: int, scale: float, vocab_size: int) -> FitOutcome:
    return fit_on_episodes(source.episodes, horizon, scale=scale, vocab_size=vocab_size, stride=1,
                           names=source.names)


def explore(source: ActionSource, *, scale: float = 10, vocab_size: int = 1024, episode: int = 0, start: int = 0,
            fps: float | None = None, outcome: FitOutcome | None = None) -> Exploration:
    horizon, fps_used, assumed = horizon_for(source, fps)
    if not 0 <= episode < len(source.episodes):
        raise ValueError(f"episode must be in [0, {len(source.episodes) - 1}], got {episode}")
    ep = source.episodes[episode]
    if ep.shape[0] < horizon:
        raise ValueError(f"episode {episode} has {ep.shape[0]} steps, fewer than one {horizon}-step chunk")
    if not 0 <= start <= ep.shape[0] - horizon:
        raise ValueError(f"start must be in [0, {ep.shape[0] - horizon}] for episode {episode}, got {start}")
    outcome = outcome or fit_source(source, horizon, scale, vocab_size)
    insp = inspect_chunk(outcome.processor, ep[start:start + horizon], outcome.normalizer, names=source.names)
    return Exploration(source, outcome, horizon, fps_used, assumed, episode, start, insp)


def stats_table(ex: Exploration) -> tuple[list[str], list[list]]:
    """This chunk and the whole fitted data set: tokens, bits, error, for OpenFAST / binning / floats."""
    s = ex.outcome.stats
    headers = ["representation", "tokens (this chunk)", "bits (this chunk)", "mean error % (this chunk)",
               "tokens per chunk (data set mean)", "tokens vs OpenFAST (x)"]
    rows = []
    for row in ex.insp.comparison:
        is_fast = row["representation"].startswith("OpenFAST")
        data_tokens = s.tokens_mean if is_fast else s.binning_tokens
        rows.append([row["representation"], row["tokens"], row["bits"], round(row["mean_rel_error_pct"], 4),
                     round(data_tokens, 1), round(row["tokens_vs_openfast"], 2)])
    return headers, rows


def joint_table(ex: Exploration) -> tuple[list[str], list[list]]:
    headers = ["joint", "mean err % range", "max err % range", "mean err (data units)", "max err (data units)"]
    rows = [[j.name, round(j.mean_rel_pct, 3), round(j.max_rel_pct, 3),
             None if j.mean_abs_raw is None else round(j.mean_abs_raw, 4),
             None if j.max_abs_raw is None else round(j.max_abs_raw, 4)] for j in ex.insp.per_joint]
    return headers, rows


def lab_table(report, names) -> tuple[list[str], list[list]]:
    """Per joint: the true first command, what the zeros fallback commands, and max deviations."""
    headers = ["joint", "true step 0", "zeros fallback command", "zeros max deviation", "relaxed max deviation",
               "partial max deviation"]
    dz, dr, dp = (report.max_deviation(k) for k in ("zeros", "relaxed", "partial"))
    rows = []
    for j, name in enumerate(names):
        rows.append([name, round(float(report.truth[0, j]), 3), round(float(report.zeros_units[0, j]), 3),
                     round(float(dz[j]), 3), round(float(dr[j]), 3),
                     None if np.isnan(dp[j]) else round(float(dp[j]), 3)])
    return headers, rows
