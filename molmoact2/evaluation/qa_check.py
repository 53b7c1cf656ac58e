"""Grade Nano's spatial answers on any data cache: training scenes next to held-out ones.

    molmoact2 eval qa --checkpoint assets/nano --data /tmp/nano_data /tmp/nano_heldout --max-questions 240

Why: a held-out score alone cannot tell a model that memorised its training scenes (high on seen, low on
held-out: more scenes needed) from one that never learned the skill (low on both: more capacity, resolution or
steps needed). `molmoact2 eval nano` refuses training seeds on purpose; this check reads them and says so in
its output. Questions are a fixed-seed random sample (not the first N, which would all come from one task).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GRADED_KINDS = ("point", "closer", "point_absent", "count")


def sample_questions(qa: list[dict[str, Any]], n: int | None, seed: int = 0,
                     kinds: tuple[str, ...] = GRADED_KINDS) -> list[int]:
    unknown = sorted(set(kinds) - set(GRADED_KINDS))
    if unknown:
        raise ValueError(f"question kinds {unknown}: expected some of {', '.join(GRADED_KINDS)}")
    graded = [i for i, q in enumerate(qa) if q["kind"] in kinds]
    if n is None or n >= len(graded):
        return graded
    return sorted(int(i) for i in np.random.default_rng(seed).choice(graded, size=n, replace=False))


def grade(policy: Any, data_dir: str | Path, *, max_questions: int | None = 240, seed: int = 0,
          kinds: tuple[str, ...] = GRADED_KINDS, progress: bool = True,
          head: tuple[int, int] | None = None, ensemble: Any = None) -> dict[str, Any]:
    """Answers to a sample of `data_dir`'s questions, graded as `molmoact2 eval nano` grades them. `head` =
    (layer, head): also where that attention head looks while the model writes its points (`head_reading`).
    `ensemble`: a `ShiftEnsemble` (each point averaged over shifted copies of the image; the one-pass answers are
    graded too, paired: `point_single_pass`)."""
    from tqdm.auto import tqdm

    from molmoact2.evaluation.nano_eval import HELD_OUT_FIRST_SEED
    from molmoact2.evaluation.offline import qa_metrics
    from molmoact2.evaluation.report import _spatial
    from molmoact2.training.nano_examples import NanoTrainData

    data = NanoTrainData.load(data_dir, progress=False)
    seeds = [int(e["seed"]) for e in data.meta["episodes"] + data.meta.get("scenes", [])]
    low, high = min(seeds), max(seeds)
    indices = sample_questions(data.qa, max_questions, seed, kinds)
    if not indices:
        raise ValueError(f"{data_dir}: no gradable questions ({', '.join(kinds)}) in qa.json")
    answers = [qa_metrics(policy, data, i, ensemble) for i in tqdm(indices, desc=f"qa {Path(data_dir).name}",
                                                                      disable=not progress, unit="q")]
    summary = _spatial(answers)
    if ensemble is not None:
        summary.update(single_pass_summary(answers))
    baseline = fixed_point_baseline(data, indices)
    if baseline is not None:
        summary["point_objects_fixed_point"] = baseline
    follows = answer_target_correlation(answers)
    if follows is not None:
        summary["point_objects_correlation"] = follows
    chosen = nearest_object(data, answers)
    if chosen is not None:
        summary["point_objects_nearest"] = chosen
    if head is not None:
        reading = head_reading(policy, data, answers, *head, progress=progress)
        if reading is not None:
            summary["point_objects_head"] = reading
        if data.episodes:  # demo frames: the same head when the model is asked for actions
            from molmoact2.evaluation.action_head import action_head_reading

            acting = action_head_reading(policy, data, *head, progress=progress)
            if acting is not None:
                summary["action_head"] = acting
    return {"data": str(data_dir), "seeds": [low, high],
            "split": "held-out" if low >= HELD_OUT_FIRST_SEED else "training" if high < HELD_OUT_FIRST_SEED else "mixed",
            "summary": summary, "answers": answers}


def single_pass_summary(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Pointing graded on the one-pass answers of an ensemble run, paired with the ensemble's: the same questions,
    the same model, so the difference is the averaging alone. An answer the ensemble left alone (not one point)
    counts the same in both."""
    from molmoact2.evaluation.report import FIXTURES, _rate, pointed_name

    out: dict[str, Any] = {}
    for key, keep in (("point", lambda a: True), ("point_objects", lambda a: pointed_name(a) not in (None, *FIXTURES))):
        recs = [a for a in answers if a["kind"] == "point" and keep(a)]
        if not recs:
            continue
        one = [bool(a.get("single_pass_correct", a["correct"])) for a in recs]
        both = [bool(a["correct"]) for a in recs]
        row = {**_rate(sum(one), len(recs)), "only_ensemble": sum(b and not o for o, b in zip(one, both)),
               "only_single_pass": sum(o and not b for o, b in zip(one, both))}
        if all(a.get("layout") is not None for a in recs):  # copies minus one pass, clustered by layout
            from molmoact2.evaluation.qa_compare import clustered_difference

            diff, low, high, k = clustered_difference(list(zip(one, both)), [a["layout"] for a in recs])
            row |= {"diff": diff, "low": low, "high": high, "layouts": k}
        out[f"{key}_single_pass"] = row
    return out


