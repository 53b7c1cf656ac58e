"""`molmoact2 eval compare-draws`: two checkpoints, several noise draws each, differences paired by layout; and the
weight digest that lets `eval luck` recognise one set of weights under two paths (records built here, no model)."""

from __future__ import annotations

import json

import pytest

from molmoact2.evaluation.compare_draws import compare_draws, to_markdown
from molmoact2.evaluation.luck import luck


def _draw(noise_seed: int, flags: dict[str, list[bool]], checkpoint: str = "x", digest: str | None = None) -> dict:
    rollouts = [{"mode": "continuous", "task": task, "seed": 10000 + i, "success": ok}
                for task, fs in flags.items() for i, ok in enumerate(fs)]
    rec = {"format": "molmoact2_nano_eval.v1", "rollouts": rollouts,
           "config": {"checkpoint": checkpoint, "tasks": list(flags), "seeds_per_task": len(next(iter(flags.values()))),
                      "first_seed": 10000, "image_size": 96, "on_limit": "clip", "n_action_steps": None,
                      "seed": noise_seed}}
    if digest:
        rec["weights_sha256"] = digest
    return rec


def test_paired_difference_counts_each_layout_rate_over_the_draws():
    # 4 layouts. old solves layout 0 in both draws, layout 1 in one; new solves layouts 0-2 in both draws.
    old = [_draw(0, {"touch": [True, True, False, False]}, "old"), _draw(1, {"touch": [True, False, False, False]}, "old")]
    new = [_draw(0, {"touch": [True, True, True, False]}, "new"), _draw(1, {"touch": [True, True, True, False]}, "new")]
    m = compare_draws(old, new)["modes"]["continuous"]
    assert m["old_per_draw"] == [0.5, 0.25] and m["new_per_draw"] == [0.75, 0.75]
    row = m["rows"][-1]
    assert row["metric"] == "continuous success: all tasks"
    # per-layout differences (new - old): 0, 0.5, 1, 0 -> mean 0.375, sd 0.4787, se 0.2394
    assert row["diff"] == pytest.approx(0.375)
    assert row["ci95"][0] == pytest.approx(0.375 - 1.959964 * 0.47871 / 2, abs=1e-4)
    assert row["verdict"] == "within noise" and (row["layouts_better"], row["layouts_worse"]) == (2, 0)
    # the same gain on 40 layouts is beyond noise: the interval shrinks with the layouts
    old10 = [_draw(s, {"touch": [True, True, False, False] * 10}, "old") for s in (0, 1)]
    new10 = [_draw(s, {"touch": [True, True, True, False] * 10}, "new") for s in (0, 1)]
    big = compare_draws(old10, new10)["modes"]["continuous"]["rows"][-1]
    assert big["verdict"] == "better" and big["ci95"][0] > 0
    text = to_markdown(compare_draws(old, new), old_name="E", new_name="H")
    assert "E: 2 draws (noise seeds 0, 1) 50% / 25%" in text
    assert "| continuous success: all tasks | 37.5% | 75.0% | +37.5 (" in text


def test_refusals_and_the_weight_digest():
    a0, a1 = _draw(0, {"touch": [True, False]}), _draw(1, {"touch": [False, False]})
    with pytest.raises(ValueError, match="at least 2 records .* for the new checkpoint"):
        compare_draws([a0, a1], [a0])
    other = [_draw(0, {"touch": [True, False, True]}), _draw(1, {"touch": [True, False, True]})]
    with pytest.raises(ValueError, match="seeds_per_task"):
        compare_draws([a0, a1], other)
    with pytest.raises(ValueError, match="new side: two records share a noise seed"):
        compare_draws([a0, a1], [a0, a0])
    # without digests, other paths on one side are accepted and named in the output
    moved = _draw(1, {"touch": [False, False]}, checkpoint="assets/nano")
    text = to_markdown(compare_draws([a0, moved], [a0, a1]))
    assert "old's records name 2 checkpoint paths (assets/nano, x)" in text
    # with digests, the weights decide: same digest under two paths passes, another digest is refused
    same = [_draw(0, {"touch": [True]}, "/tmp/run", "ab" * 32), _draw(1, {"touch": [False]}, "assets/nano", "ab" * 32)]
    assert luck(same)["modes"]["continuous"]["rates"] == [1.0, 0.0]
    other_side = [_draw(0, {"touch": [False]}, "y"), _draw(1, {"touch": [True]}, "y")]
    assert "checkpoint paths" not in to_markdown(compare_draws(same, other_side))  # verified: nothing to vouch for
    same[1]["weights_sha256"] = "cd" * 32
    with pytest.raises(ValueError, match="the weights differ"):
        luck(same)
    with pytest.raises(ValueError, match="old side: .*the weights differ"):
        compare_draws(same, [a0, a1])


