"""1st-99th percentile normalization to [-1, 1], the convention OpenFAST was trained with.

FAST's integers are DCT coefficients x scale, so the tokenizer only makes sense for actions in a
known range: a joint in degrees (-100..100) would produce coefficients 100x larger than the same
joint in [-1, 1]. The stats live in `normalization.json` beside the tokenizer files.
Same formula as LeRobot's QUANTILES mode: clip to [q01, q99], then 2 (x - q01) / (q99 - q01) - 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NORMALIZATION_FILE = "normalization.json"
FORMAT = "molmoact2.openfast.normalization.v1"
EPS = 1e-8  # LeRobot's guard for a joint that never moves


@dataclass(frozen=True)
class QuantileNormalizer:
    q01: tuple[float, ...]
    q99: tuple[float, ...]
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.q01) != len(self.q99):
            raise ValueError(f"QuantileNormalizer: q01 has {len(self.q01)} dims, q99 has {len(self.q99)}")
        if self.names is not None and len(self.names) != len(self.q01):
            raise ValueError(f"QuantileNormalizer: {len(self.names)} names for {len(self.q01)} dims")

    @property
    def action_dim(self) -> int:
        return len(self.q01)

    @property
    def range(self) -> np.ndarray:
        """q99 - q01 per joint, in the data's own units: the denominator of 'relative error'."""
        return np.asarray(self.q99, dtype=np.float64) - np.asarray(self.q01, dtype=np.float64)

    @classmethod
    def from_data(cls, frames: np.ndarray, names=None, low_pct: float = 1.0, high_pct: float = 99.0):
        """Stats from every frame of every episode ([N, D] or a list of [T_i, D])."""
        if isinstance(frames, (list, tuple)):
            frames = np.concatenate([np.asarray(f, dtype=np.float64) for f in frames])
        frames = np.asarray(frames, dtype=np.float64)
        if frames.ndim != 2 or frames.shape[0] == 0:
            raise ValueError(f"QuantileNormalizer.from_data: expected frames [N, D], got shape {list(frames.shape)}")
        if not np.all(np.isfinite(frames)):
            raise ValueError("QuantileNormalizer.from_data: frames contain NaN or inf")
        q01, q99 = np.percentile(frames, [low_pct, high_pct], axis=0)
        return cls(tuple(map(float, q01)), tuple(map(float, q99)), None if names is None else tuple(names))

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.action_dim:
            raise ValueError(f"{what}: expected last axis = {self.action_dim} action dims, got shape {list(x.shape)}")
        return x

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        x = self._check(actions, "normalize")
        lo, hi = np.asarray(self.q01), np.asarray(self.q99)
        den = np.where(hi - lo == 0, EPS, hi - lo)
        return 2.0 * (np.clip(x, lo, hi) - lo) / den - 1.0

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        y = self._check(normalized, "unnormalize")
        lo, hi = np.asarray(self.q01), np.asarray(self.q99)
        den = np.where(hi - lo == 0, EPS, hi - lo)
        return lo + (y + 1.0) * 0.5 * den

    def save(self, directory: str | Path, source: str = "") -> Path:
        path = Path(directory) / NORMALIZATION_FILE
        obj = {"format": FORMAT, "method": "quantile_01_99_to_minus1_1", "q01": list(self.q01),
               "q99": list(self.q99), "names": None if self.names is None else list(self.names), "source": source}
        path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> QuantileNormalizer | None:
        """The stats stored beside a tokenizer, or None when the directory has none (released repos)."""
        path = Path(directory) / NORMALIZATION_FILE
        if not path.is_file():
            return None
        obj = json.loads(path.read_text(encoding="utf-8"))
        if obj.get("format") != FORMAT:
            raise ValueError(f"{path}: expected format {FORMAT!r}, got {obj.get('format')!r}")
        names = obj.get("names")
        return cls(tuple(obj["q01"]), tuple(obj["q99"]), None if names is None else tuple(names))
