"""Probe: each shifted copy's own pointing rate, and two ways of combining them (mean, median).

    .venv/bin/python scripts/probe_shift_copies.py --checkpoint assets/nano_er --data /tmp/nano_heldout
    .venv/bin/python scripts/probe_shift_copies.py --offsets "0,0;-1,-1;1,-1;-1,1;1,1;-2,0;2,0;0,-2;0,2" --step-px 2

Why: `molmoact2.point_ensemble` averages the point over five copies of the picture moved by a few pixels. This
shows why that helps (every copy alone is no better than the plain answer; their mean is) and that the choice of
five copies and the mean is not a lucky one (a 3 x 3 grid, the median). Shifts are in pixels of the image the data
cache stores (96 x 96 for `train data`'s default: the size Nano sees); every pointing question of the cache.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="assets/nano_er")
    p.add_argument("--data", default="/tmp/nano_heldout")
    p.add_argument("--offsets", default="0,0;-1,0;1,0;0,-1;0,1", help="'dx,dy;...' in units of --step-px; 0,0 first")
    p.add_argument("--step-px", type=int, default=3, help="pixels of the stored image per offset unit")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="", help="write every copy's point here (JSON)")
    args = p.parse_args()

    import torch
    from tqdm.auto import tqdm

    from molmoact2 import spatial
    from molmoact2.evaluation.offline import lands_on
    from molmoact2.evaluation.report import FIXTURES, pointed_name
    from molmoact2.models.nano.policy import load_nano
    from molmoact2.point_ensemble import shift_image
    from molmoact2.training.nano_examples import NanoTrainData

    torch.set_num_threads(args.threads)
    shifts = [tuple(args.step_px * int(v) for v in s.split(",")) for s in args.offsets.split(";")]
    if shifts[0] != (0, 0):
        raise SystemExit(f"--offsets: expected 0,0 first (the plain answer), got {args.offsets!r}")
    policy = load_nano(args.checkpoint, seed=0)
    data = NanoTrainData.load(args.data, progress=False)
    rows = []
    t0 = time.perf_counter()
    for i in tqdm([i for i, q in enumerate(data.qa) if q["kind"] == "point"], desc="questions", unit="q"):
        q = data.qa[i]
        img, seg = data.qa_image(q), data.qa_segmentation(q)
        sx, sy = seg.shape[1] / img.shape[1], seg.shape[0] / img.shape[0]  # image pixels -> mask pixels
        points = []
        for dx, dy in shifts:
            text = policy.ask([shift_image(img, dx, dy)], q["question"]).answer_text or ""
            got = spatial.parse_answer(text).points_px(width=seg.shape[1], height=seg.shape[0])
            points.append(None if len(got) != 1 else [float(got[0][0] - dx * sx), float(got[0][1] - dy * sy)])
        rows.append({"index": i, "movable": pointed_name(q) not in (None, *FIXTURES), "points": points})

    def rate(pick) -> str:
        out = []
        for subset in ("all", "movable"):
            chosen = [r for r in rows if subset == "all" or r["movable"]]
            hits = 0
            for r in chosen:
                q = data.qa[r["index"]]
                pt = pick(r["points"])
                hits += pt is not None and lands_on(data.qa_segmentation(q), q["labels"], *pt)
            out.append(f"{100 * hits / len(chosen):.1f}% ({hits}/{len(chosen)})")
        return " | ".join(out)

    def combine(fn):  # the plain answer decides whether there is a point, as in molmoact2.point_ensemble
        return lambda pts: None if pts[0] is None else fn([p for p in pts if p is not None])

    print(f"{len(rows)} pointing questions, {len(shifts)} copies, {time.perf_counter() - t0:.0f} s\n")
    print("| answer | inside the mask, all | at movable objects |\n|---|---|---|")
    for j, s in enumerate(shifts):
        print(f"| copy shifted by {s} px alone | {rate(lambda pts, j=j: pts[j])} |")
    print(f"| mean of the copies | {rate(combine(lambda ok: np.mean(ok, axis=0)))} |")
    print(f"| median of the copies | {rate(combine(lambda ok: np.median(ok, axis=0)))} |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"shifts_px": shifts, "rows": rows}, fh)


if __name__ == "__main__":
    main()
