"""What do K plan samples per call cost? (`predict_action(..., plan_samples=K)`, `eval nano --plan-samples K`)

    .venv/bin/python bench/plan_samples.py --checkpoint assets/nano                 # one thread
    .venv/bin/python bench/plan_samples.py --checkpoint assets/nano --threads 2

K start draws go through the action expert as one batch and the medoid plan is kept (`flow_noise.medoid_index`);
vision, prefill and the context are shared, so only the expert's part of a call should grow with K. This times
whole continuous calls for each K side by side, interleaved so every K sees the same machine load, and prints the
stages, the control rate and each K's cost relative to one draw.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("vision_ms", "prefill_ms", "action_expert_ms", "call_ms")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--samples", default="1,2,4,8,16", help="comma-separated K values (1 = one draw, as shipped)")
    a = p.parse_args(argv)
    ks = sorted({int(k) for k in a.samples.split(",") if k.strip()} | {1})

    import torch

    torch.set_num_threads(a.threads)
    from molmoact2.models.nano.policy import load_nano

    policy = load_nano(a.checkpoint)
    tag = sorted(policy.model.norm_stats["metadata_by_tag"])[0]
    meta = policy.model.norm_stats["metadata_by_tag"][tag]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in meta.get("camera_keys", ["a", "b"])]
    state = (np.asarray(meta["state_stats"]["min"], dtype=np.float32) + np.asarray(meta["state_stats"]["max"])) / 2
    base = dict(processor=policy.processor, images=images, task="push the red cube to the right", state=state,
                norm_tag=tag, inference_action_mode="continuous")

    def run(k: int) -> dict:
        t0 = time.perf_counter()
        out = policy.model.predict_action(generator=torch.Generator().manual_seed(0), plan_samples=k, **base)
        out["timings_ms"]["call_ms"] = (time.perf_counter() - t0) * 1e3
        return out

    for k in ks:  # warm-up
        run(k)
    times: dict[int, list[dict]] = {k: [] for k in ks}
    for _ in range(a.repeats):
        for k in ks:
            times[k].append(run(k)["timings_ms"])
    rows = {k: {s: statistics.median(t[s] for t in times[k]) for s in STAGES} for k in ks}

    print(f"MolmoAct2-Nano continuous call with K plan samples ({a.checkpoint}, {a.threads} thread(s), median of "
          f"{a.repeats}, ms)")
    print(f"{'K':>3s}{'vision':>8s}{'prefill':>9s}{'expert':>8s}{'call':>8s}{'Hz':>7s}{'call / K=1':>12s}"
          f"{'expert / K=1':>14s}")
    one = rows[1]
    for k, r in rows.items():
        print(f"{k:3d}{r['vision_ms']:8.1f}{r['prefill_ms']:9.1f}{r['action_expert_ms']:8.1f}{r['call_ms']:8.1f}"
              f"{1000.0 / r['call_ms']:7.1f}{r['call_ms'] / one['call_ms']:11.2f}x"
              f"{r['action_expert_ms'] / one['action_expert_ms']:13.2f}x")


if __name__ == "__main__":
    main()
