"""Molmo2-ER spatial answers: points, tracks, counts, boxes, legacy Molmo v1 points, MolmoAct v1 traces.

Pure regex + numpy (+ PIL for drawing, imported inside the drawing functions).

Formats, as written by the Molmo2 training code (`olmo/preprocessing/point_formatter.py`,
`UnifiedPointFormatter`, pointing format "html-v2") and read by the regexes in the Molmo2 model
cards (`COORD_REGEX = <(?:points|tracks).*? coords="([0-9\\t:;, .]+)"/?>`, groups split at
`^ \\t : , ;`, point triples `([0-9]+) ([0-9]{3,4}) ([0-9]{3,4})`):

* `<points alt="…" coords="1 1 098 629 2 162 629;2 3 142 418">boats</points>` — the training code
  writes `alt` BEFORE `coords` (we accept any attribute order); per image group: the 1-based
  image index (a `%0.1f` timestamp for video), then `id x y` triples; x/y integers on 0–1000,
  zero-padded to 3 digits; ids run 1..N across ALL groups, points sorted by (x, y) per image.
  Groups are separated by ";" (html-v2) or a tab (html-v1).
* `<tracks coords="0.0 1 100 200 2 300 400;0.5 1 110 210 …">label</tracks>` — the leading number
  of each group is a timestamp in seconds; ids name the same object across timestamps.
* Counting: `Counting the <points …>label</points> shows a total of N.`, or
  `There are N <points …>label</points>.`, or `There are none.`, or a bare number.
* Boxes: `<boxes coords="1 1 160 230 480 590 2 …">label</boxes>` = image index, then
  `id x1 y1 x2 y2` groups. Evidence (neither is an official Molmo2-ER statement): a public
  `BoxFormatter` in the Molmo2 code style writes image index + `id x1 y1 x2 y2` with a 0–100
  default scale ("%02d"), while a user log of MolmoAct2-SO100_101 shows
  `<boxes coords="1 1 160 230 480 590">` (values above 100, so 0–1000). Hence `box_scale` is a
  parameter, default 1000; a value above the scale is reported as a problem. A group with a
  multiple of 5 numbers (no image index, as in our reference notes' `1 x1 y1 x2 y2 2 …`) is read
  as `id x1 y1 x2 y2` groups on image 1.
* Legacy Molmo v1: `<point x="61.5" y="40.2" alt="…">label</point>` and
  `<points x1="…" y1="…" x2="…" y2="…" alt="…">label</points>` on 0–100 (values > 100 invalid).
* MolmoAct v1 visual traces: `[[x, y], [x, y], …]` integers in [0, 256) (e.g. "The trajectory of
  the end effector in the first image is [[112, 84], [118, 90]]").

The official extractors silently drop out-of-range points; we keep the rest and list every
dropped or suspicious item in `SpatialAnswer.problems` (or raise with `strict=True`).

Pixel convention: a coordinate `v` on scale `S` maps to the continuous pixel coordinate
`x_px = v / S * width`, `y_px = v / S * height`, where 0 is the left/top EDGE of the image and
`width`/`height` the right/bottom edge (pixel i covers [i, i + 1)). This is exactly what Molmo2's
own extraction code does (`float(x) / 1000 * image_w`) and the inverse of its training formatter
(`round(1000 * x / W)`), so converting training targets and model outputs round-trips. The pixel
*index* containing a point is `min(floor(x_px), width - 1)`. MolmoAct v1 traces are assumed to use
the same convention on a 256 scale (unverified).
"""

from __future__ import annotations

import html
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SCALE_MOLMO2 = 1000  # Molmo2 / Molmo2-ER points and tracks
SCALE_LEGACY = 100  # Molmo v1 points
SCALE_TRACE = 256  # MolmoAct v1 traces
_UNITS = {"points_1000": 1000, "points_100": 100, "trace_256": 256, "px": None}


class SpatialFormatError(ValueError):
    """A spatial answer does not follow the Molmo2 formats (raised by `parse_answer(strict=True)`)."""


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpatialPoint:
    """One point of an answer, on its native `scale` (see the module's pixel convention)."""

    image: int | None  # 1-based image index; None for video points/tracks (see `time`)
    point_id: int  # the model's running id (tracks: the object id)
    x: float
    y: float
    scale: int  # 1000 (Molmo2), 100 (Molmo v1), 256 (MolmoAct v1 trace)
    label: str
    alt: str | None = None
    time: float | None = None  # seconds, for tracks and video points
    source: str = "points"  # points | tracks | point_v1 | points_v1

    def xy_px(self, *, width: int, height: int) -> tuple[float, float]:
        px = convert_points([[self.x, self.y]], from_unit=_unit(self.scale), to_unit="px", width=width, height=height)
        return float(px[0, 0]), float(px[0, 1])


