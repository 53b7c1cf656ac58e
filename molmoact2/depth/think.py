"""MolmoThink change detection: which of the 100 depth cells must be re-predicted this step.

What the real model does (HF remote code `_compute_depth_update_mask`, molmoact2.md §5):
  * only the main image; the cached previous main image and the current one are made uint8 HWC
    (float images in [0, 1] are scaled by 255; values clipped and TRUNCATED to uint8),
  * each is resized with PIL BILINEAR to 320x320 (skipped when already 320x320),
  * cast to float32, cut into a 10x10 grid of 32x32x3 patches, each flattened to 3072 raw values
    (no mean removal: a uniform brightness offset lowers the similarity of every cell),
  * cosine similarity per cell = dot / (|a| |b| + 1e-12), taken as 1.0 when |a| |b| < 1e-8,
  * a cell is "changed" when similarity < 0.996.
Changed cells are decoded token by token; unchanged runs are replayed from the cache in one
forward pass, so `update_spans` returns contiguous row-major runs `(start, end, changed)`.

numpy + PIL only. Cost per step is dominated by the PIL resize of a non-320x320 frame
(`bench/think_mask.py`: ~0.6 ms for a 320x320 frame, ~3 ms for 224x224 on our shared cores).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

THINK_THRESHOLD = 0.996
PATCH_SIZE = 32
GRID_SIDE = 10
NUM_CELLS = GRID_SIDE * GRID_SIDE


def normalize_image(image: np.ndarray) -> np.ndarray:
    """Any RGB-ish image -> uint8 [H, W, 3] the way the real cache stores it."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"think: expected an image [H, W, 3] (or CHW / grayscale), got shape {list(np.shape(image))}")
    if arr.dtype.kind == "f":
        if arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr[..., :3] if arr.shape[-1] == 4 else arr


def resize_for_think(image: np.ndarray, size: int = GRID_SIDE * PATCH_SIZE) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3] with PIL BILINEAR (no-op when already size x size)."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).resize((size, size), Image.BILINEAR))


def _patches_u8(image: np.ndarray, grid: int, patch: int) -> np.ndarray:
    """uint8 [grid*grid, patch*patch*3]: each cell's pixels flattened row by row, RGB interleaved."""
    u8 = resize_for_think(normalize_image(image), grid * patch)
    return np.ascontiguousarray(u8.reshape(grid, patch, grid, patch, 3).transpose(0, 2, 1, 3, 4).reshape(grid * grid, -1))


# Why scratch buffers: on our VMs every fresh 1.2 MB float32 array costs ~1 ms of page faults, several
# times the arithmetic. Reusing per-thread buffers keeps the exact float32 operations of the reference
# (cast, elementwise product, np.add.reduce along the patch) at a fraction of the cost.
_SCRATCH = threading.local()


