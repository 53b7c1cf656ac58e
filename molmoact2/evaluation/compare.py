"""Compare two `molmoact2 eval nano` records: is the new checkpoint clearly better, or within noise?

    rows = compare(old_record, new_record)     # one row per rate: old, new, difference and its 95% interval
    print(to_markdown(rows, old_name="step 1100", new_name="step 2800"))

Why this exists: every binary revision of `assets/nano` stays in the repository's history, so a retrained
checkpoint replaces the shipped one only when it is clearly better on the same held-out seeds. "Clearly"
is the 95% interval of the difference of two proportions excluding zero; for closed-loop episodes, which
run the same seeds in both records, the paired counts (episodes only the new one solves vs only the old
one) are printed as well. Records evaluated on different seeds or settings are refused, not compared.
"""

from __future__ import annotations

import math
from typing import Any

from molmoact2.evaluation.report import EVAL_FORMAT, own_rollouts, summary_of

# Settings that must match for the two records to measure the same thing (checkpoint and jobs may differ).
# The policies' noise seed ("seed") may differ: both draws estimate the same rates, and a record run again with
# another noise seed is how one sees how much of a per-layout outcome is luck (the paired table says so).
_SAME_CONFIG = ("tasks", "modes", "seeds_per_task", "first_seed", "image_size", "max_questions", "on_limit")
_Z95 = 1.959964
# Records written before `eval nano` recorded the flow expert's Euler steps were all integrated with 10: every
# Nano checkpoint until then had flow_matching_num_steps = 10 (the factory's default).
LEGACY_FLOW_STEPS = 10
# Records written before `eval nano` resolved the checkpoint's actions per query left it as None: every Nano
# checkpoint until then executed 15 of its 30 actions (the norm stats' n_action_steps).
LEGACY_ACTION_STEPS = 15


def flow_steps(record: dict[str, Any]) -> int:
    """Euler steps the record's continuous actions were integrated with."""
    return int(record.get("config", {}).get("num_steps") or LEGACY_FLOW_STEPS)


def carry_steps(record: dict[str, Any]) -> int:
    """Actions pinned to the previous plan (`eval nano --carry-steps`); records from before the option: 0."""
    return int(record.get("config", {}).get("carry_steps") or 0)


def noise_scale(record: dict[str, Any]) -> float:
    """Multiplier of the flow expert's start noise (`eval nano --noise-scale`); records from before: 1."""
    value = record.get("config", {}).get("noise_scale")
    return 1.0 if value is None else float(value)


def action_steps(record: dict[str, Any]) -> int:
    """Actions executed per policy query (`eval nano --n-action-steps`, else the checkpoint's norm stats)."""
    return int(record.get("config", {}).get("n_action_steps") or LEGACY_ACTION_STEPS)


def plan_samples(record: dict[str, Any]) -> int:
    """Start draws per flow call, the medoid kept (`eval nano --plan-samples`); records from before: 1."""
    return int(record.get("config", {}).get("plan_samples") or 1)


def temporal_ensemble(record: dict[str, Any]) -> tuple[int, float]:
    """Ticks between queries of ACT-style temporal ensembling (`eval nano --temporal-ensemble`, 0 = off) and
    its decay per tick; records from before: off."""
    cfg = record.get("config", {})
    return int(cfg.get("temporal_ensemble") or 0), float(cfg.get("ensemble_decay", 0.01))


def replan_before_close(record: dict[str, Any]) -> bool:
    """Whether chunks were cut at their planned close (`eval nano --replan-before-close`); records from before: no."""
    return bool(record.get("config", {}).get("replan_before_close"))


def constrained(record: dict[str, Any]) -> bool:
    """Whether the discrete mode decoded under the OpenFAST length grammar (`eval nano --constrain-action-tokens`)."""
    return bool(record.get("config", {}).get("constrain_action_tokens"))


def inference_settings(record: dict[str, Any]) -> dict[str, Any]:
    """How the record's policy turned one observation into actions, beyond its weights."""
    return {"Euler steps": flow_steps(record), "carry_steps": carry_steps(record), "noise_scale": noise_scale(record),
            "plan_samples": plan_samples(record), "n_action_steps": action_steps(record),
            "temporal_ensemble": temporal_ensemble(record), "constrain_action_tokens": constrained(record),
            "replan_before_close": replan_before_close(record),
            # compiled stages give the same numbers up to float rounding, but a comparison should say which ran
            "compiled": bool(record.get("config", {}).get("compiled"))}


