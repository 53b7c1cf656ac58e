"""Per-stage latency of MolmoAct2-Nano's predict_action on a static camera, all modes side by side.

    .venv/bin/python bench/nano_latency.py                       # random tiny model (architecture cost only)
    .venv/bin/python bench/nano_latency.py --size small
    .venv/bin/python bench/nano_latency.py --checkpoint assets/nano --action-tokenizer assets/openfast_so101_sim

The picture is the first frame of a simulator layout (`--frame TASK:SEED`, default pick_place:0), held still.
Modes: continuous (flow expert), Think with full depth (every frame decodes 100 codes), Think with
adaptive depth (MolmoThink: the cache from the previous, identical frame is replayed), discrete
(OpenFAST tokens, decoded freely as the real model: only with a trained checkpoint + tokenizer, a random model does
not emit the grammar, and a trained one may not on a given frame) and discrete_grammar (the same under the OpenFAST
length grammar, `constrain_action_tokens`: it always decodes).
Each mode runs twice per repeat, interleaved: `optimized` (the default inference path) and `reference`
(`predict_action(optimized=False)`: the plain computation, same results up to float summation order).
`--also-steps N` adds a third variant, the optimized path with N Euler steps of the flow expert instead of the
checkpoint's `flow_matching_num_steps` (what a change of that setting buys). `--compile` adds the variant
`compiled`: the optimized path with vision, prefill and expert through torch.compile
(`molmoact2.models.nano.compiled`; each mode's first compiled call compiles, printed and not timed).
Prints the median per stage over --repeats runs, `call` = wall time of the whole predict_action call,
the control rate (chunks/s and executed actions/s = n_action_steps / call), the reference/optimized
ratio per mode, the adaptive-vs-full depth speedup, and the issue's latency goals vs what was measured.
Random weights measure the architecture's cost, not a trained model's; the shipped checkpoint's
figures go in the README once it exists (issue 6). On a busy machine absolute times inflate; the
ratios are measured side by side in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STAGES = ("prepare_ms", "vision_ms", "prefill_ms", "depth_ms", "action_expert_ms", "discrete_decode_ms", "total_ms",
          "call_ms")
LABELS = ("prepare", "vision", "prefill", "depth", "expert", "discrete", "total", "call")  # column headers
# The goals (1 torch thread, size small): chunk rates in Hz and the adaptive-depth speedup.
GOAL_CONTINUOUS_HZ, GOAL_THINK_HZ, GOAL_ADAPTIVE_SPEEDUP = 50.0, 12.7, 3.0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="tiny", help="random model size (factory.SIZES) when no --checkpoint")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--action-tokenizer", default=None, help="OpenFAST directory (enables the discrete row)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference (optimized=False) rows")
    p.add_argument("--frame", default="pick_place:0", metavar="TASK:SEED|noise",
                   help="the static camera's picture: the first observation of simulator layout TASK:SEED (real "
                        "images, state and instruction: what the model decodes in the discrete and Think rows "
                        "depends on them), or 'noise' (random pixels, the bench's input before 2026-12-05)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N optimized continuous calls (torch.profiler) and print the share of CPU time "
                        "per operator: how much of a call is arithmetic that only a smaller model can remove")
    p.add_argument("--also-steps", type=int, default=None, metavar="N",
                   help="also time the optimized path with N Euler steps of the flow expert (rows 'N steps'), "
                        "interleaved with the checkpoint's own number")
    p.add_argument("--compile", action="store_true",
                   help="also time the optimized path with its stages compiled (rows 'compiled'; needs g++)")
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
    horizon = int(meta.get("action_horizon", model.config.max_action_horizon))
    n_exec = int(meta.get("n_action_steps") or horizon)
    if a.frame == "noise":
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in meta.get("camera_keys", ["a", "b"])]
        state = (np.asarray(meta["state_stats"]["min"], dtype=np.float32) * 0.5
                 + np.asarray(meta["state_stats"]["max"]) * 0.5)
        task, where = "pick up the red cube", "random-noise images"
    else:
        images, state, task = _sim_frame(a.frame, meta.get("camera_keys"), tag)
        where = f"simulator frame {a.frame}"
    base = dict(processor=proc, images=images, task=task, state=state, norm_tag=tag,
                inference_action_mode="continuous")
    tokenizer = None
    if a.action_tokenizer:
        from molmoact2.openfast import OpenFastProcessor

        tokenizer = OpenFastProcessor.load(a.action_tokenizer)

    stages = None
    if a.compile:
        from molmoact2.models.nano.compiled import enable_compiled_inference

        stages = enable_compiled_inference(model)
        enable_compiled_inference(model, False)  # attached only for the 'compiled' rows' calls

    def run(mode: str, optimized: bool, around=contextlib.nullcontext,
            num_steps: int | None = None, compiled: bool = False) -> dict[str, float]:
        """One timed predict_action call of `mode` (inside `around()`, e.g. a FLOP counter); `num_steps`
        overrides the checkpoint's Euler steps; `compiled` attaches the compiled stages for this call."""
        model.__dict__["compiled_stages"] = stages if compiled else None
        g = torch.Generator().manual_seed(0)
        kw: dict = dict(generator=g, optimized=optimized, num_steps=num_steps)
        if mode in ("discrete", "discrete_grammar"):
            kw = dict(inference_action_mode="discrete", action_tokenizer=tokenizer, optimized=optimized,
                      constrain_action_tokens=mode == "discrete_grammar")
        elif mode == "think_full":
            kw["enable_depth_reasoning"] = True
        elif mode == "think_adaptive":  # the previous, identical frame fills the cache (not timed)
            first = model.predict_action(**base, generator=g, enable_depth_reasoning=True, optimized=optimized,
                                         num_steps=num_steps)
            kw |= dict(enable_depth_reasoning=True, depth_cache=first["depth_cache"])
        with around():
            t0 = time.perf_counter()
            out = model.predict_action(**(base | kw))
            call_ms = (time.perf_counter() - t0) * 1e3
        return out["timings_ms"] | {"call_ms": call_ms}

    modes = ["continuous"] + (["think_full", "think_adaptive"] if model.config.enable_depth_reasoning else [])
    modes += ["discrete", "discrete_grammar"] if tokenizer is not None else []
    variants = ["optimized"] + ([] if a.no_reference else ["reference"])
    steps_variant = f"{a.also_steps} steps" if a.also_steps else None
    variants += [steps_variant] if steps_variant else []
    variants += ["compiled"] if a.compile else []
    run("continuous", True)  # warm-up (allocator, fused-weight and RoPE caches)
    for mode in modes if a.compile else []:  # compile each mode's shapes before anything is timed
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):  # a free discrete decode may fail on this frame: reported below
            run(mode, True, compiled=True)
        print(f"compiled {mode} in {time.perf_counter() - t0:.1f} s (first call, not timed)")
    rows: dict[tuple[str, str], dict[str, float]] = {}
    failed: dict[str, str] = {}
    for mode in list(modes):
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        try:
            for _ in range(a.repeats):  # interleaved, so both variants see the same machine load
                for v in variants:
                    steps = a.also_steps if v == steps_variant else None
                    samples[v].append(run(mode, v != "reference", num_steps=steps, compiled=v == "compiled"))
        except Exception as err:  # noqa: BLE001 - a model that does not (yet) emit valid OpenFAST tokens
            if mode != "discrete":  # the constrained decode always decodes: its failure is a bug
                raise
            failed[mode] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
            modes.remove(mode)
            continue
        for v in variants:
            rows[(mode, v)] = {s: statistics.median(t.get(s, 0.0) for t in samples[v]) for s in STAGES}
    print(f"MolmoAct2-Nano latency ({what}, {where}, {sum(x.numel() for x in model.parameters()) / 1e6:.2f} M params, "
          f"{a.threads} thread(s), median of {a.repeats}, ms; n_action_steps={n_exec}, "
          f"{model.config.flow_matching_num_steps} Euler steps unless a row says otherwise)")
    print(f"{'mode':16s}{'variant':>10s}" + "".join(f"{label:>9s}" for label in LABELS) + f"{'chunk_hz':>9s}{'act/s':>8s}")
    for (mode, v), r in rows.items():
        print(f"{mode:16s}{v:>10s}" + "".join(f"{r[s]:9.1f}" for s in STAGES)
              + f"{1000.0 / r['call_ms']:9.1f}{n_exec * 1000.0 / r['call_ms']:8.0f}")
    for mode, why in failed.items():
        print(f"{mode:16s} not measured: predict_action raised {why}")
    if not a.no_reference:
        print("reference / optimized (whole call): " + ", ".join(
            f"{m} {rows[(m, 'reference')]['call_ms'] / rows[(m, 'optimized')]['call_ms']:.2f}x" for m in modes))
    if steps_variant:
        own = model.config.flow_matching_num_steps
        print(f"{steps_variant} / checkpoint's {own} steps (whole call): " + ", ".join(
            f"{m} {rows[(m, steps_variant)]['call_ms'] / rows[(m, 'optimized')]['call_ms']:.2f}x" for m in modes))
    if a.compile:
        print("optimized / compiled (whole call): " + ", ".join(
            f"{m} {rows[(m, 'optimized')]['call_ms'] / rows[(m, 'compiled')]['call_ms']:.2f}x" for m in modes))
    opt = {m: rows[(m, "optimized")] for m in modes}
    if "think_adaptive" in opt:
        full, adapt = opt["think_full"], opt["think_adaptive"]
        speedup = full["call_ms"] / adapt["call_ms"]
        print(f"adaptive vs full depth: depth stage {full['depth_ms'] / adapt['depth_ms']:.1f}x faster, "
              f"whole step {speedup:.1f}x faster (static camera: every cell replayed)")
    goals = [("continuous", 1000.0 / opt["continuous"]["call_ms"], GOAL_CONTINUOUS_HZ, "Hz")]
    if "think_adaptive" in opt:
        goals += [("think_adaptive", 1000.0 / opt["think_adaptive"]["call_ms"], GOAL_THINK_HZ, "Hz"),
                  ("adaptive/full", speedup, GOAL_ADAPTIVE_SPEEDUP, "x")]
    # How far could the goals be pushed without changing the computation? Matmul/attention FLOPs of one
    # optimized call vs this machine's matmul peak at the run's thread count give a lower bound on latency.
    from torch.utils.flop_counter import FlopCounterMode

    a_ = torch.randn(512, 512)
    peak = []
    for _ in range(5):
        t0 = time.perf_counter()
        a_ @ a_
        peak.append(2 * 512 ** 3 / (time.perf_counter() - t0) / 1e9)
    peak_gflops = max(peak)
    floors = []
    for mode in modes:
        counter = FlopCounterMode(display=False)
        run(mode, True, around=lambda: counter)
        gflop = counter.get_total_flops() / 1e9
        floors.append(f"{mode} {gflop:.2f} GFLOP -> >= {gflop / peak_gflops * 1e3:.0f} ms "
                      f"(<= {peak_gflops / gflop:.0f} Hz)")
    print(f"compute floor at this machine's {a.threads}-thread matmul peak ({peak_gflops:.0f} GFLOP/s, 512^3 fp32): "
          + "; ".join(floors))
    if a.profile:
        _print_profile(lambda: run("continuous", True), a.profile)
    print("goals (optimized): " + _goal_text(goals))
    if a.compile:
        comp = {m: rows[(m, "compiled")] for m in modes}
        goals_c = [("continuous", 1000.0 / comp["continuous"]["call_ms"], GOAL_CONTINUOUS_HZ, "Hz")]
        if "think_adaptive" in comp:
            goals_c += [("think_adaptive", 1000.0 / comp["think_adaptive"]["call_ms"], GOAL_THINK_HZ, "Hz"),
                        ("adaptive/full", comp["think_full"]["call_ms"] / comp["think_adaptive"]["call_ms"],
                         GOAL_ADAPTIVE_SPEEDUP, "x")]
        print("goals (compiled): " + _goal_text(goals_c))


