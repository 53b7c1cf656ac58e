"""Aggregate a `molmoact2 eval nano` record and print it as markdown (the README's tables).

    summary = summarize(record)       # numbers only
    print(to_markdown(record))        # tables with the counts behind every percentage
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

import numpy as np

# The `eval nano` record format: written by nano_eval.evaluate, checked by every reader (report, compare, luck, the CLI).
EVAL_FORMAT = "molmoact2_nano_eval.v1"


def _rate(hits: int, n: int) -> dict[str, Any]:
    return {"hits": int(hits), "n": int(n), "rate": (hits / n) if n else None}


def _closed_loop(rollouts: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rollouts:
        by[r["mode"]][r["task"]].append(r)
    out: dict[str, Any] = {}
    for mode, tasks in by.items():
        per_task = {t: _rate(sum(r["success"] for r in rs), len(rs)) for t, rs in sorted(tasks.items())}
        ms = [r["policy_ms_mean"] for rs in tasks.values() for r in rs if r["policy_ms_mean"] is not None]
        stops = Counter(r["stopped_by"] for rs in tasks.values() for r in rs)
        errors = [f"{r['task']}/{r['seed']}: {r['error']}" for rs in tasks.values() for r in rs if r["error"]]
        clips = [r.get("clipped_targets", 0) for rs in tasks.values() for r in rs]
        over = [r.get("max_overshoot", 0.0) for rs in tasks.values() for r in rs]
        cells = [r["depth_cells_changed"] for rs in tasks.values() for r in rs if r["depth_cells_changed"] is not None]
        went = [r for rs in tasks.values() for r in rs if "went_to_target" in r]
        out[mode] = {"per_task": per_task,
                     "mean_over_tasks": float(np.mean([v["rate"] for v in per_task.values()])) if per_task else None,
                     "policy_ms_mean": float(np.mean(ms)) if ms else None, "stopped_by": dict(stops),
                     "errors": errors[:20], "n_errors": len(errors),
                     "episodes_with_clipped_targets": int(sum(c > 0 for c in clips)),
                     "clipped_targets_per_episode": float(np.mean(clips)) if clips else 0.0,
                     "max_overshoot_units": float(max(over)) if over else 0.0,
                     "depth_cells_changed": float(np.mean(cells)) if cells else None}
        if went:  # records from before this field existed have none
            out[mode]["went_to_target"] = _rate(sum(r["went_to_target"] for r in went), len(went))
            out[mode]["went_to_target_chance"] = float(np.mean([1 / r["n_objects"] for r in went]))
            out[mode]["failures_at_wrong_object"] = _rate(
                sum(not r["success"] and not r["went_to_target"] for r in went), sum(not r["success"] for r in went))
        progress = _progress(tasks)
        if progress:  # records from before `progress` existed have none
            out[mode]["progress"] = progress
    return out


def _progress(tasks: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per task, how many episodes got how far with the named object (every tick watched)."""
    from molmoact2.sim.progress import LIFT_M, SLIDE_M

    out: dict[str, Any] = {}
    for task, rs in sorted(tasks.items()):
        ps = [r["progress"] for r in rs if "progress" in r]
        if not ps:
            continue
        n = len(ps)
        out[task] = {"touched": _rate(sum(p["touched"] for p in ps), n),
                     "lifted": _rate(sum(p["lift_max_m"] >= LIFT_M for p in ps), n),
                     "slid": _rate(sum(p["slide_max_m"] >= SLIDE_M for p in ps), n),
                     "in_bin": _rate(sum(p.get("in_bin", False) for p in ps), n) if "in_bin" in ps[0] else None,
                     "success": _rate(sum(r["success"] for r in rs if "progress" in r), n)}
    return out


