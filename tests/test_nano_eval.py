"""`molmoact2 eval nano`: the closed-loop episode record, the graders, and the whole command end to end on a
random tiny checkpoint with a one-episode held-out cache built for real (MuJoCo expert, depth VQ-VAE)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import one_thread_fixture  # noqa: E402
from molmoact2.models.base import Step  # noqa: E402

one_thread = one_thread_fixture()
RENDER = 96


@pytest.fixture(scope="module")
def heldout_dir(tmp_path_factory):
    from molmoact2.cli import main

    out = tmp_path_factory.mktemp("nano") / "heldout"
    assert main(["train", "data", "--out", str(out), "--episodes-per-task", "1", "--tasks", "touch",
                 "--first-seed", "10000", "--render-size", str(RENDER), "--store-size", "64",
                 "--qa-frames-per-episode", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def heldout(heldout_dir):
    from molmoact2.training.nano_examples import NanoTrainData

    return NanoTrainData.load(heldout_dir, progress=False)


def test_rendering_only_the_last_tick_changes_nothing_but_speed():
    """The expert is deterministic: with rendering skipped inside chunks the episode is the same episode."""
    from molmoact2.evaluation.closed_loop import rollout
    from molmoact2.runner import ExpertPolicy, guard_for_env, run_episode
    from molmoact2.sim import make_env

    env = make_env("touch", image_size=64, depth=False, segmentation=False)
    full: dict = {}
    list(run_episode(ExpertPolicy(env), env, guard_for_env(env), seed=10000, summary=full))
    rec = rollout(ExpertPolicy(env), env, seed=10000)
    env.close()
    assert full["success"] and rec["success"] and rec["stopped_by"] == "success" and rec["error"] is None
    assert rec["ticks"] == full["ticks"] and rec["chunks"] == full["chunks"]
    # the expert goes for its target: the grounding check must say so (jaw within a few cm of its centre)
    assert rec["went_to_target"] and rec["closest_object"] == rec["target"] and rec["target_closest_m"] < 0.05


def test_expert_aimed_at_another_object_goes_there():
    """`rollout(target=...)` re-aims the seed's layout: the expert then reaches the newly named object."""
    from molmoact2.evaluation.closed_loop import rollout
    from molmoact2.runner import ExpertPolicy
    from molmoact2.sim import make_env

    env = make_env("touch", image_size=64, depth=False, segmentation=False)
    env.reset(10000)
    own = env.instance.target
    other = next(n for n in env.target_options() if n != own)
    rec = rollout(ExpertPolicy(env), env, seed=10000, target=other)
    env.close()
    assert rec["success"] and rec["target"] == other and other in rec["instruction"] and own not in rec["instruction"]
    assert rec["went_to_target"] and rec["closest_object"] == other


def test_progress_says_how_far_a_pick_place_got():
    """The expert picks, lifts and drops the named object: every stage is seen. An arm that holds its pose
    never touches or moves it: every stage is False, so the stages can fail. The report counts both."""
    from molmoact2.evaluation.closed_loop import rollout
    from molmoact2.evaluation.report import summarize, to_markdown
    from molmoact2.runner import ExpertPolicy
    from molmoact2.sim import make_env

    class Hold:
        def reset(self):
            pass

        def predict(self, obs):
            return Step(backend="hold", observation=obs, actions=np.repeat(obs.state[None, :], 15, axis=0))

    env = make_env("pick_place", image_size=64, depth=False, segmentation=False)
    done = rollout(ExpertPolicy(env), env, seed=10000)
    held = rollout(Hold(), env, seed=10000, max_steps=60)
    env.close()
    assert done["success"], done
    p = done["progress"]
    assert p["touched"] and p["in_bin"] and p["lift_max_m"] > 0.05 and p["slide_max_m"] > 0.05, p
    assert 0 < p["touched_tick"] < p["in_bin_tick"] <= done["ticks"], p
    q = held["progress"]
    assert not held["success"] and not q["touched"] and not q["in_bin"] and q["touched_tick"] is None, q
    assert q["lift_max_m"] < 0.005 and q["slide_max_m"] < 0.005, q

    record = {"rollouts": [dict(done, mode="continuous"), dict(held, mode="continuous")]}
    row = summarize(record)["closed_loop"]["continuous"]["progress"]["pick_place"]
    assert [row[k]["hits"] for k in ("touched", "lifted", "slid", "in_bin", "success")] == [1, 1, 1, 1, 1]
    assert row["touched"]["n"] == 2
    assert "| continuous pick_place | 50% (1/2) | 50% (1/2) |" in to_markdown(record)


def test_a_policy_error_is_a_recorded_failure():
    from molmoact2.evaluation.closed_loop import rollout
    from molmoact2.sim import make_env

    class Broken:
        def reset(self):
            pass

        def predict(self, obs):
            raise RuntimeError("decode failed: no <action_end>")

    env = make_env("touch", image_size=64, depth=False, segmentation=False)
    rec = rollout(Broken(), env, seed=10000)
    env.close()
    assert not rec["success"] and rec["stopped_by"] == "error" and "no <action_end>" in rec["error"]


class _Answers:
    """Answers every question with `answer(item)`: grading is what is under test here, not a model."""

    def __init__(self, data, answer):
        self.data, self.answer = data, answer

    def ask(self, images, question):
        item = next(q for q in self.data.qa if q["question"] == question)
        return Step(answer_text=self.answer(item))


def test_graders_accept_the_ground_truth_and_reject_wrong_answers(heldout):
    from molmoact2.evaluation.offline import qa_metrics

    kinds = {q["kind"] for q in heldout.qa}
    assert {"point", "count", "point_absent"} <= kinds
    graded = [i for i, q in enumerate(heldout.qa) if q["kind"] != "box"]
    truth = _Answers(heldout, lambda item: item["answer"])
    assert all(qa_metrics(truth, heldout, i)["correct"] for i in graded)

    def wrong(item):
        if item["kind"] == "point_absent":
            return '<points coords="1 1 500 500">it</points>'
        if item["kind"] == "count":
            return f"Counting the <points coords=\"1 1 001 001\">x</points> shows a total of {item['count'] + 1}."
        seg = heldout.qa_segmentation(item)
        rows, cols = np.nonzero(~np.isin(seg, item["labels"]))  # a pixel outside the target's mask
        h, w = seg.shape
        x, y = int((cols[0] + 0.5) / w * 1000), int((rows[0] + 0.5) / h * 1000)
        return f'<points coords="1 1 {x:03d} {y:03d}">it</points>'

    liar = _Answers(heldout, wrong)
    assert not any(qa_metrics(liar, heldout, i)["correct"] for i in graded)


