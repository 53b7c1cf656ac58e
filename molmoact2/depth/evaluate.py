"""Reconstruction error of a depth codec per scene: depth -> 100 codes -> depth.

Three views of the same error, per frame, averaged per (task, seed):
  * `mae_u8`: mean |decoded - input| in the uint8 disparity levels the VAE was trained on (0..255),
    with the decoder output mapped by the FIXED training range ((x + 1) / 2 * 255, no per-frame min-max);
  * `med_abs_mm` / `rel_err_pct`: back in metres. The simulator knows each frame's disparity range, so
    the decoded levels invert to metric depth; this is what a point cloud from decoded depth would
    be off by (the real model never has this range: its decoded depth is relative).
"""

from __future__ import annotations

import numpy as np

from molmoact2.depth.codec import DepthCodec
from molmoact2.depth.data import render_frames
from molmoact2.depth.preprocess import metric_to_inverse_depth, nearest_resize


def frame_errors(codec: DepthCodec, depth_m: np.ndarray) -> dict:
    codes = codec.encode(depth_m=depth_m)
    decoded = codec.decode(codes)
    target = codec.to_input(depth_m=depth_m)
    u8_in = (target + 1.0) * 127.5
    u8_out = np.clip((decoded + 1.0) * 127.5, 0, 255)
    disp = metric_to_inverse_depth(depth_m)
    lo, hi = float(disp.min()), float(disp.max())
    d320 = nearest_resize(np.asarray(depth_m, np.float32), codec.image_size)
    valid = np.isfinite(d320) & (d320 > 0)
    disp_hat = lo + u8_out / 255.0 * (hi - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_hat = np.where(disp_hat > 1e-6, 1.0 / disp_hat, np.inf)
    err = np.abs(depth_hat - d320)[valid]
    return {
        "mae_u8": float(np.abs(u8_out - u8_in).mean()),
        "rmse_unit": float(np.sqrt(np.mean((decoded - target) ** 2))),
        "med_abs_mm": float(np.median(err) * 1000.0) if err.size else float("nan"),
        "rel_err_pct": float(np.median(err / d320[valid]) * 100.0) if err.size else float("nan"),
        "distinct_codes": int(len(np.unique(codes))),
    }


def evaluate(codec: DepthCodec, tasks: list[str], seeds: list[int], cameras: list[str], frames_per_seed: int) -> list[dict]:
    rows = []
    for task in tasks:
        for seed in seeds:
            per = {}
            for meta, frame in render_frames(task, seed, cameras, frames_per_seed):
                per.setdefault(meta["camera"], []).append(frame_errors(codec, frame.depth_m))
            for cam, errs in per.items():
                row = {"task": meta["task"], "seed": seed, "camera": cam, "frames": len(errs)}
                row.update({k: round(float(np.mean([e[k] for e in errs])), 3) for k in errs[0]})
                rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    cols = ["task", "seed", "camera", "frames", "mae_u8", "rmse_unit", "med_abs_mm", "rel_err_pct", "distinct_codes"]
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    lines += [" | ".join(str(r[c]) for c in cols) for r in rows]
    if rows:
        mean = {c: round(float(np.mean([r[c] for r in rows])), 3) for c in cols[4:]}
        lines.append(" | ".join(["mean", "", "", str(sum(r["frames"] for r in rows))] + [str(mean[c]) for c in cols[4:]]))
    return "\n".join(lines)
