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
          kinds: tuple[str, ...] = GRADED_KINDS, progress: bool = True) -> dict[str, Any]:
    """Answers to a sample of `data_dir`'s questions, graded as `molmoact2 eval nano` grades them."""
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
    answers = [qa_metrics(policy, data, i) for i in tqdm(indices, desc=f"qa {Path(data_dir).name}",
                                                            disable=not progress, unit="q")]
    return {"data": str(data_dir), "seeds": [low, high],
            "split": "held-out" if low >= HELD_OUT_FIRST_SEED else "training" if high < HELD_OUT_FIRST_SEED else "mixed",
            "summary": _spatial(answers), "answers": answers}


def to_markdown(results: list[dict[str, Any]]) -> str:
    from molmoact2.evaluation.report import _pct

    head = [f"{r['split']} scenes (seeds {r['seeds'][0]}–{r['seeds'][1]})" for r in results]
    lines = ["| spatial question | " + " | ".join(head) + " |", "|---|" + "---|" * len(results)]
    for kind in (*GRADED_KINDS, "point_objects", "point_fixtures"):  # pointing split: movable objects / the bin
        if any(kind in r["summary"] for r in results):
            lines.append(f"| {kind} | " + " | ".join(_pct(r["summary"].get(kind)) for r in results) + " |")
    return "\n".join(lines) + "\n"
