"""Where action trajectories come from: `.npy`, `.csv` or a LeRobot v3.0 dataset directory.

Only the `action` column of a LeRobot dataset is read (pyarrow, imported lazily), so this works on
tabular-only copies whose videos are missing. Everything comes back as a list of [T_i, D] episodes
plus whatever is known about them (fps, joint names) — the caller chooses the chunking.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ActionSource:
    episodes: list[np.ndarray]  # [T_i, D] float64 each
    fps: float | None = None
    names: list[str] | None = None
    description: str = ""
    prechunked: bool = False  # a 3-D .npy: each "episode" is already one chunk

    @property
    def action_dim(self) -> int:
        return int(self.episodes[0].shape[1])

    @property
    def num_frames(self) -> int:
        return int(sum(e.shape[0] for e in self.episodes))


def load_actions(path: str | Path, feature: str = "action") -> ActionSource:
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "meta" / "info.json").is_file():
            return load_lerobot(path, feature)
        raise ValueError(f"{path}: a directory must be a LeRobot v3.0 dataset (meta/info.json + data/*.parquet); "
                         f"meta/info.json is missing")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory (expected .npy, .csv or a LeRobot dataset dir)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return load_npy(path)
    if suffix == ".csv":
        return load_csv(path)
    if suffix == ".npz":
        return load_npz(path)
    raise ValueError(f"{path}: expected a .npy, a .csv or a LeRobot dataset directory, got a {suffix or 'suffix-less'} file")


def load_npz(path: Path) -> ActionSource:
    """Episodes saved by `save_npz`: arrays `episode_000`, `episode_001`, … plus optional `fps` and `names`."""
    with np.load(path, allow_pickle=False) as z:
        keys = sorted(k for k in z.files if k.startswith("episode_"))
        if not keys:
            raise ValueError(f"{path}: expected arrays named episode_000, episode_001, … (got {z.files})")
        episodes = [z[k].astype(np.float64) for k in keys]
        fps = float(z["fps"]) if "fps" in z.files else None
        names = [str(n) for n in z["names"]] if "names" in z.files else None
    for k, e in zip(keys, episodes):
        if e.ndim != 2:
            raise ValueError(f"{path}: {k}: expected [T, D], got shape {list(e.shape)}")
    _check_finite(episodes, path)
    return ActionSource(episodes, fps=fps, names=names, description=f"{path.name}: {len(episodes)} episodes")


def save_npz(path: str | Path, episodes: list[np.ndarray], fps: float | None = None, names=None) -> Path:
    arrays = {f"episode_{i:03d}": np.asarray(e, dtype=np.float32) for i, e in enumerate(episodes)}
    if fps is not None:
        arrays["fps"] = np.asarray(fps, dtype=np.float64)
    if names is not None:
        arrays["names"] = np.asarray(list(names))
    np.savez_compressed(path, **arrays)
    return Path(path)


def load_npy(path: Path) -> ActionSource:
    arr = np.load(path, allow_pickle=False)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:
        episodes, pre = [arr.astype(np.float64)], False
    elif arr.ndim == 3:
        episodes, pre = [a.astype(np.float64) for a in arr], True
    else:
        raise ValueError(f"{path}: expected [T, D] (one trajectory) or [N, T, D] (chunks), got shape {list(arr.shape)}")
    _check_finite(episodes, path)
    return ActionSource(episodes, description=f"{path.name} {list(arr.shape)}", prechunked=pre)


def load_csv(path: Path) -> ActionSource:
    """Rows = time steps, columns = action dims. A non-numeric first row is a header (joint names).
    An `episode_index` column, if present, splits the rows into episodes."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: empty CSV (expected rows of numbers, one row per time step)")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    try:
        data = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: expected numbers in every cell after the header row: {e}") from e
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"{path}: expected a table of numbers with the same column count in every row")
    names = header
    if header and "episode_index" in header:
        k = header.index("episode_index")
        ep = data[:, k].astype(int)
        data = np.delete(data, k, axis=1)
        names = [h for i, h in enumerate(header) if i != k]
        episodes = [data[ep == e] for e in np.unique(ep)]
    else:
        episodes = [data]
    _check_finite(episodes, path)
    return ActionSource(episodes, names=names, description=f"{path.name} ({len(rows)} rows)")


def load_lerobot(root: Path, feature: str = "action") -> ActionSource:
    import pyarrow.parquet as pq

    info = json.loads((root / "meta" / "info.json").read_text(encoding="utf-8"))
    feats = info.get("features", {})
    if feature not in feats:
        raise ValueError(f"{root}: LeRobot dataset has no feature {feature!r} (features: {sorted(feats)})")
    files = sorted((root / "data").glob("**/*.parquet"))
    if not files:
        raise ValueError(f"{root}: LeRobot dataset has no data/**/*.parquet files")
    actions, episode_index = [], []
    for f in files:
        table = pq.read_table(f, columns=[feature, "episode_index"])
        actions.append(np.asarray(table.column(feature).to_pylist(), dtype=np.float64))
        episode_index.append(np.asarray(table.column("episode_index").to_pylist(), dtype=np.int64))
    acts, eps = np.concatenate(actions), np.concatenate(episode_index)
    if acts.ndim != 2:
        raise ValueError(f"{root}: feature {feature!r} is not a fixed-length vector per frame (shape {list(acts.shape)})")
    episodes = [acts[eps == e] for e in np.unique(eps)]
    _check_finite(episodes, root)
    names = feats[feature].get("names")
    if isinstance(names, dict):  # older LeRobot: {"motors": [...]}
        names = next(iter(names.values()), None)
    fps = info.get("fps")
    return ActionSource(episodes, fps=float(fps) if fps else None, names=list(names) if names else None,
                        description=f"LeRobot {root.name}: {len(episodes)} episodes, {len(acts)} frames at {fps} fps")


def _check_finite(episodes: list[np.ndarray], where) -> None:
    for i, e in enumerate(episodes):
        if not np.all(np.isfinite(e)):
            raise ValueError(f"{where}: episode {i} contains NaN or inf actions")
