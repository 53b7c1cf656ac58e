"""Compare two checkpoints (or one checkpoint under two inference settings) over several draws of the flow noise
each: is the new one better beyond luck?

    result = compare_draws([old_s0, old_s1, old_s2], [new_s0, new_s1, new_s2])
    print(to_markdown(result, old_name="E", new_name="H"))

Why this exists: `eval compare` pairs one record with one record, and one draw of the flow noise can move a
closed-loop rate by ten points on the same weights (`eval luck`). A checkpoint shipped on one lucky draw gave its
gain back on the next two (docs/nano_experiments.md#dagger-pick-place), so a ship decision now reads R draws per
side. Each held-out layout gets its success rate over the draws for each checkpoint; the difference is the mean
over layouts of (new rate - old rate), and its 95% interval is the normal interval of that paired mean, with the
spread between layouts, which already holds the spread between draws. Pairing by layout removes what the layouts
themselves contribute (hard layouts are hard for both), so the interval is narrower than two pooled proportions'.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from molmoact2.evaluation.compare import _verdict, inference_settings
from molmoact2.evaluation.luck import check_draws, checkpoint_paths
from molmoact2.evaluation.report import own_rollouts

# Settings that must match between the two sides for their layouts to be the same layouts, run the same way.
_SAME_LAYOUTS = ("tasks", "seeds_per_task", "first_seed", "image_size", "on_limit")
_Z95 = 1.959964


def _check_sides(old: list[dict[str, Any]], new: list[dict[str, Any]], setting_change: bool = False) -> None:
    for side, records in (("old", old), ("new", new)):
        if len(records) < 2:
            raise ValueError(f"expected at least 2 records (one per --noise-seed) for the {side} checkpoint, got "
                             f"{len(records)}; for one record each use `eval compare`")
        try:
            check_draws(records, paths_must_match=False)
        except ValueError as exc:
            raise ValueError(f"{side} side: {exc}") from None
    a, b = old[0].get("config", {}), new[0].get("config", {})
    diff = {k: (a.get(k), b.get(k)) for k in _SAME_LAYOUTS if a.get(k) != b.get(k)}
    if diff:
        raise ValueError(f"the two sides ran different layouts or ran them differently, so their rates are not "
                         f"comparable (setting: (old, new)): {diff}")
    settings = setting_changes(old, new)
    if settings and not _same_weights(old, new) and not setting_change:
        raise ValueError(f"the two sides differ in their weights and in how they were run (setting: (old, new)): "
                         f"{settings}; compare one change at a time: other weights with the same settings, or "
                         f"one checkpoint under two settings (or, when the setting belongs to the new weights, as "
                         f"a distilled expert's fewer Euler steps do, pass --setting-change)")


def setting_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """Inference settings (Euler steps, carry-over, start-noise scale, plan samples, actions per query) that differ
    between the sides."""
    a, b = inference_settings(old[0]), inference_settings(new[0])
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


def _same_weights(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Both sides verifiably ran one set of weights (every record carries the same digest)."""
    digests = {rec.get("weights_sha256") for rec in old + new}
    return len(digests) == 1 and None not in digests


def _solved(record: dict[str, Any]) -> dict[str, dict[tuple[str, int], bool]]:
    out: dict[str, dict[tuple[str, int], bool]] = defaultdict(dict)
    for r in own_rollouts(record.get("rollouts", [])):
        out[r["mode"]][(r["task"], int(r["seed"]))] = bool(r["success"])
    return out


def paired_row(name: str, old_rates: np.ndarray, new_rates: np.ndarray) -> dict[str, Any]:
    """old_rates, new_rates: per-layout success rates over the draws (same layouts, same order)."""
    d = new_rates - old_rates
    n = len(d)
    half = _Z95 * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    mean = float(d.mean())
    return {"metric": name, "layouts": n, "old": float(old_rates.mean()), "new": float(new_rates.mean()),
            "diff": mean, "ci95": (mean - half, mean + half), "verdict": _verdict(mean - half, mean + half),
            "layouts_better": int((d > 0).sum()), "layouts_worse": int((d < 0).sum())}


def _unverified_paths(records: list[dict[str, Any]]) -> list[str]:
    """The records' checkpoint paths when not every record carries a weight digest (nothing to print otherwise:
    check_same_weights has compared the digests)."""
    return [] if all(rec.get("weights_sha256") for rec in records) else checkpoint_paths(records)


