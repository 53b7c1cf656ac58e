"""`molmoact2 rrd ...`: Rerun recordings of Steps, without the app.

    molmoact2 rrd export runs/episode_0 episode_0.rrd      # a saved Recording -> shareable .rrd
    molmoact2 rrd demo demo.rrd --steps 20                 # synthetic Steps: every view filled
    molmoact2 rrd summary episode_0.rrd                    # entities, rows, timelines, views

Open the file with `rerun episode_0.rrd` or in the app's viewer.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("rrd", help="Rerun recordings: export a saved Recording, make a demo, summarize a file")
    sub = p.add_subparsers(dest="rrd_command", metavar="ACTION")

    e = sub.add_parser("export", help="write a saved Recording directory (step_NNNNNN/...) to an .rrd (atomic)")
    e.add_argument("recording", help="directory written by molmoact2.models.recording.Recording")
    e.add_argument("out", help="output .rrd path")
    e.add_argument("--depth-range", nargs=2, type=float, metavar=("LO", "HI"), default=None,
                   help="fixed colour range of decoded depth (default: min..max over the recording)")
    e.set_defaults(handler=run_export)

    d = sub.add_parser("demo", help="write synthetic Steps (no model; plausible made-up data) to an .rrd")
    d.add_argument("out", help="output .rrd path")
    d.add_argument("--steps", type=int, default=20)
    d.add_argument("--size", type=int, default=224, help="camera width = height in pixels")
    d.set_defaults(handler=run_demo)

    s = sub.add_parser("summary", help="print entities (rows per step), timelines and blueprint views of an .rrd")
    s.add_argument("path")
    s.set_defaults(handler=run_summary)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


def run_export(args: argparse.Namespace) -> int:
    from molmoact2.models.recording import Recording
    from molmoact2.viz.logger import VizConfig, save_rrd

    rec = Recording.open(args.recording)
    config = VizConfig(depth_decoded_range=tuple(args.depth_range) if args.depth_range else None)
    out = save_rrd(rec, args.out, config=config)
    print(f"wrote {out} ({len(rec)} steps, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from molmoact2.models.synthetic import synthetic_step
    from molmoact2.viz.logger import save_rrd

    if args.steps < 1:
        raise SystemExit(f"molmoact2 rrd demo: expected --steps >= 1, got {args.steps}")
    steps = (synthetic_step(i, size=args.size) for i in range(args.steps))
    out = save_rrd(tqdm(steps, total=args.steps, desc="steps", unit="step"), args.out)
    print(f"wrote {out} ({args.steps} synthetic steps, {out.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from molmoact2.viz.inspect import blueprint_views, summarize_rrd

    summary = summarize_rrd(args.path)
    entities = summary["entities"]
    print(f"{args.path}: {summary['recordings']} recording(s), {summary['blueprints']} blueprint(s), {len(entities)} entities")
    print(f"{'entity':<48} {'rows':>5} {'static':>6}  timelines")
    for path, e in sorted(entities.items()):
        timelines = ",".join(sorted(t for t in e.timelines if t != "log_time")) or "-"
        print(f"{path:<48} {e.rows:>5} {e.static_rows:>6}  {timelines}")
    views = blueprint_views(args.path)
    if views:
        print("views: " + "; ".join(f"{v['class']} {v['origin']}" for v in views))
    return 0
