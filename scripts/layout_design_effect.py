"""How much do results on one layout move together? The design effect of clustering a paired difference by layout.

    .venv/bin/python scripts/layout_design_effect.py OLD.json NEW.json [OLD2.json NEW2.json ...]

Each pair: two `eval nano` records (closed-loop success, paired by mode, task and seed) or two `eval qa` records
(answers, paired by question). Prints the paired difference, its 95% interval with every episode / question taken
as independent, the same clustered by layout (the seed: episodes of different tasks on one seed share the scene),
and the design effect (clustered variance / independent variance). Why: pointing questions of one layout were
found to move together (design effect 2-5, `docs/nano_experiments.md#shift-augment`); this checks whether the
closed-loop comparisons, which `eval compare` makes per episode, need the same care.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _pairs(old: dict, new: dict) -> tuple[list[tuple[bool, bool]], list[object], str]:
    if old.get("format") == new.get("format") == "molmoact2_nano_eval.v1":
        from molmoact2.evaluation.report import own_rollouts  # not the --swap-targets re-runs of a layout

        a = {(r["mode"], r["task"], r["seed"]): bool(r["success"]) for r in own_rollouts(old["rollouts"])}
        b = {(r["mode"], r["task"], r["seed"]): bool(r["success"]) for r in own_rollouts(new["rollouts"])}
        keys = sorted(set(a) & set(b))
        return [(a[k], b[k]) for k in keys], [k[2] for k in keys], "episodes"
    from molmoact2.evaluation.qa_compare import QA_FORMAT, answer_layouts

    if old.get("format") == new.get("format") == QA_FORMAT:

        pairs, layouts = [], []
        for ro, rn in zip(old["results"], new["results"]):
            a = {x["index"]: x for x in ro["answers"] if "correct" in x}
            b = {x["index"]: x for x in rn["answers"] if "correct" in x}
            common = sorted(set(a) & set(b))
            found, where = answer_layouts({i: a[i] for i in common}, ro["data"])
            if found is None:
                raise SystemExit(f"{ro['data']}: no layouts ({where})")
            pairs += [(bool(a[i]["correct"]), bool(b[i]["correct"])) for i in common]
            layouts += [(ro["data"], found[i]) for i in common]
        return pairs, layouts, "questions"
    raise SystemExit(f"expected two `eval nano` or two `eval qa` records, got formats {old.get('format')!r} and "
                     f"{new.get('format')!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("records", nargs="+", help="OLD NEW [OLD NEW ...]")
    args = p.parse_args()
    if len(args.records) % 2:
        raise SystemExit(f"expected pairs of records (OLD NEW ...), got {len(args.records)} paths")
    from molmoact2.evaluation.qa_compare import clustered_difference, paired_difference, t_quantile_975

    print("| old → new | paired units | layouts | difference, points | 95% interval, independent | "
          "95% interval, clustered by layout | design effect |")
    print("|---|---|---|---|---|---|---|")
    for old_path, new_path in zip(args.records[::2], args.records[1::2]):
        old, new = (json.loads(Path(x).read_text()) for x in (old_path, new_path))
        pairs, layouts, unit = _pairs(old, new)
        only_new = sum(b and not a for a, b in pairs)
        only_old = sum(a and not b for a, b in pairs)
        diff, low_i, high_i = paired_difference(only_new, only_old, len(pairs))
        _, low_c, high_c, k = clustered_difference(pairs, layouts)
        # (clustered standard error / independent standard error)^2: the t quantile's small-sample widening taken out
        ratio = ((high_c - low_c) / t_quantile_975(k - 1)) / ((high_i - low_i) / 1.959964) if high_i > low_i \
            else float("nan")
        print(f"| {Path(old_path).name} → {Path(new_path).name} | {len(pairs)} {unit} | {k} | {diff:+.1f} | "
              f"{low_i:+.1f} to {high_i:+.1f} | {low_c:+.1f} to {high_c:+.1f} | {ratio ** 2:.2f} |")


if __name__ == "__main__":
    main()
