"""Depth map <-> 100 depth codes, with the real preprocessing in front of the VQ-VAE.

    codec = DepthCodec.load()              # our shipped weights (assets/depth_vqvae/)
    codec = DepthCodec.load("vae-final.pt")  # MolmoAct's released VAE, if you have it
    codes = codec.encode(depth_m=frame.depth_m)   # int64 [100], row-major 10x10
    depth = codec.decode(codes)                   # float32 [320, 320], relative disparity ~[-1, 1]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from molmoact2.depth import preprocess

if TYPE_CHECKING:
    from molmoact2.depth.vqvae import DepthVQVAE

DEFAULT_ASSET_DIR = Path(__file__).resolve().parents[2] / "assets" / "depth_vqvae"


class DepthCodec:
    def __init__(self, model: "DepthVQVAE", resize_mode: str = "cv2") -> None:
        self.model = model.eval()
        self.resize_mode = resize_mode

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, resize_mode: str = "cv2") -> "DepthCodec":
        from molmoact2.depth.vqvae import load_any

        path = Path(path) if path is not None else DEFAULT_ASSET_DIR
        if not path.exists():
            raise FileNotFoundError(
                f"DepthCodec.load: expected a weights directory or vae-final.pt at {path}; "
                "build ours with `molmoact2 depth train --out assets/depth_vqvae`"
            )
        return cls(load_any(path), resize_mode)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def to_input(self, depth_m: np.ndarray | None = None, disparity: np.ndarray | None = None) -> np.ndarray:
        """Exactly one of metric depth (simulator) or relative disparity (Depth Anything V2) -> [S, S] in [-1, 1]."""
        if (depth_m is None) == (disparity is None):
            raise ValueError("DepthCodec: expected exactly one of depth_m= (metric) or disparity= (relative inverse depth)")
        if depth_m is not None:
            return preprocess.metric_depth_to_vq_input(depth_m, self.image_size, self.resize_mode)
        return preprocess.disparity_to_vq_input(disparity, self.image_size, self.resize_mode)

    def encode(self, depth_m: np.ndarray | None = None, *, disparity: np.ndarray | None = None) -> np.ndarray:
        """One depth map -> int64 [100] codes (cell = row*10 + col)."""
        return self.encode_inputs(self.to_input(depth_m, disparity)[None])[0]

    def encode_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [B, S, S] in [-1, 1] -> int64 [B, 100]."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).unsqueeze(1)
        return self.model.encode_indices(x).cpu().numpy().astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """int [100] -> float32 [S, S] raw decoder output (relative disparity, +1 = nearest)."""
        return self.decode_batch(np.asarray(codes)[None])[0]

    def decode_batch(self, codes: np.ndarray) -> np.ndarray:
        import torch

        codes = np.asarray(codes)
        if codes.dtype.kind not in "iu":
            raise ValueError(f"DepthCodec.decode: expected integer codes, got dtype {codes.dtype}")
        out = self.model.decode_indices(torch.from_numpy(codes.astype(np.int64)))
        return out[:, 0].float().cpu().numpy()


_DEFAULT: DepthCodec | None = None


def default_codec() -> DepthCodec:
    """The shipped codec, loaded once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = DepthCodec.load()
    return _DEFAULT


def encode(depth_m: np.ndarray | None = None, *, disparity: np.ndarray | None = None) -> np.ndarray:
    """Depth map -> codes[100] with the shipped weights."""
    return default_codec().encode(depth_m, disparity=disparity)


def decode(codes: np.ndarray) -> np.ndarray:
    """codes[100] -> float32 [320, 320] relative disparity with the shipped weights."""
    return default_codec().decode(codes)