def _diff_interval(h0: int, n0: int, h1: int, n1: int) -> tuple[float, float, float]:
    """Difference of proportions p1 - p0 and its 95% interval (Newcombe's hybrid score method:
    Wilson intervals of each rate combined; sound at 0% and 100%, where the plain Wald interval collapses)."""

    def wilson(h: int, n: int) -> tuple[float, float]:
        p = h / n
        centre = (p + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
        half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
        return centre - half, centre + half

    p0, p1 = h0 / n0, h1 / n1
    l0, u0 = wilson(h0, n0)
    l1, u1 = wilson(h1, n1)
    d = p1 - p0
    lo = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return d, lo, hi


def _verdict(lo: float, hi: float, higher_is_better: bool = True) -> str:
    if lo > 0:
        return "better" if higher_is_better else "worse"
    if hi < 0:
        return "worse" if higher_is_better else "better"
    return "within noise"


def _row(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None, *,
         higher_is_better: bool = True) -> dict[str, Any] | None:
    if not old or not new or not old.get("n") or not new.get("n"):
        return None
    d, lo, hi = _diff_interval(old["hits"], old["n"], new["hits"], new["n"])
    return {"metric": name, "old": old, "new": new, "diff": d, "ci95": (lo, hi),
            "verdict": _verdict(lo, hi, higher_is_better)}


def _paired(old_rollouts: list[dict[str, Any]], new_rollouts: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per mode: episodes (same task, seed) solved only by the new checkpoint, only by the old, by both."""
    old = {(r["mode"], r["task"], r["seed"]): bool(r["success"]) for r in old_rollouts}
    out: dict[str, dict[str, int]] = {}
    for r in new_rollouts:
        key = (r["mode"], r["task"], r["seed"])
        if key not in old:
            continue
        c = out.setdefault(r["mode"], {"only_new": 0, "only_old": 0, "both": 0, "neither": 0})
        s_new, s_old = bool(r["success"]), old[key]
        c["both" if s_new and s_old else "only_new" if s_new else "only_old" if s_old else "neither"] += 1
    return out


def _paired_spatial(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Spatial rows paired question by question with the interval clustered by layout (evaluation/qa_compare.py:
    answers about one layout move together), when both records graded the same questions of the same cache and
    each answer's layout is known (recorded from 2026-12-06 on, else looked up in the cache on disk); empty
    otherwise, and the rows stay unpaired."""
    from molmoact2.evaluation.qa_compare import answer_layouts, paired_rows

    heldout = old.get("config", {}).get("heldout")
    if not heldout or heldout != new.get("config", {}).get("heldout"):
        return {}
    graded_old = [q for q in old.get("qa") or [] if "correct" in q]
    graded_new = [q for q in new.get("qa") or [] if "correct" in q]
    if any("index" not in q for q in graded_old + graded_new):
        return {}
    a, b = {q["index"]: q for q in graded_old}, {q["index"]: q for q in graded_new}
    common = sorted(a)
    if not common or set(a) != set(b) or any(a[i]["question"] != b[i]["question"] for i in common):
        return {}
    layouts, _ = answer_layouts(a, heldout)
    if layouts is None:
        return {}
    graded = [(a[i], (bool(a[i]["correct"]), bool(b[i]["correct"])), layouts[i]) for i in common]
    out = {}
    for kind, r in paired_rows(graded, clustered=True).items():
        lo, hi = r["low"] / 100, r["high"] / 100
        out[kind] = {"metric": f"spatial: {kind} (paired; interval clustered over {r['layouts']} layouts)",
                     "old": {"hits": r["old_hits"], "n": r["n"]}, "new": {"hits": r["new_hits"], "n": r["n"]},
                     "diff": r["diff"] / 100, "ci95": (lo, hi), "verdict": _verdict(lo, hi)}
    return out


def check_comparable(old: dict[str, Any], new: dict[str, Any]) -> None:
    for rec, which in ((old, "old"), (new, "new")):
        if rec.get("format") != EVAL_FORMAT:
            raise ValueError(f"the {which} record is not a {EVAL_FORMAT} record (format={rec.get('format')!r})")
    a, b = old.get("config", {}), new.get("config", {})
    diff = {k: (a.get(k), b.get(k)) for k in _SAME_CONFIG if a.get(k) != b.get(k)}
    if diff:
        raise ValueError(f"the records were evaluated differently, so their rates are not comparable "
                         f"(setting: (old, new)): {diff}")


def compare(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Rows (metric, old rate, new rate, difference, 95% interval, verdict) and paired closed-loop counts."""
    check_comparable(old, new)
    so, sn = summary_of(old), summary_of(new)
    rows: list[dict[str, Any] | None] = []
    for mode in sorted(set(so["closed_loop"]) & set(sn["closed_loop"])):
        o, n = so["closed_loop"][mode], sn["closed_loop"][mode]
        for task in sorted(set(o["per_task"]) & set(n["per_task"])):
            rows.append(_row(f"{mode} success: {task}", o["per_task"][task], n["per_task"][task]))
        pool = [{"hits": sum(v["hits"] for v in m["per_task"].values()),
                 "n": sum(v["n"] for v in m["per_task"].values())} for m in (o, n)]
        rows.append(_row(f"{mode} success: all tasks", *pool))
        rows.append(_row(f"{mode}: jaw went to the target object", o.get("went_to_target"), n.get("went_to_target")))
        wo, wn = so.get("words_vs_layout", {}).get(mode, {}), sn.get("words_vs_layout", {}).get(mode, {})
        rows.append(_row(f"{mode}: followed both instructions (--swap-targets)", wo.get("both_named"),
                         wn.get("both_named")))
        rows.append(_row(f"{mode}: same object under both instructions", wo.get("same_object_both_times"),
                         wn.get("same_object_both_times"), higher_is_better=False))
    paired_qa = _paired_spatial(old, new)
    for kind in ("point", "point_objects", "point_fixtures", "closer", "point_absent", "count"):
        if kind in paired_qa:
            rows.append(paired_qa[kind])
            continue
        rows.append(_row(f"spatial: {kind}", so.get("spatial", {}).get(kind), sn.get("spatial", {}).get(kind)))
    if "depth_codes" in so and "depth_codes" in sn:
        for key in ("first_query_all_cells", "later_queries_all_cells", "later_queries_changed_cells"):
            rows.append(_row(f"depth codes: {key}", so["depth_codes"][key], sn["depth_codes"][key]))
    if "actions_vs_expert" in so and "actions_vs_expert" in sn:
        rows.append(_row("discrete decode failures", so["actions_vs_expert"]["discrete_decode_failures"],
                         sn["actions_vs_expert"]["discrete_decode_failures"], higher_is_better=False))
    errors = {}
    if "actions_vs_expert" in so and "actions_vs_expert" in sn:
        for mode in ("continuous", "discrete", "think"):
            if mode in so["actions_vs_expert"] and mode in sn["actions_vs_expert"]:
                errors[mode] = (so["actions_vs_expert"][mode]["mae_pct"], sn["actions_vs_expert"][mode]["mae_pct"])
    paired = _paired(own_rollouts(old.get("rollouts", [])), own_rollouts(new.get("rollouts", [])))
    noise_seeds = (old.get("config", {}).get("seed", 0), new.get("config", {}).get("seed", 0))
    return {"rows": [r for r in rows if r], "paired": paired,
            "action_error_pct": errors, "noise_seeds": noise_seeds, "flow_steps": (flow_steps(old), flow_steps(new)),
            "carry_steps": (carry_steps(old), carry_steps(new)), "noise_scale": (noise_scale(old), noise_scale(new)),
            "plan_samples": (plan_samples(old), plan_samples(new)),
            "n_action_steps": (action_steps(old), action_steps(new)),
            "temporal_ensemble": (temporal_ensemble(old), temporal_ensemble(new)),
            "replan_before_close": (replan_before_close(old), replan_before_close(new)),
            "constrain_action_tokens": (constrained(old), constrained(new))}


def _rate(r: dict[str, Any]) -> str:
    return f"{100 * r['hits'] / r['n']:.0f}% ({r['hits']}/{r['n']})"


def to_markdown(result: dict[str, Any], old_name: str = "old", new_name: str = "new") -> str:
    lines = [f"| metric | {old_name} | {new_name} | difference (95% interval), points | verdict |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lo, hi = r["ci95"]
        lines.append(f"| {r['metric']} | {_rate(r['old'])} | {_rate(r['new'])} | "
                     f"{100 * r['diff']:+.0f} ({100 * lo:+.0f} to {100 * hi:+.0f}) | {r['verdict']} |")
    for mode, (o, n) in result["action_error_pct"].items():
        lines.append(f"| {mode} action error vs expert (% of range, lower is better) | {o:.1f}% | {n:.1f}% | "
                     f"{n - o:+.1f} | – |")
    if any(r["metric"].startswith("spatial: ") and "(paired" not in r["metric"] for r in result["rows"]):
        lines.append("\nSpatial rows without \"paired\" treat every question as independent (the records do not both "
                     "hold the same graded answers with their layouts); answers about one layout move together "
                     "(design effect 2-5 measured on pointing), so those intervals are too narrow: a verdict near "
                     "an edge of its interval may be noise.")
    if any(r["metric"].startswith("depth codes") for r in result["rows"]):
        lines.append("\nDepth-code intervals treat cells as independent; cells of one frame are not, so those "
                     "intervals are too narrow.")
    steps = result.get("flow_steps", (LEGACY_FLOW_STEPS, LEGACY_FLOW_STEPS))
    if steps[0] != steps[1]:
        lines.append(f"\nThe flow expert integrated with {steps[0]} Euler steps in {old_name} and {steps[1]} in "
                     f"{new_name}.")
    carry = result.get("carry_steps", (0, 0))
    if carry[0] != carry[1]:
        lines.append(f"\nEach chunk's first actions were pinned to the previous plan's: {carry[0]} in {old_name}, "
                     f"{carry[1]} in {new_name} (`--carry-steps`; 0 = off).")
    scale = result.get("noise_scale", (1.0, 1.0))
    if scale[0] != scale[1]:
        lines.append(f"\nThe flow expert's start noise was scaled by {scale[0]:g} in {old_name} and {scale[1]:g} in "
                     f"{new_name} (`--noise-scale`; 1 = as trained).")
    samples = result.get("plan_samples", (1, 1))
    if samples[0] != samples[1]:
        lines.append(f"\nEach flow call drew {samples[0]} plan(s) in {old_name} and {samples[1]} in {new_name}, "
                     f"keeping the medoid (`--plan-samples`; 1 = one draw).")
    executed = result.get("n_action_steps", (LEGACY_ACTION_STEPS, LEGACY_ACTION_STEPS))
    if executed[0] != executed[1]:
        lines.append(f"\nEach query's plan was executed for {executed[0]} ticks in {old_name} and {executed[1]} in "
                     f"{new_name} (`--n-action-steps`).")
    ensembles = result.get("temporal_ensemble", ((0, 0.01), (0, 0.01)))
    if tuple(ensembles[0]) != tuple(ensembles[1]):
        def said(e: Any) -> str:
            return f"every {e[0]} ticks, decay {e[1]:g}" if e[0] else "off"
        lines.append(f"\nTemporal ensembling (`--temporal-ensemble`): {said(ensembles[0])} in {old_name}, "
                     f"{said(ensembles[1])} in {new_name}.")
    replans = result.get("replan_before_close", (False, False))
    if replans[0] != replans[1]:
        lines.append(f"\nChunks were cut at their planned close and the policy asked again (`--replan-before-close`): "
                     f"{'yes' if replans[0] else 'no'} in {old_name}, {'yes' if replans[1] else 'no'} in {new_name}.")
    grammar = result.get("constrain_action_tokens", (False, False))
    if grammar[0] != grammar[1]:
        lines.append(f"\nThe discrete mode decoded {'under the OpenFAST length grammar' if grammar[0] else 'unconstrained'} "
                     f"in {old_name} and {'under it' if grammar[1] else 'unconstrained'} in {new_name} "
                     f"(`--constrain-action-tokens`).")
    lines.append("")
    if result["paired"]:
        lines += [f"| closed loop, same seeds | solved only by {new_name} | only by {old_name} | both | neither |",
                  "|---|---|---|---|---|"]
        for mode, c in sorted(result["paired"].items()):
            lines.append(f"| {mode} | {c['only_new']} | {c['only_old']} | {c['both']} | {c['neither']} |")
        seeds = result.get("noise_seeds", (0, 0))
        if seeds[0] != seeds[1]:
            lines.append(f"\nThe policies drew their noise with different seeds ({old_name}: {seeds[0]}, {new_name}: "
                         f"{seeds[1]}): the same layouts, not the same draws.")
        lines.append("")
    return "\n".join(lines)