def own_rollouts(rollouts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rollouts of each seed's own instruction (not the `swap_targets` re-runs naming another object)."""
    return [r for r in rollouts if r.get("named", "own") == "own"]


def _words(rollouts: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode, over layouts run twice (own instruction, then naming another object): how often the jaw
    went to the named object each time, to both, or to the same object both times (words ignored)."""
    own = {(r["mode"], r["task"], r["seed"]): r for r in own_rollouts(rollouts)}
    pairs: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for r in rollouts:
        key = (r.get("mode"), r["task"], r["seed"])
        if r.get("named") == "other" and "went_to_target" in r and "went_to_target" in own.get(key, {}):
            pairs[key[0]].append((own[key], r))
    out: dict[str, Any] = {}
    for mode, ps in sorted(pairs.items()):
        n = len(ps)
        out[mode] = {"layouts": n,
                     "own_named": _rate(sum(a["went_to_target"] for a, _ in ps), n),
                     "other_named": _rate(sum(b["went_to_target"] for _, b in ps), n),
                     "both_named": _rate(sum(a["went_to_target"] and b["went_to_target"] for a, b in ps), n),
                     "same_object_both_times": _rate(sum(a["closest_object"] == b["closest_object"] for a, b in ps), n),
                     "other_success": _rate(sum(b["success"] for _, b in ps), n),
                     "chance": float(np.mean([1 / a["n_objects"] for a, _ in ps]))}
    return out


def _actions(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("continuous", "discrete", "think", "discrete_grammar_changed"):
        recs = [e[mode] for e in episodes if e.get(mode)]
        if not recs:
            continue
        n = sum(r["n_actions"] for r in recs)
        units = np.sum([r["sum_abs_units"] for r in recs], axis=0) / n
        pct = np.sum([r["sum_abs_pct"] for r in recs], axis=0) / n
        out[mode] = {"n_queries": int(sum(r["n_queries"] for r in recs)), "mae_units_per_joint": units.tolist(),
                     "mae_pct_per_joint": pct.tolist(), "mae_pct": float(pct.mean())}
    queries = sum(e["queries"] for e in episodes)
    fails = [f for e in episodes for f in e["discrete_failures"]]
    out["discrete_decode_failures"] = _rate(len(fails), queries) | {"examples": fails[:5]}
    overrides = [n for e in episodes for n in (e.get("discrete_grammar_overrides") or [])]
    if overrides:  # constrained decoding: how often the grammar had to step in, and how many ids per chunk
        out["discrete_grammar_overrides"] = _rate(sum(n > 0 for n in overrides), len(overrides)) | {
            "mean_ids_per_chunk": float(np.mean(overrides)), "max_ids_per_chunk": int(max(overrides))}
    return out


def _depth(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    def total(key: str) -> dict[str, Any]:
        return _rate(sum(e[key][0] for e in episodes), sum(e[key][1] for e in episodes))

    counts = np.sum([e["true_code_counts"] for e in episodes], axis=0)
    n = int(counts.sum())
    fractions = [e["depth_changed_fraction"] for e in episodes if e["depth_changed_fraction"] is not None]
    return {"first_query_all_cells": total("depth_first"), "later_queries_all_cells": total("depth_later"),
            "later_queries_changed_cells": total("depth_changed"),
            # what always answering the most frequent code would score: the floor to beat
            "majority_code_baseline": (float(counts.max()) / n) if n else None,
            "changed_fraction_later": float(np.mean(fractions)) if fractions else None}


# Scene fixtures: one large bin in a fixed region of every layout. Pointing at it is easy without reading
# the name's colour and shape words, so pointing is also reported for the movable objects alone.
FIXTURES = ("bin",)
_POINT_NAME = re.compile(r"^Point to (?:the )?(.+?)\s*(?:\n|$)")


def pointed_name(question: dict[str, Any]) -> str | None:
    """The object a pointing question names ("Point to the red cube..." -> "red cube"); None for other kinds."""
    m = _POINT_NAME.match(question.get("question", "")) if question["kind"] == "point" else None
    return m.group(1) if m else None


def _spatial(qa: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("point", "closer", "point_absent", "count"):
        recs = [q for q in qa if q["kind"] == kind]
        if recs:
            out[kind] = _rate(sum(bool(q["correct"]) for q in recs), len(recs))
    named = [(n, q) for q in qa if (n := pointed_name(q)) is not None]
    for key, keep in (("point_objects", lambda n: n not in FIXTURES), ("point_fixtures", lambda n: n in FIXTURES)):
        recs = [q for n, q in named if keep(n)]
        if recs:
            out[key] = _rate(sum(bool(q["correct"]) for q in recs), len(recs))
    return out


def summary_of(record: dict[str, Any]) -> dict[str, Any]:
    """The record's stored summary, with every section its raw data can recompute recomputed: a record
    written before a summary field existed still shows it (compact records keep only their rollouts)."""
    return {**(record.get("summary") or {}), **summarize(record)}


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    rollouts = record.get("rollouts", [])
    s: dict[str, Any] = {"closed_loop": _closed_loop(own_rollouts(rollouts))}
    if any(r.get("named") == "other" for r in rollouts):
        s["words_vs_layout"] = _words(rollouts)
    if record.get("episodes"):
        s["actions_vs_expert"] = _actions(record["episodes"])
        if record.get("action_clock_baseline"):  # records from 2026-12-03 on
            s["actions_vs_expert"]["clock_baseline"] = record["action_clock_baseline"]
        s["depth_codes"] = _depth(record["episodes"])
    if record.get("qa"):
        s["spatial"] = _spatial(record["qa"])
    return s


def _pct(r: dict[str, Any] | None) -> str:
    if not r or r.get("rate") is None:
        return "–"
    return f"{100 * r['rate']:.0f}% ({r['hits']}/{r['n']})"


def to_markdown(record: dict[str, Any]) -> str:
    s = summary_of(record)
    lines: list[str] = []
    cfg = record.get("config", {})
    if cfg.get("training_layouts"):
        first = int(cfg.get("first_seed", 0))
        lines += [f"**Training layouts** (seeds {first}–{first + int(cfg.get('seeds_per_task', 0)) - 1} per task and the "
                  f"cache {cfg.get('heldout') or '(none)'}): what the model was trained on. A fitting check, not a "
                  f"held-out figure.", ""]
    if cfg.get("constrain_action_tokens"):
        lines += ["**Discrete mode constrained**: OpenFAST ids decoded under their length grammar "
                  "(`--constrain-action-tokens`), so every chunk decodes; the real model decodes unconstrained.", ""]
    cl = s["closed_loop"]
    if cl:
        modes = sorted(cl)
        tasks = sorted({t for m in modes for t in cl[m]["per_task"]})
        lines += ["| task | " + " | ".join(f"{m} success" for m in modes) + " |",
                  "|---|" + "---|" * len(modes)]
        for t in tasks:
            lines.append(f"| {t} | " + " | ".join(_pct(cl[m]["per_task"].get(t)) for m in modes) + " |")
        lines.append("| **mean over tasks** | " + " | ".join(
            f"**{100 * cl[m]['mean_over_tasks']:.0f}%**" for m in modes) + " |")
        # The flow expert's Euler steps set most of a continuous call's cost (older records: 10, see compare.py).
        from molmoact2.evaluation.compare import flow_steps

        lines.append(f"| policy call (mean ms, 1 thread, {flow_steps(record)} Euler steps) | " + " | ".join(
            f"{cl[m]['policy_ms_mean']:.0f}" if cl[m]["policy_ms_mean"] else "–" for m in modes) + " |")
        lines.append("| targets clipped at a joint limit (per episode; max overshoot) | " + " | ".join(
            f"{cl[m]['clipped_targets_per_episode']:.1f}; {cl[m]['max_overshoot_units']:.1f} units" for m in modes) + " |")
        lines.append("| episodes ended by an error | " + " | ".join(str(cl[m]["n_errors"]) for m in modes) + " |")
        if all("went_to_target" in cl[m] for m in modes):
            lines.append("| jaw came closest to the target object (chance if random) | " + " | ".join(
                f"{_pct(cl[m]['went_to_target'])} ({100 * cl[m]['went_to_target_chance']:.0f}%)" for m in modes) + " |")
            lines.append("| failures that ended nearer another object (grounding) | " + " | ".join(
                _pct(cl[m]["failures_at_wrong_object"]) for m in modes) + " |")
        lines.append("")
        prog = [(m, t, v) for m in modes for t, v in cl[m].get("progress", {}).items()]
        if prog:
            from molmoact2.sim.progress import LIFT_M, SLIDE_M

            lines += [f"| how far it got with the named object | touched it | lifted >= {100 * LIFT_M:.0f} cm | "
                      f"slid >= {100 * SLIDE_M:.0f} cm | in the bin at some tick | success |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {m} {t} | {_pct(v['touched'])} | {_pct(v['lifted'])} | {_pct(v['slid'])} | "
                      f"{_pct(v['in_bin'])} | {_pct(v['success'])} |" for m, t, v in prog]
            lines.append("")
    if s.get("words_vs_layout"):
        w = s["words_vs_layout"]
        modes = sorted(w)
        rows = [("jaw went to the named object, own instruction", "own_named"),
                ("... same layout, instruction naming another object", "other_named"),
                ("... to the named object both times (follows the words)", "both_named"),
                ("... to the same object both times (words ignored)", "same_object_both_times"),
                ("success with the other object named", "other_success")]
        lines += ["| words vs layout (each layout run twice) | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
        lines += [f"| {name} | " + " | ".join(_pct(w[m][key]) for m in modes) + " |" for name, key in rows]
        lines += ["| chance of one named object (1 / objects) | " + " | ".join(
            f"{100 * w[m]['chance']:.0f}%" for m in modes) + " |", ""]
    if "spatial" in s:
        sp = s["spatial"]
        lines += ["| spatial question | correct |", "|---|---|"]
        names = {"point": "pointing (point inside the target's mask)", "closer": "which is closer (point on the nearer)",
                 "point_absent": "absent object -> \"There are none.\"", "count": "counting (exact)",
                 "point_objects": "... pointing at the movable objects", "point_fixtures": "... pointing at the bin"}
        lines += [f"| {names[k]} | {_pct(v)} |" for k, v in sp.items()]
        lines.append("")
    if "depth_codes" in s:
        d = s["depth_codes"]
        lines += ["| depth codes (exact match, 128-code book) | accuracy |", "|---|---|",
                  f"| first query, all 100 cells decoded | {_pct(d['first_query_all_cells'])} |",
                  f"| later queries (MolmoThink), all cells | {_pct(d['later_queries_all_cells'])} |",
                  f"| later queries, re-predicted cells only | {_pct(d['later_queries_changed_cells'])} |",
                  f"| majority-code baseline | {100 * (d['majority_code_baseline'] or 0):.0f}% |", ""]
    if "actions_vs_expert" in s:
        a = s["actions_vs_expert"]
        lines += ["| action mode | mean abs error vs expert (% of joint range) | queries |", "|---|---|---|"]
        for m in ("continuous", "discrete", "think"):
            if m in a:
                lines.append(f"| {m} | {a[m]['mae_pct']:.1f}% | {a[m]['n_queries']} |")
        if "discrete_grammar_changed" in a:
            lines.append(f"| ... discrete, only the chunks the length grammar changed | "
                         f"{a['discrete_grammar_changed']['mae_pct']:.1f}% | {a['discrete_grammar_changed']['n_queries']} |")
        if a.get("clock_baseline"):
            b = a["clock_baseline"]
            lines.append(f"| layout-blind baseline: the other demos' mean chunk, same task and frame | "
                         f"{b['mae_pct']:.1f}% | {b['n_queries']} |")
            lines.append(f"| layout-blind baseline: one other demo's chunk, same task and frame | "
                         f"{b['one_demo_mae_pct']:.1f}% | {b['n_queries']} |")
        f = a["discrete_decode_failures"]
        lines.append(f"| discrete decode failures | {_pct(f)} | |")
        if "discrete_grammar_overrides" in a:
            g = a["discrete_grammar_overrides"]
            lines.append(f"| discrete chunks the length grammar changed (constrained decoding; mean "
                         f"{g['mean_ids_per_chunk']:.1f} ids per chunk, at most {g['max_ids_per_chunk']}) | {_pct(g)} | |")
        lines.append("")
    return "\n".join(lines)