def compare_draws(old: list[dict[str, Any]], new: list[dict[str, Any]], setting_change: bool = False) -> dict[str, Any]:
    """Per mode present in every record: per-draw rates of each side and paired-by-layout differences.
    `setting_change=True` accepts sides that differ in weights AND inference settings (weights made for their
    setting, e.g. an expert distilled to take fewer Euler steps); the result says so (`weights_and_settings`)."""
    _check_sides(old, new, setting_change)
    old_solved, new_solved = [_solved(r) for r in old], [_solved(r) for r in new]
    everything = old_solved + new_solved
    modes = sorted(set.intersection(*(set(s) for s in everything)))
    out: dict[str, Any] = {"noise_seeds": ([r.get("config", {}).get("seed", 0) for r in old],
                                           [r.get("config", {}).get("seed", 0) for r in new]),
                           "checkpoints": (_unverified_paths(old), _unverified_paths(new)),
                           "settings": setting_changes(old, new), "modes": {},
                           "weights_and_settings": not _same_weights(old, new)}
    for mode in modes:
        layouts = sorted(set.intersection(*(set(s[mode]) for s in everything)))
        if not layouts:
            continue
        wins_old = np.array([[s[mode][k] for k in layouts] for s in old_solved], dtype=float)  # draws x layouts
        wins_new = np.array([[s[mode][k] for k in layouts] for s in new_solved], dtype=float)
        task_of = np.array([t for t, _ in layouts])
        rows = [paired_row(f"{mode} success: {t}", wins_old[:, task_of == t].mean(axis=0),
                            wins_new[:, task_of == t].mean(axis=0)) for t in sorted(set(task_of))]
        rows.append(paired_row(f"{mode} success: all tasks", wins_old.mean(axis=0), wins_new.mean(axis=0)))
        out["modes"][mode] = {"layouts": len(layouts), "rows": rows,
                              "old_per_draw": [float(x) for x in wins_old.mean(axis=1)],
                              "new_per_draw": [float(x) for x in wins_new.mean(axis=1)]}
    if not out["modes"]:
        raise ValueError("the records share no closed-loop layouts (same mode, task and seed) to compare")
    return out


def _per_draw(rates: list[float]) -> str:
    return " / ".join(f"{100 * r:.0f}%" for r in rates)


def to_markdown(result: dict[str, Any], old_name: str = "old", new_name: str = "new") -> str:
    seeds_old, seeds_new = result["noise_seeds"]
    lines = []
    for mode, m in result["modes"].items():
        lines += [f"{mode}: {m['layouts']} layouts; {old_name}: {len(seeds_old)} draws (noise seeds "
                  f"{', '.join(map(str, seeds_old))}) {_per_draw(m['old_per_draw'])}; {new_name}: "
                  f"{len(seeds_new)} draws (noise seeds {', '.join(map(str, seeds_new))}) "
                  f"{_per_draw(m['new_per_draw'])}", "",
                  f"| metric (mean over draws) | {old_name} | {new_name} | difference (95% interval), points | "
                  f"verdict | layouts solved more often by {new_name} / by {old_name} |",
                  "|---|---|---|---|---|---|"]
        for r in m["rows"]:
            lo, hi = r["ci95"]
            lines.append(f"| {r['metric']} | {100 * r['old']:.1f}% | {100 * r['new']:.1f}% | "
                         f"{100 * r['diff']:+.1f} ({100 * lo:+.1f} to {100 * hi:+.1f}) | {r['verdict']} | "
                         f"{r['layouts_better']} / {r['layouts_worse']} |")
        lines.append("")
    for name, paths in zip((old_name, new_name), result["checkpoints"]):
        if len(set(paths)) > 1:  # records from before the weight digest: the reader vouches for these
            lines.append(f"{name}'s records name {len(set(paths))} checkpoint paths ({', '.join(sorted(set(paths)))}) "
                         f"and carry no weight digest: they are taken to be the same weights.")
    for key, (a, b) in result.get("settings", {}).items():
        what = "Other weights AND another setting" if result.get("weights_and_settings") else \
            "One set of weights under two settings"
        lines.append(f"{what}: {key} {a} ({old_name}) vs {b} ({new_name}).")
    lines.append("Intervals: the mean over layouts of (new - old) success rate over the draws, +/- 1.96 standard "
                 "errors of that paired mean; the draws' luck is inside each layout's rate.")
    lines.append("")
    return "\n".join(lines)