@dataclass(frozen=True)
class SpatialBox:
    image: int
    box_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    scale: int
    label: str
    alt: str | None = None

    def xyxy_px(self, *, width: int, height: int) -> tuple[float, float, float, float]:
        px = convert_points(
            [[self.x1, self.y1], [self.x2, self.y2]], from_unit=_unit(self.scale), to_unit="px", width=width, height=height
        )
        return float(px[0, 0]), float(px[0, 1]), float(px[1, 0]), float(px[1, 1])


@dataclass(frozen=True)
class Trace:
    """A MolmoAct v1 visual trace: integer (x, y) waypoints on a 256 scale."""

    points: tuple[tuple[int, int], ...]
    scale: int = SCALE_TRACE

    def points_px(self, *, width: int, height: int) -> np.ndarray:
        return convert_points(np.asarray(self.points, float).reshape(-1, 2), from_unit="trace_256", to_unit="px",
                              width=width, height=height)


@dataclass(frozen=True)
class SpatialAnswer:
    points: tuple[SpatialPoint, ...]
    boxes: tuple[SpatialBox, ...]
    tracks: tuple[SpatialPoint, ...]
    traces: tuple[Trace, ...]
    count: int | None  # from a counting sentence / "There are none." / a bare number
    text: str  # the answer with markup replaced by its label
    problems: tuple[str, ...]  # empty when the answer is well-formed
    raw: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def points_px(self, *, width: int, height: int, image: int = 1) -> np.ndarray:
        """float32 [N, 2] pixel coordinates of this image's points (ids in `points` order)."""
        sel = [p.xy_px(width=width, height=height) for p in self.points if p.image == image]
        return np.asarray(sel, dtype=np.float32).reshape(-1, 2)


# --------------------------------------------------------------------------------------------
# Coordinate conversion
# --------------------------------------------------------------------------------------------


def _unit(scale: int) -> str:
    for name, s in _UNITS.items():
        if s == scale:
            return name
    raise ValueError(f"scale: expected one of 1000, 100, 256, got {scale!r}")


def convert_points(points: Any, *, from_unit: str, to_unit: str, width: int, height: int) -> np.ndarray:
    """Convert [..., 2] (x, y) between `points_1000`, `points_100`, `trace_256` and `px`.

    `width`/`height` are the image size in pixels and are always required (no hidden default
    image size). Out-of-range values are converted, not clipped: validation is the parser's job.
    """
    for name in (from_unit, to_unit):
        if name not in _UNITS:
            raise ValueError(f"unit: expected one of {tuple(_UNITS)}, got {name!r}")
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer)) and width > 0 and height > 0):
        raise ValueError(f"image size: expected positive integer width and height, got {width!r} x {height!r}")
    xy = np.asarray(points, dtype=np.float64)
    if xy.shape[-1:] != (2,):
        raise ValueError(f"points: expected shape [..., 2] (x, y), got {xy.shape}")
    size = np.array([width, height], dtype=np.float64)
    frac = xy / size if from_unit == "px" else xy / _UNITS[from_unit]
    return frac * size if to_unit == "px" else frac * _UNITS[to_unit]


def points_1000_to_px(points_1000: Any, *, width: int, height: int) -> np.ndarray:
    return convert_points(points_1000, from_unit="points_1000", to_unit="px", width=width, height=height)


def px_to_points_1000(points_px: Any, *, width: int, height: int) -> np.ndarray:
    return convert_points(points_px, from_unit="px", to_unit="points_1000", width=width, height=height)


def points_100_to_px(points_100: Any, *, width: int, height: int) -> np.ndarray:
    return convert_points(points_100, from_unit="points_100", to_unit="px", width=width, height=height)


def px_to_points_100(points_px: Any, *, width: int, height: int) -> np.ndarray:
    return convert_points(points_px, from_unit="px", to_unit="points_100", width=width, height=height)


