"""Rebuild assets/openfast_so101_sim: an OpenFAST tokenizer fitted on the simulator's expert demos.

    .venv/bin/python scripts/build_openfast_asset.py --episodes-per-task 8 --out assets/openfast_so101_sim

Demos are recorded with `molmoact2 sim record` (the scripted expert, one LeRobot v3.0 dataset per
single-arm SO-101 task, successful episodes from seed 0 on), or read from existing LeRobot datasets
given with --demos DIR [DIR ...].
Writes the tokenizer files (released FAST layout), normalization.json (1-99 % stats), the demo
actions (demo_actions.npz, used by the app tab and the bench) and a README with this command.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def record_demos(tasks: list[str], episodes_per_task: int, image_size: int, workdir: Path) -> list[Path]:
    """`molmoact2 sim record` once per task (successful expert episodes, seeds from 0), as LeRobot datasets."""
    dirs = []
    for task in tasks:
        out = workdir / f"demos_{task}"
        cmd = [sys.executable, "-m", "molmoact2", "sim", "record", "--task", task, "--episodes",
               str(episodes_per_task), "--image-size", str(image_size), "--out", str(out)]
        print("+", " ".join(cmd[1:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
        dirs.append(out)
    return dirs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "assets" / "openfast_so101_sim"))
    ap.add_argument("--episodes-per-task", type=int, default=8)
    ap.add_argument("--tasks", default="pick_place,push_left,push_right,touch")
    ap.add_argument("--demos", nargs="+", help="use these LeRobot datasets instead of recording new demos")
    ap.add_argument("--image-size", type=int, default=64, help="camera size while recording (only actions are kept)")
    ap.add_argument("--scale", type=float, default=10)
    ap.add_argument("--vocab-size", type=int, default=1024)
    args = ap.parse_args()

    from molmoact2.openfast.sources import load_actions, save_npz
    from molmoact2.openfast.training import fit_on_episodes, save_outcome

    t0 = time.perf_counter()
    tasks = [t for t in args.tasks.split(",") if t]
    if args.demos:
        dirs = [Path(d) for d in args.demos]
        described = "LeRobot demos " + ", ".join(d.name for d in dirs)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="openfast-demos-"))
        dirs = record_demos(tasks, args.episodes_per_task, args.image_size, workdir)
        described = (f"`molmoact2 sim record` scripted-expert demos, tasks {', '.join(tasks)}, "
                     f"{args.episodes_per_task} successful episodes each")
    episodes, meta, names, fps = [], [], None, None
    for d in dirs:
        src = load_actions(d)
        episodes += src.episodes
        names, fps = src.names, src.fps or 30.0
        meta += [{"dataset": d.name, "episode": i, "steps": len(e)} for i, e in enumerate(src.episodes)]
    if not args.demos:
        shutil.rmtree(workdir)  # the recorded frames are not needed: demo_actions.npz keeps the actions
    collect_s = time.perf_counter() - t0
    scale = int(args.scale) if float(args.scale).is_integer() else args.scale
    outcome = fit_on_episodes(episodes, int(round(fps)), scale=scale, vocab_size=args.vocab_size, stride=1,
                              names=names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "scripts/build_openfast_asset.py", *sys.argv[1:]])
    save_outcome(outcome, out, source=described, command=command)
    save_npz(out / "demo_actions.npz", episodes, fps=fps, names=names)
    s, p = outcome.stats, outcome.processor
    rows = "\n".join(f"| {m['dataset']} | {m['episode']} | {m['steps']} |" for m in meta)
    (out / "README.md").write_text(f"""# openfast_so101_sim — a small OpenFAST tokenizer for the simulated SO-101

Fitted on the **simulator's scripted-expert demos** ({described}); {len(episodes)} episodes,
{sum(len(e) for e in episodes)} frames at {fps:g} fps.
Actions are absolute joint targets in LeRobot SO-101 units ({", ".join(names)}).
Only the `action` column of the recorded datasets is used (the commanded joint targets); the datasets themselves
are not shipped, `demo_actions.npz` keeps just their actions.

Rebuild (records the demos again, then fits; took {collect_s:.0f} s to record here):

    {command}

## Files
| file | what |
|---|---|
| `processor_config.json`, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json` | the released FAST layout (load with `molmoact2.openfast.OpenFastProcessor.load`, or LeRobot's `UniversalActionProcessor.from_pretrained_local`; no remote code is shipped, `auto_map` is kept only for layout fidelity) |
| `normalization.json` | 1st/99th percentile per joint: actions are clipped to [q01, q99] and mapped to [-1, 1] before encoding |
| `openfast_fit.json` | trained integer range (min_token..max_token), the command, and round-trip stats on the training chunks |
| `demo_actions.npz` | the demo actions themselves (`episode_000`, … [T, 6] float32, `fps`, `names`), for the app tab and the bench |

## Tokenizer
scale {p.scale}, vocab_size {p.config.vocab_size} (trained vocabulary {p.vocab.size}), min_token {p.min_token},
max_token {p.max_token}, time_horizon {p.config.time_horizon} (1 s), action_dim {p.config.action_dim}.

On its {s.num_chunks} training chunks (1-s windows, stride 1): {s.tokens_mean:.1f} tokens per chunk on average
(p99 {s.tokens_p99:.0f}, max {s.tokens_max}) vs {s.binning_tokens} for 256-bin binning
({s.compression_vs_binning:.1f}x fewer); mean round-trip error {s.mean_rel_error_pct:.3f} % of each joint's range,
max {s.max_rel_error_pct:.2f} %. Held-out figures: `bench/openfast.py`.

## Episodes
| dataset | episode | steps |
|---|---|---|
{rows}
""", encoding="utf-8")
    print(f"wrote {out} ({len(episodes)} episodes, {s.num_chunks} chunks, {s.tokens_mean:.1f} tokens/chunk, "
          f"{s.compression_vs_binning:.1f}x fewer than binning, mean err {s.mean_rel_error_pct:.3f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
