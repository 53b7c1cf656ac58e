"""`molmoact2 depth ...`: train / evaluate the depth VQ-VAE, and encode a depth map to 100 codes.

    molmoact2 depth train --out assets/depth_vqvae --seeds 0-119 --max-minutes 22
    molmoact2 depth eval  --weights assets/depth_vqvae --seeds 1000-1004
    molmoact2 depth codes --task pick_place --seed 3
    molmoact2 depth lessons --task pick_place --seed 0
    molmoact2 depth think   --task pick_place --seed 0 --rrd think.rrd
"""

from __future__ import annotations

import argparse
import json

DEFAULT_TASKS = "auto"


def parse_seeds(text: str) -> list[int]:
    """'0-9,20,30-31' -> [0..9, 20, 30, 31]."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            if int(b) < int(a):
                raise argparse.ArgumentTypeError(f"seed range {part!r}: expected start <= end")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    if not out:
        raise argparse.ArgumentTypeError(f"expected seeds like '0-9,20', got {text!r}")
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("depth", help="depth VQ-VAE: train, evaluate, encode depth to 100 codes")
    sub = p.add_subparsers(dest="depth_command", metavar="ACTION")

    t = sub.add_parser("train", help="train our depth VQ-VAE on simulator depth frames (tqdm progress)")
    t.add_argument("--out", default="assets/depth_vqvae", help="output directory (model.safetensors + config.json)")
    t.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated simulator tasks, or 'auto' = all registered")
    t.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-29"), help="training scene seeds per task, e.g. 0-29")
    t.add_argument("--frames-per-seed", type=int, default=4, help="arm poses rendered per scene seed")
    t.add_argument("--cameras", default="front,wrist", help="cameras whose depth is used")
    t.add_argument("--hidden-dim", type=int, default=4, help="16 = released layout (7.7M params); 4 = our CPU variant")
    t.add_argument("--codebook-dim", type=int, default=512)
    t.add_argument("--max-minutes", type=float, default=19.5, help="wall-clock budget of the optimisation loop")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--cache", default=None, help="npz to save/load the preprocessed training frames")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(handler=run_train)

    e = sub.add_parser("eval", help="reconstruction error per scene on held-out seeds")
    e.add_argument("--weights", default="assets/depth_vqvae", help="our directory or a released vae-final.pt")
    e.add_argument("--tasks", default=DEFAULT_TASKS)
    e.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1000-1004"))
    e.add_argument("--frames-per-seed", type=int, default=2)
    e.add_argument("--cameras", default="front")
    e.add_argument("--json", default=None, help="also write the rows as JSON here")
    e.set_defaults(handler=run_eval)

    c = sub.add_parser("codes", help="print the 100 depth codes of one simulator frame as a 10x10 grid")
    c.add_argument("--weights", default="assets/depth_vqvae")
    c.add_argument("--task", default="pick_place")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--camera", default="front")
    c.set_defaults(handler=run_codes)

    le = sub.add_parser("lessons", help="what the 0.996 threshold means in pixels, and what lighting changes do")
    le.add_argument("--task", default="pick_place")
    le.add_argument("--seed", type=int, default=0)
    le.add_argument("--camera", default="front")
    le.add_argument("--cell", type=int, default=84, help="grid cell (row*10 + col) to paste squares into")
    le.set_defaults(handler=run_lessons)

    th = sub.add_parser("think", help="MolmoThink masks over a simulator expert rollout (optionally a Rerun .rrd)")
    th.add_argument("--task", default="pick_place", help="simulator task, or 'boxes' for the self-contained scene")
    th.add_argument("--seed", type=int, default=0)
    th.add_argument("--steps", type=int, default=20, help="policy calls (10 actions each)")
    th.add_argument("--threshold", type=float, default=0.996)
    th.add_argument("--weights", default="assets/depth_vqvae", help="VQ-VAE for codes and decoded depth")
    th.add_argument("--rrd", default=None, help="write a Rerun recording here (codes, mask, decoded depth, cloud, counters)")
    th.set_defaults(handler=run_think)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _tasks(text: str) -> list[str]:
    from molmoact2.depth.data import available_tasks

    return available_tasks() if text == "auto" else [t.strip() for t in text.split(",") if t.strip()]


def run_train(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from molmoact2.depth import data
    from molmoact2.depth.train import TrainConfig, train_metadata, train_vqvae
    from molmoact2.depth.vqvae import VQVAEConfig, count_parameters, save_vqvae

    tasks, cameras = _tasks(args.tasks), [c.strip() for c in args.cameras.split(",") if c.strip()]
    t0 = time.perf_counter()
    if args.cache and Path(args.cache).is_file():
        frames = np.load(args.cache)["frames_u8"]
        print(f"loaded {len(frames)} frames from {args.cache}")
    else:
        frames = data.training_frames(tasks, args.seeds, cameras, args.frames_per_seed, progress=True)
        if args.cache:
            np.savez_compressed(args.cache, frames_u8=frames)
    t_frames = time.perf_counter() - t0
    print(f"{len(frames)} depth frames ({', '.join(tasks)}; cameras {', '.join(cameras)}; {len(args.seeds)} seeds) in {t_frames:.0f} s")
    mcfg = VQVAEConfig(hidden_dim=args.hidden_dim, codebook_dim=args.codebook_dim)
    tcfg = TrainConfig(max_minutes=args.max_minutes, threads=args.threads, seed=args.seed)
    model, result = train_vqvae(frames, mcfg, tcfg)
    extra = {"command": "molmoact2 depth train " + " ".join(_argv_echo(args)), "data_source": data.source(),
             "tasks": tasks, "cameras": cameras, "n_frames": int(len(frames)), "frame_seconds": round(t_frames, 1),
             "seeds": f"{min(args.seeds)}-{max(args.seeds)}", "parameters": count_parameters(model),
             "released_layout": mcfg.is_released_layout}
    save_vqvae(model, args.out, extra=train_metadata(mcfg, tcfg, result, extra))
    print(json.dumps({"out": args.out, "steps": result.steps, "train_seconds": round(result.seconds, 1),
                      "final_mse": round(result.final_mse, 5), "codes_used": result.codes_used,
                      "parameters": count_parameters(model)}, indent=1))
    return 0


def _argv_echo(args: argparse.Namespace) -> list[str]:
    seeds = f"{min(args.seeds)}-{max(args.seeds)}"
    return [f"--out {args.out}", f"--tasks {args.tasks}", f"--seeds {seeds}", f"--frames-per-seed {args.frames_per_seed}",
            f"--cameras {args.cameras}", f"--hidden-dim {args.hidden_dim}", f"--max-minutes {args.max_minutes}"]


def run_eval(args: argparse.Namespace) -> int:
    from molmoact2.depth.codec import DepthCodec
    from molmoact2.depth.evaluate import evaluate, format_table

    codec = DepthCodec.load(args.weights)
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
    rows = evaluate(codec, _tasks(args.tasks), args.seeds, cameras, args.frames_per_seed)
    print(format_table(rows))
    if args.json:
        from pathlib import Path

        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def run_think(args: argparse.Namespace) -> int:
    from molmoact2.depth import live, session
    from molmoact2.depth.codec import DepthCodec

    codec = DepthCodec.load(args.weights)
    if args.task == "boxes":
        steps = live.boxes_steps(args.seed, args.steps)
    else:
        steps = live.sim_expert_steps(args.task, args.seed, args.steps)
    sess = session.from_steps(steps, codec, label=f"{args.task} seed {args.seed}")
    tr = sess.trace(args.threshold)
    stale = sess.stale_cells(args.threshold)
    print(f"{sess.label}: {len(sess)} policy calls, threshold {args.threshold}")
    print("cells re-predicted per step:", tr.cells_repredicted.tolist())
    if stale is not None:
        print("stale buffer cells per step:", stale.tolist())
    print(json.dumps(sess.summary(args.threshold), indent=1))
    if args.rrd:
        from molmoact2.viz.logger import save_rrd

        path = save_rrd(session.session_steps(sess, codec, args.threshold), args.rrd)
        print(f"wrote {path}")
    return 0


def run_lessons(args: argparse.Namespace) -> int:
    from molmoact2.depth.data import render_frames
    from molmoact2.depth.lessons import print_lessons

    meta, frame = next(render_frames(args.task, args.seed, [args.camera], 1))
    print_lessons(frame.rgb, args.cell, f"{meta['task']} seed {args.seed} {args.camera} camera")
    from molmoact2.depth.lessons import rendered_light_change

    # The simulator pools its EGL contexts; free them before the boxes scene opens its own renderer,
    # or freeing the pool at interpreter exit raises EGLError noise.
    import sys

    sim_render = sys.modules.get("molmoact2.sim.render")
    if sim_render is not None and hasattr(sim_render, "release_thread_gl_contexts"):
        sim_render.release_thread_gl_contexts()
    cells = rendered_light_change(args.seed)
    print(f"\nboxes scene seed {args.seed}, light dimmed to 60% in MuJoCo at step 8 (cube sliding throughout):")
    print("  cells re-predicted per step:", cells.tolist())
    return 0


def run_codes(args: argparse.Namespace) -> int:
    from molmoact2.depth.codec import DepthCodec
    from molmoact2.depth.data import render_frames

    codec = DepthCodec.load(args.weights)
    frame = next(render_frames(args.task, args.seed, [args.camera], 1))[1]
    codes = codec.encode(depth_m=frame.depth_m).reshape(10, 10)
    print(f"{args.task} seed {args.seed} camera {args.camera}: 100 depth codes (row-major 10x10)")
    for row in codes:
        print(" ".join(f"{int(c):3d}" for c in row))
    return 0
