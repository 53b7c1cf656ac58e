"""Per-stage latency of MolmoAct2-Nano's predict_action on a static camera, all modes side by side.

    .venv/bin/python bench/nano_latency.py                       # random tiny model (architecture cost only)
    .venv/bin/python bench/nano_latency.py --size small
    .venv/bin/python bench/nano_latency.py --checkpoint assets/nano --action-tokenizer assets/openfast_so101_sim

Modes: continuous (flow expert), Think with full depth (every frame decodes 100 codes), Think with
adaptive depth (MolmoThink: the cache from the previous, identical frame is replayed), and discrete
(OpenFAST tokens; only with a trained checkpoint + tokenizer: a random model does not emit the grammar).
Prints the median per stage over --repeats runs and the adaptive-vs-full depth speedup.
Random weights measure the architecture's cost, not a trained model's; the shipped checkpoint's
figures go in the README once it exists (issue 6).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("prepare_ms", "vision_ms", "prefill_ms", "depth_ms", "action_expert_ms", "discrete_decode_ms", "total_ms")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="tiny", help="random model size (factory.SIZES) when no --checkpoint")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--action-tokenizer", default=None, help="OpenFAST directory (enables the discrete row)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    from molmoact2.models.nano.policy import load_nano

    if a.checkpoint:
        policy = load_nano(a.checkpoint)
        model, proc, what = policy.model, policy.processor, a.checkpoint
    else:
        from molmoact2.models.nano.factory import build_random_nano

        model, proc = build_random_nano(a.size)
        what = f"random {a.size}"
    tag = sorted(model.norm_stats["metadata_by_tag"])[0]
    meta = model.norm_stats["metadata_by_tag"][tag]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in meta.get("camera_keys", ["a", "b"])]
    state = np.asarray(meta["state_stats"]["min"], dtype=np.float32) * 0.5 + np.asarray(meta["state_stats"]["max"]) * 0.5
    base = dict(processor=proc, images=images, task="pick up the red cube", state=state, norm_tag=tag,
                inference_action_mode="continuous")
    tokenizer = None
    if a.action_tokenizer:
        from molmoact2.openfast import OpenFastProcessor

        tokenizer = OpenFastProcessor.load(a.action_tokenizer)

    def run(mode: str) -> dict[str, float]:
        g = torch.Generator().manual_seed(0)
        if mode == "continuous":
            return model.predict_action(**base, generator=g)["timings_ms"]
        if mode == "discrete":
            return model.predict_action(**(base | {"inference_action_mode": "discrete"}), action_tokenizer=tokenizer)["timings_ms"]
        full = model.predict_action(**base, generator=g, enable_depth_reasoning=True)
        if mode == "think_full":
            return full["timings_ms"]
        return model.predict_action(**base, generator=g, enable_depth_reasoning=True,
                                    depth_cache=full["depth_cache"])["timings_ms"]

    modes = ["continuous"] + (["think_full", "think_adaptive"] if model.config.enable_depth_reasoning else [])
    modes += ["discrete"] if tokenizer is not None else []
    run("continuous")  # warm-up
    rows = {}
    for mode in modes:
        samples = [run(mode) for _ in range(a.repeats)]
        rows[mode] = {s: statistics.median(t.get(s, 0.0) for t in samples) for s in STAGES}
    print(f"MolmoAct2-Nano latency ({what}, {sum(x.numel() for x in model.parameters()) / 1e6:.2f} M params, "
          f"{a.threads} thread(s), median of {a.repeats}, ms)")
    print(f"{'mode':16s}" + "".join(f"{s[:-3]:>16s}" for s in STAGES) + f"{'rate_hz':>10s}")
    for mode, r in rows.items():
        print(f"{mode:16s}" + "".join(f"{r[s]:16.1f}" for s in STAGES) + f"{1000.0 / r['total_ms']:10.1f}")
    if "think_adaptive" in rows:
        full, adapt = rows["think_full"], rows["think_adaptive"]
        print(f"adaptive vs full depth: depth stage {full['depth_ms'] / adapt['depth_ms']:.1f}x faster, "
              f"whole step {full['total_ms'] / adapt['total_ms']:.1f}x faster (static camera: every cell replayed)")


if __name__ == "__main__":
    main()