def test_eval_command_end_to_end(heldout_dir, tmp_path, capsys):
    from molmoact2.cli import main
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    out = tmp_path / "eval.json"
    assert main(["eval", "nano", "--checkpoint", str(ckpt), "--heldout", str(heldout_dir), "--tasks", "touch",
                 "--seeds-per-task", "1", "--modes", "continuous,think", "--max-questions", "3", "--jobs", "1",
                 "--swap-targets", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rec = json.loads(out.read_text())
    import hashlib  # the record names its weights, so a copy under another path is known as the same weights

    assert rec["weights_sha256"] == hashlib.sha256((ckpt / "model.safetensors").read_bytes()).hexdigest()
    assert [(r["mode"], r["task"], r["seed"], r["named"]) for r in rec["rollouts"]] == [
        ("continuous", "touch", 10000, "other"), ("continuous", "touch", 10000, "own"),
        ("think", "touch", 10000, "other"), ("think", "touch", 10000, "own")]
    own, other = rec["rollouts"][1], rec["rollouts"][0]
    assert other["target"] != own["target"] and other["target"] in other["instruction"]
    words = rec["summary"]["words_vs_layout"]["continuous"]
    assert words["layouts"] == 1 and words["own_named"]["hits"] == int(own["went_to_target"])
    assert words["same_object_both_times"]["hits"] == int(own["closest_object"] == other["closest_object"])
    assert "words vs layout" in printed
    # the re-aimed runs stay out of the success table (it counts each seed's own instruction once)
    assert rec["summary"]["closed_loop"]["continuous"]["per_task"]["touch"]["n"] == 1
    assert len(rec["qa"]) == 3 and len(rec["episodes"]) == 1
    s = rec["summary"]
    assert set(s["closed_loop"]) == {"continuous", "think"}
    assert all(r["closest_object"] in r["instruction"] or not r["went_to_target"] for r in rec["rollouts"])
    assert s["closed_loop"]["think"]["went_to_target"]["n"] == 1
    depth = s["depth_codes"]
    queries = rec["episodes"][0]["queries"]
    assert depth["first_query_all_cells"]["n"] == 100 and depth["later_queries_all_cells"]["n"] == 100 * (queries - 1)
    assert 0 <= depth["majority_code_baseline"] <= 1
    # a random model's discrete decode is counted, whatever it produced; never silently dropped
    a = s["actions_vs_expert"]
    n_discrete = a["discrete"]["n_queries"] if "discrete" in a else 0
    assert n_discrete + a["discrete_decode_failures"]["hits"] == queries
    assert a["continuous"]["n_queries"] == queries and len(a["continuous"]["mae_pct_per_joint"]) == 6
    assert "| touch |" in printed and "majority-code baseline" in printed
    from molmoact2.evaluation.report import to_markdown

    assert printed.startswith(to_markdown(rec))
    assert main(["eval", "report", str(out)]) == 0
    assert capsys.readouterr().out == to_markdown(rec) + "\n"


def test_training_layouts_run_on_the_training_seeds_and_cache_and_say_so(heldout_dir, tmp_path, capsys):
    """`--training-layouts`: the closed loop from seed 0, the open-loop parts on a training cache, a record and a
    report that say which layouts they are; a held-out cache is refused there, as a training cache is elsewhere."""
    from molmoact2.cli import main
    from molmoact2.models.nano.factory import make_random_checkpoint

    train_dir = tmp_path / "train"
    assert main(["train", "data", "--out", str(train_dir), "--episodes-per-task", "1", "--tasks", "touch",
                 "--first-seed", "3", "--render-size", str(RENDER), "--store-size", "64",
                 "--qa-frames-per-episode", "1"]) == 0
    capsys.readouterr()
    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    out = tmp_path / "seen.json"
    common = ["eval", "nano", "--checkpoint", str(ckpt), "--tasks", "touch", "--seeds-per-task", "1",
              "--modes", "continuous", "--max-questions", "1", "--jobs", "1"]
    assert main(common + ["--training-layouts", "--heldout", str(train_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["config"]["training_layouts"] and rec["config"]["first_seed"] == 0
    assert [r["seed"] for r in rec["rollouts"]] == [0]
    assert [e["seed"] for e in rec["episodes"]] == [3] and len(rec["qa"]) == 1
    assert printed.startswith("**Training layouts** (seeds 0–0 per task")
    with pytest.raises(ValueError, match="contains seed 10000; with training_layouts"):
        main(common + ["--training-layouts", "--heldout", str(heldout_dir)])
    with pytest.raises(ValueError, match="contains seed 3; held-out data must use seeds >= 10000"):
        main(common + ["--heldout", str(train_dir)])


def test_eval_replans_every_n_action_steps(tmp_path):
    """--n-action-steps 5: the policy is asked again every 5 ticks, not the checkpoint's 30 (and --noise-seed and
    --num-steps are kept; without them the record names the checkpoint's own Euler steps and actions per query)."""
    from molmoact2.cli import main
    from molmoact2.evaluation.nano_eval import EvalConfig
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    chunks = {}
    for n in (5, None):
        out = tmp_path / f"eval_{n}.json"
        assert main(["eval", "nano", "--checkpoint", str(ckpt), "--tasks", "touch", "--seeds-per-task", "1",
                     "--modes", "continuous", "--jobs", "1", "--out", str(out)]
                    + (["--n-action-steps", str(n), "--noise-seed", "3", "--num-steps", "3"] if n else [])) == 0
        rec = json.loads(out.read_text())
        (roll,) = rec["rollouts"]
        assert rec["config"]["n_action_steps"] == (n or 30)  # the random checkpoint's norm stats say 30
        assert rec["config"]["seed"] == (3 if n else 0)  # --noise-seed reaches the policies' config
        assert rec["config"]["num_steps"] == (3 if n else 10)  # the random checkpoint's config says 10
        chunks[n] = (roll["chunks"], roll["ticks"])
    assert chunks[5][0] == -(-chunks[5][1] // 5) and chunks[None][0] == -(-chunks[None][1] // 30)
    with pytest.raises(ValueError, match="n_action_steps: expected 1..30"):
        EvalConfig(checkpoint=str(tmp_path), n_action_steps=0)


def test_checkpoint_action_steps_reads_the_one_norm_tag(tmp_path):
    from pathlib import Path

    from molmoact2.evaluation.nano_eval import checkpoint_action_steps

    shipped = Path(__file__).resolve().parents[1] / "assets" / "nano"
    assert checkpoint_action_steps(str(shipped)) == 30  # the shipped default since 2026-12-05
    for tags, what in (({"a": {"n_action_steps": 15}, "b": {"n_action_steps": 15}}, "one norm tag"),
                       ({"a": {"n_action_steps": 31}}, "31"), ({"a": {}}, "None")):
        (tmp_path / "norm_stats.json").write_text(json.dumps({"metadata_by_tag": tags}))
        with pytest.raises(ValueError, match=what):
            checkpoint_action_steps(str(tmp_path))


def test_eval_workers_integrate_with_the_asked_flow_steps(tmp_path):
    """--num-steps reaches every policy a worker builds; a checkpoint whose config names no valid number is refused."""
    from molmoact2.evaluation import nano_eval
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    try:
        nano_eval._init_worker(nano_eval.EvalConfig(checkpoint=str(ckpt), num_steps=3))
        assert {m: p.num_steps for m, p in nano_eval._W["policies"].items()} == \
            {"continuous": 3, "think": 3, "discrete": 3}
        obs = _first_touch_obs(nano_eval)
        step = nano_eval._W["policies"]["continuous"].predict(obs)
        assert step.denoising_states.shape[0] == 3 + 1  # noise, then one state per Euler step
    finally:
        for env in nano_eval._W.get("envs", {}).values():
            env.close()
        nano_eval._W.clear()
    with pytest.raises(ValueError, match="num_steps: expected 1..100"):
        nano_eval.EvalConfig(checkpoint=str(ckpt), num_steps=0)
    # --carry-steps, --noise-scale and --plan-samples reach the flow policies only (the discrete mode has no plan to carry and
    # starts from no noise)
    for option, value, default in (("carry_steps", 5, 0), ("noise_scale", 0.0, 1.0), ("plan_samples", 4, 1)):
        try:
            nano_eval._init_worker(nano_eval.EvalConfig(checkpoint=str(ckpt), **{option: value}))
            assert {m: getattr(p, option) for m, p in nano_eval._W["policies"].items()} == \
                {"continuous": value, "think": value, "discrete": default}
        finally:
            nano_eval._W.clear()
    with pytest.raises(ValueError, match="carry_steps: expected 0"):
        nano_eval.EvalConfig(checkpoint=str(ckpt), carry_steps=30)
    with pytest.raises(ValueError, match="noise_scale: expected a number in 0..2.0"):
        nano_eval.EvalConfig(checkpoint=str(ckpt), noise_scale=3.0)
    with pytest.raises(ValueError, match="plan_samples: expected a whole number in 1..64"):
        nano_eval.EvalConfig(checkpoint=str(ckpt), plan_samples=0)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(config | {"flow_matching_num_steps": 0}))
    with pytest.raises(ValueError, match="flow_matching_num_steps in 1..100, got 0"):
        nano_eval.checkpoint_flow_steps(str(ckpt))


def _first_touch_obs(nano_eval):
    """The first observation of a held-out touch layout, from the worker's own simulator."""
    env = nano_eval._env("touch")
    obs, _ = env.reset(10000)
    return obs


def test_eval_refuses_training_seeds(tmp_path):
    from molmoact2.evaluation.nano_eval import EvalConfig

    with pytest.raises(ValueError, match="held-out seeds start at 10000"):
        EvalConfig(checkpoint=str(tmp_path), first_seed=0)
    # asked for on purpose they are allowed, but only they: a training-layout run must not reach held-out seeds
    assert EvalConfig(checkpoint=str(tmp_path), first_seed=0, training_layouts=True).first_seed == 0
    with pytest.raises(ValueError, match=r"training layouts are seeds 0..9999, got 9990..10039"):
        EvalConfig(checkpoint=str(tmp_path), first_seed=9990, training_layouts=True)
    with pytest.raises(ValueError, match="modes"):
        EvalConfig(checkpoint=str(tmp_path), modes=("fast",))


def test_eval_qa_grades_any_cache_and_names_its_split(heldout_dir, tmp_path, capsys):
    from molmoact2.cli import main
    from molmoact2.evaluation.qa_check import sample_questions
    from molmoact2.models.nano.factory import make_random_checkpoint

    qa = json.loads((heldout_dir / "qa.json").read_text())
    picked = sample_questions(qa, 3, seed=0)
    assert len(picked) == 3 and picked == sample_questions(qa, 3, seed=0)
    assert all(qa[i]["kind"] != "box" for i in picked)
    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    assert main(["eval", "qa", "--checkpoint", str(ckpt), "--data", str(heldout_dir), "--max-questions", "3",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "held-out scenes (seeds 10000–10000)" in out
    import re

    counts = {line.split("|")[1].strip(): int(m.group(1)) for line in out.splitlines()
              if (m := re.search(r"\(\d+/(\d+)\)", line))}
    baseline = counts.pop("point_objects: one fixed point, no image (baseline)", None)
    split = {k: counts.pop(k) for k in ("point_objects", "point_fixtures") if k in counts}
    assert baseline == split.get("point_objects")  # the no-image baseline is graded on the same questions
    assert sum(counts.values()) == 3  # every sampled question is graded and counted, whatever a random model answered
    assert sum(split.values()) == counts.get("point", 0)  # the split only re-counts the pointing questions
    with pytest.raises(SystemExit, match="not a data cache"):
        main(["eval", "qa", "--checkpoint", str(ckpt), "--data", str(tmp_path)])
    # --kinds: only pointing questions, every one of them; --out keeps each answer
    points = sum(q["kind"] == "point" for q in qa)
    rec = tmp_path / "qa.json"
    assert main(["eval", "qa", "--checkpoint", str(ckpt), "--data", str(heldout_dir), "--max-questions", "100000",
                 "--threads", "1", "--kinds", "point", "--out", str(rec)]) == 0
    saved = json.loads(rec.read_text())
    assert saved["kinds"] == ["point"] and [r["split"] for r in saved["results"]] == ["held-out"]
    assert len(saved["results"][0]["answers"]) == points > 0
    assert saved["results"][0]["summary"]["point"]["n"] == points
    fixed = saved["results"][0]["summary"]["point_objects_fixed_point"]
    assert fixed["n"] == saved["results"][0]["summary"]["point_objects"]["n"]
    assert all(0 <= v <= 1000 for v in fixed["xy_1000"]) and 0 <= fixed["hits"] <= fixed["n"]
    assert "| closer |" not in capsys.readouterr().out
    with pytest.raises(SystemExit, match="expected some of point"):
        main(["eval", "qa", "--checkpoint", str(ckpt), "--data", str(heldout_dir), "--kinds", "box"])


def test_eval_qa_shift_copies_grades_both_ways_and_report_reprints_it(heldout_dir, tmp_path, capsys):
    """`eval qa --shift-copies`: each one-point answer averaged over shifted copies (molmoact2.point_ensemble), the
    one-pass answers graded on the same questions, the paired difference printed; `eval report` reprints the
    record. The shipped Nano-ER answers with one point, so the copies are used."""
    from molmoact2.cli import main
    from molmoact2.models.registry import REPO_NANO_ER_DIR

    if not (REPO_NANO_ER_DIR / "config.json").is_file():
        pytest.skip("no Nano-ER checkpoint")
    rec = tmp_path / "qa_shift.json"
    assert main(["eval", "qa", "--checkpoint", str(REPO_NANO_ER_DIR), "--data", str(heldout_dir), "--max-questions",
                 "100000", "--threads", "1", "--kinds", "point", "--shift-copies", "--out", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "| point, one pass" in out and "right only with the copies" in out, out
    saved = json.loads(rec.read_text())
    assert saved["shift_ensemble"]["offsets"][0] == [0, 0] and saved["shift_ensemble"]["step_frac"] == 1 / 32
    (result,) = saved["results"]
    answers = result["answers"]
    applied = [a for a in answers if "single_pass_answer" in a]
    assert applied, "Nano-ER answered no pointing question with one point"
    one_pass = result["summary"]["point_single_pass"]
    assert one_pass["n"] == result["summary"]["point"]["n"] == len(answers)
    assert one_pass["hits"] == sum(a.get("single_pass_correct", a["correct"]) for a in answers)
    assert one_pass["only_ensemble"] - one_pass["only_single_pass"] == (result["summary"]["point"]["hits"]
                                                                        - one_pass["hits"])
    # every answer names its layout (the seed), and the paired interval is clustered over them
    meta = json.loads((heldout_dir / "meta.json").read_text())
    assert {a["layout"] for a in answers} <= {e["seed"] for e in meta["episodes"]}
    assert one_pass["layouts"] == len({a["layout"] for a in answers}) and f"clustered over {one_pass['layouts']}" in out
    assert main(["eval", "report", str(rec)]) == 0
    assert capsys.readouterr().out.strip() == out.split("\nwrote ")[0].strip()


def test_clock_baseline_predicts_the_other_demos_mean_chunk():
    """The layout-blind action baseline: leave-one-out mean of the same task's chunks at the same frame; a task
    with one episode has no baseline; a shorter episode holds its last action."""
    from molmoact2.evaluation.offline import clock_baseline

    span = np.array([10.0, 20.0])
    a = np.zeros((4, 2))
    b = np.full((4, 2), 2.0)
    c = np.full((2, 2), 4.0)  # ends early: at frame 2 it holds (4, 4)
    lone = np.ones((4, 2))
    out = clock_baseline([("touch", a), ("touch", b), ("touch", c), ("push_left", lone)], span, stride=2)
    # queries: a and b at frames 0 and 2, c at frame 0; the lone push_left episode is not graded
    assert out["n_queries"] == 5
    # the others' mean: for a (2 + 4) / 2 = 3, for b (0 + 4) / 2 = 2, for c (0 + 2) / 2 = 1; so the error per
    # action is 3 (a: 2 queries x 2 actions), 0 (b: 4 actions), 3 (c: 2 actions), as a percentage of each span
    errs = np.array([3.0] * 4 + [0.0] * 4 + [3.0] * 2)
    assert np.allclose(out["mae_pct_per_joint"], [errs.mean() / 10 * 100, errs.mean() / 20 * 100])
    # replaying one other demo instead: a against b and c: (2 + 4) / 2 = 3; b: (2 + 2) / 2 = 2; c: (4 + 2) / 2 = 3
    one = np.array([3.0] * 4 + [2.0] * 4 + [3.0] * 2)
    assert np.allclose(out["one_demo_mae_pct_per_joint"], [one.mean() / 10 * 100, one.mean() / 20 * 100])
    assert clock_baseline([("touch", a), ("push_left", lone)], span, stride=2) is None


def test_fixed_point_baseline_scores_one_point_against_each_mask():
    """Three questions answered at the same spot: the baseline hits where that spot is on the named object."""
    from molmoact2.evaluation.qa_check import fixed_point_baseline

    def seg_with(label_at_centre: int) -> np.ndarray:
        seg = np.zeros((100, 100), dtype=np.int64)
        seg[45:55, 45:55] = label_at_centre
        return seg

    class Cache:  # the two things the baseline reads from a data cache: questions and their segmentations
        qa = [{"kind": "point", "question": "Point to the red cube\nPlease say...", "labels": [3],
               "answer": '<points coords="1 1 500 500">red cube</points>', "seg": seg_with(3)},
              {"kind": "point", "question": "Point to the blue block\nPlease say...", "labels": [4],
               "answer": '<points coords="1 1 500 500">blue block</points>', "seg": seg_with(7)},
              {"kind": "point", "question": "Point to the bin\nPlease say...", "labels": [9],
               "answer": '<points coords="1 1 500 500">bin</points>', "seg": seg_with(9)},
              {"kind": "count", "question": "How many cubes?", "answer": "1"}]

        @staticmethod
        def qa_segmentation(item):
            return item["seg"]

    got = fixed_point_baseline(Cache(), [0, 1, 2, 3])
    assert (got["hits"], got["n"], got["xy_1000"]) == (1, 2, [500.0, 500.0])  # the bin and the count are not scored
    assert fixed_point_baseline(Cache(), [2, 3]) is None


def test_answer_target_correlation_reads_x_and_y_apart():
    """Answers that follow the target's x exactly but put y anywhere: x correlates 1, y does not."""
    from molmoact2.evaluation.qa_check import answer_target_correlation, to_markdown

    def q(name, got, want):
        return {"kind": "point", "question": f"Point to the {name}\nPlease say...",
                "answer": got if got is None else f'<points coords="1 1 {got[0]} {got[1]}">{name}</points>',
                "expected": f'<points coords="1 1 {want[0]} {want[1]}">{name}</points>'}

    answers = [q("red cube", (100, 700), (100, 500)), q("red cube", (400, 300), (400, 520)),
               q("blue block", (800, 500), (800, 500)), q("blue block", (600, 900), (600, 520)),
               q("bin", (0, 0), (900, 900)), q("red cube", None, (500, 500))]  # the bin and a refusal are skipped
    got = answer_target_correlation(answers)
    assert got == {"x": 1.0, "y": 0.0, "n": 4}
    assert answer_target_correlation(answers[:2]) is None  # too few to correlate
    table = to_markdown([{"split": "held-out", "seeds": [10000, 10001], "summary": {"point_objects_correlation": got}}])
    assert f"| point_objects: correlation of answer with target, x / y | 1.00 / 0.00 (n = 4) |" in table


def test_nearest_object_separates_choosing_the_object_from_hitting_it():
    """Points near (not on) the named object count as choosing it; the bin questions and refusals are not scored."""
    from molmoact2.evaluation.qa_check import nearest_object, to_markdown

    seg = np.zeros((100, 100), dtype=np.int64)
    seg[10:20, 10:20] = 3  # red cube, top left
    seg[10:20, 80:90] = 4  # blue block, top right
    seg[70:95, 40:60] = 9  # the bin

    def item(name, label):
        return {"kind": "point", "question": f"Point to the {name}\nPlease say...", "labels": [label],
                "seg_key": "s0", "answer": f'<points coords="1 1 500 500">{name}</points>'}

    class Cache:
        qa = [item("red cube", 3), item("blue block", 4), item("bin", 9)]

        @staticmethod
        def qa_segmentation(_item):
            return seg

    def answer(index, xy):
        return {"index": index, "kind": "point", "question": Cache.qa[index]["question"],
                "answer": None if xy is None else f'<points coords="1 1 {xy[0]} {xy[1]}">x</points>'}

    answers = [answer(0, (250, 150)),  # 5 px right of the red cube: chose it, missed it
               answer(1, (250, 150)),  # the same point for the blue block: chose the red cube
               answer(1, (950, 150)),  # right of the blue block: chose it
               answer(2, (500, 800)), answer(0, None)]  # the bin and a refusal: not scored
    got = nearest_object(Cache(), answers)
    assert (got["hits"], got["n"], got["chance"]) == (2, 3, pytest.approx(1 / 3, abs=1e-3))
    table = to_markdown([{"split": "held-out", "seeds": [10000, 10001], "summary": {"point_objects_nearest": got}}])
    assert "| point_objects: the object nearest the point is the named one | 67% (2/3) (chance 33%) |" in table


def test_carry_probe_plans_are_drawn_where_the_object_is_held(tmp_path):
    """probe_carry.py --plans: the expert lifts the object, then a (random) Nano is asked for K plans there, from
    the real state and with the gripper's state at 0; each plan's first opening tick is recorded, reproducibly."""
    import importlib.util
    from pathlib import Path

    from molmoact2.models.nano.factory import make_random_checkpoint
    from molmoact2.models.nano.policy import load_nano
    from molmoact2.sim import make_env
    from molmoact2.sim.expert import object_held

    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_carry.py"
    spec = importlib.util.spec_from_file_location("probe_carry", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe.first_open(np.array([[0.0, 5.0], [0.0, 31.0], [0.0, 55.0]])) == 1
    assert probe.first_open(np.array([[0.0, 17.0], [0.0, 0.0]])) == -1
    env = make_env("pick_place", image_size=96, depth=False, segmentation=False)
    try:
        obs, _ = env.reset(10000)
        expert = env.expert()
        planner = probe.PlanProbe(load_nano(make_random_checkpoint(tmp_path / "nano_random")), env, 2)
        planner.predict(obs)
        assert not planner.rows  # resting on the table: no plans drawn
        while not object_held(env, env.instance.target, env.instance.start_pos, probe.LIFT_M):
            for action in expert.act(None):
                obs, *_ = env.step(action)
            assert env.steps < 400, "the expert did not lift the object"
        step = planner.predict(obs)
    finally:
        env.close()
    (row,) = planner.rows
    assert step.actions.shape[0] > 0 and row["tick"] == env.steps and row["bin_cm"] > 0
    for key in ("real", "closed_on_nothing"):
        assert len(row[key]) == 2 and all(-1 <= t < 30 for t in row[key])
    assert planner.draw(obs, np.asarray(obs.state, np.float32)) == row["real"]  # its own noise, the same each time
    far = probe.open_rates([row | {"bin_cm": 50.0}], "real")
    assert far["queries"] == 1 and far["open"] == float(np.mean(np.array(row["real"]) >= 0))
    assert probe.open_rates([row | {"bin_cm": 1.0}], "real")["queries"] == 0


def test_pool_draws_pairs_layouts_over_sets(capsys):
    """scripts/pool_draws.py on the committed records: 600 layouts over three sets; a model against itself is +0."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "pool_draws.py"
    spec = importlib.util.spec_from_file_location("pool_draws", path)
    pool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pool)
    assert pool.main(["--old", "shipped", "--new", "shipped", "--sets", "90000,110000,120000"]) == 0
    out = capsys.readouterr().out
    assert "| all tasks | 600 |" in out and "+0.0 (+0.0 to +0.0)" in out
    pool.main(["--old", "shipped", "--new", "pp_xo6", "--sets", "120000"])
    rates = pool.layout_rates(pool.records("pp_xo6", ["120000"], 3))
    want = 100 * sum(v for (task, _), v in rates.items() if task == "pick_place") / 50
    assert f"| pick_place | 50 | " in (out := capsys.readouterr().out) and f"{want:.1f}%" in out
    with pytest.raises(SystemExit, match="missing"):
        pool.main(["--old", "shipped", "--new", "no_such_model", "--sets", "90000"])
    assert pool.main(["--new", "pp_xo6", "--sets", "120000"]) == 0  # one model alone: the same rate, an interval
    assert f"| pick_place | 50 | {want:.1f}% (" in capsys.readouterr().out
    # one task's layouts alone: the rows are that task's, and against the records that ran only it
    assert pool.main(["--old", "tt3", "--new", "rbcpp", "--sets", "170000", "--tasks", "pick_place"]) == 0
    out = capsys.readouterr().out
    assert "| these tasks | 50 |" in out and "| pick_place | 50 |" in out and "touch" not in out
    with pytest.raises(SystemExit, match="different layouts"):
        pool.main(["--old", "tt3", "--new", "rbcpp", "--sets", "170000"])
    with pytest.raises(SystemExit, match="--tasks expected some of"):
        pool.main(["--new", "tt3", "--sets", "170000", "--tasks", "pick"])
    # Think records: the same arithmetic over the *_think.json files, counting only Think rollouts
    assert pool.main(["--old", "tt3", "--new", "soup3", "--sets", "140000", "--mode", "think"]) == 0
    out = capsys.readouterr().out
    think = pool.layout_rates(pool.records("soup3", ["140000"], 3, "think"), "think")
    assert len(think) == 200 and "think, sets from 140000" in out
    assert f"{100 * sum(think.values()) / 200:.1f}%" in out
    assert pool.layout_rates(pool.records("soup3", ["140000"], 3, "think")) == {}  # no continuous rollouts there


def test_head_reading_measures_one_head_on_the_models_own_points(heldout_dir, tmp_path):
    from molmoact2.evaluation.qa_check import head_reading
    from molmoact2.evaluation.report import FIXTURES, pointed_name
    from molmoact2.models.nano.factory import make_random_checkpoint
    from molmoact2.models.nano.policy import load_nano
    from molmoact2.training.nano_examples import NanoTrainData

    policy = load_nano(make_random_checkpoint(tmp_path / "nano_random"))
    data = NanoTrainData.load(heldout_dir, progress=False)
    objects = [i for i, q in enumerate(data.qa) if pointed_name(q) not in (None, *FIXTURES)]
    assert objects
    # the "model's own" answers here are the expected ones; one refusal is skipped
    answers = [{"index": i, "kind": "point", "question": data.qa[i]["question"], "answer": data.qa[i]["answer"],
                "n_points": 1} for i in objects]
    answers.append({**data.qa[objects[0]], "index": objects[0], "answer": "There are none.", "n_points": 0})
    got = head_reading(policy, data, answers, 1, 0)
    assert got["n"] == len(objects) and (got["layer"], got["head"]) == (1, 0)
    assert 0 < got["share"] < 1 and 0 < got["even_share"] < 1 and 0 <= got["top_cell_hits"] <= got["n"]
    with pytest.raises(ValueError, match="grounding head 99"):
        head_reading(policy, data, answers, 1, 99)
    from molmoact2.cli import main

    with pytest.raises(SystemExit, match="LAYER.HEAD"):
        main(["eval", "qa", "--checkpoint", str(tmp_path / "nano_random"), "--data", str(heldout_dir), "--head", "3"])


def test_action_head_reading_asks_with_each_objects_name(heldout_dir, tmp_path):
    from molmoact2 import spatial
    from molmoact2.evaluation.action_head import _top_object, action_head_reading
    from molmoact2.evaluation.qa_check import to_markdown
    from molmoact2.evaluation.report import FIXTURES
    from molmoact2.models.nano.factory import make_random_checkpoint
    from molmoact2.models.nano.policy import load_nano
    from molmoact2.training.nano_examples import NanoTrainData

    fractions = {"red cube": np.array([0.0, 0.7, 0.3]), "blue cube": np.array([0.0, 0.2, 0.7])}
    assert _top_object(np.array([0.1, 0.6, 0.3]), fractions) == "red cube"
    assert _top_object(np.array([0.1, 0.3, 0.6]), fractions) == "blue cube"
    assert _top_object(np.array([0.9, 0.05, 0.05]), fractions) is None  # background cell
    policy = load_nano(make_random_checkpoint(tmp_path / "nano_random"))
    data = NanoTrainData.load(heldout_dir, progress=False)
    target = data.meta["episodes"][0]["target"]
    # Expected counts from the questions: frames where the demo's object is pointable; one swap per other object.
    objects: dict[int, set[str]] = {}
    for q in data.qa:
        if q["kind"] == "point" and q.get("labels"):
            name = spatial.parse_answer(q["answer"]).text.strip()  # the answer's tag: "red cube"
            if name not in FIXTURES:
                objects.setdefault(q["frame"], set()).add(name)
    frames = [f for f, names in objects.items() if target in names]
    assert frames, "the fixture's demo should keep its object in view on a question frame"
    got = action_head_reading(policy, data, 1, 0)
    assert (got["frames"], got["pairs"]) == (len(frames), sum(len(objects[f]) - 1 for f in frames))
    assert 0 < got["share_own"] < 1 and 0 < got["even"] < 1 and 0 <= got["top_own"] <= got["frames"]
    assert got["follows"] + got["same"] <= got["pairs"]
    text = to_markdown([{"split": "held-out", "seeds": [10000, 10000], "summary": {"action_head": got}}])
    assert "asked for actions: head 1.0" in text and f"({got['top_own']}/{got['frames']})" in text


def test_state_reliance_probe_sees_a_model_that_ignores_its_inputs(heldout_dir, tmp_path, capsys):
    """scripts/probe_state_reliance.py on a random Nano: its expert's output layer starts at zero, so a plan is its
    noise alone. The probe must show exactly that: a new noise draw moves it, other images or state do not."""
    import importlib.util
    from pathlib import Path

    from molmoact2.cli import main
    from molmoact2.models.nano.factory import make_random_checkpoint

    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_state_reliance.py"
    spec = importlib.util.spec_from_file_location("probe_state_reliance", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    with pytest.raises(SystemExit, match="no task with two episodes"):
        probe.main(["--checkpoint", str(ckpt), "--data", str(heldout_dir)])
    two = tmp_path / "two"
    assert main(["train", "data", "--out", str(two), "--episodes-per-task", "2", "--tasks", "touch", "--first-seed",
                 "10000", "--render-size", str(RENDER), "--store-size", "64", "--qa-frames-per-episode", "1"]) == 0
    capsys.readouterr()
    probe.main(["--checkpoint", str(ckpt), "--data", str(two)])
    printed = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in printed.splitlines()
            if line.startswith("| ") and not line.startswith("| change")}
    assert "neighbouring bins' mean cosine similarity" in printed
    assert rows["noise"] > 1.0 and rows["images"] == rows["blank"] == rows["state"] == 0.0
    assert rows["swapped states"] > 0.0  # the two layouts' arms were not in the same pose


def test_push_direction_probe_measures_the_push_along_the_asked_direction():
    """scripts/probe_push_direction.py: the scripted expert's push_right and push_left on one held-out layout each
    succeed and move the object 5+ cm the asked way (the sign of "along" follows the word); the outcome words."""
    import importlib.util
    from pathlib import Path

    from molmoact2.runner import ExpertPolicy
    from molmoact2.sim import make_env

    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_push_direction.py"
    spec = importlib.util.spec_from_file_location("probe_push_direction", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    for task in ("push_right", "push_left"):
        env = make_env(task, image_size=96, depth=False, segmentation=False)
        try:
            (row,) = probe.probe_task(ExpertPolicy(env), env, 10000, 1, progress=False)
        finally:
            env.close()
        assert row["outcome"] == "success" and row["along_m"] >= 0.05, (task, row)
    assert probe.classify(-0.03, True, False) == "wrong way"
    assert probe.classify(-0.01, True, False) == "too little"
    assert probe.classify(0.04, False, False) == "never touched"
    with pytest.raises(SystemExit):
        probe.main(["--tasks", "touch"])


def test_grasp_probe_sees_the_expert_grasp_without_shoving(capsys):
    """scripts/probe_grasp.py on one held-out pick_place layout: the scripted expert closes on the object (within
    1.5 cm), came that close while open before closing, and has not shoved it; the shipped Nano's column is
    filled in from the same bookkeeping (one episode each)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_grasp.py"
    spec = importlib.util.spec_from_file_location("probe_grasp", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    probe.main(["--checkpoint", str(Path(__file__).resolve().parents[1] / "assets" / "nano"), "--seeds", "1"])
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows["closed within 1.5 cm horizontally and 2 cm in height"][1] == "1/1"
    assert rows["... within 1.5 cm at some tick before the close"][1] == "1/1"
    assert rows["... shoved 2 cm or more"][1] == "0/1"
    assert rows["success"][1] == "1/1"
    assert float(rows["object shoved across the table by the close (cm), median"][1].split()[0]) < 2.0
    assert rows["at the first close"] == ["nano", "expert"]
    assert rows["touched the object at some tick"][0] in ("0/1", "1/1")  # the policy's episode was watched too


def test_regrasp_probe_tells_a_miss_and_a_retry_from_a_grasp(capsys):
    """scripts/probe_regrasp.py's watch in a real pick_place world: the scripted expert's episode has no miss;
    the jaw shut in place at home is a miss, and opening it afterwards is a retry. Its table prints for the shipped
    Nano on one layout."""
    import importlib.util
    from pathlib import Path

    from molmoact2.runner import ExpertPolicy, guard_for_env, run_episode
    from molmoact2.sim import make_env
    from molmoact2.sim.expert import GRIP_OPEN

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("probe_regrasp", root / "scripts" / "probe_regrasp.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    env = make_env("pick_place", image_size=96, depth=False, segmentation=False)
    try:
        watch = probe._MissWatch(env, open_above=GRIP_OPEN / 2)
        summary: dict = {}
        for _ in run_episode(ExpertPolicy(env), watch, guard_for_env(env, on_limit="clip"), seed=10000,
                             summary=summary, observe_every_tick=False):
            pass
        assert summary["success"] and watch.miss_tick is None and watch.reopen_tick is None
        watch.reset(10000)
        home = np.asarray(env.state(), np.float32)
        for grip_units in [0.0] * 30 + [GRIP_OPEN] * 30:  # shut where it stands, then open again
            watch.step(np.concatenate([home[:5], [grip_units]]), observe=False)
        assert watch.miss_tick is not None and watch.miss_tick <= 30 < watch.reopen_tick
        assert watch.lift_after_reopen_m < 0.01  # nothing was lifted
    finally:
        env.close()
    probe.main(["--checkpoint", str(root / "assets" / "nano"), "--seeds", "1", "--first-seed", "10000"])
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line}
    assert rows[""] == "nano"
    assert rows["episodes with a miss"] in ("0/1", "1/1") and rows["success, all layouts"] in ("0/1", "1/1")


def _camera_probe():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_camera_reliance.py"
    spec = importlib.util.spec_from_file_location("probe_camera_reliance", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    return probe


def test_camera_swap_greys_or_freezes_one_camera_and_leaves_the_world_alone():
    """scripts/probe_camera_reliance.py's CameraSwap in a real world: `*_grey` shows mid-grey, `*_frozen` the
    episode's first picture while the real one changes as the arm moves, the other camera and the state untouched;
    a reset takes a new first picture; an unknown mode or camera is refused."""
    from molmoact2.sim import make_env

    probe = _camera_probe()
    with pytest.raises(ValueError, match="expected one of"):
        probe.CameraSwap(None, "wrist_blurred")
    env = make_env("touch", image_size=48, depth=False, segmentation=False)
    try:
        expert_chunk = None
        for mode in ("wrist_grey", "wrist_frozen", "front_frozen"):
            swap = probe.CameraSwap(env, mode)
            obs, _ = swap.reset(seed=10000)
            first = {c: f.rgb.copy() for c, f in env.observe().cameras.items()}
            if expert_chunk is None:
                expert_chunk = env.expert().act(obs)
            for action in expert_chunk[:20]:
                obs, *_ = swap.step(action)
            real = env.observe()
            camera, other = ("wrist", "front") if mode.startswith("wrist") else ("front", "wrist")
            assert np.array_equal(obs.state, real.state) and np.array_equal(obs.cameras[other].rgb, real.cameras[other].rgb)
            if mode.endswith("grey"):
                assert (obs.cameras[camera].rgb == probe.GREY_UINT8).all()
            else:
                assert not np.array_equal(real.cameras[camera].rgb, first[camera])  # the arm moved in the picture
                assert np.array_equal(swap.observe().cameras[camera].rgb, first[camera])
                swap.reset(seed=10001)  # another layout: its own first picture
                assert np.array_equal(swap.observe().cameras[camera].rgb, env.observe().cameras[camera].rgb)
        with pytest.raises(ValueError, match="no 'front' camera"):
            probe.CameraSwap(make_env("touch", image_size=48, cameras=("wrist",), depth=False, segmentation=False),
                             "front_grey").reset(seed=0)
    finally:
        env.close()


def test_camera_probe_prints_a_row_per_task_and_mode(capsys, tmp_path):
    """The probe's table and JSON on one touch layout, the shipped Nano with both cameras and with the front grey."""
    import json
    from pathlib import Path

    probe = _camera_probe()
    out = tmp_path / "cams.json"
    probe.main(["--checkpoint", str(Path(__file__).resolve().parents[1] / "assets" / "nano"), "--seeds", "1",
                "--tasks", "touch", "--modes", "none,front_grey", "--out", str(out)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| touch |")]
    assert [line.split("|")[2].strip() for line in lines] == ["none", "front_grey"]
    rows = json.loads(out.read_text())["rows"]
    assert [r["mode"] for r in rows] == ["none", "front_grey"] and all(r["episodes"] == 1 for r in rows)
    assert all(0 < r["closest_cm_median"] < 100 for r in rows)
    with pytest.raises(SystemExit):
        probe.main(["--modes", "none,side_grey"])


def test_eval_constrained_discrete_always_decodes(heldout_dir, tmp_path, capsys):
    """--constrain-action-tokens reaches the discrete closed loop and the open-loop decode: a random model, which
    never emits a decodable chunk on its own, then decodes every one, and the record and report say so."""
    from molmoact2.cli import main
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    out = tmp_path / "eval.json"
    assert main(["eval", "nano", "--checkpoint", str(ckpt), "--heldout", str(heldout_dir), "--tasks", "touch",
                 "--seeds-per-task", "1", "--modes", "discrete", "--max-questions", "0", "--jobs", "1",
                 "--constrain-action-tokens", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert rec["config"]["constrain_action_tokens"] is True
    (rollout,) = rec["rollouts"]
    assert rollout["error"] is None and rollout["stopped_by"] != "error"
    a = rec["summary"]["actions_vs_expert"]
    assert a["discrete_decode_failures"]["hits"] == 0 and a["discrete"]["n_queries"] == rec["episodes"][0]["queries"]
    assert a["discrete_grammar_overrides"]["hits"] == a["discrete"]["n_queries"]  # a random model needs it every time
    # ... so the error of the changed chunks alone is the error of them all
    assert a["discrete_grammar_changed"]["n_queries"] == a["discrete"]["n_queries"]
    assert a["discrete_grammar_changed"]["mae_pct"] == pytest.approx(a["discrete"]["mae_pct"])
    assert "Discrete mode constrained" in printed and "length grammar changed" in printed
    assert "only the chunks the length grammar changed" in printed


def test_carry_probe_sees_the_expert_release_over_the_bin():
    """scripts/probe_carry.py: the scripted expert's pick_place on one held-out layout lifts the object, carries
    it over the bin and lets go there (outcome "success"); hand-made tick rows give the other outcomes."""
    import importlib.util
    from pathlib import Path

    from molmoact2.runner import ExpertPolicy
    from molmoact2.sim import make_env

    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_carry.py"
    spec = importlib.util.spec_from_file_location("probe_carry", path)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    env = probe.CarryWatch(make_env("pick_place", image_size=96, depth=False, segmentation=False))
    try:
        (row,) = probe.probe(ExpertPolicy(env), env, 10000, 1, progress=False)
    finally:
        env.close()
    assert row["outcome"] == "success" and row["was_over_bin"], row
    assert row["released_at_bin_cm"] < 5.0 and row["max_height_cm"] >= 2.0, row
    # what --plans counts as learned elsewhere: the expert never opens the jaw on a lifted object far from the bin
    lifted_far = [grip for grip, up_m, _, bin_m in env.rows if up_m >= probe.LIFT_M and bin_m > probe.FAR_M]
    assert lifted_far and max(lifted_far) < probe.OPEN_UNITS
    # (gripper command, height above start in m, over the bin's inner square, distance to its centre in m) per tick
    table, up_far, up_near = (0.0, 0.0, False, 0.3), (0.0, 0.05, False, 0.3), (0.0, 0.05, True, 0.01)
    opened = (50.0, 0.05, False, 0.3)
    assert probe.classify([table] * 5, False) is None  # never lifted
    assert probe.classify([table, up_far, opened, table], False)["outcome"] == "opened short of the bin"
    assert probe.classify([table, up_near, up_far, opened, table], False)["outcome"] == "opened past the bin"
    assert probe.classify([table, up_far, up_far, table], False)["outcome"] == "slipped"
    assert probe.classify([table, up_far, up_far], False)["outcome"] == "held at the time limit"
    with pytest.raises(SystemExit):
        probe.main(["--seeds", "0"])


def test_blend_weights_mixes_only_what_differs(tmp_path):
    """scripts/blend_weights.py: alpha 0 / 1 give A / B back, 0.25 a quarter of the way to B for the tensors that
    differ, in B's dtype; the other files are B's; --extrapolate allows a point past B; a shape mismatch or an
    out-of-range alpha stops with an error."""
    import importlib.util
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file

    path = Path(__file__).resolve().parents[1] / "scripts" / "blend_weights.py"
    spec = importlib.util.spec_from_file_location("blend_weights", path)
    blend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(blend)
    same = torch.arange(6, dtype=torch.float16).reshape(2, 3)
    a = {"expert.w": torch.zeros(4, dtype=torch.float16), "lm.w": same}
    b = {"expert.w": torch.full((4,), 2.0, dtype=torch.float16), "lm.w": same.clone()}
    for name, tensors in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        save_file(tensors, str(tmp_path / name / "model.safetensors"))
    (tmp_path / "b" / "config.json").write_text("{}")
    assert blend.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--alpha", "0.25",
                       "--out", str(tmp_path / "m")]) == 0
    mixed = load_file(tmp_path / "m" / "model.safetensors")
    assert mixed["expert.w"].dtype == torch.float16 and mixed["expert.w"].tolist() == [0.5] * 4
    assert torch.equal(mixed["lm.w"], same) and (tmp_path / "m" / "config.json").is_file()
    record = json.loads((tmp_path / "m" / "blend.json").read_text())
    assert record["alpha"] == 0.25 and record["blended_tensors"] == 1
    for alpha, want in ((0.0, a), (1.0, b)):
        out, _ = blend.blend(a, b, alpha)
        assert all(torch.equal(out[k], want[k]) for k in a)
    with pytest.raises(ValueError, match="expert.w: A is \\(4,\\)"):
        blend.blend(a, {"expert.w": torch.zeros(5, dtype=torch.float16), "lm.w": same}, 0.5)
    with pytest.raises(SystemExit):
        blend.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--alpha", "1.5",
                    "--out", str(tmp_path / "n")])
    # past B only when asked: 1.5 is B plus half of B - A; 3.5 is refused even then
    assert blend.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--alpha", "1.5", "--extrapolate",
                       "--out", str(tmp_path / "x")]) == 0
    assert load_file(tmp_path / "x" / "model.safetensors")["expert.w"].tolist() == [3.0] * 4
    assert json.loads((tmp_path / "x" / "blend.json").read_text())["extrapolate"] is True
    with pytest.raises(SystemExit):
        blend.main(["--a", str(tmp_path / "a"), "--b", str(tmp_path / "b"), "--alpha", "3.5", "--extrapolate",
                    "--out", str(tmp_path / "y")])


def test_blend_weights_soup_is_the_uniform_mean(tmp_path):
    """scripts/blend_weights.py --soup: three checkpoints average to their mean where they differ, the shared tensor
    stays byte for byte, the first's files are kept and every input is listed; a lone checkpoint, a mixed command
    line or a tensor of another shape stops with an error."""
    import importlib.util
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file

    path = Path(__file__).resolve().parents[1] / "scripts" / "blend_weights.py"
    spec = importlib.util.spec_from_file_location("blend_weights", path)
    blend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(blend)
    same = torch.arange(6, dtype=torch.float16).reshape(2, 3)
    dirs = []
    for i, value in enumerate((0.0, 1.0, 5.0)):
        d = tmp_path / f"m{i}"
        d.mkdir()
        save_file({"expert.w": torch.full((4,), value, dtype=torch.float16), "lm.w": same.clone()},
                  str(d / "model.safetensors"))
        (d / "config.json").write_text(json.dumps({"member": i}))
        dirs.append(str(d))
    assert blend.main(["--soup", *dirs, "--out", str(tmp_path / "s")]) == 0
    mixed = load_file(tmp_path / "s" / "model.safetensors")
    assert mixed["expert.w"].dtype == torch.float16 and mixed["expert.w"].tolist() == [2.0] * 4
    assert torch.equal(mixed["lm.w"], same)
    assert json.loads((tmp_path / "s" / "config.json").read_text()) == {"member": 0}
    record = json.loads((tmp_path / "s" / "blend.json").read_text())
    assert [m["path"] for m in record["soup"]] == dirs and record["blended_tensors"] == 1
    with pytest.raises(ValueError, match="checkpoint 2 is \\(5,\\)"):
        blend.soup([{"expert.w": torch.zeros(4)}, {"expert.w": torch.zeros(5)}])
    with pytest.raises(SystemExit):
        blend.main(["--soup", dirs[0], "--out", str(tmp_path / "one")])
    with pytest.raises(SystemExit):
        blend.main(["--soup", *dirs, "--alpha", "0.5", "--out", str(tmp_path / "mixed")])


def test_new_expert_keeps_everything_but_the_expert(tmp_path):
    """scripts/new_expert.py on a random tiny Nano: the ViT, adapter and LM weights come back byte for byte, the
    expert has the requested width, the checkpoint loads with it; a width the heads do not
    divide stops with an error naming both."""
    import importlib.util
    from pathlib import Path

    from safetensors.torch import load_file

    from molmoact2.models.nano.factory import make_random_checkpoint
    from molmoact2.training.nano_trainer import load_weights

    path = Path(__file__).resolve().parents[1] / "scripts" / "new_expert.py"
    spec = importlib.util.spec_from_file_location("new_expert", path)
    new_expert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(new_expert)
    src = make_random_checkpoint(tmp_path / "src", "tiny", seed=3)
    assert new_expert.main(["--from", str(src), "--out", str(tmp_path / "wide"), "--hidden-size", "96",
                            "--num-heads", "4", "--seed", "5"]) == 0
    old, new = load_file(src / "model.safetensors"), load_file(tmp_path / "wide" / "model.safetensors")
    kept = [k for k in old if not k.startswith("action_expert.")]
    assert kept and all(torch.equal(old[k].float(), new[k]) for k in kept)
    assert new["action_expert.input_proj.weight"].shape[0] == 96 != old["action_expert.input_proj.weight"].shape[0]
    model, _ = load_weights(tmp_path / "wide")
    assert model.config.action_expert_config.hidden_size == 96
    info = json.loads((tmp_path / "wide" / "new_expert.json").read_text())
    assert info["expert_parameters"] > info["previous_expert_parameters"] and info["seed"] == 5
    with pytest.raises(ValueError, match="--hidden-size 90 must be a multiple of --num-heads 4"):
        new_expert.build(str(src), str(tmp_path / "bad"), hidden_size=90, num_heads=4, mlp_ratio=4.0, seed=0)
    # a relative expert (relative_actions.py): the dims land in the config the checkpoint loads with
    assert new_expert.main(["--from", str(src), "--out", str(tmp_path / "rel"), "--hidden-size", "64",
                            "--relative-dims", "0,1,2,3,4"]) == 0
    assert load_weights(tmp_path / "rel")[0].config.action_expert_config.relative_dims == [0, 1, 2, 3, 4]
    assert model.config.action_expert_config.relative_dims == []
    with pytest.raises(SystemExit):
        new_expert.main(["--from", str(src), "--out", str(tmp_path / "x"), "--hidden-size", "64",
                         "--relative-dims", "arm"])
