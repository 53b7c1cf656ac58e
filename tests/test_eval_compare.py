"""`molmoact2 eval compare`: the interval of a difference of two rates, the verdicts, the paired closed-loop
counts, and the refusal to compare records evaluated on different seeds (records built here, no model)."""

from __future__ import annotations

import json

import pytest

from molmoact2.evaluation.compare import _diff_interval, compare, to_markdown


def test_difference_interval_matches_newcombes_published_values():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10 (hybrid score):
    # 56/70 - 48/80 -> 0.0524 to 0.3339;  0/10 - 0/10 -> -0.2775 to 0.2775
    d, lo, hi = _diff_interval(48, 80, 56, 70)
    assert d == pytest.approx(0.2)
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert _diff_interval(0, 10, 0, 10)[1:] == pytest.approx((-0.2775, 0.2775), abs=1e-4)


def _record(successes: dict[str, list[bool]], seeds_per_task: int = 4, point_hits: int = 5,
            first_seed: int = 10000) -> dict:
    rollouts = []
    for task, flags in successes.items():
        for i, ok in enumerate(flags):
            rollouts.append({"mode": "continuous", "task": task, "seed": first_seed + i, "success": ok,
                             "stopped_by": "success" if ok else "time_limit", "error": None, "policy_ms_mean": 10.0,
                             "clipped_targets": 0, "max_overshoot": 0.0, "depth_cells_changed": None})
    qa = [{"kind": "point", "correct": i < point_hits} for i in range(20)]
    return {"format": "molmoact2_nano_eval.v1", "rollouts": rollouts, "episodes": [], "qa": qa,
            "config": {"tasks": list(successes), "modes": ["continuous"], "seeds_per_task": seeds_per_task,
                       "first_seed": first_seed, "image_size": 96, "max_questions": None, "seed": 0,
                       "on_limit": "clip", "checkpoint": "x"}}


def test_verdicts_and_paired_counts():
    old = _record({"touch": [False] * 30 + [True] * 10}, seeds_per_task=40, point_hits=2)
    new = _record({"touch": [True] * 30 + [False] * 10}, seeds_per_task=40, point_hits=18)
    result = compare(old, new)
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["continuous success: touch"]["verdict"] == "better"
    assert rows["spatial: point"]["verdict"] == "better"
    assert compare(new, old)["rows"][0]["verdict"] == "worse"
    assert result["paired"]["continuous"] == {"only_new": 30, "only_old": 10, "both": 0, "neither": 0}
    same = compare(old, old)
    assert {r["verdict"] for r in same["rows"]} == {"within noise"}
    text = to_markdown(result, old_name="step 1100", new_name="step 2800")
    assert "| continuous success: touch | 25% (10/40) | 75% (30/40) | +50" in text
    assert "solved only by step 2800" in text


def test_records_on_different_seeds_are_refused():
    with pytest.raises(ValueError, match="first_seed"):
        compare(_record({"touch": [True]}), _record({"touch": [True]}, first_seed=10050))


def test_records_with_another_replanning_rate_compare_and_say_so():
    from molmoact2.evaluation.compare import to_markdown

    new = _record({"touch": [True]})
    new["config"]["n_action_steps"] = 5  # records written before the setting was resolved carry None: 15
    result = compare(_record({"touch": [True]}), new)
    assert result["n_action_steps"] == (15, 5)
    assert "executed for 15 ticks in old and 5 in new" in to_markdown(result)
    new["config"]["n_action_steps"] = 15
    assert "executed for" not in to_markdown(compare(_record({"touch": [True]}), new))


def test_records_with_another_noise_seed_compare_and_say_so():
    from molmoact2.evaluation.compare import to_markdown

    new = _record({"touch": [False, True, True, False]})
    new["config"]["seed"] = 1
    result = compare(_record({"touch": [True, True, False, False]}), new)
    assert result["paired"]["continuous"] == {"only_new": 1, "only_old": 1, "both": 1, "neither": 1}
    assert "different seeds (old: 0, new: 1)" in to_markdown(result)
    assert "different seeds" not in to_markdown(compare(_record({"touch": [True]}), _record({"touch": [True]})))


