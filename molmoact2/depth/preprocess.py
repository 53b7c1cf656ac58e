"""The real VQ-VAE input pipeline (compat.md §1.6, path C1 = MolmoAct2's annotator and the VAE's training data).

    relative inverse depth (disparity, larger = nearer)
      -> per-frame min-max to [0, 255], cast to uint8 (truncation, not rounding)
      -> nearest-neighbour resize to 320x320
      -> /255, (x - 0.5) / 0.5  => float32 in [-1, 1]

The real model gets disparity from Depth Anything V2. Our simulator gives metric z-depth, so
`metric_to_inverse_depth` comes first; after min-max scaling the unknown scale of disparity no
longer matters, which is why metric 1/z is a faithful stand-in.

numpy only (no torch) so views and tests can call it cheaply.
"""

from __future__ import annotations

import numpy as np

VQ_IMAGE_SIZE = 320


def metric_to_inverse_depth(depth_m: np.ndarray) -> np.ndarray:
    """Metric z-depth [H, W] -> float32 disparity 1/z. NaN, inf and <= 0 (no return) become 0 = farthest."""
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f"metric_to_inverse_depth: expected depth_m [H, W] in metres, got shape {list(depth_m.shape)}")
    d = depth_m.astype(np.float32, copy=False)
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape, np.float32)
    np.divide(1.0, d, out=out, where=valid)
    return out


def disparity_to_uint8(disparity: np.ndarray) -> np.ndarray:
    """Per-frame min-max to 0..255 then `astype(uint8)` (truncates, like the annotator). A flat map gives zeros."""
    disp = np.asarray(disparity, dtype=np.float32)
    if disp.ndim != 2:
        raise ValueError(f"disparity_to_uint8: expected disparity [H, W], got shape {list(disp.shape)}")
    if not np.isfinite(disp).all():
        raise ValueError("disparity_to_uint8: expected finite disparity; convert metric depth with metric_to_inverse_depth first")
    lo, hi = disp.min(), disp.max()
    scaled = (disp - lo) / (hi - lo + np.float32(1e-8)) * np.float32(255.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def nearest_resize(image: np.ndarray, size: int = VQ_IMAGE_SIZE, mode: str = "cv2") -> np.ndarray:
    """Nearest-neighbour resize of a 2-D map to size x size.

    mode="cv2": source index floor(dst * src/dst), as cv2.INTER_NEAREST (MolmoAct2's annotator, path C1).
    mode="pil": source index floor((dst + 0.5) * src/dst), as PIL NEAREST (the VAE's training transform).
    The two can pick different pixels; keep the annotator's by default.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"nearest_resize: expected a 2-D map, got shape {list(image.shape)}")
    h, w = image.shape
    if mode == "cv2":
        ys = np.floor(np.arange(size) * (h / size)).astype(np.int64)
        xs = np.floor(np.arange(size) * (w / size)).astype(np.int64)
    elif mode == "pil":
        ys = np.floor((np.arange(size) + 0.5) * (h / size)).astype(np.int64)
        xs = np.floor((np.arange(size) + 0.5) * (w / size)).astype(np.int64)
    else:
        raise ValueError(f"nearest_resize: expected mode 'cv2' or 'pil', got {mode!r}")
    return image[np.minimum(ys, h - 1)[:, None], np.minimum(xs, w - 1)[None, :]]


def uint8_to_vq_input(u8: np.ndarray) -> np.ndarray:
    """uint8 [S, S] -> float32 [S, S] in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    u8 = np.asarray(u8)
    if u8.dtype != np.uint8:
        raise ValueError(f"uint8_to_vq_input: expected uint8, got {u8.dtype}")
    return (u8.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)


def disparity_to_vq_input(disparity: np.ndarray, size: int = VQ_IMAGE_SIZE, mode: str = "cv2") -> np.ndarray:
    """Relative disparity [H, W] (e.g. Depth Anything V2 output) -> float32 [size, size] in [-1, 1]."""
    return uint8_to_vq_input(nearest_resize(disparity_to_uint8(disparity), size, mode))


def metric_depth_to_vq_input(depth_m: np.ndarray, size: int = VQ_IMAGE_SIZE, mode: str = "cv2") -> np.ndarray:
    """Simulator metric depth [H, W] -> float32 [size, size] in [-1, 1] (+1 = nearest)."""
    return disparity_to_vq_input(metric_to_inverse_depth(depth_m), size, mode)


def decoded_to_unit(decoded: np.ndarray) -> np.ndarray:
    """Raw decoder output -> [0, 1] by per-frame min-max, as the official visualisers do (flat -> zeros)."""
    d = np.asarray(decoded, dtype=np.float32)
    lo, hi = float(d.min()), float(d.max())
    if hi - lo <= 1e-6:
        return np.zeros_like(d)
    return (d - lo) / (hi - lo)


def vq_output_to_unit_fixed(decoded: np.ndarray) -> np.ndarray:
    """Raw decoder output -> [0, 1] with the FIXED training range [-1, 1] (stable colours across frames)."""
    return np.clip((np.asarray(decoded, dtype=np.float32) + 1.0) / 2.0, 0.0, 1.0)
