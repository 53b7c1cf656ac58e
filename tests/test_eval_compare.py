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
    differs by nothing; different caches or mixed record kinds are refused. These records predate recorded
    layouts: with their cache moved away the interval is the independent-question one, and says so."""
    from molmoact2.cli import main
    from molmoact2.evaluation.qa_compare import compare_qa, paired_difference

    def load(name):
        record = json.loads(open(f"docs/results/{name}").read())
        record["results"][0]["data"] = str(tmp_path / "not_here")  # no cache to look layouts up in
        return record

    er, nano = load("qa_nano_er_shift_heldout.json"), load("qa_nano_shift_heldout.json")
    cache = compare_qa(er, nano)["caches"][0]
    row = cache["rows"]["point"]
    a = {x["index"]: x["correct"] for x in er["results"][0]["answers"] if x["kind"] == "point"}
    b = {x["index"]: x["correct"] for x in nano["results"][0]["answers"] if x["kind"] == "point"}
    assert row["n"] == len(a) == 584 and row["old_hits"] == sum(a.values()) and row["new_hits"] == sum(b.values())
    assert row["only_new"] == sum(b[i] and not a[i] for i in a) and row["only_old"] == sum(a[i] and not b[i] for i in a)
    assert row["diff"] == pytest.approx(100 * (row["new_hits"] - row["old_hits"]) / row["n"]) and row["high"] < 0
    assert row["layouts"] is None and "not on disk" in cache["layouts_from"]
    same = compare_qa(er, er)["caches"][0]["rows"]["point"]
    assert (same["only_new"], same["only_old"], same["diff"], same["low"], same["high"]) == (0, 0, 0, 0, 0)
    one_pass = compare_qa(er, er, old_field="single_pass_correct")["caches"][0]["rows"]["point"]
    assert (one_pass["old_hits"], one_pass["new_hits"]) == (er["results"][0]["summary"]["point_single_pass"]["hits"],
                                                            er["results"][0]["summary"]["point"]["hits"])
    with pytest.raises(ValueError, match="no answer has 'single_pass_correct'"):
        compare_qa(er, json.loads(json.dumps(er).replace('"single_pass_correct"', '"one_pass"')),
                   new_field="single_pass_correct")
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

    (tmp_path / "er.json").write_text(json.dumps(er))
    (tmp_path / "nano.json").write_text(json.dumps(nano))
    assert main(["eval", "compare", str(tmp_path / "er.json"), str(tmp_path / "nano.json"), "--names", "ER,Nano"]) == 0
    out = capsys.readouterr().out
    assert f"({row['old_hits']}/584)" in out and f"({row['new_hits']}/584)" in out
    assert "worse" in out and "right only in Nano / only in ER" in out and "treated as independent" in out
    with pytest.raises(SystemExit, match="one record is an `eval qa` record"):
        main(["eval", "compare", "docs/results/qa_nano_er_shift_heldout.json", "docs/results/nano_eval.json"])
    with pytest.raises(SystemExit, match="are for `eval qa --shift-copies` records"):
        main(["eval", "compare", "docs/results/nano_eval.json", "docs/results/nano_eval.json", "--one-pass-old"])


def test_clustered_interval_counts_layouts_not_questions():
    """Questions of one layout move together: ten layouts of ten questions each, where the new model wins all ten
    questions of three layouts and loses all of one, differ by +20 points with a much wider interval than the
    same 100 answers read as independent questions; by hand: per-layout sums of (d - 0.2) are 8 (x3), -12 and
    -2 (x6), so the variance is (3*64 + 144 + 6*4) * 10/9 / 100^2 and the quantile is t(9) = 2.262."""
    from molmoact2.evaluation.qa_compare import clustered_difference, paired_difference, t_quantile_975

    for dof, table in ((3, 3.182), (5, 2.571), (9, 2.262), (12, 2.179), (30, 2.042), (1000, 1.962)):
        assert t_quantile_975(dof) == pytest.approx(table, abs=0.025 if dof == 3 else 0.005)
    pairs, layouts = [], []
    for layout in range(10):
        won, lost = layout < 3, layout == 3
        pairs += [(lost, won)] * 10
        layouts += [layout] * 10
    diff, low, high, k = clustered_difference(pairs, layouts)
    half = 2.262 * ((3 * 64 + 144 + 6 * 4) * 10 / 9) ** 0.5 / 100
    assert k == 10 and diff == pytest.approx(20.0) and (low, high) == pytest.approx((20 - 100 * half, 20 + 100 * half),
                                                                                     abs=0.05)
    iid = paired_difference(30, 10, 100)
    assert iid[0] == pytest.approx(diff) and (high - low) > 2 * (iid[2] - iid[1])
    assert clustered_difference(pairs, list(range(100)))[2] - clustered_difference(pairs, list(range(100)))[1] < \
        high - low  # every question its own layout: back near the independent width
    with pytest.raises(ValueError, match="one layout per pair"):
        clustered_difference(pairs, layouts[:-1])


def test_qa_records_over_several_caches_add_a_pooled_row_with_layouts_per_cache():
    """Two caches whose layouts share seed numbers: the pooled row adds their questions, and counts a seed in each
    cache as its own layout (the caches are different scenes)."""
    from molmoact2.evaluation.qa_compare import compare_qa, to_markdown

    def record(hits_by_cache):
        results = []
        for c, hits in enumerate(hits_by_cache):
            answers = [{"index": i, "kind": "point", "question": f"Point to the red cube\n{c}", "layout": 10000 + i % 4,
                        "correct": i < hits} for i in range(12)]
            results.append({"data": f"/nowhere/{c}", "seeds": [10000, 10003], "answers": answers})
        return {"format": "molmoact2_qa_check.v1", "checkpoint": "x", "results": results}

    result = compare_qa(record([3, 5]), record([9, 4]))
    one, two, pooled = result["caches"]
    assert pooled["data"] == "all caches" and pooled["layouts_from"] == "per cache"
    assert (one["rows"]["point"]["layouts"], pooled["rows"]["point"]["layouts"]) == (4, 8)
    p = pooled["rows"]["point"]
    assert (p["n"], p["old_hits"], p["new_hits"], p["only_new"], p["only_old"]) == (24, 8, 13, 6, 1)
    assert p["diff"] == pytest.approx(100 * 5 / 24)
    assert "all caches | point | 33% (8/24) | 54% (13/24)" in to_markdown(result)


def test_layout_design_effect_script_on_shipped_records(capsys, monkeypatch):
    """scripts/layout_design_effect.py on two recorded comparisons: the pointing questions of one layout move
    together (design effect well above 1), closed-loop episodes on one seed hardly do (close to 1); an odd number
    of records is refused."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("layout_design_effect", "scripts/layout_design_effect.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    R = "docs/results/"
    monkeypatch.setattr(sys, "argv", ["x", R + "qa4_er_more_control.json", R + "qa4_er_more_shiftaug.json",
                                      R + "nano_eval_exec15_seeds20000_continuous.json",
                                      R + "nano_eval_exec30_seeds20000_continuous.json"])
    script.main()
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    effects = [float(r[-2]) for r in rows]
    assert "2326 questions" in rows[0][2] and int(rows[0][3]) == 52 and effects[0] > 2
    assert "200 episodes" in rows[1][2] and int(rows[1][3]) == 50 and 0.7 < effects[1] < 1.4
    monkeypatch.setattr(sys, "argv", ["x", R + "qa4_er_more_control.json"])
    with pytest.raises(SystemExit, match="pairs of records"):
        script.main()


