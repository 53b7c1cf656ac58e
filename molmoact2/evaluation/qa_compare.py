"""Two `eval qa` records of the same questions, paired question by question (`molmoact2 eval compare A.json B.json`).

    from molmoact2.evaluation.qa_compare import compare_qa, to_markdown
    print(to_markdown(compare_qa(old_record, new_record), old_name="control", new_name="shifted"))

Two checkpoints asked the same questions differ by chance less than two independent samples would: the
questions both get right or both miss say nothing about which is better, so the difference and its interval come
from the discordant questions alone (right only in one record), as in `single_pass_summary`'s one-pass rows.
"""

from __future__ import annotations

from typing import Any

QA_FORMAT = "molmoact2_qa_check.v1"


def paired_difference(only_new: int, only_old: int, n: int) -> tuple[float, float, float]:
    """(difference, low, high) in points, new minus old, with a normal-approximation 95% interval for a paired
    proportion: only the discordant pairs carry the difference and its variance."""
    if n <= 0:
        raise ValueError(f"paired_difference: expected n > 0 questions, got {n}")
    diff = 100 * (only_new - only_old) / n
    half = 196 * max(0.0, (only_new + only_old) - (only_new - only_old) ** 2 / n) ** 0.5 / n
    return diff, diff - half, diff + half


def _subsets() -> tuple[tuple[str, Any], ...]:
    from molmoact2.evaluation.report import FIXTURES, pointed_name

    return (("point", lambda a: a["kind"] == "point"),
            ("point_objects", lambda a: a["kind"] == "point" and pointed_name(a) not in (None, *FIXTURES)),
            ("closer", lambda a: a["kind"] == "closer"),
            ("point_absent", lambda a: a["kind"] == "point_absent"),
            ("count", lambda a: a["kind"] == "count"))


def compare_qa(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Per data cache and question kind: both records' hits on the questions both answered, the discordant
    counts, and the paired difference. Refuses records of different caches or different questions."""
    for name, rec in (("old", old), ("new", new)):
        if rec.get("format") != QA_FORMAT:
            raise ValueError(f"{name} record: expected format {QA_FORMAT!r} (written by `eval qa --out`), "
                             f"got {rec.get('format')!r}")
    old_data, new_data = [r["data"] for r in old["results"]], [r["data"] for r in new["results"]]
    if old_data != new_data:
        raise ValueError(f"the records graded different data caches: {old_data} vs {new_data}; run `eval qa` with "
                         f"the same --data on both checkpoints")
    caches = []
    for ro, rn in zip(old["results"], new["results"]):
        a_old = {a["index"]: a for a in ro["answers"]}
        a_new = {a["index"]: a for a in rn["answers"]}
        common = sorted(set(a_old) & set(a_new))
        for i in common:
            if a_old[i]["question"] != a_new[i]["question"]:
                raise ValueError(f"{ro['data']}: question {i} differs between the records ({a_old[i]['question']!r} "
                                 f"vs {a_new[i]['question']!r}): they were not sampled the same way")
        rows = {}
        for key, keep in _subsets():
            pairs = [(bool(a_old[i]["correct"]), bool(a_new[i]["correct"])) for i in common if keep(a_old[i])]
            if not pairs:
                continue
            n = len(pairs)
            only_new = sum(b and not a for a, b in pairs)
            only_old = sum(a and not b for a, b in pairs)
            diff, low, high = paired_difference(only_new, only_old, n)
            rows[key] = {"n": n, "old_hits": sum(a for a, _ in pairs), "new_hits": sum(b for _, b in pairs),
                         "only_new": only_new, "only_old": only_old, "diff": diff, "low": low, "high": high}
        caches.append({"data": ro["data"], "seeds": ro.get("seeds"), "questions": len(common),
                       "unpaired": len(set(a_old) ^ set(a_new)), "rows": rows})
    return {"old_checkpoint": old.get("checkpoint"), "new_checkpoint": new.get("checkpoint"),
            "old_shift_ensemble": old.get("shift_ensemble"), "new_shift_ensemble": new.get("shift_ensemble"),
            "caches": caches}


def to_markdown(result: dict[str, Any], old_name: str = "old", new_name: str = "new") -> str:
    def verdict(low: float, high: float) -> str:
        return "better" if low > 0 else "worse" if high < 0 else "within noise"

    lines = [f"{old_name}: {result['old_checkpoint']}; {new_name}: {result['new_checkpoint']}"]
    if result["old_shift_ensemble"] != result["new_shift_ensemble"]:
        lines.append(f"NOTE: asked differently (shift copies {result['old_shift_ensemble']} vs "
                     f"{result['new_shift_ensemble']}): the difference includes the way of asking")
    lines += ["", f"| cache | kind | {old_name} | {new_name} | right only in {new_name} / only in {old_name} | "
                  f"{new_name} − {old_name}, points (95% interval) |", "|---|---|---|---|---|---|"]
    for c in result["caches"]:
        seeds = f" (seeds {c['seeds'][0]}–{c['seeds'][1]})" if c.get("seeds") else ""
        for key, r in c["rows"].items():
            lines.append(f"| {c['data']}{seeds} | {key} | {100 * r['old_hits'] / r['n']:.0f}% ({r['old_hits']}/{r['n']}) "
                         f"| {100 * r['new_hits'] / r['n']:.0f}% ({r['new_hits']}/{r['n']}) | {r['only_new']} / "
                         f"{r['only_old']} | {r['diff']:+.1f} ({r['low']:+.1f} to {r['high']:+.1f}), "
                         f"{verdict(r['low'], r['high'])} |")
        if c["unpaired"]:
            lines.append(f"\n{c['data']}: {c['unpaired']} questions answered in only one record were left out")
    return "\n".join(lines)
