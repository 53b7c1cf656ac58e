"""What does asking about five shifted copies cost? (`molmoact2.point_ensemble`, the Spatial tab's default)

    .venv/bin/python bench/point_copies.py                      # Nano-ER, one thread, a 224 x 224 simulator frame

One pointing question in one pass (`policy.ask`) and through `ask_shifted` (the picture and four moved copies),
interleaved so both see the same machine load; median ms of each and their ratio (about 5x is expected: five
model calls, nothing else of note).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="nano-er", help="a model spec that answers questions (default nano-er)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)

    import torch

    from molmoact2 import spatial
    from molmoact2.models.registry import load_policy
    from molmoact2.point_ensemble import ShiftEnsemble, ask_shifted
    from molmoact2.spatial_session import sim_scene

    torch.set_num_threads(args.threads)
    policy = load_policy(args.checkpoint, seed=0)
    scene = sim_scene("touch", seed=10003)
    question = spatial.point_prompt("the bin")
    ensemble = ShiftEnsemble()
    policy.ask([scene.rgb], question)  # warm-up: first-call allocations are not the steady state
    one, five = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        policy.ask([scene.rgb], question)
        one.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        step = ask_shifted(policy, scene.rgb, question, ensemble)
        five.append((time.perf_counter() - t0) * 1e3)
    if not step.info["shift_ensemble"]["applied"]:
        raise SystemExit(f"the model did not answer with one point ({step.answer_text!r}): nothing was averaged")
    a, b = statistics.median(one), statistics.median(five)
    print(f"{args.checkpoint}, {args.threads} thread(s), median of {args.repeats}, a 224 x 224 frame:\n")
    print("| asking | ms per question | questions/s |\n|---|---|---|")
    print(f"| one pass | {a:.1f} | {1e3 / a:.1f} |")
    print(f"| five shifted copies | {b:.1f} | {1e3 / b:.1f} |")
    print(f"\ncopies / one pass: {b / a:.2f}x")


if __name__ == "__main__":
    main()