def test_nano_records_with_layouts_pair_their_spatial_rows_by_question():
    """`eval nano` records whose answers carry their index and layout (from 2026-12-06; older ones when their cache
    is on disk): the spatial rows are paired question by question and clustered by layout, the interval recomputed
    here; without layouts the rows stay unpaired."""
    from molmoact2.evaluation.qa_compare import clustered_difference

    old = _record({"touch": [True] * 4}, point_hits=5)
    new = _record({"touch": [True] * 4}, point_hits=12)
    for rec in (old, new):
        rec["config"]["heldout"] = "/nowhere/nano_heldout"  # no cache to look layouts up in
        for i, q in enumerate(rec["qa"]):
            q |= {"index": i, "question": f"Point to the red cube {i}"}
    unpaired = {r["metric"]: r for r in compare(old, new)["rows"]}
    assert "spatial: point" in unpaired  # no layouts recorded, none on disk
    assert "treat every question as independent" in to_markdown(compare(old, new))  # and the reader is told
    for rec in (old, new):
        for i, q in enumerate(rec["qa"]):
            q["layout"] = 10000 + i % 5
    rows = {r["metric"].split(" (")[0]: r for r in compare(old, new)["rows"]}
    row = rows["spatial: point"]
    assert "paired; interval clustered over 5 layouts" in row["metric"]
    assert (row["old"]["hits"], row["new"]["hits"], row["old"]["n"]) == (5, 12, 20)
    pairs = [(i < 5, i < 12) for i in range(20)]
    diff, low, high, _ = clustered_difference(pairs, [10000 + i % 5 for i in range(20)])
    assert row["diff"] == pytest.approx(diff / 100) and row["ci95"] == pytest.approx((low / 100, high / 100))
    assert "paired" in to_markdown(compare(old, new))
    assert "treat every question as independent" not in to_markdown(compare(old, new))
    # the bin's questions are a row of their own, paired and clustered as well
    for rec, hits in ((old, 1), (new, 4)):
        rec["qa"] += [{"kind": "point", "question": f"Point to the bin\nPlease say 'There are none.' if it is not "
                                                   f"in the image. ({i})", "correct": i < hits, "index": 20 + i,
                       "layout": 10000 + i % 5} for i in range(10)]
    rows = {r["metric"].split(" (")[0]: r for r in compare(old, new)["rows"]}
    assert "paired; interval clustered over 5 layouts" in rows["spatial: point_fixtures"]["metric"]
    assert (rows["spatial: point_fixtures"]["old"]["hits"], rows["spatial: point_fixtures"]["new"]["hits"]) == (1, 4)


def test_layouts_are_looked_up_only_in_a_cache_holding_the_records_questions(tmp_path):
    """An older record without layouts: its cache on disk gives them, unless the cache at that path now holds other
    questions (rebuilt with other seeds), which is said instead of clustering by the wrong layouts."""
    from molmoact2.evaluation.qa_compare import answer_layouts

    qa = [{"kind": "point", "question": f"Point to the cube {i}", "episode": i % 2, "frame": 0} for i in range(4)]
    meta = {"episodes": [{"seed": 10000}, {"seed": 10001}]}
    (tmp_path / "qa.json").write_text(json.dumps(qa))
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    answers = {i: {"question": q["question"]} for i, q in enumerate(qa)}
    layouts, where = answer_layouts(answers, str(tmp_path))
    assert layouts == {0: 10000, 1: 10001, 2: 10000, 3: 10001} and "looked up" in where
    answers[2] = {"question": "Point to the bin"}
    layouts, where = answer_layouts(answers, str(tmp_path))
    assert layouts is None and "other questions" in where
    assert answer_layouts({0: {"question": "x", "layout": 7}}, "/nowhere") == ({0: 7}, "recorded")
