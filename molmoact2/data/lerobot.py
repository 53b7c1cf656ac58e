"""Read and write datasets in the LeRobot v3.0 layout (without depending on `lerobot`).

Layout (as in a real `lerobot record` dataset, e.g. ../shared/data/lerobot/so101_record_test)::

    meta/info.json                              codebase_version "v3.0", fps, features, path templates
    meta/stats.json                             min/max/mean/std/count/q01..q99 per feature
    meta/tasks.parquet                          task string (pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode: length, data offsets, stats/<key>/<stat>
    data/chunk-000/file-000.parquet             one row per frame: action, observation.state, timestamp, indices
    images/<key>/episode-000000/frame-000000.png   camera frames (dtype "image"; videos are not written)

Image columns in the data parquet hold `{"bytes": null, "path": <relative png path>}` -- the
encoding of the Hugging Face `Image` feature -- so frames stay ordinary PNG files on disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_VERSIONS = ("v3.0",)
DEFAULT_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_IMAGE_PATH = "images/{image_key}/episode-{episode_index:06d}/frame-{frame_index:06d}.png"
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


class DatasetError(ValueError):
    """A dataset that does not match the LeRobot v3.0 layout; the message names the file and what was expected."""


# ---- reading ------------------------------------------------------------------------------------
class LeRobotDataset:
    """A LeRobot v3.0 dataset on disk. Tabular data is loaded eagerly; images lazily (`image(...)`).

    `require=("action", "observation.state")` raises if a feature is missing from info.json or the data.
    Declared media (videos/images) without files on disk are listed in `missing_media` -- a tabular
    reader still works; `validate(strict=True)` turns them into errors.
    """

    def __init__(self, root: str | os.PathLike, require: tuple[str, ...] = ("action", "observation.state")) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"LeRobot dataset: expected a directory at {self.root}, not found")
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"LeRobot dataset: expected {info_path} (LeRobot v3.0 layout), not found")
        self.info: dict[str, Any] = json.loads(info_path.read_text())
        version = self.info.get("codebase_version")
        if version not in SUPPORTED_VERSIONS:
            raise DatasetError(
                f"LeRobot dataset {self.root}: codebase_version {version!r} is not supported; expected one of "
                f"{list(SUPPORTED_VERSIONS)} (convert v2.x datasets with lerobot's convert_dataset_v21_to_v30)"
            )
        for key in ("fps", "features"):
            if key not in self.info:
                raise DatasetError(f"{info_path}: expected key {key!r}, missing")
        self.features: dict[str, dict] = self.info["features"]
        missing = [f for f in require if f not in self.features]
        if missing:
            raise DatasetError(f"{info_path}: required feature(s) {missing} not declared; declared: {sorted(self.features)}")

        self.tasks = _read_tasks(self.root / "meta" / "tasks.parquet")
        ep_files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not ep_files:
            raise FileNotFoundError(f"LeRobot dataset: expected meta/episodes/chunk-*/file-*.parquet under {self.root}, none found")
        import pandas as pd

        self.episodes = pd.concat([pq.read_table(p).to_pandas() for p in ep_files], ignore_index=True)
        self.episodes = self.episodes.sort_values("episode_index").reset_index(drop=True)

        template = self.info.get("data_path", DEFAULT_DATA_PATH)
        files = sorted({(int(r["data/chunk_index"]), int(r["data/file_index"])) for _, r in self.episodes.iterrows()})
        tables = []
        for chunk, file in files:
            path = self.root / template.format(chunk_index=chunk, file_index=file)
            if not path.is_file():
                raise FileNotFoundError(f"LeRobot dataset: episodes metadata points at {path}, not found")
            tables.append(pq.read_table(path))
        import pyarrow as pa

        self.table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        columns = set(self.table.column_names)
        tabular = [k for k, f in self.features.items() if f.get("dtype") not in ("video",)]
        absent = [k for k in tabular if k not in columns]
        if absent:
            raise DatasetError(f"LeRobot dataset {self.root}: feature(s) {absent} declared in info.json but not in the data parquet")
        self._arrays: dict[str, np.ndarray] = {}
        self.missing_media = self._find_missing_media()

    # ---- metadata -------------------------------------------------------------------------
    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def num_frames(self) -> int:
        return int(self.table.num_rows)

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("image", "video")]

    def names(self, key: str) -> list[str] | None:
        self._need(key)
        names = self.features[key].get("names")
        if isinstance(names, dict):  # older LeRobot wrote {"motors": [...]}
            names = next(iter(names.values()))
        return list(names) if names is not None else None

    # ---- data -----------------------------------------------------------------------------
    def array(self, key: str) -> np.ndarray:
        """All frames of a numeric feature, [N, D] (or [N] for scalars)."""
        self._need(key)
        if self.features[key].get("dtype") in ("image", "video"):
            raise DatasetError(f"{key!r} is a camera feature; use image(key, index) instead of array()")
        if key not in self._arrays:
            col = self.table.column(key).combine_chunks()
            if _is_list(col.type):
                values = np.asarray(col.flatten().to_numpy(zero_copy_only=False))
                self._arrays[key] = values.reshape(len(col), -1)
            else:
                self._arrays[key] = np.asarray(col.to_numpy(zero_copy_only=False))
        return self._arrays[key]

    def episode(self, episode_index: int) -> dict[str, Any]:
        """Numeric features of one episode, sliced by dataset_from_index/to_index, plus its task string(s)."""
        rows = self.episodes.index[self.episodes["episode_index"] == episode_index]
        if len(rows) == 0:
            raise IndexError(f"episode {episode_index} not in {self.root}; episodes: {self.episodes['episode_index'].tolist()}")
        row = self.episodes.loc[rows[0]]
        lo, hi = int(row["dataset_from_index"]), int(row["dataset_to_index"])
        out: dict[str, Any] = {"episode_index": episode_index, "tasks": list(row["tasks"]), "length": int(row["length"])}
        index = self.array("index") if "index" in self.features else np.arange(self.num_frames)
        sel = (index >= lo) & (index < hi)
        for key, feat in self.features.items():
            if feat.get("dtype") not in ("image", "video"):
                out[key] = self.array(key)[sel]
        out["rows"] = np.flatnonzero(sel)
        return out

    def image(self, key: str, row: int) -> np.ndarray:
        """Camera frame `row` (a data-parquet row) of an image feature as uint8 [H, W, 3]."""
        from PIL import Image

        self._need(key)
        if self.features[key].get("dtype") == "video":
            raise DatasetError(f"{key!r} is stored as video; decoding videos is not supported by this reader")
        cell = self.table.column(key)[row].as_py()
        if cell.get("bytes"):
            import io

            return np.asarray(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"))
        path = self.root / cell["path"]
        if not path.is_file():
            raise FileNotFoundError(f"LeRobot dataset: frame {row} of {key!r} points at {path}, not found")
        return np.asarray(Image.open(path).convert("RGB"))

    def validate(self, strict: bool = False) -> list[str]:
        """Consistency problems (row counts, index continuity, media). `strict=True` raises on any."""
        problems = []
        if self.num_frames != int(self.info.get("total_frames", self.num_frames)):
            problems.append(f"total_frames {self.info.get('total_frames')} in info.json != {self.num_frames} rows")
        if self.num_episodes != int(self.info.get("total_episodes", self.num_episodes)):
            problems.append(f"total_episodes {self.info.get('total_episodes')} != {self.num_episodes} episode rows")
        if int(self.episodes["length"].sum()) != self.num_frames:
            problems.append(f"episode lengths sum to {int(self.episodes['length'].sum())}, data has {self.num_frames} rows")
        if "index" in self.features and not np.array_equal(self.array("index"), np.arange(self.num_frames)):
            problems.append("`index` is not 0..N-1 in order")
        problems += [f"declared media missing on disk: {m}" for m in self.missing_media]
        if strict and problems:
            raise DatasetError(f"LeRobot dataset {self.root}: " + "; ".join(problems))
        return problems

    def _need(self, key: str) -> None:
        if key not in self.features:
            raise DatasetError(f"feature {key!r} not in {self.root}; features: {sorted(self.features)}")

    def _find_missing_media(self) -> list[str]:
        missing = []
        video_tpl = self.info.get("video_path")
        for key, feat in self.features.items():
            if feat.get("dtype") == "video" and video_tpl:
                col = f"videos/{key}/chunk_index"
                pairs = {(0, 0)} if col not in self.episodes else {
                    (int(r[col]), int(r[f"videos/{key}/file_index"])) for _, r in self.episodes.iterrows()
                }
                for chunk, file in sorted(pairs):
                    rel = video_tpl.format(video_key=key, chunk_index=chunk, file_index=file)
                    if not (self.root / rel).is_file():
                        missing.append(rel)
            elif feat.get("dtype") == "image" and key in self.table.column_names and self.num_frames:
                cell = self.table.column(key)[0].as_py()
                if not cell.get("bytes") and not (self.root / cell["path"]).is_file():
                    missing.append(cell["path"])
        return missing

    def __repr__(self) -> str:
        return f"LeRobotDataset({str(self.root)!r}, episodes={self.num_episodes}, frames={self.num_frames}, fps={self.fps})"


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t)


def _read_tasks(path: Path) -> dict[int, str]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(f"LeRobot dataset: expected {path} (task string -> task_index), not found")
    df = pq.read_table(path).to_pandas()
    if "task_index" not in df.columns:
        raise DatasetError(f"{path}: expected a task_index column, got {list(df.columns)}")
    strings = df["task"] if "task" in df.columns else df.index
    return {int(i): str(s) for s, i in zip(strings, df["task_index"])}


# ---- writing ------------------------------------------------------------------------------------
@dataclass
class _Episode:
    task: str
    action: np.ndarray
    state: np.ndarray
    images: dict[str, list[np.ndarray]]


class LeRobotWriter:
    """Collect episodes, then `finalize()` writes the whole dataset (one chunk, one file each).

    `names`: feature names for every dimension of `action` and `observation.state`;
    `cameras`: camera names, stored as `observation.images.<camera>` PNG frames.
    """

    def __init__(self, root: str | os.PathLike, fps: int, names: tuple[str, ...], cameras: tuple[str, ...] = (),
                 robot_type: str = "so101_follower_sim") -> None:
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()):
            raise FileExistsError(f"LeRobotWriter: {self.root} exists and is not empty; expected a new or empty directory")
        self.fps, self.names, self.cameras, self.robot_type = int(fps), tuple(names), tuple(cameras), robot_type
        self._episodes: list[_Episode] = []
        self._image_shape: dict[str, tuple[int, ...]] = {}

    def add_episode(self, task: str, action: np.ndarray, state: np.ndarray, images: dict[str, list[np.ndarray]] | None = None) -> int:
        action, state = np.asarray(action, np.float32), np.asarray(state, np.float32)
        d = len(self.names)
        if action.ndim != 2 or action.shape[1] != d or state.shape != action.shape or len(action) == 0:
            raise ValueError(f"add_episode: expected action and state [T>0, {d}], got {list(action.shape)} and {list(state.shape)}")
        images = images or {}
        if set(images) != set(self.cameras):
            raise ValueError(f"add_episode: expected images for cameras {list(self.cameras)}, got {list(images)}")
        for cam, frames in images.items():
            if len(frames) != len(action):
                raise ValueError(f"add_episode: camera {cam!r} has {len(frames)} frames for {len(action)} steps")
            shape = np.shape(frames[0])
            if self._image_shape.setdefault(cam, shape) != shape:
                raise ValueError(f"add_episode: camera {cam!r} frames {shape}, earlier episodes {self._image_shape[cam]}")
        ep = len(self._episodes)
        for cam, frames in images.items():  # write PNGs now so memory stays bounded
            for i, frame in enumerate(frames):
                self._write_png(cam, ep, i, frame)
        self._episodes.append(_Episode(task, action, state, {c: [] for c in images}))
        return ep

    def _image_rel(self, cam: str, ep: int, i: int) -> str:
        return DEFAULT_IMAGE_PATH.format(image_key=f"observation.images.{cam}", episode_index=ep, frame_index=i)

    def _write_png(self, cam: str, ep: int, i: int, frame: np.ndarray) -> None:
        from PIL import Image

        path = self.root / self._image_rel(cam, ep, i)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(frame, np.uint8)).save(path, compress_level=1)

    def finalize(self) -> Path:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._episodes:
            raise ValueError("LeRobotWriter.finalize: no episodes were added")
        task_list = list(dict.fromkeys(e.task for e in self._episodes))
        task_index = {t: i for i, t in enumerate(task_list)}
        d = len(self.names)
        cols: dict[str, list] = {k: [] for k in ("action", "observation.state", *INDEX_FEATURES)}
        image_cols: dict[str, list] = {f"observation.images.{c}": [] for c in self.cameras}
        ep_rows, start = [], 0
        for ep, e in enumerate(self._episodes):
            n = len(e.action)
            cols["action"].append(e.action)
            cols["observation.state"].append(e.state)
            cols["timestamp"].append((np.arange(n) / self.fps).astype(np.float32))
            cols["frame_index"].append(np.arange(n))
            cols["episode_index"].append(np.full(n, ep))
            cols["index"].append(np.arange(start, start + n))
            cols["task_index"].append(np.full(n, task_index[e.task]))
            for cam in self.cameras:
                image_cols[f"observation.images.{cam}"] += [{"bytes": None, "path": self._image_rel(cam, ep, i)} for i in range(n)]
            ep_rows.append({"episode_index": ep, "tasks": [e.task], "length": n, "data/chunk_index": 0, "data/file_index": 0,
                            "dataset_from_index": start, "dataset_to_index": start + n})
            start += n
        flat = {k: np.concatenate(v) for k, v in cols.items()}

        arrays = {
            "action": pa.FixedSizeListArray.from_arrays(pa.array(flat["action"].reshape(-1), pa.float32()), d),
            "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(flat["observation.state"].reshape(-1), pa.float32()), d),
            "timestamp": pa.array(flat["timestamp"], pa.float32()),
            **{k: pa.array(flat[k].astype(np.int64), pa.int64()) for k in ("frame_index", "episode_index", "index", "task_index")},
        }
        img_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        for key, cells in image_cols.items():
            arrays[key] = pa.array(cells, img_type)
        data_path = self.root / DEFAULT_DATA_PATH.format(chunk_index=0, file_index=0)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(arrays), data_path)

        # stats: global (meta/stats.json) and per episode (stats/<key>/<stat> columns)
        features = self._features()
        stats = {}
        for key in ("action", "observation.state", *INDEX_FEATURES):
            stats[key] = _numeric_stats(flat[key])
        for cam in self.cameras:
            stats[f"observation.images.{cam}"] = self._image_stats(cam, [(ep, i) for ep, e in enumerate(self._episodes) for i in range(len(e.action))])
        offset = 0
        for ep, (row, e) in enumerate(zip(ep_rows, self._episodes)):
            n = len(e.action)
            sl = slice(offset, offset + n)
            offset += n
            per = {k: _numeric_stats(flat[k][sl]) for k in ("action", "observation.state", *INDEX_FEATURES)}
            for cam in self.cameras:
                per[f"observation.images.{cam}"] = self._image_stats(cam, [(ep, i) for i in range(n)])
            for key, st in per.items():
                for name, value in st.items():
                    row[f"stats/{key}/{name}"] = value
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
        ep_path = self.root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        ep_path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(ep_rows).to_parquet(ep_path, index=False)
        pd.DataFrame({"task_index": list(range(len(task_list)))}, index=pd.Index(task_list)).to_parquet(self.root / "meta" / "tasks.parquet")
        info = {
            "codebase_version": "v3.0",
            "robot_type": self.robot_type,
            "total_episodes": len(self._episodes),
            "total_frames": int(start),
            "total_tasks": len(task_list),
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": DEFAULT_DATA_PATH,
            "video_path": None,
            "image_path": DEFAULT_IMAGE_PATH,
            "features": features,
        }
        (self.root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
        (self.root / "meta" / "stats.json").write_text(json.dumps(stats, indent=4))
        return self.root

    def _features(self) -> dict:
        d = len(self.names)
        feats = {
            "action": {"dtype": "float32", "names": list(self.names), "shape": [d]},
            "observation.state": {"dtype": "float32", "names": list(self.names), "shape": [d]},
        }
        for cam in self.cameras:
            h, w, c = self._image_shape[cam]
            feats[f"observation.images.{cam}"] = {"dtype": "image", "shape": [h, w, c], "names": ["height", "width", "channels"]}
        feats["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for k in ("frame_index", "episode_index", "index", "task_index"):
            feats[k] = {"dtype": "int64", "shape": [1], "names": None}
        return feats

    def _image_stats(self, cam: str, frames: list[tuple[int, int]], max_frames: int = 50) -> dict:
        """Per-channel stats over a subsample of frames, in [0, 1] and shaped [3, 1, 1] (as LeRobot)."""
        from PIL import Image

        idx = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
        pix = np.stack([np.asarray(Image.open(self.root / self._image_rel(cam, *frames[i]))) for i in idx]) / 255.0
        per_channel = pix.reshape(-1, pix.shape[-1])
        st = _numeric_stats(per_channel)
        out = {k: [[[v]] for v in vals] for k, vals in st.items() if k != "count"}
        out["count"] = [len(idx)]
        return out


def _numeric_stats(x: np.ndarray) -> dict[str, list]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    out = {
        "min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(), "std": x.std(0).tolist(),
        "count": [int(len(x))],
    }
    for q in QUANTILES:
        out[f"q{int(round(q * 100)):02d}"] = np.quantile(x, q, axis=0).tolist()
    return out
