"""`molmoact2 eval luck`: several draws (noise seeds) of one checkpoint on the same layouts — the spread between
draws, the per-layout solved counts and "solved again", and the refusals (records built here, no model)."""

from __future__ import annotations

import json

import pytest

from molmoact2.evaluation.luck import luck, to_markdown


def _draw(noise_seed: int, flags: dict[str, list[bool]], checkpoint: str = "x") -> dict:
    rollouts = [{"mode": "continuous", "task": task, "seed": 10000 + i, "success": ok}
                for task, fs in flags.items() for i, ok in enumerate(fs)]
    # a swap-targets re-run of the same layout must not count as another draw of it
    rollouts.append({"mode": "continuous", "task": "touch", "seed": 10000, "success": False, "named": "other"})
    return {"format": "molmoact2_nano_eval.v1", "rollouts": rollouts,
            "config": {"checkpoint": checkpoint, "tasks": list(flags), "seeds_per_task": 4, "first_seed": 10000,
                       "image_size": 96, "on_limit": "clip", "n_action_steps": None, "seed": noise_seed}}


def test_luck_separates_layouts_always_solved_from_lucky_ones():
    # layout 0 solved in all three draws (skill), layout 1 in one (luck), layouts 2-3 never
    draws = [_draw(0, {"touch": [True, True, False, False]}), _draw(1, {"touch": [True, False, False, False]}),
             _draw(2, {"touch": [True, False, False, False]})]
    m = luck(draws)["modes"]["continuous"]
    assert m["layouts"] == 4 and m["rates"] == [0.5, 0.25, 0.25]
    assert m["solved_in_k_draws"] == [2, 1, 0, 1]
    # solved 4 times; layout 0's 3 wins each meet 2 other wins of 2 chances, layout 1's win meets none of 2
    assert m["solved_again"] == pytest.approx(6 / 8)
    assert m["sd_between_draws"] == pytest.approx(0.1443, abs=1e-4)
    text = to_markdown(luck(draws))
    assert "| layouts | 2 | 1 | 0 | 1 |" in text and "Solved again under another draw: 75%" in text


def test_luck_refuses_other_checkpoints_repeated_seeds_and_a_single_record():
    a = _draw(0, {"touch": [True]})
    with pytest.raises(ValueError, match="checkpoint differs"):
        luck([a, _draw(1, {"touch": [True]}, checkpoint="y")])
    with pytest.raises(ValueError, match="share a noise seed"):
        luck([a, _draw(0, {"touch": [False]})])
    with pytest.raises(ValueError, match="at least 2 records"):
        luck([a])
    fewer = _draw(1, {"touch": [True]})
    fewer["config"]["num_steps"] = 5  # another integration is another policy, not another draw
    with pytest.raises(ValueError, match=r"'Euler steps' differs \(\[10, 5\]\)"):
        luck([a, fewer])
    fewer["config"]["num_steps"] = 10  # a record without the field was integrated with 10 steps
    assert luck([a, fewer])["modes"]["continuous"]["layouts"] == 1
    fewer["config"]["carry_steps"] = 5  # chunks pinned to the previous plan: another policy too
    with pytest.raises(ValueError, match=r"'carry_steps' differs \(\[0, 5\]\)"):
        luck([a, fewer])
    fewer["config"]["carry_steps"] = 0  # a record without the field carried nothing
    assert luck([a, fewer])["modes"]["continuous"]["layouts"] == 1


def test_luck_command(tmp_path, capsys):
    from molmoact2.cli import main

    paths = []
    for s, flags in enumerate(([True, False], [False, False])):
        paths.append(tmp_path / f"s{s}.json")
        paths[-1].write_text(json.dumps(_draw(s, {"push_left": flags})))
    assert main(["eval", "luck", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "| success, all tasks | 50% | 0% | 25.0% |" in out
    with pytest.raises(SystemExit, match="eval luck: two records share a noise seed"):
        main(["eval", "luck", str(paths[0]), str(paths[0])])
