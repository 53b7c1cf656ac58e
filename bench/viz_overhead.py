"""Caller-side cost of visualising a Step: inline `log_step` vs `BackgroundLogger.submit`, one run.

A control loop at a fixed period (sleep between steps, like a real robot loop waiting for the next
observation) logs a realistic Step each iteration: two 224x224 cameras with depth (-> point clouds),
the 10x10 depth grid + mask + decoded depth, a 30x6 chunk, planned path, denoising paths, timings,
text. Both modes write a real .rrd file sink. Reported: time spent inside the logging call by the
control loop (what steals from the control rate), the loop rate achieved, and for the background
mode what the worker spent and whether anything was dropped. A third row submits with no pause
(a burst) to show the bounded queue dropping instead of blocking.

    .venv/bin/python bench/viz_overhead.py [--steps 120] [--period-ms 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from molmoact2.models.synthetic import synthetic_step


def run(mode: str, background: bool, steps, period_s: float, out: Path, max_queue: int) -> dict:
    from molmoact2.viz.logger import BackgroundLogger, StepLogger, new_recording

    rec = new_recording(recording_id=f"bench-{mode}")
    rec.save(out)
    logger = StepLogger(rec)
    logger.log(steps[0])  # warm-up: static styling and first-use costs outside the measurement
    bg = BackgroundLogger(rec, max_queue=max_queue, sink=logger.log) if background else None
    call_ms = []
    t_start = time.perf_counter()
    for step in steps[1:]:
        t_iter = time.perf_counter()
        if bg is None:
            logger.log(step)
        else:
            bg.submit(step)
        call_ms.append((time.perf_counter() - t_iter) * 1000)
        if period_s > 0:
            time.sleep(max(0.0, period_s - (time.perf_counter() - t_iter)))
    loop_s = time.perf_counter() - t_start
    t_close = time.perf_counter()
    stats = bg.close() if bg is not None else None
    close_ms = (time.perf_counter() - t_close) * 1000
    rec.flush()
    rec.disconnect()
    return {
        "mode": mode,
        "mean_ms": statistics.fmean(call_ms),
        "p95_ms": float(np.percentile(call_ms, 95)),
        "loop_hz": len(call_ms) / loop_s,
        "logged": stats.logged if stats else len(call_ms),
        "dropped": stats.dropped if stats else 0,
        "worker_ms": stats.mean_log_ms if stats else float("nan"),
        "close_ms": close_ms,
        "rrd_mb": out.stat().st_size / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--period-ms", type=float, default=20.0, help="control period of the simulated loop")
    ap.add_argument("--max-queue", type=int, default=8)
    args = ap.parse_args()

    import rerun as rr

    base = [synthetic_step(i, size=224, horizon=30) for i in range(8)]
    # Distinct Step objects per iteration (index/time advance); arrays shared to keep set-up cheap.
    steps = [dataclasses.replace(base[i % len(base)], index=i, timestamp_s=i * 0.1) for i in range(args.steps + 1)]
    period_s = args.period_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            run("inline log_step", False, steps, period_s, Path(tmp) / "inline.rrd", args.max_queue),
            run("BackgroundLogger.submit", True, steps, period_s, Path(tmp) / "bg.rrd", args.max_queue),
            run("submit, burst (no pause)", True, steps, 0.0, Path(tmp) / "burst.rrd", args.max_queue),
        ]
    print(
        f"viz overhead: rerun-sdk {rr.__version__}, {args.steps} steps, 2x224x224 cameras + depth, 30x6 chunk, "
        f"control period {args.period_ms:g} ms, queue {args.max_queue}"
    )
    head = f"| {'mode':<26} | caller ms/step | p95 ms | loop Hz | logged | dropped | worker ms/step | close ms | rrd MB |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        print(
            f"| {r['mode']:<26} | {r['mean_ms']:14.3f} | {r['p95_ms']:6.3f} | {r['loop_hz']:7.0f} | {r['logged']:6d} "
            f"| {r['dropped']:7d} | {r['worker_ms']:14.3f} | {r['close_ms']:8.1f} | {r['rrd_mb']:6.1f} |"
        )
    ratio = rows[0]["mean_ms"] / rows[1]["mean_ms"]
    print(f"caller-side cost ratio inline / background = {ratio:.0f}x (same Steps, same sink, one run)")


if __name__ == "__main__":
    main()
