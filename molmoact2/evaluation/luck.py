"""How much of a closed-loop success rate is luck? Several `eval nano` records of ONE checkpoint on the same
layouts, each drawn with another `--noise-seed`.

    result = luck([record_seed0, record_seed1, record_seed2])
    print(to_markdown(result))

Why this exists: the flow expert samples its chunk from noise, so the same weights on the same layout can solve
it under one draw and miss it under another. Two checkpoints' rates differ by that much without any change to
their weights, and `eval compare`'s paired counts mix the two. Per mode this prints each draw's rate and the
spread between draws, then, per layout, in how many of the R draws it was solved: solved every time is skill,
never is a systematic failure, in between is luck. "Solved again" is the chance that a layout solved under one
draw is solved under another: equal to the overall rate if success had nothing to do with the layout, 100% if
the noise did not matter.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from molmoact2.evaluation.compare import inference_settings
from molmoact2.evaluation.report import EVAL_FORMAT, own_rollouts

# What must match for the records to be draws of the same thing (modes and spatial questions may differ:
# each rollout seeds its own randomness, so a mode's episodes do not depend on what else the record ran).
_SAME = ("tasks", "seeds_per_task", "first_seed", "image_size", "on_limit")


def checkpoint_paths(records: list[dict[str, Any]]) -> list[str]:
    return [rec.get("config", {}).get("checkpoint") for rec in records]


def check_same_weights(records: list[dict[str, Any]], *, paths_must_match: bool = True) -> None:
    """The records ran one set of weights: their weight digests agree (records since 2026-12-04 carry one), or,
    without digests, their checkpoint paths do. With paths_must_match=False records without digests under other
    paths pass (the same weights copied to `assets/`, say): the caller prints the paths instead."""
    digests = [rec.get("weights_sha256") for rec in records]
    if all(digests):
        if any(d != digests[0] for d in digests):
            raise ValueError(f"the records are not draws of one evaluation: the weights differ "
                             f"(sha256 {[d[:12] for d in digests]}; checkpoints {checkpoint_paths(records)})")
        return
    paths = checkpoint_paths(records)
    if paths_must_match and any(p != paths[0] for p in paths):
        raise ValueError(f"the records are not draws of one evaluation: checkpoint differs ({paths})")


def check_draws(records: list[dict[str, Any]], *, paths_must_match: bool = True) -> None:
    if len(records) < 2:
        raise ValueError(f"expected at least 2 records of one checkpoint (one per --noise-seed), got {len(records)}")
    for i, rec in enumerate(records):
        if rec.get("format") != EVAL_FORMAT:
            raise ValueError(f"record {i + 1} is not a {EVAL_FORMAT} record (format={rec.get('format')!r})")
    check_same_weights(records, paths_must_match=paths_must_match)
    configs = [rec.get("config", {}) for rec in records]
    # The layouts and how they were run (as recorded), then how actions were made (with defaults for older records)
    settings = [{**{k: c.get(k) for k in _SAME}, **inference_settings(rec)} for c, rec in zip(configs, records)]
    for key in settings[0]:
        values = [st[key] for st in settings]
        if any(v != values[0] for v in values):
            raise ValueError(f"the records are not draws of one evaluation: the setting {key!r} differs ({values})")
    seeds = [c.get("seed", 0) for c in configs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two records share a noise seed ({seeds}): the same draw counted twice")


def luck(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode present in every record: rates per draw, their spread, and the per-layout solved counts."""
    check_draws(records)
    by_record = []
    for rec in records:
        solved: dict[str, dict[tuple[str, int], bool]] = defaultdict(dict)
        for r in own_rollouts(rec.get("rollouts", [])):
            solved[r["mode"]][(r["task"], int(r["seed"]))] = bool(r["success"])
        by_record.append(solved)
    modes = sorted(set.intersection(*(set(s) for s in by_record)))
    out: dict[str, Any] = {"noise_seeds": [rec.get("config", {}).get("seed", 0) for rec in records], "modes": {}}
    for mode in modes:
        layouts = sorted(set.intersection(*(set(s[mode]) for s in by_record)))
        if not layouts:
            continue
        wins = np.array([[s[mode][k] for k in layouts] for s in by_record], dtype=int)  # draws x layouts
        n_draws = wins.shape[0]
        per_layout = wins.sum(axis=0)
        rates = wins.mean(axis=1)
        solved_pairs = float((per_layout * (per_layout - 1)).sum())
        chances = float((per_layout * (n_draws - 1)).sum())
        task_of = np.array([t for t, _ in layouts])
        per_task = {t: [float(x) for x in wins[:, task_of == t].mean(axis=1)] for t in sorted(set(task_of))}
        out["modes"][mode] = {
            "layouts": len(layouts),
            "rates": [float(r) for r in rates],
            "mean": float(rates.mean()), "sd_between_draws": float(rates.std(ddof=1)),
            "per_task": per_task,
            "solved_in_k_draws": [int((per_layout == k).sum()) for k in range(n_draws + 1)],
            "solved_again": (solved_pairs / chances) if chances else None,
        }
    return out


def to_markdown(result: dict[str, Any]) -> str:
    seeds = result["noise_seeds"]
    lines = []
    for mode, m in result["modes"].items():
        n = len(m["rates"])
        lines += [f"{mode}: {m['layouts']} layouts, {n} draws (noise seeds {', '.join(map(str, seeds))})", "",
                  "| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd between draws |",
                  "|---|" + "---|" * (n + 2)]
        lines.append("| success, all tasks | " + " | ".join(f"{100 * r:.0f}%" for r in m["rates"])
                     + f" | {100 * m['mean']:.1f}% | {100 * m['sd_between_draws']:.1f} points |")
        for task, rates in m["per_task"].items():
            lines.append(f"| {task} | " + " | ".join(f"{100 * r:.0f}%" for r in rates)
                         + f" | {100 * float(np.mean(rates)):.1f}% | {100 * float(np.std(rates, ddof=1)):.1f} points |")
        k_counts = m["solved_in_k_draws"]
        lines += ["", "| layouts solved in k of the draws | " + " | ".join(f"k={k}" for k in range(n + 1)) + " |",
                  "|---|" + "---|" * (n + 1),
                  "| layouts | " + " | ".join(str(c) for c in k_counts) + " |", ""]
        again = m["solved_again"]
        lines.append(f"Solved again under another draw: {'–' if again is None else f'{100 * again:.0f}%'} of the "
                     f"times a layout was solved (the overall rate {100 * m['mean']:.0f}% if the layout did not "
                     f"matter, 100% if the noise did not).")
        lines.append("")
    return "\n".join(lines)
