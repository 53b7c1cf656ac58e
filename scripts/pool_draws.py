"""Two models' closed-loop success pooled over several layout sets, paired by layout.

    .venv/bin/python scripts/pool_draws.py --old shipped --new pp_xo6 --sets 90000,110000,120000
    .venv/bin/python scripts/pool_draws.py --new tt3 --sets 90000,110000,120000,130000,140000   # one model alone
    .venv/bin/python scripts/pool_draws.py --old tt3 --new rbcpp --sets 170000 --tasks pick_place   # one task

`eval compare-draws` pairs the draws of ONE evaluation (one first seed); a model measured on several fresh sets
is judged on all of them at once here, with the same arithmetic: each layout's success rate over its draws, new
minus old, the mean over layouts and its 95% interval (`compare_draws.paired_row`). Without --old: one model's
rate per task over every layout, with the 95% interval of that mean over layouts (how far as many new layouts of
the same kind could put it). Reads
docs/results/nano_eval_{NAME}_seeds{SET}{,_noise1,_noise2}_continuous.json (the naming of the README's commands);
`--mode think` reads the `_think.json` records of the same sets instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
TASKS = ("pick_place", "push_left", "push_right", "touch")


def layout_rates(paths: list[Path], mode: str = "continuous") -> dict[tuple[str, int], float]:
    """(task, seed) -> success rate over the records (draws) that ran it (rollouts of `mode`, own targets)."""
    from molmoact2.evaluation.report import own_rollouts

    runs = defaultdict(list)
    for path in paths:
        for r in own_rollouts(json.loads(path.read_text())["rollouts"]):
            if r["mode"] == mode:
                runs[(r["task"], int(r["seed"]))].append(bool(r["success"]))
    return {k: float(np.mean(v)) for k, v in runs.items()}


def records(name: str, sets: list[str], draws: int, mode: str = "continuous") -> list[Path]:
    paths = [RESULTS / f"nano_eval_{name}_seeds{s}{'' if d == 0 else f'_noise{d}'}_{mode}.json"
             for s in sets for d in range(draws)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"pool_draws: expected these records, missing: {', '.join(missing)}")
    return paths


def one_model(name: str, sets: list[str], draws: int, tasks: tuple[str, ...] = TASKS,
              mode: str = "continuous") -> int:
    """One model's success per task over every layout of the sets: the mean of the layouts' rates over their draws,
    with a normal 95% interval over layouts (the layouts, not the draws, are the independent samples)."""
    from molmoact2.evaluation.compare_draws import _Z95  # the same normal quantile as the paired intervals

    rates = {k: v for k, v in layout_rates(records(name, sets, draws, mode), mode).items() if k[0] in tasks}
    print(f"{name}, {mode}, sets from {', '.join(sets)}, {draws} draws each\n")
    print("| task | layouts | success (95% interval) |\n|---|---|---|")
    every = "all tasks" if tasks == TASKS else "these tasks"
    for task in (every, *tasks):
        r = np.array([v for k, v in sorted(rates.items()) if task == every or k[0] == task])
        half = _Z95 * float(r.std(ddof=1)) / np.sqrt(len(r)) if len(r) > 1 else float("inf")
        print(f"| {task} | {len(r)} | {100 * r.mean():.1f}% ({100 * (r.mean() - half):.1f} to "
              f"{100 * (r.mean() + half):.1f}) |")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", help="NAME of the old model's records (omit: the new model's rates alone)")
    ap.add_argument("--new", required=True, help="NAME of the new model's records")
    ap.add_argument("--sets", required=True, help="first seeds of the layout sets, comma-separated")
    ap.add_argument("--draws", type=int, default=3, help="noise draws per set (noise seeds 0..N-1)")
    ap.add_argument("--tasks", default=None,
                    help="only these tasks' layouts, comma-separated (e.g. pick_place, when one model's records "
                         "ran that task alone); default: every task")
    ap.add_argument("--mode", default="continuous", choices=("continuous", "think"),
                    help="which records and rollouts: *_continuous.json (default) or *_think.json")
    a = ap.parse_args(argv)
    tasks = TASKS if a.tasks is None else tuple(t.strip() for t in a.tasks.split(",") if t.strip())
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise SystemExit(f"pool_draws: --tasks expected some of {', '.join(TASKS)}, got {a.tasks!r}")
    from molmoact2.evaluation.compare_draws import paired_row

    sets = [s.strip() for s in a.sets.split(",") if s.strip()]
    if a.old is None:
        return one_model(a.new, sets, a.draws, tasks, a.mode)
    old, new = ({k: v for k, v in layout_rates(records(n, sets, a.draws, a.mode), a.mode).items() if k[0] in tasks}
                for n in (a.old, a.new))
    if sorted(old) != sorted(new):
        raise SystemExit("pool_draws: the two models ran different layouts; expected the same seeds and tasks")
    print(f"{a.old} vs {a.new}, {a.mode}, sets from {', '.join(sets)}, {a.draws} draws each\n")
    print("| task | layouts | old | new | new - old (95% interval), points | verdict |\n|---|---|---|---|---|---|")
    every = "all tasks" if tasks == TASKS else "these tasks"
    for task in (every, *tasks):
        keys = sorted(k for k in old if task == every or k[0] == task)
        row = paired_row(task, np.array([old[k] for k in keys]), np.array([new[k] for k in keys]))
        lo, hi = row["ci95"]
        print(f"| {task} | {row['layouts']} | {100 * row['old']:.1f}% | {100 * row['new']:.1f}% | "
              f"{100 * row['diff']:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f}) | {row['verdict']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
