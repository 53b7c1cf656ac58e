"""The records every backend produces and every view consumes.

One control step of any policy (Nano, a real checkpoint, an `/act` server, a scripted expert,
or a pasted output text) becomes one `Step`. Optional fields stay `None` when a backend cannot
produce them; views say "not available from this backend" instead of inventing data.

A `Step` saves to a directory (`step.json` + `arrays.npz`) and loads back bit-exactly, so a
recording outlives the process that made it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

STEP_FORMAT = "molmoact2_workbench_step.v1"


@dataclass
class CameraFrame:
    """One camera's view at one instant.

    Conventions: `rgb` uint8 [H, W, 3]; `depth_m` float32 [H, W] metric z-depth (NaN = no return);
    `segmentation` int32 [H, W] object ids (-1 = background); `K` float [3, 3] pixel intrinsics;
    `T_world_cam` float [4, 4] camera-to-world pose in the OpenCV camera frame (x right, y down, z forward).
    """

    rgb: np.ndarray
    depth_m: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    K: np.ndarray | None = None
    T_world_cam: np.ndarray | None = None

    def __post_init__(self) -> None:
        rgb = np.asarray(self.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"CameraFrame.rgb: expected uint8 [H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
        h, w = rgb.shape[:2]
        for name in ("depth_m", "segmentation"):
            value = getattr(self, name)
            if value is not None and np.asarray(value).shape != (h, w):
                raise ValueError(f"CameraFrame.{name}: expected shape [{h}, {w}] like rgb, got {list(np.shape(value))}")
        if self.K is not None and np.shape(self.K) != (3, 3):
            raise ValueError(f"CameraFrame.K: expected [3, 3], got {list(np.shape(self.K))}")
        if self.T_world_cam is not None and np.shape(self.T_world_cam) != (4, 4):
            raise ValueError(f"CameraFrame.T_world_cam: expected [4, 4], got {list(np.shape(self.T_world_cam))}")

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


@dataclass
class Observation:
    """What a policy sees. `cameras` is ordered: the first camera is the "main image" (MolmoThink's)."""

    cameras: dict[str, CameraFrame]
    state: np.ndarray
    instruction: str
    state_names: tuple[str, ...] | None = None
    timestamp_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("Observation.cameras: expected at least one camera, got none")
        state = np.asarray(self.state)
        if state.ndim != 1:
            raise ValueError(f"Observation.state: expected a 1-D raw robot state, got shape {list(state.shape)}")
        if self.state_names is not None and len(self.state_names) != state.shape[0]:
            raise ValueError(
                f"Observation.state_names: expected {state.shape[0]} names (one per state dim), got {len(self.state_names)}"
            )

    @property
    def main_camera(self) -> str:
        return next(iter(self.cameras))


@dataclass
class Step:
    """One control step's full reasoning record (design.md).

    Array conventions:
      depth_bins          int64 [100] codes 0..127, row-major 10x10 grid (cell = row*10 + col)
      depth_update_mask   bool  [100] True = re-predicted this step, False = replayed from the cache
      depth_decoded       float32 [H, W] relative depth decoded by the VQ-VAE (per-frame scale)
      action_token_ids    int64 [N] OpenFAST ids (0..2047), without the <action_start>/<action_end> markers
      actions             float32 [H, D] action chunk in robot units (`action_units`)
      denoising_states    float32 [S+1, H, D] flow-matching states from noise (0) to the final chunk (S)
      planned_path_world  float32 [H, 3] end-effector positions in metres, world frame
      planned_path_px     {camera: float32 [H, 2]} the same path projected into each camera, pixels
      points_px           {camera: float32 [N, 2]} 2-D points (e.g. a spatial answer) in pixels
    """

    index: int = 0
    timestamp_s: float = 0.0
    backend: str = "unknown"
    observation: Observation | None = None
    prompt_text: str | None = None
    prompt_token_ids: np.ndarray | None = None
    generated_text: str | None = None
    generated_token_ids: np.ndarray | None = None
    answer_text: str | None = None
    depth_bins: np.ndarray | None = None
    depth_update_mask: np.ndarray | None = None
    depth_decoded: np.ndarray | None = None
    action_token_ids: np.ndarray | None = None
    actions: np.ndarray | None = None
    action_names: tuple[str, ...] | None = None
    action_units: str | None = None
    n_executed: int | None = None
    denoising_states: np.ndarray | None = None
    planned_path_world: np.ndarray | None = None
    planned_path_px: dict[str, np.ndarray] | None = None
    points_px: dict[str, np.ndarray] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_shape("depth_bins", self.depth_bins, (100,))
        _check_shape("depth_update_mask", self.depth_update_mask, (100,))
        if self.depth_bins is not None:
            bins = np.asarray(self.depth_bins)
            if bins.size and (bins.min() < 0 or bins.max() > 127):
                raise ValueError(f"Step.depth_bins: expected codes in 0..127, got range {bins.min()}..{bins.max()}")
        if self.actions is not None and np.ndim(self.actions) != 2:
            raise ValueError(f"Step.actions: expected [horizon, action_dim], got shape {list(np.shape(self.actions))}")
        if self.action_names is not None and self.actions is not None and len(self.action_names) != np.shape(self.actions)[1]:
            raise ValueError(
                f"Step.action_names: expected {np.shape(self.actions)[1]} names, got {len(self.action_names)}"
            )

    # ---- persistence -----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write `step.json` + `arrays.npz` into `directory` (created). Lossless: arrays keep dtype and shape."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        doc = {"format": STEP_FORMAT, "step": _to_doc(_fields(self), "step", arrays)}
        np.savez(directory / "arrays.npz", **arrays)
        tmp = directory / "step.json.partial"
        # No sort_keys: dict order is data (the first camera is the main image; timings read in stage order).
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=True))
        os.replace(tmp, directory / "step.json")
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Step":
        directory = Path(directory)
        meta_path = directory / "step.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"Step.load: expected {meta_path} (written by Step.save), not found")
        doc = json.loads(meta_path.read_text())
        if doc.get("format") != STEP_FORMAT:
            raise ValueError(f"Step.load: expected format {STEP_FORMAT!r}, got {doc.get('format')!r} in {meta_path}")
        npz_path = directory / "arrays.npz"
        if not npz_path.is_file():
            raise FileNotFoundError(f"Step.load: expected {npz_path} next to step.json (written by Step.save), not found")
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        data = _from_doc(doc["step"], arrays)
        obs = data.pop("observation")
        if obs is not None:
            cams = {name: CameraFrame(**frame) for name, frame in obs.pop("cameras").items()}
            if obs.get("state_names") is not None:
                obs["state_names"] = tuple(obs["state_names"])
            obs = Observation(cameras=cams, **obs)
        if data.get("action_names") is not None:
            data["action_names"] = tuple(data["action_names"])
        return cls(observation=obs, **data)


