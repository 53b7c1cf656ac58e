"""A MolmoThink session: a sequence of main images (+ depth codes, + metric depth when known) and
everything the Think debugger shows about it, at any threshold.

Sources:
  * our recordings (`molmoact2.models.recording.Recording` or a directory of `Step.save` dirs);
  * a recording of the real model: Steps whose `depth_bins` came from the checkpoint and whose
    observation holds the main image (codes are then the model's, not re-encoded);
  * the simulator expert, run live (`from_sim`).

Per-cell cosine similarities are computed once; a new threshold only re-compares numbers, so the
what-if slider is instant. Codes: a recording's own `depth_bins` are shown as recorded; otherwise, when
metric depth is present and a codec is given, each step's FRESH codes come from the VQ-VAE, and the
carried-forward buffer shows what MolmoThink would hold;
`stale_cells` counts buffer cells that differ from the fresh codes (the price of skipping them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from molmoact2.depth import think
from molmoact2.models.base import CameraFrame, Step

if TYPE_CHECKING:
    from molmoact2.depth.codec import DepthCodec


@dataclass
class ThinkSession:
    images: list[np.ndarray]  # main-camera uint8 RGB per step
    frames: list[CameraFrame | None]  # main-camera frame per step (depth / K / pose when known)
    codes: np.ndarray | None  # int64 [T, 100]: fresh codes per step (VQ-VAE) or the recorded depth_bins
    codes_source: str  # "vq-vae (ours)", "recorded depth_bins", or "none"
    recorded_masks: np.ndarray | None = None  # bool [T, 100] when the recording holds depth_update_mask
    label: str = ""
    similarities: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError("ThinkSession: expected at least one main image, got none")
        if self.codes is not None and np.shape(self.codes) != (len(self.images), think.NUM_CELLS):
            raise ValueError(f"ThinkSession: expected codes [{len(self.images)}, 100], got {list(np.shape(self.codes))}")
        self.similarities = think.trace_masks(self.images).similarities

    def __len__(self) -> int:
        return len(self.images)

    def trace(self, threshold: float = think.THINK_THRESHOLD) -> think.ThinkTrace:
        return think.masks_from_similarities(self.similarities, threshold, self.codes)

    def summary(self, threshold: float = think.THINK_THRESHOLD) -> dict:
        tr = self.trace(threshold)
        cells = tr.cells_repredicted
        later = cells[1:] if len(cells) > 1 else cells
        out = {
            "steps": len(self),
            "threshold": float(threshold),
            "mean_cells_repredicted": float(later.mean()),
            "fraction_repredicted": float(later.mean() / think.NUM_CELLS),
            "mean_forward_passes": float(np.mean([think.decode_cost(m).forward_passes for m in tr.masks[1:]])) if len(self) > 1 else 100.0,
        }
        stale = self.stale_cells(threshold)
        if stale is not None:
            out["mean_stale_cells"] = float(stale[1:].mean()) if len(stale) > 1 else 0.0
        return out

    def stale_cells(self, threshold: float) -> np.ndarray | None:
        """Per step: buffer cells whose code differs from the fresh code (None without fresh codes)."""
        if self.codes is None or self.codes_source == "recorded depth_bins":
            return None
        tr = self.trace(threshold)
        return (tr.buffers != self.codes).sum(axis=1)


# ---- builders ------------------------------------------------------------------------------
def _main_frame(step: Step, camera: str | None) -> tuple[str, CameraFrame]:
    if step.observation is None:
        raise ValueError(f"ThinkSession: step {step.index} has no observation; MolmoThink needs the main image")
    cams = step.observation.cameras
    name = camera or step.observation.main_camera
    if name not in cams:
        raise KeyError(f"ThinkSession: expected camera {name!r} in step {step.index}, got {list(cams)}")
    return name, cams[name]


def from_steps(steps: list[Step], codec: "DepthCodec | None" = None, camera: str | None = None, label: str = "") -> ThinkSession:
    """Steps -> session. Codes: the recorded `depth_bins` when every step has them (a model's own
    prediction wins); otherwise fresh VQ-VAE codes from metric depth when every step has it and a
    codec is given; otherwise none."""
    if not steps:
        raise ValueError("ThinkSession: expected at least one Step, got none")
    frames = [_main_frame(s, camera)[1] for s in steps]
    images = [f.rgb for f in frames]
    codes, source = None, "none"
    if all(s.depth_bins is not None for s in steps):
        codes, source = np.stack([np.asarray(s.depth_bins, np.int64) for s in steps]), "recorded depth_bins"
    elif codec is not None and all(f.depth_m is not None for f in frames):
        from molmoact2.depth.preprocess import metric_depth_to_vq_input

        inputs = np.stack([metric_depth_to_vq_input(f.depth_m, codec.image_size, codec.resize_mode) for f in frames])
        codes, source = codec.encode_inputs(inputs), "vq-vae (ours)"
    masks = None
    if all(s.depth_update_mask is not None for s in steps):
        masks = np.stack([np.asarray(s.depth_update_mask, bool) for s in steps])
    return ThinkSession(images, frames, codes, source, masks, label)


def load_steps(path: str | os.PathLike) -> list[Step]:
    """A `Recording` directory, or a directory of `Step.save` sub-directories (sorted by name)."""
    from molmoact2.models.recording import INDEX_NAME, Recording

    path = Path(path)
    if (path / INDEX_NAME).is_file():
        return list(Recording.open(path))
    if (path / "step.json").is_file():
        return [Step.load(path)]
    subdirs = sorted(p for p in path.iterdir() if (p / "step.json").is_file()) if path.is_dir() else []
    if not subdirs:
        raise FileNotFoundError(f"ThinkSession: expected a recording (recording.json) or Step directories (step.json) under {path}")
    return [Step.load(p) for p in subdirs]


def from_recording(path: str | os.PathLike, codec: "DepthCodec | None" = None, camera: str | None = None) -> ThinkSession:
    return from_steps(load_steps(path), codec, camera, label=str(path))


def session_steps(session: ThinkSession, codec: "DepthCodec | None" = None, threshold: float = think.THINK_THRESHOLD,
                  camera: str = "front") -> list[Step]:
    """Steps carrying the MolmoThink view of the session (buffer codes, mask, decoded depth) for the Rerun logger."""
    from molmoact2.models.base import Observation

    tr = session.trace(threshold)
    steps = []
    for i, frame in enumerate(session.frames):
        bins = tr.buffers[i] if session.codes is not None else None
        decoded = codec.decode(bins) if (codec is not None and bins is not None) else None
        cost = think.decode_cost(tr.masks[i])
        obs = Observation(cameras={camera: frame or CameraFrame(rgb=session.images[i])}, state=np.zeros(1, np.float32), instruction="")
        steps.append(Step(index=i, timestamp_s=float(i), backend=f"think:{session.codes_source}", observation=obs,
                          depth_bins=bins, depth_update_mask=tr.masks[i], depth_decoded=decoded,
                          info={"tokens_saved": cost.tokens_saved, "threshold": float(threshold)}))
    return steps
