"""Ask a pointing question about shifted copies of the image and average the answer's point.

    from molmoact2.point_ensemble import ShiftEnsemble, ask_shifted
    step = ask_shifted(policy, image, "Point to the red cube", ShiftEnsemble())
    step.answer_text                      # the unshifted answer, its one point replaced by the average
    step.info["shift_ensemble"]           # each copy's point (pixels of the original image), how many were used

Why: Nano-ER sees a 96 x 96 picture in 16-pixel image tokens, and an object ~7 pixels across; where in its token an
object falls changes the written point by a few pixels either way (its misses lie a median 10 pixels of 224 from
the object's centre, its hits 4). Shifting the picture by a few pixels moves the object within the token grid;
each copy's point, shifted back, errs differently, and their mean errs less. Measured on held-out scenes in
README "Nano-ER" (pointing inside the mask, one pass against five copies).

Only the position is averaged: the unshifted answer decides what the answer is (one point, none, a count, several
points). An answer with other than exactly one point is returned unchanged and `info` says why. Works with any
policy that has `ask(images, question, max_new_tokens=)` returning a Step (Nano, a local checkpoint): the copies
are plain images, nothing model-specific.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# One Molmo2-ER point on image 1: `coords="1 1 X Y"` (image index, point id, x, y on 0..1000).
_ONE_POINT = re.compile(r'coords="\s*1\s+1\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)\s*"')


@dataclass(frozen=True)
class ShiftEnsemble:
    """Copies of the image shifted by (dx, dy) x `step_frac` of its width / height; (0, 0) must come first: it
    is the answer whose form is kept. The default, 1/32 of the side (3 pixels of Nano's 96), in the four
    directions, was the first setting measured (README "Nano-ER"); a 3 x 3 grid measured the same."""

    offsets: tuple[tuple[int, int], ...] = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
    step_frac: float = 1 / 32

    def __post_init__(self) -> None:
        if not self.offsets or tuple(self.offsets[0]) != (0, 0):
            raise ValueError(f"ShiftEnsemble.offsets: expected (0, 0) first (the answer whose form is kept), "
                             f"got {self.offsets!r}")
        if not 0 < self.step_frac < 0.25:
            raise ValueError(f"ShiftEnsemble.step_frac: expected a fraction of the side in (0, 0.25), got "
                             f"{self.step_frac!r}")

    def shifts_px(self, width: int, height: int) -> list[tuple[int, int]]:
        """The offsets in whole pixels of a `width` x `height` image (at least one pixel where non-zero)."""
        def px(k: int, side: int) -> int:
            return 0 if k == 0 else int(np.sign(k)) * max(1, round(abs(k) * self.step_frac * side))
        return [(px(dx, width), px(dy, height)) for dx, dy in self.offsets]


def shift_image(image: np.ndarray, dx_px: int, dy_px: int) -> np.ndarray:
    """The picture moved right by dx and down by dy pixels; the strip it leaves is filled by repeating the edge
    (a black strip would be a new object)."""
    h, w = image.shape[:2]
    rows = np.clip(np.arange(h) - dy_px, 0, h - 1)
    cols = np.clip(np.arange(w) - dx_px, 0, w - 1)
    return image[rows][:, cols]


def _one_point_1000(text: str) -> tuple[float, float] | None:
    """The answer's point on 0..1000 when it is exactly one well-formed Molmo2-ER point on image 1, else None."""
    from molmoact2 import spatial

    parsed = spatial.parse_answer(text or "", num_images=1)
    if parsed.problems or len(parsed.points) != 1 or parsed.boxes or parsed.tracks:
        return None
    (p,) = parsed.points
    if p.scale != spatial.SCALE_MOLMO2 or p.image != 1 or len(_ONE_POINT.findall(text)) != 1:
        return None
    return float(p.x), float(p.y)


def ask_shifted(policy: Any, image: Any, question: str, ensemble: ShiftEnsemble = ShiftEnsemble(), *,
                max_new_tokens: int = 64) -> Any:
    """`policy.ask` on every shifted copy of ONE image; the Step of the unshifted copy with its one point
    replaced by the mean of the copies' points (each shifted back). See the module docstring."""
    from dataclasses import replace

    from molmoact2.models.nano.processing_nano import to_uint8_rgb

    if isinstance(image, (list, tuple)):
        if len(image) != 1:
            raise ValueError(f"ask_shifted: expected one image, got {len(image)} (the shifts move one picture)")
        image = image[0]
    rgb = to_uint8_rgb(image)
    h, w = rgb.shape[:2]
    shifts = ensemble.shifts_px(w, h)
    t0 = time.perf_counter()
    first = policy.ask([rgb], question, max_new_tokens=max_new_tokens)
    text = first.answer_text if first.answer_text is not None else (first.generated_text or "")
    base = _one_point_1000(text)
    info: dict[str, Any] = {"shifts_px": shifts, "step_frac": ensemble.step_frac, "single_pass_answer": text}
    if base is None:
        info.update(applied=False, why="the answer is not exactly one point on 0..1000 (Molmo2-ER's format), so "
                                   "there is no position to average")
        return replace(first, info={**first.info, "shift_ensemble": info})
    points_1000: list[tuple[float, float] | None] = [base]
    for dx, dy in shifts[1:]:
        step = policy.ask([shift_image(rgb, dx, dy)], question, max_new_tokens=max_new_tokens)
        got = _one_point_1000(step.answer_text if step.answer_text is not None else (step.generated_text or ""))
        # shift back: a picture moved right by dx pixels moved every answer right by dx / w of the width
        points_1000.append(None if got is None else (got[0] - 1000 * dx / w, got[1] - 1000 * dy / h))
    used = np.array([p for p in points_1000 if p is not None], np.float64)
    x, y = np.clip(used.mean(axis=0), 0, 1000)
    match = _ONE_POINT.search(text)
    new_text = f'{text[:match.start()]}coords="1 1 {int(round(x)):03d} {int(round(y)):03d}"{text[match.end():]}'
    from molmoact2.models.hf import parse_spatial

    points, parsed_info = parse_spatial(new_text, [(w, h)])
    copies_px = [None if p is None else [p[0] * w / 1000, p[1] * h / 1000] for p in points_1000]
    info.update(applied=True, used=int(len(used)), copies=len(shifts), points_px=copies_px,
                point_1000=[round(float(x), 1), round(float(y), 1)])
    timings = {"total_ms": (time.perf_counter() - t0) * 1e3, "single_pass_ms": first.timings_ms.get("total_ms")}
    return replace(first, answer_text=new_text, points_px=points,
                   timings_ms={k: v for k, v in timings.items() if v is not None},
                   info={**first.info, "spatial": parsed_info, "shift_ensemble": info})


def ensemble_note(info: dict[str, Any]) -> str:
    """One line for a person: what the copies did to this answer."""
    if not info.get("applied"):
        return f"Shifted copies: not used ({info.get('why', 'no single point')})."
    return (f"Point averaged over {info['used']} of {info['copies']} shifted copies (small rings: each copy's point, "
            f"shifted back); one pass answered `{info['single_pass_answer']}`.")


def draw_copies(image: Any, points_px: list[Any], *, radius_px: float | None = None) -> np.ndarray:
    """Each copy's point as a small white ring with a dark edge (None entries skipped). New uint8 array."""
    from PIL import Image, ImageDraw

    from molmoact2.models.nano.processing_nano import to_uint8_rgb

    rgb = to_uint8_rgb(image)
    r = radius_px if radius_px is not None else max(2.0, min(rgb.shape[:2]) / 70)
    pil = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(pil)
    for p in points_px:
        if p is None:
            continue
        x, y = float(p[0]), float(p[1])
        draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], outline=(20, 20, 20))
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255))
    return np.asarray(pil)
