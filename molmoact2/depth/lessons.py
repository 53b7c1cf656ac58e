"""Numbers for the depth-token lesson (tutorials/03, notebooks/03): what 0.996 means in pixels and
what lighting changes do to MolmoThink's mask. `molmoact2 depth lessons` prints them."""

from __future__ import annotations

import math

import numpy as np

from molmoact2.depth import think


def threshold_angle_deg(threshold: float = think.THINK_THRESHOLD) -> float:
    """A cell flips when its 3072-value RGB vector turns by more than this angle."""
    return math.degrees(math.acos(threshold))


def smallest_flipping_square(image: np.ndarray, cell: int, colour: tuple[int, int, int],
                             threshold: float = think.THINK_THRESHOLD) -> int | None:
    """Side (in pixels of the 320x320 grid image) of the smallest square of `colour`, pasted at the
    centre of `cell`, that flips that cell; None if even the full 32x32 patch does not."""
    base = think.resize_for_think(think.normalize_image(image))
    r, c = divmod(int(cell), think.GRID_SIDE)
    for k in range(1, think.PATCH_SIZE + 1):
        img = base.copy()
        y0 = r * think.PATCH_SIZE + (think.PATCH_SIZE - k) // 2
        x0 = c * think.PATCH_SIZE + (think.PATCH_SIZE - k) // 2
        img[y0:y0 + k, x0:x0 + k] = colour
        if think.cell_similarity(img, base)[cell] < threshold:
            return k
    return None


def lighting_effects(image: np.ndarray, threshold: float = think.THINK_THRESHOLD) -> dict[str, float]:
    """Fraction of the 100 cells flipped by global lighting changes applied to `image`."""
    img = think.normalize_image(image).astype(np.float32)
    changes = {
        "brightness +10": img + 10,
        "brightness +20": img + 20,
        "brightness +40": img + 40,
        "brightness -40": img - 40,
        "gain x0.7 (dimmer light)": img * 0.7,
        "gain x1.3 (brighter light)": img * 1.3,
        "warm cast (R x1.1, B x0.85)": img * np.array([1.1, 1.0, 0.85], np.float32),
    }
    out = {}
    for name, changed in changes.items():
        new = np.clip(np.round(changed), 0, 255).astype(np.uint8)
        out[name] = float(think.update_mask(new, image, threshold).mean())
    return out


def print_lessons(image: np.ndarray, table_cell: int, label: str) -> None:
    print(f"threshold 0.996 = the RGB vector of a 32x32x3 patch turning by {threshold_angle_deg():.2f} degrees")
    print(f"\nsmallest square pasted in cell {table_cell} of {label} that flips it (pixels of the 320x320 image):")
    for name, colour in [("red", (220, 30, 30)), ("black", (0, 0, 0)), ("white", (255, 255, 255)), ("table grey", None)]:
        if colour is None:
            base = think.resize_for_think(think.normalize_image(image))
            r, c = divmod(table_cell, 10)
            colour = tuple(int(v) for v in base[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32].reshape(-1, 3).mean(0))
        k = smallest_flipping_square(image, table_cell, colour)
        area = "never" if k is None else f"{k}x{k} px = {k * k / 1024:.1%} of the patch"
        print(f"  {name:10s} {colour}: {area}")
    print(f"\nglobal lighting changes on {label}: fraction of cells re-predicted")
    for name, frac in lighting_effects(image).items():
        print(f"  {name:30s} {frac:.2f}")


def rendered_light_change(seed: int = 0, n_frames: int = 12, switch_at: int = 8) -> np.ndarray:
    """Cells re-predicted per step in the boxes scene when MuJoCo's light really dims to 60% at `switch_at`
    (the cube keeps sliding, so ~4 cells change every step anyway)."""
    from molmoact2.depth.live import boxes_steps

    steps = boxes_steps(seed, n_frames, brightness_step=switch_at)
    return think.trace_masks([s.observation.cameras["front"].rgb for s in steps]).cells_repredicted