def _buffers(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bufs = getattr(_SCRATCH, "bufs", None)
    if bufs is None or bufs[0].shape != shape:
        bufs = tuple(np.empty(shape, np.float32) for _ in range(3))
        _SCRATCH.bufs = bufs
    return bufs


def patch_features(image: np.ndarray, grid: int = GRID_SIDE, patch: int = PATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [grid*grid, patch*patch*3] patches, float32 [grid*grid] their L2 norms as float32).

    Computing them once per frame and keeping the previous frame's halves the per-step cost
    without changing a single value (the reference recomputes both images every step).
    """
    p = _patches_u8(image, grid, patch)
    x, _, sq = _buffers(p.shape)
    np.copyto(x, p, casting="unsafe")
    np.multiply(x, x, out=sq)
    # == np.linalg.norm(x, axis=-1) for float32 (numpy computes sqrt(add.reduce(x * x))).
    return p, np.sqrt(np.add.reduce(sq, axis=-1))


def similarity_from_features(current: tuple[np.ndarray, np.ndarray], previous: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    (a, na), (b, nb) = current, previous
    if a.shape != b.shape:
        raise ValueError(f"think: expected patch features of equal shape, got {list(a.shape)} vs {list(b.shape)}")
    fa, fb, prod = _buffers(a.shape)
    np.copyto(fa, a, casting="unsafe")
    np.copyto(fb, b, casting="unsafe")
    np.multiply(fa, fb, out=prod)
    # Same float32 reductions as the reference (np.sum == np.add.reduce), so borderline cells agree.
    dot = np.add.reduce(prod, axis=-1)
    denom = na * nb
    return np.where(denom < 1e-8, 1.0, dot / (denom + 1e-12)).astype(np.float32)


def cell_similarity(current: np.ndarray, previous: np.ndarray, grid: int = GRID_SIDE, patch: int = PATCH_SIZE) -> np.ndarray:
    """float32 [grid*grid] cosine similarity of raw RGB per cell, row-major."""
    return similarity_from_features(patch_features(current, grid, patch), patch_features(previous, grid, patch))


def update_mask(current: np.ndarray, previous: np.ndarray | None, threshold: float = THINK_THRESHOLD,
                grid: int = GRID_SIDE, patch: int = PATCH_SIZE) -> np.ndarray:
    """bool [grid*grid]: True = re-predict this cell. No previous image (first frame) -> all True."""
    if previous is None:
        return np.ones(grid * grid, dtype=bool)
    # A Python float threshold is compared in float32 (NumPy 2 weak scalars), as in the reference.
    return cell_similarity(current, previous, grid, patch) < float(threshold)


@dataclass(frozen=True)
class Span:
    """A contiguous row-major run of cells [start, end) that is either re-predicted or replayed."""

    start: int
    end: int
    changed: bool

    @property
    def length(self) -> int:
        return self.end - self.start


def update_spans(mask: np.ndarray) -> list[Span]:
    """Split a flat mask into maximal runs of equal value, in order."""
    m = np.asarray(mask, dtype=bool).reshape(-1)
    if m.size == 0:
        return []
    cuts = np.flatnonzero(m[1:] != m[:-1]) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [m.size]])
    return [Span(int(s), int(e), bool(m[s])) for s, e in zip(starts, ends)]


@dataclass(frozen=True)
class DecodeCost:
    """What a mask saves in the depth decode of one step."""

    cells_repredicted: int  # tokens decoded one by one (one forward pass each)
    tokens_saved: int  # tokens replayed from the cache instead of decoded
    forward_passes: int  # repredicted + one batched pass per replayed span (full decode = 100)


def decode_cost(mask: np.ndarray) -> DecodeCost:
    m = np.asarray(mask, dtype=bool).reshape(-1)
    n_changed = int(m.sum())
    n_replay_spans = sum(1 for s in update_spans(m) if not s.changed)
    return DecodeCost(n_changed, int(m.size - n_changed), n_changed + n_replay_spans)


def carry_forward(previous_codes: np.ndarray | None, new_codes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The training target / cache buffer: changed cells take the new code, the others keep the previous one."""
    new = np.asarray(new_codes, dtype=np.int64).reshape(-1)
    m = np.asarray(mask, dtype=bool).reshape(-1)
    if m.shape != new.shape:
        raise ValueError(f"carry_forward: expected mask of shape {list(new.shape)}, got {list(m.shape)}")
    if previous_codes is None:
        return new.copy()
    prev = np.asarray(previous_codes, dtype=np.int64).reshape(-1)
    if prev.shape != new.shape:
        raise ValueError(f"carry_forward: expected previous codes of shape {list(new.shape)}, got {list(prev.shape)}")
    return np.where(m, new, prev)


@dataclass
class ThinkCache:
    """What the real model returns as `depth_cache` and feeds back next step: {image, depth_bins}.

    Also keeps the previous image's patch features so each step resizes only the new image.
    """

    image: np.ndarray | None = None
    depth_bins: np.ndarray | None = None
    features: tuple[np.ndarray, np.ndarray] | None = None

    def mask_for(self, image: np.ndarray, threshold: float = THINK_THRESHOLD) -> np.ndarray:
        """Mask for the next step; all True on the first frame or a cache of the wrong size (full decode)."""
        return self.step(image, threshold)[0]

    def step(self, image: np.ndarray, threshold: float = THINK_THRESHOLD) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """(mask, features of `image`); pass the features to `update` to skip recomputing them."""
        feats = patch_features(image)
        if self.image is None or self.depth_bins is None or np.size(self.depth_bins) != NUM_CELLS:
            return np.ones(NUM_CELLS, dtype=bool), feats
        prev = self.features if self.features is not None else patch_features(self.image)
        return similarity_from_features(feats, prev) < float(threshold), feats

    def update(self, image: np.ndarray, depth_bins: np.ndarray, features: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.image = normalize_image(image).copy()
        self.depth_bins = np.asarray(depth_bins, dtype=np.int64).reshape(-1).copy()
        self.features = features if features is not None else patch_features(self.image)


@dataclass(frozen=True)
class ThinkTrace:
    """Masks and carried-forward buffers for a whole sequence at one threshold."""

    masks: np.ndarray  # bool [T, 100]
    buffers: np.ndarray  # int64 [T, 100] codes the model would hold (None-free only when codes were given)
    similarities: np.ndarray  # float32 [T, 100]; row 0 is all NaN (no previous frame)

    @property
    def cells_repredicted(self) -> np.ndarray:
        return self.masks.sum(axis=1)


def trace_masks(images: list[np.ndarray], codes: np.ndarray | None = None, threshold: float = THINK_THRESHOLD) -> ThinkTrace:
    """Replay MolmoThink over a sequence: frame 0 fully updated, later frames compared to the previous frame.

    `codes` [T, 100] (per-frame full codes, e.g. from the VQ-VAE) gives the carried-forward buffers
    as the annotator builds them; without codes `buffers` is all -1.
    """
    t = len(images)
    sims = np.full((t, NUM_CELLS), np.nan, dtype=np.float32)
    prev = None
    for i, image in enumerate(images):
        feats = patch_features(image)
        if prev is not None:
            sims[i] = similarity_from_features(feats, prev)
        prev = feats
    return masks_from_similarities(sims, threshold, codes)


def masks_from_similarities(similarities: np.ndarray, threshold: float, codes: np.ndarray | None = None) -> ThinkTrace:
    """Re-threshold precomputed similarities (the what-if slider: no image work per threshold)."""
    sims = np.asarray(similarities, dtype=np.float32)
    masks = np.ones(sims.shape, dtype=bool)
    masks[1:] = sims[1:] < float(threshold)
    buffers = np.full(sims.shape, -1, dtype=np.int64)
    if codes is not None:
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != sims.shape:
            raise ValueError(f"trace: expected codes of shape {list(sims.shape)}, got {list(codes.shape)}")
        prev = None
        for i in range(len(codes)):
            prev = carry_forward(prev, codes[i], masks[i])
            buffers[i] = prev
    return ThinkTrace(masks, buffers, sims)


def brightness_offset_similarity(patch: np.ndarray, offset: float) -> float:
    """Cosine similarity between a patch and the same patch + a uniform offset (clipped to 0..255)."""
    a = np.asarray(patch, dtype=np.float32).reshape(-1)
    b = np.clip(a + offset, 0, 255)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if denom < 1e-8 else float(a @ b / (denom + 1e-12))