def _goal_text(goals: list[tuple[str, float, float, str]]) -> str:
    return "; ".join(f"{name} {got:.1f} {unit} vs goal >= {goal:g} {unit} [{'met' if got >= goal else 'NOT met'}]"
                     for name, got, goal, unit in goals)


def _print_profile(call, n: int, top: int = 6) -> None:
    """Share of self CPU time per operator over `n` calls, the largest `top` and the rest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            call()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    shown = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in ops[:top])
    print(f"profile of {n} continuous calls (self CPU time): {shown}; the other {len(ops) - top} operators "
          f"{100 * sum(e.self_cpu_time_total for e in ops[top:]) / total:.0f}%")


def _sim_frame(spec: str, camera_keys, norm_tag: str) -> tuple[list[np.ndarray], np.ndarray, str]:
    """Images (in the checkpoint's camera order), state and instruction of the first observation of `TASK:SEED`."""
    task, sep, seed = spec.partition(":")
    if not sep or not seed.lstrip("-").isdigit():
        raise SystemExit(f"--frame: expected TASK:SEED (e.g. pick_place:0) or 'noise', got {spec!r}")
    from molmoact2.evaluation.first_frames import EVAL_RENDER_SIZE
    from molmoact2.models.hf import order_cameras
    from molmoact2.sim import make_env

    env = make_env(task, image_size=EVAL_RENDER_SIZE, depth=False, segmentation=False)
    try:
        obs, _ = env.reset(seed=int(seed))
    finally:
        env.close()
    order, _ = order_cameras(obs, camera_keys, norm_tag)
    return [obs.cameras[name].rgb for name in order], np.asarray(obs.state, dtype=np.float32), obs.instruction


if __name__ == "__main__":
    main()
