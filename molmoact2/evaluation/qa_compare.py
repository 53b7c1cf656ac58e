"""Two `eval qa` records of the same questions, paired question by question (`molmoact2 eval compare A.json B.json`).

    from molmoact2.evaluation.qa_compare import compare_qa, to_markdown
    print(to_markdown(compare_qa(old_record, new_record), old_name="control", new_name="shifted"))

Two checkpoints asked the same questions differ by chance less than two independent samples would: the
questions both get right or both miss say nothing about which is better, so the difference comes from the
discordant questions alone (right only in one record).

Questions are not independent: a cache's episodes of different tasks with the same seed share one layout (the
same objects in the same places, often the same first frame), and each layout has dozens of questions. A
question-level interval then reads one lucky layout as many lucky questions: measured on Nano-ER's pointing, the
variance of a paired difference was 2-5x the independent-question figure. So the interval is clustered by layout
(the seed): the spread of the per-layout sums of differences, with a t quantile for that few layouts. Records
from before answers carried their layout are clustered through the cache's qa.json / meta.json when it is on disk;
otherwise the interval is the independent-question one and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

QA_FORMAT = "molmoact2_qa_check.v1"


def question_layout(meta: dict[str, Any], item: dict[str, Any]) -> int | None:
    """The layout (simulator seed) a cached question is about: its episode's seed, or its question scene's."""
    if "scene" in item:
        return int(meta["scenes"][item["scene"]]["seed"])
    if "episode" in item:
        return int(meta["episodes"][item["episode"]]["seed"])
    return None


def t_quantile_975(dof: int) -> float:
    """Two-sided 95% quantile of Student's t (Cornish-Fisher expansion: within 0.03 of the
    table at 3 dof, 0.005 from 5 on)."""
    if dof < 1:
        raise ValueError(f"t_quantile_975: expected at least 1 degree of freedom, got {dof}")
    z = 1.959964
    return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2) \
        + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * dof ** 3)


def clustered_difference(pairs: list[tuple[bool, bool]], layouts: list[Any]) -> tuple[float, float, float, int]:
    """(difference, low, high, layouts) in points, new minus old: the mean of per-question differences with a
    95% interval from the spread of their per-layout sums (cluster-robust variance, t with layouts - 1 dof)."""
    if len(pairs) != len(layouts) or not pairs:
        raise ValueError(f"clustered_difference: expected one layout per pair and at least one pair, got "
                         f"{len(pairs)} pairs and {len(layouts)} layouts")
    d = np.array([int(b) - int(a) for a, b in pairs], dtype=np.float64)
    n, mean = len(d), float(d.mean())
    groups: dict[Any, float] = {}
    for layout, di in zip(layouts, d):
        groups[layout] = groups.get(layout, 0.0) + (di - mean)
    k = len(groups)
    if k < 2:
        return 100 * mean, float("-inf"), float("inf"), k
    se = (sum(v * v for v in groups.values()) * k / (k - 1)) ** 0.5 / n
    half = t_quantile_975(k - 1) * se
    return 100 * mean, 100 * (mean - half), 100 * (mean + half), k


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
            ("point_fixtures", lambda a: a["kind"] == "point" and pointed_name(a) in FIXTURES),
            ("closer", lambda a: a["kind"] == "closer"),
            ("point_absent", lambda a: a["kind"] == "point_absent"),
            ("count", lambda a: a["kind"] == "count"))


def answer_layouts(answers: dict[int, dict[str, Any]], data_dir: str) -> tuple[dict[int, Any] | None, str]:
    """Each answer's layout: recorded in the answer, else looked up in the cache on disk, else None."""
    if answers and all("layout" in a for a in answers.values()):
        return {i: a["layout"] for i, a in answers.items()}, "recorded"
    root = Path(data_dir)
    if (root / "qa.json").is_file() and (root / "meta.json").is_file():
        qa = json.loads((root / "qa.json").read_text())
        meta = json.loads((root / "meta.json").read_text())
        try:
            # the cache at that path may have been rebuilt with other seeds since: its questions must be the record's
            if any(qa[i]["question"] != a["question"] for i, a in answers.items() if "question" in a):
                return None, f"{data_dir} on disk holds other questions than the record's"
            layouts = {i: question_layout(meta, qa[i]) for i in answers}
        except (IndexError, KeyError):
            return None, f"{data_dir} on disk does not match the record's questions"
        if all(v is not None for v in layouts.values()):
            return layouts, f"looked up in {data_dir}"
    return None, f"the record has no layouts and {data_dir} is not on disk"


def paired_rows(graded: list[tuple[dict[str, Any], tuple[bool, bool], Any]], clustered: bool) -> dict[str, Any]:
    """Per question kind: hits, discordant counts and the paired difference of (answer, (old, new), layout)."""
    rows = {}
    for key, keep in _subsets():
        kept = [(pair, layout) for answer, pair, layout in graded if keep(answer)]
        if not kept:
            continue
        pairs = [pair for pair, _ in kept]
        n = len(pairs)
        only_new = sum(b and not a for a, b in pairs)
        only_old = sum(a and not b for a, b in pairs)
        row = {"n": n, "old_hits": sum(a for a, _ in pairs), "new_hits": sum(b for _, b in pairs),
               "only_new": only_new, "only_old": only_old}
        if clustered:
            diff, low, high, k = clustered_difference(pairs, [layout for _, layout in kept])
            row |= {"diff": diff, "low": low, "high": high, "layouts": k}
        else:
            diff, low, high = paired_difference(only_new, only_old, n)
            row |= {"diff": diff, "low": low, "high": high, "layouts": None}
        rows[key] = row
    return rows


