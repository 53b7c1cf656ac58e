"""MolmoThink change-mask benchmark.

1. Time per frame of mask + spans (goal < 2 ms on 2 cores), measured side by side:
   `reference` re-resizes BOTH images every step (as the HF remote code does); `cached` keeps the
   previous frame's patch features (`ThinkCache`), so only the new frame is resized. Same masks.
2. Fraction of the 100 depth cells re-predicted per step over a rollout with a static front camera:
   the simulator expert per task (when `molmoact2.sim` is installed) and the boxes scene.

    .venv/bin/python bench/think_mask.py [--steps 40] [--seeds 0,1] [--repeats 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import molmoact2  # noqa: E402,F401
from molmoact2.depth import think  # noqa: E402


def _time_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1e3)


def timing_rows(repeats: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    rows = []
    for h, w in [(224, 224), (480, 640), (320, 320)]:
        prev = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cur = prev.copy()
        cur[h // 3: h // 2, w // 3: w // 2] = 0
        cache = think.ThinkCache()
        cache.update(prev, np.zeros(100, np.int64))

        def reference():
            think.update_spans(think.update_mask(cur, prev))

        def cached():
            m, _ = cache.step(cur)
            think.update_spans(m)

        assert np.array_equal(cache.step(cur)[0], think.update_mask(cur, prev))
        r, c = _time_ms(reference, repeats), _time_ms(cached, repeats)
        resize = _time_ms(lambda: think.resize_for_think(cur), repeats)
        rows.append((f"{w}x{h}", r, c, r / c, resize))
    return rows


def rollout_rows(steps: int, seeds: list[int]) -> list[tuple]:
    from molmoact2.depth import live

    sources: list[tuple[str, callable]] = []
    try:
        from molmoact2.sim import make_env  # noqa: F401

        from molmoact2.depth.data import available_tasks

        for task in available_tasks():
            sources.append((f"sim expert: {task}", lambda s, t=task: live.sim_expert_steps(t, s, steps)))
    except ImportError:
        print("(molmoact2.sim not importable: simulator rows skipped)")
    sources.append(("boxes scene (sliding cube)", lambda s: live.boxes_steps(s, steps)))
    rows = []
    for name, make in sources:
        fracs = []
        for seed in seeds:
            try:
                st = make(seed)
            except Exception as exc:  # report, keep benchmarking the other sources
                print(f"{name} seed {seed}: {type(exc).__name__}: {exc}")
                continue
            tr = think.trace_masks([s.observation.cameras[s.observation.main_camera].rgb for s in st])
            fracs.append(tr.cells_repredicted[1:] / 100.0)
        if fracs:
            f = np.concatenate(fracs)
            rows.append((name, len(f), float(f.mean()), float(np.median(f)), float(f.max()), float((f == 0).mean())))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40, help="rollout length per seed")
    ap.add_argument("--seeds", default="0,1", help="comma-separated rollout seeds")
    ap.add_argument("--repeats", type=int, default=200, help="timing repeats per frame size")
    args = ap.parse_args(argv)

    print("## mask + spans per frame (median ms, 1 process)")
    print("| frame | reference (resize both) ms | cached prev features ms | ratio | of which PIL resize to 320x320 ms |")
    print("|---|---|---|---|---|")
    for size, r, c, ratio, resize in timing_rows(args.repeats):
        print(f"| {size} | {r:.3f} | {c:.3f} | {ratio:.2f}x | {resize:.3f} |")

    print("\n## cells re-predicted per step at threshold 0.996 (static front camera; step 0 excluded)")
    print("| source | steps | mean fraction | median | max | steps with 0 cells |")
    print("|---|---|---|---|---|---|")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for name, n, mean, med, mx, zero in rollout_rows(args.steps, seeds):
        print(f"| {name} | {n} | {mean:.3f} | {med:.3f} | {mx:.3f} | {zero:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
