"""`TemporalEnsemblePolicy`: each tick's action is the weighted mean of every plan covering it (ACT), the clock
follows what the runner executed, and `eval nano --temporal-ensemble K` asks the real Nano every K ticks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from molmoact2.models.base import CameraFrame, Observation, Step
from molmoact2.models.temporal_ensemble import TemporalEnsemblePolicy


class _PlanByQuery:
    """Query q (0, 1, ...) plans 30 ticks of value 100*q + k at its k-th action, on 2 joints: any mix of plans is
    then readable from the numbers alone."""

    name = "plans"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.queries = 0

    def predict(self, obs: Observation) -> Step:
        plan = 100.0 * self.queries + np.arange(30, dtype=np.float32)
        self.queries += 1
        return Step(actions=np.stack([plan, -plan], axis=1), info={"from": "plans"})


def _obs() -> Observation:
    return Observation(cameras={"front": CameraFrame(rgb=np.zeros((8, 8, 3), np.uint8))},
                       state=np.zeros(2, np.float32), instruction="x")


def test_each_tick_mixes_every_plan_covering_it_oldest_weighted_most():
    policy = TemporalEnsemblePolicy(_PlanByQuery(), query_every=10, decay_per_tick=0.05)
    first = policy.predict(_obs())
    np.testing.assert_allclose(first.actions[:, 0], np.arange(10))  # one plan: executed as planned
    assert first.n_executed == 10 and first.info["from"] == "plans"
    assert first.info["temporal_ensemble"]["plans_per_tick"] == [1] * 10
    second = policy.predict(_obs())  # ticks 10..19: plan 0's actions 10..19 and plan 1's 0..9
    w_new = np.exp(-0.05 * 10)
    expect = (np.arange(10, 20) + w_new * (100 + np.arange(10))) / (1 + w_new)
    np.testing.assert_allclose(second.actions[:, 0], expect, rtol=1e-6)
    np.testing.assert_allclose(second.actions[:, 1], -expect, rtol=1e-6)
    assert second.info["temporal_ensemble"]["max_abs_from_new_plan"] == pytest.approx(
        np.max(np.abs(expect - (100 + np.arange(10)))), rel=1e-5)
    third = policy.predict(_obs())  # ticks 20..29: three plans
    w = np.exp(-0.05 * np.array([0, 10, 20]))
    expect = (w[0] * np.arange(20, 30) + w[1] * (100 + np.arange(10, 20)) + w[2] * (200 + np.arange(10))) / w.sum()
    np.testing.assert_allclose(third.actions[:, 0], expect, rtol=1e-6)
    assert third.info["temporal_ensemble"]["plans_per_tick"] == [3] * 10


def test_the_clock_follows_what_the_runner_executed_and_reset_restarts_it():
    policy = TemporalEnsemblePolicy(_PlanByQuery(), query_every=10, decay_per_tick=0.0)
    first = policy.predict(_obs())
    first.n_executed = 4  # the episode's guard or end cut the chunk short: the next plan starts at tick 4
    second = policy.predict(_obs())
    np.testing.assert_allclose(second.actions[:, 0], (np.arange(4, 14) + 100 + np.arange(10)) / 2)
    policy.reset()
    np.testing.assert_allclose(policy.predict(_obs()).actions[:, 0], np.arange(10))


def test_bad_settings_and_short_plans_are_refused():
    with pytest.raises(ValueError, match="query_every: expected a whole number"):
        TemporalEnsemblePolicy(_PlanByQuery(), query_every=0)
    with pytest.raises(ValueError, match="decay_per_tick: expected a finite number >= 0"):
        TemporalEnsemblePolicy(_PlanByQuery(), query_every=5, decay_per_tick=float("nan"))
    with pytest.raises(ValueError, match="needs plans of >= 31 actions"):
        TemporalEnsemblePolicy(_PlanByQuery(), query_every=31).predict(_obs())


def test_eval_nano_asks_every_k_ticks_and_records_it(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("mujoco")
    from molmoact2.cli import main
    from molmoact2.evaluation.compare import compare, to_markdown
    from molmoact2.evaluation.nano_eval import EvalConfig
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    records = {}
    for k in (0, 7):
        out = tmp_path / f"eval_{k}.json"
        assert main(["eval", "nano", "--checkpoint", str(ckpt), "--tasks", "touch", "--seeds-per-task", "1",
                     "--modes", "continuous", "--jobs", "1", "--num-steps", "2", "--temporal-ensemble", str(k),
                     "--out", str(out)]) == 0
        records[k] = json.loads(out.read_text())
    (roll,) = records[7]["rollouts"]
    assert records[7]["config"]["temporal_ensemble"] == 7
    assert roll["chunks"] == -(-roll["ticks"] // 7)  # asked every 7 ticks, not the checkpoint's 30
    assert "every 7 ticks, decay 0.01 in new" in to_markdown(compare(records[0], records[7]))
    with pytest.raises(ValueError, match="n_action_steps must be left unset or 30"):
        EvalConfig(checkpoint=str(ckpt), temporal_ensemble=5, n_action_steps=10)
    with pytest.raises(ValueError, match="temporal_ensemble: expected 0"):
        EvalConfig(checkpoint=str(ckpt), temporal_ensemble=31)