def trace_256_to_px(trace_256: Any, *, width: int, height: int) -> np.ndarray:
    return convert_points(trace_256, from_unit="trace_256", to_unit="px", width=width, height=height)


def px_to_trace_256(points_px: Any, *, width: int, height: int) -> np.ndarray:
    return convert_points(points_px, from_unit="px", to_unit="trace_256", width=width, height=height)


def pixel_index(x_px: float, y_px: float, *, width: int, height: int) -> tuple[int, int]:
    """(col, row) of the pixel containing a continuous pixel coordinate (edges clamp inside)."""
    return min(max(int(math.floor(x_px)), 0), width - 1), min(max(int(math.floor(y_px)), 0), height - 1)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

_TAG_OPEN = re.compile(r"<(points|tracks|boxes|point)(?=[\s/>])([^<>]*?)(/?)>", re.IGNORECASE)
_TAG_TRUNCATED = re.compile(r"<(points|tracks|boxes|point)\b[^<>]*$", re.IGNORECASE)
_ATTR = re.compile(r"""([A-Za-z_][\w-]*)\s*=\s*"([^"]*)\"""")
_GROUP_SEP = re.compile(r"[;\t:,]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PAIR_SRC = r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]"  # "[x, y]"
_TRACE = re.compile(r"\[\s*" + _PAIR_SRC + r"(?:\s*,\s*" + _PAIR_SRC + r")*\s*\]")  # "[[x, y], [x, y], …]"
_TRACE_PAIR = re.compile(_PAIR_SRC)
_COUNT_SENTENCE = re.compile(r"Counting the\s+(.*?)\s+shows a total of\s+(\d+)", re.IGNORECASE | re.DOTALL)
_NONE = re.compile(r"\bThere are none\b", re.IGNORECASE)


def _num(tok: str) -> float | None:
    return float(tok) if _NUMBER.fullmatch(tok) else None


class _Collector:
    def __init__(self, box_scale: int, num_images: int | None):
        self.points: list[SpatialPoint] = []
        self.tracks: list[SpatialPoint] = []
        self.boxes: list[SpatialBox] = []
        self.problems: list[str] = []
        self.box_scale, self.num_images = box_scale, num_images

    def problem(self, msg: str) -> None:
        self.problems.append(msg)

    def check_image(self, image: int, where: str) -> bool:
        if image < 1:
            self.problem(f"{where}: expected a 1-based image index, got {image}")
            return False
        if self.num_images is not None and image > self.num_images:
            self.problem(f"{where}: image index {image} but only {self.num_images} image(s) were given")
            return False
        return True

    def in_range(self, values: Sequence[float], scale: int, where: str, what: str) -> bool:
        bad = [v for v in values if not 0 <= v <= scale]
        if bad:
            self.problem(f"{where}: expected {what} in 0..{scale}, got {', '.join(f'{v:g}' for v in bad)}; dropped")
            return False
        return True

    # -- Molmo2 <points>/<tracks coords=…> ---------------------------------------------------
    def molmo2_points(self, kind: str, coords: str, label: str, alt: str | None, where: str) -> int:
        found = 0
        ids: list[int] = []
        for gi, group in enumerate(g.strip() for g in _GROUP_SEP.split(coords)):
            if not group:
                continue
            gwhere = f"{where}, group {gi + 1} ({group[:30]!r})"
            toks = group.split()
            nums = [_num(t) for t in toks]
            if any(n is None for n in nums):
                bad = [t for t, n in zip(toks, nums) if n is None]
                self.problem(f"{gwhere}: expected non-negative numbers, got {bad}; group dropped")
                continue
            head, rest = nums[0], nums[1:]
            if len(rest) % 3:
                self.problem(
                    f"{gwhere}: expected 'id x y' triples after the leading index, got {len(rest)} numbers "
                    f"({len(rest) % 3} left over, ignored)"
                )
            image = time = None
            if kind == "tracks" or "." in toks[0]:
                time = head  # tracks and video points lead with a "%0.1f" timestamp in seconds
            else:
                image = int(head)
                if not self.check_image(image, gwhere):
                    continue
            for j in range(0, len(rest) - len(rest) % 3, 3):
                pid, x, y = rest[j : j + 3]
                if pid != int(pid):
                    self.problem(f"{gwhere}: expected an integer point id, got {pid:g}; dropped")
                    continue
                if not self.in_range((x, y), SCALE_MOLMO2, f"{gwhere}, point {int(pid)}", "x/y"):
                    continue
                pt = SpatialPoint(image, int(pid), x, y, SCALE_MOLMO2, label, alt, time, kind)
                (self.tracks if kind == "tracks" else self.points).append(pt)
                ids.append(int(pid))
                found += 1
        if kind == "points" and ids and ids != list(range(1, len(ids) + 1)):
            self.problem(f"{where}: expected point ids to run 1..{len(ids)} across images, got {ids}")
        if found == 0:
            self.problem(f"{where}: expected at least one valid 'id x y' point, got none in coords={coords!r}")
        return found

    # -- <boxes coords=…> ---------------------------------------------------------------------
    def molmo2_boxes(self, coords: str, label: str, alt: str | None, where: str) -> int:
        found = 0
        for gi, group in enumerate(g.strip() for g in re.split(r"[;\t]", coords)):
            if not group:
                continue
            gwhere = f"{where}, group {gi + 1} ({group[:30]!r})"
            nums = [_num(t) for t in group.split()]
            if any(n is None for n in nums):
                self.problem(f"{gwhere}: expected non-negative numbers; group dropped")
                continue
            if len(nums) % 5 == 1:
                image, rest = nums[0], nums[1:]
            elif len(nums) % 5 == 0:
                image, rest = 1.0, nums  # 'id x1 y1 x2 y2' groups without an image index
            else:
                self.problem(
                    f"{gwhere}: expected an image index then 'id x1 y1 x2 y2' groups (5k+1 numbers), "
                    f"got {len(nums)} numbers; trailing ones ignored"
                )
                image, rest = nums[0], nums[1 : 1 + 5 * ((len(nums) - 1) // 5)]
            if image != int(image) or not self.check_image(int(image), gwhere):
                continue
            for j in range(0, len(rest), 5):
                bid, x1, y1, x2, y2 = rest[j : j + 5]
                bwhere = f"{gwhere}, box {bid:g}"
                if not self.in_range((x1, y1, x2, y2), self.box_scale, bwhere, "x1 y1 x2 y2"):
                    continue
                if x2 < x1 or y2 < y1:
                    self.problem(f"{bwhere}: expected x1 <= x2 and y1 <= y2, got ({x1:g}, {y1:g}, {x2:g}, {y2:g}); dropped")
                    continue
                self.boxes.append(SpatialBox(int(image), int(bid), x1, y1, x2, y2, self.box_scale, label, alt))
                found += 1
        if found == 0:
            self.problem(f"{where}: expected at least one valid 'id x1 y1 x2 y2' box, got none in coords={coords!r}")
        return found

    # -- legacy Molmo v1 -------------------------------------------------------------------
    def legacy(self, name: str, attrs: Mapping[str, str], label: str, alt: str | None, where: str) -> int:
        pairs: list[tuple[int, str, str]] = []
        if name == "point":
            if "x" not in attrs or "y" not in attrs:
                self.problem(f"{where}: expected x=\"…\" y=\"…\" attributes, got {sorted(attrs)}")
                return 0
            pairs.append((1, attrs["x"], attrs["y"]))
        else:
            k = 1
            while f"x{k}" in attrs or f"y{k}" in attrs:
                if f"x{k}" not in attrs or f"y{k}" not in attrs:
                    self.problem(f"{where}: expected x{k} and y{k} together, got only one of them")
                    break
                pairs.append((k, attrs[f"x{k}"], attrs[f"y{k}"]))
                k += 1
            if not pairs:
                self.problem(
                    f"{where}: expected coords=\"…\" (Molmo2) or x1=\"…\" y1=\"…\" (Molmo v1), got {sorted(attrs)}"
                )
                return 0
        found = 0
        for pid, xs, ys in pairs:
            x, y = _num(xs.strip()), _num(ys.strip())
            if x is None or y is None:
                self.problem(f"{where}, point {pid}: expected numbers, got x={xs!r} y={ys!r}; dropped")
                continue
            if not self.in_range((x, y), SCALE_LEGACY, f"{where}, point {pid}", "x/y"):
                continue
            src = "point_v1" if name == "point" else "points_v1"
            self.points.append(SpatialPoint(1, pid, x, y, SCALE_LEGACY, label, alt, None, src))
            found += 1
        return found


def parse_answer(text: str, strict: bool = False, *, box_scale: int = SCALE_MOLMO2,
                 num_images: int | None = None) -> SpatialAnswer:
    """Parse a Molmo2-ER (or legacy Molmo / MolmoAct v1) answer.

    Never raises with `strict=False`: malformed pieces are skipped and described in `problems`.
    With `strict=True`, any problem raises `SpatialFormatError` listing them all.
    `box_scale` is the scale of `<boxes>` coordinates (1000 or 100, see module docstring);
    `num_images`, when given, rejects image indices beyond it.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_answer: expected str, got {type(text).__name__}")
    if box_scale not in (SCALE_MOLMO2, SCALE_LEGACY):
        raise ValueError(f"box_scale: expected 1000 or 100, got {box_scale!r}")
    col = _Collector(box_scale, num_images)
    pieces: list[str] = []  # text with markup replaced by \x00label\x01 (to find counting sentences)
    tag_counts: list[tuple[int, int]] = []  # (index in pieces, number of items) per tag
    pos = 0
    n_tags = 0
    for m in _TAG_OPEN.finditer(text):
        if m.start() < pos:
            continue
        name, attr_text, self_closing = m.group(1).lower(), m.group(2), bool(m.group(3))
        n_tags += 1
        where = f"tag {n_tags} <{name}> at char {m.start()}"
        attrs = {k.lower(): html.unescape(v) for k, v in _ATTR.findall(attr_text)}
        leftover = _ATTR.sub("", attr_text).strip()
        if leftover:
            col.problem(f"{where}: expected attributes like coords=\"…\", got unparsed text {leftover[:40]!r}")
        label, end = "", m.end()
        if not self_closing:
            close = re.compile(rf"</{name}\s*>", re.IGNORECASE).search(text, m.end())
            nxt = _TAG_OPEN.search(text, m.end())
            if close is None or (nxt is not None and nxt.start() < close.start()):
                col.problem(f"{where}: expected a closing </{name}>, got none; label left empty")
            else:
                label, end = html.unescape(text[m.end() : close.start()]).strip(), close.end()
        alt = attrs.get("alt")
        pieces.append(text[pos : m.start()])
        if name in ("points", "tracks") and "coords" in attrs:
            n_items = col.molmo2_points(name, attrs["coords"], label, alt, where)
        elif name == "boxes":
            if "coords" not in attrs:
                col.problem(f"{where}: expected a coords=\"…\" attribute, got {sorted(attrs)}")
                n_items = 0
            else:
                n_items = col.molmo2_boxes(attrs["coords"], label, alt, where)
        elif name == "tracks":
            col.problem(f"{where}: expected a coords=\"…\" attribute, got {sorted(attrs)}")
            n_items = 0
        else:
            n_items = col.legacy(name, attrs, label, alt, where)
        tag_counts.append((len(pieces), n_items))
        pieces.append("\x00" + label + "\x01")
        pos = end
    pieces.append(text[pos:])
    marked = "".join(pieces)
    if _TAG_TRUNCATED.search(marked):
        col.problem(
            f"end of answer: expected a complete tag ending in '>', got a truncated "
            f"{_TAG_TRUNCATED.search(marked).group(0)[:60]!r}"
        )
    for stray in re.finditer(r"</(points|tracks|boxes|point)\s*>", marked, re.IGNORECASE):
        col.problem(f"expected an opening <{stray.group(1)} …> before {stray.group(0)}, got none (stray closing tag)")

    # MolmoAct v1 traces live in the plain text.
    traces: list[Trace] = []
    for ti, tm in enumerate(_TRACE.finditer(marked)):
        pts: list[tuple[int, int]] = []
        for pm in _TRACE_PAIR.finditer(tm.group(0)):
            x, y = float(pm.group(1)), float(pm.group(2))
            if x != int(x) or y != int(y) or not (0 <= x < SCALE_TRACE and 0 <= y < SCALE_TRACE):
                col.problem(f"trace {ti + 1}: expected integer (x, y) in [0, 256), got ({x:g}, {y:g}); dropped")
                continue
            pts.append((int(x), int(y)))
        if pts:
            traces.append(Trace(tuple(pts)))

    count = _find_count(marked, col, tag_counts, pieces)
    clean = marked.replace("\x00", "").replace("\x01", "").strip()
    answer = SpatialAnswer(
        points=tuple(col.points),
        boxes=tuple(col.boxes),
        tracks=tuple(col.tracks),
        traces=tuple(traces),
        count=count,
        text=clean,
        problems=tuple(col.problems),
        raw=text,
    )
    if strict and answer.problems:
        raise SpatialFormatError(
            f"{len(answer.problems)} problem(s) in spatial answer {text[:80]!r}: " + "; ".join(answer.problems)
        )
    return answer


def _find_count(marked: str, col: _Collector, tag_counts: list[tuple[int, int]], pieces: list[str]) -> int | None:
    n_marked_items = {}  # label-marker text → items of that tag
    for idx, n in tag_counts:
        n_marked_items.setdefault(pieces[idx], n)
    m = _COUNT_SENTENCE.search(marked)
    if m:
        count = int(m.group(2))
        ref = m.group(1).strip()
        if ref in n_marked_items and n_marked_items[ref] != count:
            col.problem(
                f"counting sentence: expected its tag to hold the stated {count} point(s), "
                f"got {n_marked_items[ref]} valid point(s) "
                f"(says a total of {count}, but its tag holds {n_marked_items[ref]})"
            )
        return count
    m = re.search(r"There (?:are|is)\s+(\d+)\s+(\x00[^\x01]*\x01)", marked, re.IGNORECASE)
    if m:
        count = int(m.group(1))
        if m.group(2) in n_marked_items and n_marked_items[m.group(2)] != count:
            got = n_marked_items[m.group(2)]
            col.problem(
                f"counting sentence: expected its tag to hold the stated {count} point(s), got {got} valid point(s)"
            )
        return count
    if _NONE.search(marked):
        if col.points or col.boxes:
            col.problem(
                f"'There are none.': expected no points or boxes, got {len(col.points)} point(s) "
                f"and {len(col.boxes)} box(es)"
            )
        return 0
    bare = marked.strip().rstrip(".")
    if bare.isdigit():
        return int(bare)
    return None


# --------------------------------------------------------------------------------------------
# Formatting (the other direction: for tests, examples and teaching)
# --------------------------------------------------------------------------------------------


def format_points(
    points_by_image: Mapping[int, Sequence[Sequence[float]]],
    label: str,
    *,
    alt: str | None = None,
    mode: str = "point",
    tag: str = "points",
) -> str:
    """Write points (already on the 0–1000 scale) the way Molmo2's training formatter does.

    Per image, points are rounded, sorted by (x, y) and zero-padded to 3 digits; ids run 1..N
    across images; images are joined with ";" (html-v2). `mode`: point | point_then_count |
    count_then_point (an empty point set gives "There are none.").
    """
    if mode not in ("point", "point_then_count", "count_then_point"):
        raise ValueError(f"mode: expected point, point_then_count or count_then_point, got {mode!r}")
    groups, next_id = [], 1
    for image in sorted(points_by_image):
        pts = sorted((int(round(x)), int(round(y))) for x, y in points_by_image[image])
        if not pts:
            continue
        for x, y in pts:
            if not (0 <= x <= 1000 and 0 <= y <= 1000):
                raise ValueError(f"format_points: expected x/y in 0..1000, got ({x}, {y})")
        body = " ".join(f"{next_id + i} {x:03d} {y:03d}" for i, (x, y) in enumerate(pts))
        groups.append(f"{image} {body}")
        next_id += len(pts)
    total = next_id - 1
    if total == 0:
        return "There are none."
    alt_attr = f' alt="{html.escape(alt, quote=True)}"' if alt is not None else ""
    point_str = f'<{tag}{alt_attr} coords="{";".join(groups)}">{label}</{tag}>'
    if mode == "point_then_count":
        return f"Counting the {point_str} shows a total of {total}."
    if mode == "count_then_point":
        return f"There are {total} {point_str}."
    return point_str


def format_boxes(boxes_by_image: Mapping[int, Sequence[Sequence[float]]], label: str, *, scale: int = SCALE_MOLMO2) -> str:
    """`<boxes coords="IMG id x1 y1 x2 y2 …;IMG …">label</boxes>` with boxes already on `scale`."""
    width = 3 if scale == 1000 else 2
    groups, next_id = [], 1
    for image in sorted(boxes_by_image):
        boxes = [tuple(int(round(v)) for v in b) for b in boxes_by_image[image]]
        if not boxes:
            continue
        body = " ".join(f"{next_id + i} " + " ".join(f"{v:0{width}d}" for v in b) for i, b in enumerate(boxes))
        groups.append(f"{image} {body}")
        next_id += len(boxes)
    if not groups:
        return "There are none."
    return f'<boxes coords="{";".join(groups)}">{label}</boxes>'


# --------------------------------------------------------------------------------------------
# Prompt templates (Molmo2-ER)
# --------------------------------------------------------------------------------------------


def _label(label: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"label: expected a non-empty string, got {label!r}")
    return label.strip()


def point_prompt(label: str) -> str:
    return f"Point to {_label(label)}\nPlease say 'There are none.' if it is not in the image."


def point_all_prompt(label: str) -> str:
    return f'Point to all occurrences of "{_label(label)}"'


def count_prompt(label: str) -> str:
    return f"How many {_label(label)} are there?"


def count_and_point_prompt(label: str) -> str:
    return f"Count the {_label(label)} in the image, then point to them."


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------

# Fixed, colour-blind-friendly-ish palette; colour k is the same in every run (no hash()).
PALETTE = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
)


def color_for(key: int | str) -> tuple[int, int, int]:
    """Deterministic colour: ints index the palette from 1; strings hash with crc32."""
    if isinstance(key, str):
        return PALETTE[zlib.crc32(key.encode("utf-8")) % len(PALETTE)]
    return PALETTE[(int(key) - 1) % len(PALETTE)]


def _as_rgb(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"image: expected uint8 [H, W, 3] (or [H, W]), got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image: expected uint8 [H, W, 3] (or [H, W]), got shape {arr.shape}")
    return np.ascontiguousarray(arr[:, :, :3])


def _sizes(w: int, h: int, radius_px: float | None) -> tuple[float, int]:
    r = radius_px if radius_px is not None else max(2.0, round(0.018 * min(w, h)))
    return float(r), max(1, int(round(r / 2)))


def _font_px(w: int, h: int) -> int:
    return max(10, round(0.035 * min(w, h)))


def _text(draw: Any, xy: tuple[float, float], s: str, color: tuple[int, int, int], size_px: int = 14) -> None:
    from PIL import ImageFont

    # Pillow's built-in scalable font: readable labels at any image size, no font file to ship.
    font = ImageFont.load_default(size=size_px)
    box = draw.textbbox(xy, s, font=font)
    draw.rectangle((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), fill=(0, 0, 0))  # readable on any background
    draw.text(xy, s, fill=color, font=font)


def draw_points_px(image: Any, points_px: Any, *, numbers: Sequence[int] | None = None,
                   radius_px: float | None = None) -> np.ndarray:
    """Filled, numbered dots at pixel coordinates (colour by number). Returns a new uint8 array."""
    from PIL import Image, ImageDraw

    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    pts = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
    nums = list(numbers) if numbers is not None else list(range(1, len(pts) + 1))
    if len(nums) != len(pts):
        raise ValueError(f"numbers: expected {len(pts)} numbers (one per point), got {len(nums)}")
    r, _ = _sizes(w, h, radius_px)
    im = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(im)
    for (x, y), k in zip(pts, nums):
        c = color_for(k)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=c, outline=(255, 255, 255))
        _text(draw, (x + r + 1, y - r - 1), str(k), c, size_px=_font_px(w, h))
    return np.asarray(im, dtype=np.uint8)


def draw_boxes_px(image: Any, boxes_xyxy_px: Any, *, labels: Sequence[str] | None = None,
                  numbers: Sequence[int] | None = None, line_px: int | None = None) -> np.ndarray:
    """Rectangles (x1, y1, x2, y2 in pixels) with "k label" captions. Returns a new uint8 array."""
    from PIL import Image, ImageDraw

    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    boxes = np.asarray(boxes_xyxy_px, dtype=np.float64).reshape(-1, 4)
    nums = list(numbers) if numbers is not None else list(range(1, len(boxes) + 1))
    labs = list(labels) if labels is not None else [""] * len(boxes)
    if len(nums) != len(boxes) or len(labs) != len(boxes):
        raise ValueError(f"labels/numbers: expected {len(boxes)} of each, got {len(labs)} and {len(nums)}")
    _, lw = _sizes(w, h, None)
    lw = line_px or lw
    im = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(im)
    for (x1, y1, x2, y2), k, lab in zip(boxes, nums, labs):
        c = color_for(k)
        draw.rectangle((x1, y1, x2, y2), outline=c, width=lw)
        _text(draw, (x1 + lw + 1, y1 + lw + 1), f"{k} {lab}".strip(), c, size_px=_font_px(w, h))
    return np.asarray(im, dtype=np.uint8)


def draw_polyline_px(image: Any, points_px: Any, *, color: tuple[int, int, int] = PALETTE[0],
                     line_px: int | None = None, dots: bool = True) -> np.ndarray:
    """A polyline through pixel points (a trace or a track), start marked larger. New uint8 array."""
    from PIL import Image, ImageDraw

    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    pts = [tuple(p) for p in np.asarray(points_px, dtype=np.float64).reshape(-1, 2)]
    r, lw = _sizes(w, h, None)
    lw = line_px or lw
    im = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(im)
    if len(pts) > 1:
        draw.line(pts, fill=color, width=lw, joint="curve")
    if dots:
        for i, (x, y) in enumerate(pts):
            rr = r if i == 0 else max(1.0, r / 2)
            draw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=color)
    return np.asarray(im, dtype=np.uint8)


def draw_answer(image: Any, answer: SpatialAnswer, *, image_index: int = 1, radius_px: float | None = None) -> np.ndarray:
    """Draw everything of `answer` that belongs to image `image_index` (1-based) on a copy.

    Points: numbered dots coloured by id. Boxes: rectangles with "id label". Tracks: one polyline
    per object id, in time order. MolmoAct v1 traces: polylines (drawn on image 1). Returns a new
    uint8 [H, W, 3] array; the input is never modified.
    """
    out = _as_rgb(image)
    h, w = out.shape[:2]
    pts = [p for p in answer.points if p.image == image_index]
    if pts:
        xy = [p.xy_px(width=w, height=h) for p in pts]
        out = draw_points_px(out, xy, numbers=[p.point_id for p in pts], radius_px=radius_px)
    boxes = [b for b in answer.boxes if b.image == image_index]
    if boxes:
        out = draw_boxes_px(out, [b.xyxy_px(width=w, height=h) for b in boxes], labels=[b.label for b in boxes],
                            numbers=[b.box_id for b in boxes])
    by_id: dict[int, list[SpatialPoint]] = {}
    for p in answer.tracks:
        by_id.setdefault(p.point_id, []).append(p)
    for pid, track in sorted(by_id.items()):
        track.sort(key=lambda p: (p.time if p.time is not None else 0.0))
        out = draw_polyline_px(out, [p.xy_px(width=w, height=h) for p in track], color=color_for(pid))
    if image_index == 1:
        for ti, tr in enumerate(answer.traces):
            out = draw_polyline_px(out, tr.points_px(width=w, height=h), color=color_for(ti + 1))
    return out


# --------------------------------------------------------------------------------------------
# Examples for the app's output inspector
# --------------------------------------------------------------------------------------------


def examples() -> dict[str, str]:
    """Realistic Molmo2-ER / legacy answers for one-click demos (the last one is malformed)."""
    two_images = format_points(
        {1: [(312, 540), (655, 512)], 2: [(480, 600)]}, "mugs", alt="white coffee mugs", mode="point"
    )
    count = format_points({1: [(120, 410), (402, 388), (731, 420)]}, "apples", mode="point_then_count")
    return {
        "Molmo2-ER: points on two images (with alt)": two_images,
        "Molmo2-ER: count then point": count,
        "Molmo2-ER: none": "There are none.",
        "Molmo2-ER: boxes (0-1000)": format_boxes({1: [(160, 230, 480, 590), (520, 300, 700, 610)]}, "cups"),
        "Molmo2-ER: track over time": '<tracks coords="0.0 1 210 640;0.5 1 260 600;1.0 1 330 560">gripper</tracks>',
        "Molmo v1: legacy point": '<point x="61.5" y="40.2" alt="red block">red block</point>',
        "Molmo v1: legacy points": '<points x1="20.0" y1="30.5" x2="70.1" y2="33.0" alt="bowls">bowls</points>',
        "MolmoAct v1: visual trace": (
            "The trajectory of the end effector in the first image is [[112, 84], [118, 96], [131, 120], [140, 151]]."
        ),
        "malformed: out of range, bad count, unclosed": (
            'Counting the <points coords="1 1 500 500 2 1200 300">cups</points> shows a total of 3. '
            '<points coords="1 1 400 400">plates'
        ),
    }