def test_records_with_other_flow_steps_compare_and_say_so():
    from molmoact2.evaluation.compare import to_markdown

    old, new = _record({"touch": [True, False]}), _record({"touch": [True, True]})
    new["config"]["num_steps"] = 5  # `old` predates the field: its actions were integrated with 10 steps
    result = compare(old, new)
    assert result["flow_steps"] == (10, 5) and result["paired"]["continuous"]["only_new"] == 1
    assert "10 Euler steps in old and 5 in new" in to_markdown(result)
    old["config"]["num_steps"] = 5
    assert "Euler steps" not in to_markdown(compare(old, new))
    new["config"]["carry_steps"] = 5  # `old` predates the option: nothing was carried
    result = compare(old, new)
    assert result["carry_steps"] == (0, 5) and "pinned to the previous plan's: 0 in old, 5 in new" in to_markdown(result)
    new["config"]["plan_samples"] = 8  # `old` predates the option: one draw per call
    result = compare(old, new)
    assert result["plan_samples"] == (1, 8) and "drew 1 plan(s) in old and 8 in new" in to_markdown(result)


def test_compare_command(tmp_path, capsys):
    from molmoact2.cli import main

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_record({"touch": [False, False, True, False]})))
    new.write_text(json.dumps(_record({"touch": [True, True, True, False]})))
    assert main(["eval", "compare", str(old), str(new), "--names", "before,after"]) == 0
    out = capsys.readouterr().out
    assert "| metric | before | after |" in out and "within noise" in out
    with pytest.raises(SystemExit, match="not found"):
        main(["eval", "compare", str(old), str(tmp_path / "missing.json")])
    with pytest.raises(SystemExit, match="two comma-separated names"):
        main(["eval", "compare", str(old), str(new), "--names", "only-one"])


def _with_swaps(record: dict, follows: bool) -> dict:
    """Add went_to_target fields and one --swap-targets re-run per rollout: a reader goes to the newly named
    object, a non-reader to the same object as before."""
    own = record["rollouts"]
    for r in own:
        r |= {"named": "own", "target": "red cube", "closest_object": "red cube", "went_to_target": True,
              "n_objects": 3}
    swaps = [dict(r, named="other", success=False, target="blue cube",
                  closest_object="blue cube" if follows else "red cube", went_to_target=follows) for r in own]
    return record | {"rollouts": own + swaps}


def test_swapped_targets_stay_out_of_success_and_compare_as_words_rows():
    old = _with_swaps(_record({"touch": [True] * 20}, seeds_per_task=20), follows=False)
    new = _with_swaps(_record({"touch": [True] * 20}, seeds_per_task=20), follows=True)
    result = compare(old, new)
    rows = {r["metric"]: r for r in result["rows"]}
    # the re-runs (all failures here) do not enter the success rate or the paired counts
    assert rows["continuous success: touch"]["old"] == {"hits": 20, "n": 20, "rate": 1.0}
    assert result["paired"]["continuous"] == {"only_new": 0, "only_old": 0, "both": 20, "neither": 0}
    assert rows["continuous: followed both instructions (--swap-targets)"]["verdict"] == "better"
    assert rows["continuous: same object under both instructions"]["verdict"] == "better"  # lower is better
    assert rows["continuous: same object under both instructions"]["old"]["rate"] == 1.0