def _check_shape(name: str, value: Any, shape: tuple[int, ...]) -> None:
    if value is not None and np.shape(value) != shape:
        raise ValueError(f"Step.{name}: expected shape {list(shape)}, got {list(np.shape(value))}")


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# JSON cannot hold arrays losslessly, so arrays go to the npz under a path-like key and the JSON
# keeps {"__array__": key}. Dataclasses become dicts; tuples are stored as lists (restored above).
def _to_doc(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            # np.load(allow_pickle=False) could not read it back: refuse now, not at load time.
            raise TypeError(f"Step.save: array at {key!r} has dtype object; store numeric/bool/str arrays only")
        # Distinct paths can flatten to the same key (a dict key "a.b" vs nested "a" -> "b"):
        # suffix instead of silently overwriting the first array.
        unique, n = key, 1
        while unique in arrays:
            unique, n = f"{key}#{n}", n + 1
        arrays[unique] = value
        return {"__array__": unique}
    if dataclasses.is_dataclass(value):
        return {k: _to_doc(v, f"{key}.{k}", arrays) for k, v in _fields(value).items()}
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise TypeError(f"Step.save: dict keys must be str, got {type(k).__name__} at {key!r}")
        return {k: _to_doc(v, f"{key}.{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_doc(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"Step.save: cannot store {type(value).__name__} at {key!r}; use arrays, numbers, str, lists, dicts")


def _from_doc(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _from_doc(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_doc(v, arrays) for v in value]
    return value


@runtime_checkable
class Policy(Protocol):
    """Anything that turns an Observation into a Step (Nano, a real checkpoint, a remote server, an expert)."""

    name: str

    def reset(self) -> None:
        """Forget per-episode state (e.g. MolmoThink's depth cache)."""

    def predict(self, obs: Observation) -> Step:
        """Return a Step whose `actions` is the chunk to execute (robot units)."""
