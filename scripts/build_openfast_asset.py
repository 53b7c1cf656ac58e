"""Rebuild assets/openfast_so101_sim: an OpenFAST tokenizer fitted on the simulator's expert demos.

    .venv/bin/python scripts/build_openfast_asset.py --episodes-per-task 8 --out assets/openfast_so101_sim

Demos come from the scripted expert of `molmoact2.sim` (all single-arm SO-101 tasks, seeds 0..N-1),
or from a LeRobot dataset given with --demos (e.g. one written by `molmoact2 sim record`).
Writes the tokenizer files (released FAST layout), normalization.json (1-99 % stats), the demo
actions (demo_actions.npz, used by the app tab and the bench) and a README with this command.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def collect_expert_demos(tasks: list[str], episodes_per_task: int) -> tuple[list[np.ndarray], list[dict], list[str]]:
    """Run the scripted expert closed-loop in MuJoCo; return the commanded actions of each episode."""
    from tqdm import tqdm

    from molmoact2.sim import make_env

    episodes, meta, names = [], [], None
    for task in tasks:
        for seed in tqdm(range(episodes_per_task), desc=f"expert demos: {task}"):
            # Small single-camera renders: only the actions are kept, rendering is the env's fixed cost.
            env = make_env(task, seed=seed, image_size=64, cameras=("front",), depth=False, segmentation=False)
            try:
                obs, _ = env.reset(seed=seed)
                names = list(env.action_names)
                expert, actions, success = env.expert(), [], False
                while len(actions) < env.time_limit_steps:
                    chunk = expert.act(obs)
                    for a in chunk:
                        obs, _, terminated, truncated, _ = env.step(a)
                        actions.append(np.asarray(a, dtype=np.float32))
                        if terminated or truncated:
                            break
                    if terminated or truncated or expert.done:
                        success = bool(terminated)
                        break
            finally:
                env.close()
            episodes.append(np.stack(actions))
            meta.append({"task": task, "seed": seed, "steps": len(actions), "success": success})
    return episodes, meta, names or []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "assets" / "openfast_so101_sim"))
    ap.add_argument("--episodes-per-task", type=int, default=8)
    ap.add_argument("--tasks", default="pick_place,push_left,push_right,touch")
    ap.add_argument("--demos", help="use this LeRobot dataset's actions instead of running the expert")
    ap.add_argument("--scale", type=float, default=10)
    ap.add_argument("--vocab-size", type=int, default=1024)
    args = ap.parse_args()

    from molmoact2.openfast.sources import load_actions, save_npz
    from molmoact2.openfast.training import fit_on_episodes, save_outcome

    t0 = time.perf_counter()
    if args.demos:
        src = load_actions(args.demos)
        episodes, names, fps = src.episodes, src.names, src.fps or 30.0
        meta = [{"source": src.description}]
        described = f"LeRobot demos {args.demos}"
    else:
        tasks = [t for t in args.tasks.split(",") if t]
        episodes, meta, names = collect_expert_demos(tasks, args.episodes_per_task)
        fps = 30.0
        described = f"molmoact2.sim scripted expert, tasks {tasks}, seeds 0..{args.episodes_per_task - 1}"
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
    successes = sum(1 for m in meta if m.get("success"))
    rows = "\n".join(f"| {m['task']} | {m['seed']} | {m['steps']} | {m['success']} |" for m in meta if "task" in m)
    (out / "README.md").write_text(f"""# openfast_so101_sim — a small OpenFAST tokenizer for the simulated SO-101

Fitted on the **simulator's scripted-expert demos** ({described}); {len(episodes)} episodes,
{sum(len(e) for e in episodes)} frames at {fps:g} fps{f", {successes} of them successful" if "task" in meta[0] else ""}.
Actions are absolute joint targets in LeRobot SO-101 units ({", ".join(names)}).
The demos are collected by running `molmoact2.sim`'s scripted expert closed-loop through its public API
(`make_env(task, seed)`, `env.expert()`), i.e. the commanded actions a `molmoact2 sim record` dataset stores;
pass `--demos DIR` to fit on such a recorded LeRobot dataset instead.

Rebuild (deterministic given the simulator; took {collect_s:.0f} s to collect here):

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
| task | seed | steps | success |
|---|---|---|---|
{rows}
""", encoding="utf-8")
    print(f"wrote {out} ({len(episodes)} episodes, {s.num_chunks} chunks, {s.tokens_mean:.1f} tokens/chunk, "
          f"{s.compression_vs_binning:.1f}x fewer than binning, mean err {s.mean_rel_error_pct:.3f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