def fixed_point_baseline(data: Any, indices: list[int]) -> dict[str, Any] | None:
    """How often ONE fixed point (the mean of these questions' own answers) lands on the named movable object.

    Why: a model that learned only where objects tend to be, and nothing from the picture, scores this; a
    pointing rate at or below it means the answers do not use the image. (It reads the answers' mean from the
    graded questions themselves, so it is an optimistic baseline, never a model.)"""
    from molmoact2 import spatial
    from molmoact2.evaluation.offline import lands_on
    from molmoact2.evaluation.report import FIXTURES, _rate, pointed_name

    items = [q for q in (data.qa[i] for i in indices) if pointed_name(q) not in (None, *FIXTURES)]
    if not items:
        return None
    xy_1000 = np.mean([spatial.parse_answer(q["answer"], strict=True).points[0].xy_px(width=1000, height=1000)
                       for q in items], axis=0)
    hits = 0
    for q in items:
        seg = data.qa_segmentation(q)
        hits += lands_on(seg, q["labels"], xy_1000[0] * seg.shape[1] / 1000, xy_1000[1] * seg.shape[0] / 1000)
    return {**_rate(hits, len(items)), "xy_1000": [round(float(v), 1) for v in xy_1000]}


def answer_target_correlation(answers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Pearson correlation of the answered point with the expected one, x and y apart, over the pointing
    questions about movable objects answered with one point.

    Why: a hit needs both coordinates within a few pixels; a model can follow the target in one direction and not
    the other (objects spread widely across the image but lie in a narrow band of rows), which a hit rate hides."""
    from molmoact2 import spatial
    from molmoact2.evaluation.report import FIXTURES, pointed_name

    pairs = []
    for a in answers:
        if pointed_name(a) in (None, *FIXTURES):
            continue
        got = spatial.parse_answer(a.get("answer") or "").points
        if len(got) != 1:
            continue
        (want,) = spatial.parse_answer(a["expected"], strict=True).points
        pairs.append((*got[0].xy_px(width=1000, height=1000), *want.xy_px(width=1000, height=1000)))
    if len(pairs) < 3:
        return None
    xy = np.array(pairs)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant answer has no correlation: NaN, shown as such
        r = [float(np.corrcoef(xy[:, i], xy[:, i + 2])[0, 1]) for i in (0, 1)]
    return {"x": round(r[0], 3), "y": round(r[1], 3), "n": len(pairs)}


def nearest_object(data: Any, answers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How often the object nearest the answered point (pixel distance to its visible pixels) is the named one,
    over movable-object pointing questions in images where the questions name 2+ objects; with chance.

    Why: a hit needs the right object AND a point within a few pixels of it. This separates the first (does the
    model know which object the name means?) from the second (can it write the position precisely?)."""
    from molmoact2 import spatial
    from molmoact2.evaluation.report import FIXTURES, _rate, pointed_name
    from molmoact2.training.nano_vision import scene_labels

    named = scene_labels(data.qa)  # {(cache, segmentation key): {label: name}}
    hits, chance = 0, []
    for a in answers:
        name = pointed_name(a)
        if name in (None, *FIXTURES):
            continue
        item = data.qa[a["index"]]
        candidates = named.get((item.get("cache", 0), item.get("seg_key")), {})
        seg = data.qa_segmentation(item)
        points = spatial.parse_answer(a.get("answer") or "").points_px(width=seg.shape[1], height=seg.shape[0], image=1)
        if len(candidates) < 2 or len(points) == 0:
            continue
        x, y = points[0]
        distance = {}
        for label in candidates:
            rows, cols = np.nonzero(seg == label)
            if len(rows):
                distance[label] = float(np.min(np.hypot(cols + 0.5 - x, rows + 0.5 - y)))
        hits += candidates[min(distance, key=distance.get)] == name
        chance.append(1.0 / len(distance))
    if not chance:
        return None
    return {**_rate(hits, len(chance)), "chance": round(float(np.mean(chance)), 3)}


def head_cells(model: Any, processor: Any, image: np.ndarray, question: str, answer: str,
               mask_hw: np.ndarray | None, layer: int, head: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Where attention head (`layer`, `head`) looks while `answer`'s first point is written after `question` about
    `image`: its attention on each `<im_patch>` token [cells, row-major over processor.image_grid], averaged over the
    coordinate positions, and the share of each cell covered by `mask_hw` (the named object; None when unknown: then
    each cell's share of the image) [cells]. None when the answer has no point. One teacher-forced pass: the same
    numbers the generating pass saw."""
    from molmoact2.models.nano.grounding import example_head_cells
    from molmoact2.models.nano.train_step import build_example

    if mask_hw is None:
        mask_hw = np.ones(np.asarray(image).shape[:2], dtype=bool)
    ex = build_example(model, processor, style="qa", images=[image], question=question, answer=answer,
                       ground_mask=mask_hw)
    if ex.get("grounding") is None:
        return None
    return example_head_cells(model, processor, ex, layer, head)


def head_reading(policy: Any, data: Any, answers: list[dict[str, Any]], layer: int, head: int,
                 progress: bool = False) -> dict[str, Any] | None:
    """Where attention head (`layer`, `head`) looks while the model writes its own first point, for the
    movable-object pointing questions answered with a point: its attention share on the `<im_patch>` tokens that
    cover the named object (mean), how often its most-attended image token covers the object, and what attention
    spread evenly over the image tokens would give (the baseline). The head `train nano --ground-weight` teaches."""
    from tqdm.auto import tqdm

    from molmoact2.evaluation.report import FIXTURES, pointed_name

    share, top, even = [], 0, []
    todo = [a for a in answers if pointed_name(a) not in (None, *FIXTURES) and a.get("n_points")]
    for a in tqdm(todo, desc=f"head {layer}.{head}", unit="q", disable=not progress or not todo):
        item = data.qa[a["index"]]
        mask = np.isin(data.qa_segmentation(item), item["labels"])
        cells = head_cells(policy.model, policy.processor, data.qa_image(item), item["question"], a["answer"], mask,
                           layer, head)
        if cells is None:
            continue
        on_image, target = cells
        share.append(float(on_image[target > 0].sum()))
        top += bool(target[int(on_image.argmax())] > 0)
        even.append(float(on_image.sum()) * float((target > 0).mean()))
    if not share:
        return None
    return {"layer": layer, "head": head, "n": len(share), "share": round(float(np.mean(share)), 3),
            "top_cell_hits": top, "top_cell_rate": top / len(share), "even_share": round(float(np.mean(even)), 3)}


def _pct_paired(r: dict[str, Any] | None) -> str:
    from molmoact2.evaluation.report import _pct

    if r and "only_ensemble" in r:  # a one-pass row of an ensemble run: the discordant pairs say which is better
        from molmoact2.evaluation.qa_compare import paired_difference

        b, c = r["only_ensemble"], r["only_single_pass"]
        if r.get("layouts"):
            diff, low, high, how = r["diff"], r["low"], r["high"], f"clustered over {r['layouts']} layouts"
        else:  # a record from before answers carried their layout
            diff, low, high = paired_difference(b, c, r["n"])
            how = "questions as independent: too narrow"
        return (f"{_pct(r)}; right only with the copies {b}, only in one pass {c}: copies {diff:+.1f} points "
                f"({low:+.1f} to {high:+.1f}, {how})")
    return _pct(r)


def to_markdown(results: list[dict[str, Any]]) -> str:
    from molmoact2.evaluation.report import _pct

    head = [f"{r['split']} scenes (seeds {r['seeds'][0]}–{r['seeds'][1]})" for r in results]
    lines = ["| spatial question | " + " | ".join(head) + " |", "|---|" + "---|" * len(results)]
    rows = (*GRADED_KINDS, "point_objects", "point_fixtures", "point_single_pass", "point_objects_single_pass",
            "point_objects_fixed_point")
    names = {"point_objects_fixed_point": "point_objects: one fixed point, no image (baseline)",
             "point_single_pass": "point, one pass (the same questions without the shifted copies)",
             "point_objects_single_pass": "point_objects, one pass"}
    for kind in rows:  # pointing split: movable objects / the bin; then the no-image baseline for the objects
        if any(kind in r["summary"] for r in results):
            lines.append(f"| {names.get(kind, kind)} | " + " | ".join(_pct_paired(r["summary"].get(kind)) for r in results)
                         + " |")
    if any("point_objects_correlation" in r["summary"] for r in results):
        def corr(c: dict[str, Any] | None) -> str:
            return f"{c['x']:.2f} / {c['y']:.2f} (n = {c['n']})" if c else "–"

        lines.append("| point_objects: correlation of answer with target, x / y | "
                     + " | ".join(corr(r["summary"].get("point_objects_correlation")) for r in results) + " |")
    if any("point_objects_nearest" in r["summary"] for r in results):
        def nearest(c: dict[str, Any] | None) -> str:
            return f"{_pct(c)} (chance {c['chance']:.0%})" if c else "–"

        lines.append("| point_objects: the object nearest the point is the named one | "
                     + " | ".join(nearest(r["summary"].get("point_objects_nearest")) for r in results) + " |")
    heads = [r["summary"].get("point_objects_head") for r in results]
    if any(heads):
        h = next(x for x in heads if x)
        def reading(c: dict[str, Any] | None) -> str:
            return (f"{c['share']:.0%} on the object (even spread {c['even_share']:.0%}); top token on it "
                    f"{c['top_cell_rate']:.0%} ({c['top_cell_hits']}/{c['n']})") if c else "–"

        lines.append(f"| point_objects: head {h['layer']}.{h['head']} attention while writing the point | "
                     + " | ".join(reading(c) for c in heads) + " |")
    acting = [r["summary"].get("action_head") for r in results]
    if any(acting):
        h = next(x for x in acting if x)

        def named(c: dict[str, Any] | None, which: str) -> str:
            if not c or c[f"top_{which}_rate"] is None:
                return "–"
            n = c["frames"] if which == "own" else c["pairs"]
            return (f"{c[f'share_{which}']:.0%} on it (even spread {c['even']:.0%}); top token on it "
                    f"{c[f'top_{which}_rate']:.0%} ({c[f'top_{which}']}/{n})")

        def words(c: dict[str, Any] | None) -> str:
            if not c or c["follows_rate"] is None:
                return "–"
            return (f"follows the words {c['follows_rate']:.0%} ({c['follows']}/{c['pairs']}); same object "
                    f"{c['same_rate']:.0%} ({c['same']}/{c['pairs']})")

        label = f"asked for actions: head {h['layer']}.{h['head']} at the state tokens"
        lines.append(f"| {label}, own instruction's object | " + " | ".join(named(c, "own") for c in acting) + " |")
        lines.append(f"| {label}, instruction naming another object | "
                     + " | ".join(named(c, "other") for c in acting) + " |")
        lines.append(f"| {label}, top token under both instructions | " + " | ".join(words(c) for c in acting) + " |")
    return "\n".join(lines) + "\n"
