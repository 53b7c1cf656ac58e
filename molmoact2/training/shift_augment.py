"""Shifted pictures for question examples (`train nano --shift-augment F`), the answer's points moved with them.

Why: asking Nano-ER about five copies of a picture moved by 1/32 of its side and averaging the points lifts
pointing by 7-12 points (molmoact2.point_ensemble), while every copy alone is no better than one pass. The
model's errors depend on where the object falls on its coarse token grid (a token covers 1/6 of the side);
training on pictures moved by up to a fraction of a token cell shows it every phase of that grid with the right
answer, which may teach one pass what averaging copies gives.

Only question examples with Molmo2-ER point answers (or no points: "There are none.") are moved: a box answer,
a robot example's depth codes or its actions would need their own geometry, so they are left as they are.
The picture is moved as `point_ensemble.shift_image` moves it (the strip it leaves repeats the edge); the
segmentation mask (grounding target) moves by the same pixels with an empty strip; each point moves by the same
pixels on the 0-1000 scale. A draw that would push a point off the picture is drawn again, then left unshifted.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from molmoact2.point_ensemble import shift_image

# coords="..." of a <points> tag: image groups split by ";", each "image id x y id x y ..."
_POINTS_COORDS = re.compile(r'(<points\b[^>]*?\bcoords=")([^"]*)(")')
_MAX_DRAWS = 4


def shift_points_text(answer: str, dx_px: int, dy_px: int, *, width: int, height: int) -> str | None:
    """`answer` with every <points> coordinate moved right by dx and down by dy pixels of a width x height picture
    (0-1000 scale, rounded), or None if a moved point would leave 0..1000 or the answer has boxes (not moved)."""
    if "<box" in answer:  # <box ...> and <boxes ...>
        return None
    out_of_frame = False

    def move(match: re.Match[str]) -> str:
        nonlocal out_of_frame
        groups = []
        for group in match.group(2).split(";"):
            values = group.split()
            if len(values) < 4 or (len(values) - 1) % 3:
                raise ValueError(f"shift_points_text: expected 'image id x y [id x y ...]' in coords, got {group!r}")
            moved = [values[0]]
            for i in range(1, len(values), 3):
                x = int(round(float(values[i + 1]) + dx_px * 1000.0 / width))
                y = int(round(float(values[i + 2]) + dy_px * 1000.0 / height))
                out_of_frame |= not (0 <= x <= 1000 and 0 <= y <= 1000)
                moved += [values[i], f"{x:03d}", f"{y:03d}"]
            groups.append(" ".join(moved))
        return match.group(1) + ";".join(groups) + match.group(3)

    text = _POINTS_COORDS.sub(move, answer)
    return None if out_of_frame else text


def shift_mask(mask: np.ndarray, dx_px: int, dy_px: int) -> np.ndarray:
    """A boolean mask moved right by dx and down by dy pixels; the strip it leaves is empty (no object there)."""
    h, w = mask.shape[:2]
    out = np.zeros_like(mask)
    ys, yd = slice(max(0, -dy_px), min(h, h - dy_px)), slice(max(0, dy_px), min(h, h + dy_px))
    xs, xd = slice(max(0, -dx_px), min(w, w - dx_px)), slice(max(0, dx_px), min(w, w + dx_px))
    out[yd, xd] = mask[ys, xs]
    return out


def shifted_question(kw: dict[str, Any], frac: float,
                     rng: np.random.Generator) -> tuple[dict[str, Any], tuple[int, int]]:
    """A question example (`NanoTrainData.qa_inputs`) with its picture, answer points and grounding mask moved by
    the same random whole pixels, each of dx and dy uniform in [-frac * side, +frac * side], and that (dx, dy)."""
    image = np.asarray(kw["images"][0])
    h, w = image.shape[:2]
    reach_x, reach_y = int(round(frac * w)), int(round(frac * h))
    for _ in range(_MAX_DRAWS):
        dx, dy = int(rng.integers(-reach_x, reach_x + 1)), int(rng.integers(-reach_y, reach_y + 1))
        answer = shift_points_text(kw["answer"], dx, dy, width=w, height=h)
        if answer is not None:
            break
    else:
        return kw, (0, 0)
    out = kw | {"images": [shift_image(image, dx, dy), *kw["images"][1:]], "answer": answer}
    if "ground_mask" in kw:
        mask = np.asarray(kw["ground_mask"])
        if mask.shape[:2] != (h, w):  # the mask is at the segmentation's size: move it by the same share of the side
            mdx, mdy = int(round(dx * mask.shape[1] / w)), int(round(dy * mask.shape[0] / h))
        else:
            mdx, mdy = dx, dy
        out["ground_mask"] = shift_mask(mask, mdx, mdy)
    return out, (dx, dy)