def test_compare_draws_command(tmp_path, capsys):
    from molmoact2.cli import main

    paths = {}
    for side, flags in (("old", ([True, False], [False, False])), ("new", ([True, True], [True, False]))):
        paths[side] = []
        for s, f in enumerate(flags):
            paths[side].append(tmp_path / f"{side}{s}.json")
            paths[side][-1].write_text(json.dumps(_draw(s, {"push_left": f}, side)))
    assert main(["eval", "compare-draws", "--old", *map(str, paths["old"]), "--new", *map(str, paths["new"]),
                 "--names", "E,H"]) == 0
    assert "| continuous success: push_left | 25.0% | 75.0% | +50.0 (" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="eval compare-draws: expected at least 2 records"):
        main(["eval", "compare-draws", "--old", str(paths["old"][0]), "--new", *map(str, paths["new"])])

def test_one_checkpoint_under_two_settings_but_not_two_changes_at_once():
    def draws(flags_by_seed, digest, **config):
        recs = [_draw(seed, {"touch": flags}, "c", digest) for seed, flags in flags_by_seed.items()]
        for rec in recs:
            rec["config"].update(config, num_steps=5)
        return recs

    trained = draws({0: [True, False, False], 1: [False, False, True]}, "ab" * 32)
    mean = draws({0: [True, True, False], 1: [True, True, False]}, "ab" * 32, noise_scale=0.0)
    result = compare_draws(trained, mean)
    assert result["settings"] == {"noise_scale": (1.0, 0.0)}
    assert result["modes"]["continuous"]["rows"][-1]["diff"] == pytest.approx(1 / 3)
    assert "One set of weights under two settings: noise_scale 1.0 (old) vs 0.0 (new)." in to_markdown(result)
    medoid = draws({0: [True, True, True], 1: [True, False, True]}, "ab" * 32, plan_samples=8)
    assert compare_draws(trained, medoid)["settings"] == {"plan_samples": (1, 8)}
    # actions per query: a record without it (None, from before it was resolved) executed 15
    whole = draws({0: [True, True, True], 1: [True, False, True]}, "ab" * 32, n_action_steps=30)
    assert compare_draws(trained, whole)["settings"] == {"n_action_steps": (15, 30)}
    explicit = draws({0: [True, True, True], 1: [True, False, True]}, "ab" * 32, n_action_steps=15)
    assert compare_draws(trained, explicit)["settings"] == {}
    # other weights AND another setting: which one made the difference? refused
    other = draws({0: [True, True, False], 1: [True, True, False]}, "cd" * 32, noise_scale=0.0)
    with pytest.raises(ValueError, match=r"differ in their weights and in how they were run .*'noise_scale': \(1.0, 0.0\)"):
        compare_draws(trained, other)
    # ... unless the setting belongs to the new weights (a distilled expert's steps): then accepted, and said
    distilled = compare_draws(trained, other, setting_change=True)
    assert distilled["weights_and_settings"] and distilled["settings"] == {"noise_scale": (1.0, 0.0)}
    assert "Other weights AND another setting: noise_scale 1.0 (old) vs 0.0 (new)." in to_markdown(distilled)
    # without digests the weights cannot be shown to be the same: refused too
    for rec in trained + mean:
        del rec["weights_sha256"]
    with pytest.raises(ValueError, match="differ in their weights and in how they were run"):
        compare_draws(trained, mean)
    # within one side the draws must share the setting
    mixed = [trained[0], mean[1]]
    with pytest.raises(ValueError, match=r"old side: .*'noise_scale' differs \(\[1.0, 0.0\]\)"):
        compare_draws(mixed, mean)