def compare_qa(old: dict[str, Any], new: dict[str, Any], *, old_field: str = "correct",
               new_field: str = "correct") -> dict[str, Any]:
    """Per data cache and question kind: both records' hits on the questions both answered, the discordant
    counts, and the paired difference with its layout-clustered interval (module docstring). `old_field` /
    `new_field`: which grade of each answer to use, e.g. "single_pass_correct" for the one-pass answers of an
    `eval qa --shift-copies` record. Refuses records of different caches or different questions."""
    for name, rec in (("old", old), ("new", new)):
        if rec.get("format") != QA_FORMAT:
            raise ValueError(f"{name} record: expected format {QA_FORMAT!r} (written by `eval qa --out`), "
                             f"got {rec.get('format')!r}")
    old_data, new_data = [r["data"] for r in old["results"]], [r["data"] for r in new["results"]]
    if old_data != new_data:
        raise ValueError(f"the records graded different data caches: {old_data} vs {new_data}; run `eval qa` with "
                         f"the same --data on both checkpoints")
    caches: list[dict[str, Any]] = []
    pooled: list[tuple[dict[str, Any], tuple[bool, bool], Any]] = []
    clustered = True
    for ro, rn in zip(old["results"], new["results"]):
        a_old = {a["index"]: a for a in ro["answers"]}
        a_new = {a["index"]: a for a in rn["answers"]}
        common = sorted(set(a_old) & set(a_new))
        for i in common:
            if a_old[i]["question"] != a_new[i]["question"]:
                raise ValueError(f"{ro['data']}: question {i} differs between the records ({a_old[i]['question']!r} "
                                 f"vs {a_new[i]['question']!r}): they were not sampled the same way")
        for field, answers, name in ((old_field, a_old, "old"), (new_field, a_new, "new")):
            graded = [a for a in answers.values() if "correct" in a]
            if graded and not any(field in a for a in graded):
                raise ValueError(f"{name} record ({ro['data']}): no answer has {field!r} (one-pass grades are "
                                 f"written by `eval qa --shift-copies`)")
        layouts, layouts_from = answer_layouts({i: a_old[i] for i in common}, ro["data"])
        graded = [(a_old[i], (bool(a_old[i].get(old_field, a_old[i]["correct"])),
                              bool(a_new[i].get(new_field, a_new[i]["correct"]))),
                   None if layouts is None else (len(caches), layouts[i]))
                  for i in common if "correct" in a_old[i] and "correct" in a_new[i]]
        pooled += graded
        clustered &= layouts is not None
        caches.append({"data": ro["data"], "seeds": ro.get("seeds"), "questions": len(common),
                       "unpaired": len(set(a_old) ^ set(a_new)), "layouts_from": layouts_from,
                       "rows": paired_rows(graded, layouts is not None)})
    if len(caches) > 1:  # every cache together: layouts of different caches are different clusters
        caches.append({"data": "all caches", "seeds": None, "questions": sum(c["questions"] for c in caches),
                       "unpaired": sum(c["unpaired"] for c in caches),
                       "layouts_from": "per cache" if clustered else "missing in some cache",
                       "rows": paired_rows(pooled, clustered)})
    return {"old_checkpoint": old.get("checkpoint"), "new_checkpoint": new.get("checkpoint"),
            "old_field": old_field, "new_field": new_field,
            "old_shift_ensemble": old.get("shift_ensemble"), "new_shift_ensemble": new.get("shift_ensemble"),
            "caches": caches}


def to_markdown(result: dict[str, Any], old_name: str = "old", new_name: str = "new") -> str:
    from molmoact2.evaluation.compare import _verdict as verdict  # the verdict `eval compare` gives every row

    def graded(field: str) -> str:
        return "" if field == "correct" else f" ({field})"

    lines = [f"{old_name}: {result['old_checkpoint']}{graded(result['old_field'])}; "
             f"{new_name}: {result['new_checkpoint']}{graded(result['new_field'])}"]
    # a side was asked with shifted copies when its record used them and its copies' grades are compared
    copies = [result[f"{side}_shift_ensemble"] if result[f"{side}_field"] == "correct" else None
              for side in ("old", "new")]
    if copies[0] != copies[1]:
        lines.append(f"NOTE: asked differently (shift copies {copies[0]} vs {copies[1]}): the difference includes "
                     f"the way of asking")
    lines += ["", f"| cache | kind | {old_name} | {new_name} | right only in {new_name} / only in {old_name} | "
                  f"{new_name} − {old_name}, points (95% interval) |", "|---|---|---|---|---|---|"]
    notes = []
    for c in result["caches"]:
        seeds = f" (seeds {c['seeds'][0]}–{c['seeds'][1]})" if c.get("seeds") else ""
        for key, r in c["rows"].items():
            lines.append(f"| {c['data']}{seeds} | {key} | {100 * r['old_hits'] / r['n']:.0f}% ({r['old_hits']}/{r['n']}) "
                         f"| {100 * r['new_hits'] / r['n']:.0f}% ({r['new_hits']}/{r['n']}) | {r['only_new']} / "
                         f"{r['only_old']} | {r['diff']:+.1f} ({r['low']:+.1f} to {r['high']:+.1f}), "
                         f"{verdict(r['low'], r['high'])} |")
        k = next((r["layouts"] for r in c["rows"].values()), None)
        notes.append(f"{c['data']}: interval clustered over {k} layouts (layouts {c['layouts_from']})" if k else
                     f"{c['data']}: questions treated as independent ({c['layouts_from']}): the interval is too "
                     f"narrow when several questions share a layout")
        if c["unpaired"]:
            notes.append(f"{c['data']}: {c['unpaired']} questions answered in only one record were left out")
    return "\n".join(lines + [""] + notes)
