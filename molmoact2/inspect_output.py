"""Inspect any MolmoAct2 or Molmo2-ER output text: parse it, draw it, turn it into a Step.

The app's Output inspector and the notebooks call `inspect_output`; it never raises on bad model
output. A malformed answer comes back with `ok=False` and the problems listed, because a user
pasting text into a browser should read what is wrong, not a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from molmoact2 import spatial, tokens
from molmoact2.examples import detect_kind
from molmoact2.models.base import CameraFrame, Observation, Step

# Used when no image is given: points on a 0-1000 scale still need a size to be drawn.
BLANK_CANVAS_WH = (640, 480)
MAX_TEXT_CHARS = 200_000  # a full MolmoAct2 output is ~1k tokens; anything far larger is a paste error


@dataclass(frozen=True)
class InspectResult:
    kind: str  # "generated" (MolmoAct2 tokens) | "spatial" (Molmo2-ER answer) | "empty"
    ok: bool
    problems: tuple[str, ...]
    summary_md: str
    image: np.ndarray | None  # the input image (or a blank canvas) with the answer drawn on it
    depth_bins: np.ndarray | None = None
    action_ids: np.ndarray | None = None
    answer: spatial.SpatialAnswer | None = None
    generated: tokens.GeneratedOutput | None = None
    points_table: list[list] = field(default_factory=list)  # [image, id, x, y, scale, x_px, y_px, label]
    step: Step | None = None


def inspect_output(text: str | None, image: np.ndarray | None = None, *, kind: str = "auto") -> InspectResult:
    """Parse `text` (kind auto-detected unless given) and draw it on `image` (uint8 HxWx3) if any."""
    text = text or ""
    if not text.strip():
        return InspectResult("empty", False, ("no text: paste a MolmoAct2 or Molmo2-ER output",),
                             "Paste a model output, or pick an example.", None)
    if len(text) > MAX_TEXT_CHARS:
        msg = f"text too long: expected at most {MAX_TEXT_CHARS} characters, got {len(text)}"
        return InspectResult("empty", False, (msg,), f"**Not parsed.** {msg}", None)
    if kind == "auto":
        kind = detect_kind(text)
    if kind not in ("generated", "spatial"):
        raise ValueError(f"inspect_output: kind must be 'auto', 'generated' or 'spatial', got {kind!r}")
    canvas, canvas_note = _canvas(image)
    if kind == "generated":
        return _inspect_generated(text, canvas, canvas_note)
    return _inspect_spatial(text, canvas, canvas_note)


def _canvas(image: np.ndarray | None) -> tuple[np.ndarray, str]:
    if image is None:
        w, h = BLANK_CANVAS_WH
        return np.full((h, w, 3), 235, np.uint8), f"No image given: drawn on a blank {w}x{h} canvas."
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"inspect_output: expected an RGB image [H, W, 3], got shape {list(img.shape)}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img), f"Image: {img.shape[1]}x{img.shape[0]} px."


def _md(text: str) -> str:
    # Model output is full of <tags>; markdown renderers would take them for HTML and hide them.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _observation(canvas: np.ndarray) -> Observation:
    # No robot state in a pasted output: an empty state keeps the record honest.
    return Observation(cameras={"image_1": CameraFrame(rgb=canvas)}, state=np.zeros(0, np.float32), instruction="")


def _inspect_generated(text: str, canvas: np.ndarray, canvas_note: str) -> InspectResult:
    try:
        out = tokens.parse_generated(text)
    except tokens.TokenFormatError as err:
        return InspectResult("generated", False, (str(err),), f"**Malformed MolmoAct2 output.**\n\n{_md(str(err))}",
                             canvas)
    lines = [f"**MolmoAct2 output**, style `{out.style}`."]
    step = Step(backend="parsed", observation=_observation(canvas), generated_text=text,
                depth_bins=out.depth_bins, action_token_ids=out.action_ids)
    image = canvas
    if out.depth_bins is not None:
        unique = len(np.unique(out.depth_bins))
        lines.append(f"- Depth: 100 codes (10x10 grid over the main image), {unique} distinct codes, "
                     f"range {int(out.depth_bins.min())}..{int(out.depth_bins.max())}. "
                     "Codes are VQ indices, not depths: decode them with the depth VQ-VAE to see depth.")
        from molmoact2.viz.depth import mask_overlay

        # The grid lines show which image patch each code describes.
        image = mask_overlay(canvas, np.zeros(100, bool))
    if out.action_ids is not None:
        lines.append(f"- Actions: {len(out.action_ids)} OpenFAST ids: `{' '.join(map(str, out.action_ids[:40]))}`"
                     + (" …" if len(out.action_ids) > 40 else "")
                     + ". Decoding them needs the OpenFAST tokenizer, the chunk length and the action dimension.")
    if out.eos:
        lines.append(f"- Ends with `{out.eos}`.")
    lines.append(canvas_note)
    return InspectResult("generated", True, (), "\n".join(lines), image, out.depth_bins, out.action_ids,
                         generated=out, step=step)


def _inspect_spatial(text: str, canvas: np.ndarray, canvas_note: str) -> InspectResult:
    ans = spatial.parse_answer(text, strict=False)
    h, w = canvas.shape[:2]
    table = [[p.image, p.point_id, p.x, p.y, p.scale, *map(lambda v: round(v, 1), p.xy_px(width=w, height=h)), p.label]
             for p in (*ans.points, *ans.tracks)]
    drawn = spatial.draw_answer(canvas, ans, image_index=1)
    lines = ["**Molmo2-ER answer.**" if ans.ok else "**Molmo2-ER answer, partly parsed.**"]
    images = sorted({p.image for p in ans.points if p.image is not None})
    if ans.points:
        lines.append(f"- {len(ans.points)} point(s) on image(s) {images}; scale 0–{ans.points[0].scale} "
                     "of width/height. Only image 1 is drawn.")
    if ans.boxes:
        lines.append(f"- {len(ans.boxes)} box(es).")
    if ans.tracks:
        lines.append(f"- {len(ans.tracks)} track point(s).")
    if ans.traces:
        lines.append(f"- {len(ans.traces)} MolmoAct v1 trace(s) on a 0–256 scale.")
    if ans.count is not None:
        lines.append(f"- Count: **{ans.count}**.")
    if not (ans.points or ans.boxes or ans.tracks or ans.traces or ans.count is not None):
        lines.append("- No points, boxes, tracks or count found.")
    if ans.text:
        lines.append(f"- Text: {_md(ans.text)}")
    for prob in ans.problems:
        lines.append(f"- ⚠ {_md(prob)}")
    lines.append(canvas_note)
    points_px = ans.points_px(width=w, height=h, image=1)
    step = Step(backend="parsed", observation=_observation(canvas), answer_text=text,
                points_px={"image_1": points_px} if len(points_px) else None,
                info={"count": ans.count, "problems": list(ans.problems)})
    return InspectResult("spatial", ans.ok, tuple(ans.problems), "\n".join(lines), drawn, answer=ans,
                         points_table=table, step=step)
