"""`molmoact2 eval words`: the name-swap probe on real MuJoCo worlds. The scripted expert is the positive
control (its plans must move toward whichever object is named); a Nano that never sees the words is the
negative control (with the same noise its plans must not change at all)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mujoco")

from _nano_fixtures import one_thread_fixture  # noqa: E402

one_thread = one_thread_fixture()


def test_expert_plans_follow_the_named_object(tmp_path, capsys):
    from molmoact2.cli import main

    out = tmp_path / "expert.json"
    assert main(["eval", "words", "--checkpoint", "expert", "--tasks", "touch", "--seeds-per-task", "2",
                 "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["format"] == "molmoact2_words_probe.v1" and len(rec["rows"]) == 4  # 2 layouts x 2 probe points
    for row in rec["rows"]:
        assert row["own"] != row["other"] and row["own"] in row["instructions"][0]
        assert row["other"] in row["instructions"][1]
        assert row["toward_named_m"] > 0.02  # each plan ends nearer the object its instruction names
        assert "change_noise_m" not in row and "pointing" not in row  # deterministic, cannot answer questions
    assert {row["chunks_before"] for row in rec["rows"]} == {0, 2}
    assert rec["summary"]["after_0_chunks"]["toward_named_m"]["n"] == 2
    assert "pull toward the named object" in capsys.readouterr().out


class _DeafNano:
    """A real Nano that is always told the same instruction: whatever is named, it hears the first one."""

    def __init__(self, policy, instruction: str) -> None:
        self.policy, self.instruction = policy, instruction

    @property
    def seed(self):
        return self.policy.seed

    @seed.setter
    def seed(self, value) -> None:
        self.policy.seed = value

    def reset(self) -> None:
        self.policy.reset()

    def predict(self, obs):
        import dataclasses

        return self.policy.predict(dataclasses.replace(obs, instruction=self.instruction))

    def ask(self, images, question):
        return self.policy.ask(images, question)


def test_words_the_model_never_hears_change_nothing_and_noise_does(tmp_path):
    """Same noise draw for both instructions: a policy deaf to the words plans exactly the same chunk,
    while a second noise draw does change it (so the zero is the probe's, not a frozen model's)."""
    from _nano_fixtures import randomize_
    from molmoact2.evaluation.words_probe import probe, summarize
    from molmoact2.models.nano.factory import make_random_checkpoint
    from molmoact2.models.nano.policy import load_nano

    policy = load_nano(make_random_checkpoint(tmp_path / "nano_random"), seed=0)
    randomize_(policy.model.action_expert, seed=1)  # a live expert: zero-initialized outputs would ignore noise too
    deaf = _DeafNano(policy, "touch the red cube")
    rows = probe(lambda env: deaf, tasks=("touch",), seeds_per_task=2, advance_chunks=1, progress=False)
    assert len(rows) == 4
    for row in rows:
        assert row["change_name_m"] == 0.0 and row["toward_named_m"] == 0.0
        assert row["change_noise_m"] > 0.0
        assert [p["named"] for p in row["pointing"]] == [row["own"], row["other"]]
        assert all(p["choice"] is None or isinstance(p["choice"], str) for p in row["pointing"])
    s = summarize(rows)["after_1_chunks"]
    assert s["pointing_questions"] == 4 and 0.0 < s["pointing_chance"] <= 1.0


def test_nearest_object_is_the_one_whose_pixels_are_closest():
    from types import SimpleNamespace

    from molmoact2.evaluation.words_probe import nearest_object

    seg = np.full((20, 20), -1, np.int32)
    seg[2:4, 2:4] = 7  # top-left
    seg[15:18, 14:18] = 9  # bottom-right
    objs = [SimpleNamespace(name="red cube", label=7), SimpleNamespace(name="blue ball", label=9),
            SimpleNamespace(name="hidden cup", label=11)]
    assert nearest_object(np.array([5.0, 5.0]), seg, objs) == ("red cube", 2)
    assert nearest_object(np.array([12.0, 13.0]), seg, objs) == ("blue ball", 2)
    assert nearest_object(None, seg, objs) == (None, 2)  # no point: no choice, the objects in view still count


def test_words_command_rejects_a_directory_that_is_not_a_checkpoint(tmp_path):
    from molmoact2.cli import main

    with pytest.raises(SystemExit, match="not a checkpoint directory.*'expert'"):
        main(["eval", "words", "--checkpoint", str(tmp_path)])


def test_image_token_probe_reads_what_is_there_and_nothing_else():
    """scripts/probe_image_tokens.py's linear probe: a label written into the features is read back; labels
    unrelated to them score no better than the majority class."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "probe_image_tokens.py"
    spec = importlib.util.spec_from_file_location("probe_image_tokens", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    labels = [["red", "blue", "green"][i % 3] for i in range(600)]
    feats = rng.normal(size=(600, 16)).astype(np.float32)
    feats[:, 0] += 8.0 * np.array([["red", "blue", "green"].index(label) for label in labels])
    acc, majority, classes = mod.linear_probe(feats, labels)
    assert classes == 3 and acc > 0.9 and majority < 0.5
    noise_acc, noise_majority, _ = mod.linear_probe(rng.normal(size=(600, 16)).astype(np.float32), labels)
    assert noise_acc < noise_majority + 0.15


def test_first_frames_swap_targets_change_only_the_named_object(tmp_path):
    """`first_frames(..., swap_targets=True)`, what `scripts/probe_expert_attention.py --swap-targets` reads: per
    layout the own instruction first, then one item per other candidate, with the same picture and state and an
    instruction that differs only in the object's name."""
    from molmoact2.evaluation.first_frames import first_frames
    from molmoact2.models.nano.factory import make_random_checkpoint
    from molmoact2.models.nano.policy import load_nano

    policy = load_nano(make_random_checkpoint(tmp_path / "nano_random"), seed=0)
    model, processor = policy.model, policy.processor
    tag = sorted(model.norm_stats["metadata_by_tag"])[0]
    # copies: the pixels are compared across resets, and a shared render buffer would compare equal trivially
    items = [(seed, env.instance.target, env.target_options(), obs, {k: c.rgb.copy() for k, c in obs.cameras.items()},
              out) for env, seed, obs, _order, out in first_frames(model, processor, tag, ("touch",), range(3),
                                                                   swap_targets=True)]
    plain = [(seed, obs.instruction) for _env, seed, obs, _o, _out in first_frames(model, processor, tag, ("touch",),
                                                                                  range(3))]
    assert len(plain) == 3 and len(items) > 3  # touch layouts have several candidates
    for seed, own_instruction in plain:
        layout = [it for it in items if it[0] == seed]
        _, own_target, options, own_obs, own_rgb, _ = layout[0]
        assert own_obs.instruction == own_instruction  # the own instruction comes first
        assert sorted(it[1] for it in layout) == sorted(options)  # then every other candidate, once
        for _, target, _, obs, rgb, out in layout[1:]:
            assert obs.instruction == own_instruction.replace(f"the {own_target}", f"the {target}", 1)
            assert rgb.keys() == own_rgb.keys() and all(np.array_equal(rgb[k], own_rgb[k]) for k in rgb)
            assert np.array_equal(obs.state, own_obs.state) and "context_kv" in out


def test_expert_plans_follow_the_direction_word(tmp_path, capsys):
    """--directions: one layout and object, push_left vs push_right; the expert (the reference itself) is pulled
    all the way to each word's side, at the first frame and after each word's own plan has driven the arm."""
    from molmoact2.cli import main

    out = tmp_path / "expert_directions.json"
    assert main(["eval", "words", "--checkpoint", "expert", "--directions", "--seeds-per-task", "2",
                 "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["swapped"] == "direction" and rec["tasks"] == ["push_left", "push_right"]
    assert len(rec["rows"]) == 6  # 2 layouts x 3 probe points
    for row in rec["rows"]:
        left, right = row["instructions"]
        assert row["target"] in left and row["target"] in right and left != right
        assert row["toward_asked_m"] == pytest.approx(row["expert_apart_m"]) and row["expert_apart_m"] > 0.03
    assert list(rec["summary"]) == ["first frame", "after 2 chunks of push_left", "after 2 chunks of push_right"]
    assert "pull toward the asked side" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="drop --tasks"):
        main(["eval", "words", "--checkpoint", "expert", "--directions", "--tasks", "push_left"])


def test_a_nano_deaf_to_the_direction_word_plans_the_same_chunk(tmp_path):
    """Same noise for both words: a Nano that always hears "push ... to the left" plans identical chunks (no pull
    either way), while a second noise draw moves the plan: the zero is the model's deafness, not the probe's."""
    from _nano_fixtures import randomize_
    from molmoact2.evaluation.direction_probe import probe, summarize
    from molmoact2.models.nano.factory import make_random_checkpoint
    from molmoact2.models.nano.policy import load_nano

    policy = load_nano(make_random_checkpoint(tmp_path / "nano_random"), seed=0)
    randomize_(policy.model.action_expert, seed=1)
    deaf = _DeafNano(policy, "push the red cube to the left")
    rows = probe(lambda env: deaf, layouts=2, advance_chunks=1, progress=False)
    assert len(rows) == 6
    for row in rows:
        assert row["change_word_m"] == 0.0 and row["toward_asked_m"] == 0.0
        assert row["change_noise_m"] > 0.0
    assert summarize(rows)["first frame"]["pulled_toward_asked"] == 0