def test_pointing_is_split_into_movable_objects_and_the_bin():
    """A checkpoint that learns only the bin (large, always in the same region) looks better at
    "pointing" overall; the split shows the movable objects did not move."""
    from molmoact2.evaluation.report import summary_of, to_markdown as report

    def point(name: str, ok: bool) -> dict:
        return {"kind": "point", "question": f"Point to the {name}\nPlease say 'There are none.' if it is not in "
                                             "the image.", "correct": ok}

    old = _record({"touch": [True, False, True, False]})
    new = _record({"touch": [True, False, True, False]})
    old["qa"] = [point("bin", i < 5) for i in range(30)] + [point("red cube", i < 2) for i in range(60)]
    new["qa"] = [point("bin", i < 29) for i in range(30)] + [point("red cube", i < 2) for i in range(60)]
    rows = {r["metric"]: r for r in compare(old, new)["rows"]}
    assert rows["spatial: point"]["verdict"] == "better"
    assert rows["spatial: point_fixtures"]["verdict"] == "better"
    assert rows["spatial: point_objects"]["verdict"] == "within noise"
    assert rows["spatial: point_objects"]["new"] == {"hits": 2, "n": 60, "rate": 2 / 60}
    assert "| ... pointing at the movable objects | 3% (2/60) |" in report(new)
    # a compact record (rollouts + stored summary, no answers) keeps its stored spatial figures
    compact = {k: v for k, v in new.items() if k != "qa"} | {"summary": summary_of(new)}
    assert summary_of(compact)["spatial"] == summary_of(new)["spatial"]


def test_qa_records_compare_question_by_question(tmp_path, capsys):
    """`eval compare` on two `eval qa` records (the shipped Nano-ER's and Nano's on the same 584 held-out pointing
    questions): the hits and discordant counts are recounted here from the answers; a record against itself
    differs by nothing; different caches or mixed record kinds are refused."""
    from molmoact2.cli import main
    from molmoact2.evaluation.qa_compare import compare_qa, paired_difference

    er = json.loads(open("docs/results/qa_nano_er_shift_heldout.json").read())
    nano = json.loads(open("docs/results/qa_nano_shift_heldout.json").read())
    row = compare_qa(er, nano)["caches"][0]["rows"]["point"]
    a = {x["index"]: x["correct"] for x in er["results"][0]["answers"] if x["kind"] == "point"}
    b = {x["index"]: x["correct"] for x in nano["results"][0]["answers"] if x["kind"] == "point"}
    assert row["n"] == len(a) == 584 and row["old_hits"] == sum(a.values()) and row["new_hits"] == sum(b.values())
    assert row["only_new"] == sum(b[i] and not a[i] for i in a) and row["only_old"] == sum(a[i] and not b[i] for i in a)
    assert row["diff"] == pytest.approx(100 * (row["new_hits"] - row["old_hits"]) / row["n"]) and row["high"] < 0
    same = compare_qa(er, er)["caches"][0]["rows"]["point"]
    assert (same["only_new"], same["only_old"], same["diff"], same["low"], same["high"]) == (0, 0, 0, 0, 0)
    assert paired_difference(10, 0, 100)[1] > 0 and paired_difference(5, 5, 100)[:1] == (0.0,)
    with pytest.raises(ValueError, match="n > 0"):
        paired_difference(0, 0, 0)

    moved = json.loads(json.dumps(nano))
    moved["results"][0]["data"] = "/tmp/elsewhere"
    with pytest.raises(ValueError, match="different data caches"):
        compare_qa(er, moved)
    renamed = json.loads(json.dumps(nano))
    renamed["results"][0]["answers"][0]["question"] = "Point to something else"
    with pytest.raises(ValueError, match="not sampled the same way"):
        compare_qa(er, renamed)

    assert main(["eval", "compare", "docs/results/qa_nano_er_shift_heldout.json",
                 "docs/results/qa_nano_shift_heldout.json", "--names", "ER,Nano"]) == 0
    out = capsys.readouterr().out
    assert f"({row['old_hits']}/584)" in out and f"({row['new_hits']}/584)" in out
    assert "worse" in out and "right only in Nano / only in ER" in out
    with pytest.raises(SystemExit, match="one record is an `eval qa` record"):
        main(["eval", "compare", "docs/results/qa_nano_er_shift_heldout.json", "docs/results/nano_eval.json"])
