"""`ReplanBeforeClosePolicy`: a chunk runs up to the plan's first open -> shut edge of the gripper and no further,
a close planned sooner than `min_ticks` runs as planned, and `eval nano --replan-before-close` drives the real
Nano with it and records it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from molmoact2.models.base import CameraFrame, Observation, Step
from molmoact2.models.replan_close import ReplanBeforeClosePolicy
from molmoact2.sim.expert import GRIP_OPEN


class _GripPlan:
    """Plans 30 ticks: joint 0 counts the ticks, the gripper (index 5) is open until `close_at`, shut after."""

    name = "grip plan"

    def __init__(self, close_at: int | None) -> None:
        self.close_at = close_at

    def reset(self) -> None:
        pass

    def predict(self, obs: Observation) -> Step:
        actions = np.zeros((30, 6), np.float32)
        actions[:, 0] = np.arange(30)
        actions[:, 5] = GRIP_OPEN
        if self.close_at is not None:
            actions[self.close_at:, 5] = 0.0
        return Step(actions=actions, n_executed=None, info={"from": "plan"})


def _obs(grip: float) -> Observation:
    state = np.zeros(6, np.float32)
    state[5] = grip
    return Observation(cameras={"front": CameraFrame(rgb=np.zeros((8, 8, 3), np.uint8))}, state=state,
                       instruction="pick up the red cube and put it in the bin")


def test_the_chunk_stops_before_the_planned_close():
    step = ReplanBeforeClosePolicy(_GripPlan(close_at=12)).predict(_obs(GRIP_OPEN))
    assert len(step.actions) == 12 and step.n_executed == 12
    np.testing.assert_array_equal(step.actions[:, 0], np.arange(12))
    assert (step.actions[:, 5] == GRIP_OPEN).all()  # every executed tick still open: the close is asked again
    assert step.info["replan_before_close"] == {"planned_close_tick": 12, "cut_at": 12, "planned_ticks": 30}
    assert step.info["from"] == "plan"


def test_a_near_close_or_no_close_runs_as_planned():
    near = ReplanBeforeClosePolicy(_GripPlan(close_at=3), min_ticks=5).predict(_obs(GRIP_OPEN))
    assert len(near.actions) == 30 and near.info["replan_before_close"]["cut_at"] is None
    assert near.info["replan_before_close"]["planned_close_tick"] == 3
    never = ReplanBeforeClosePolicy(_GripPlan(close_at=None)).predict(_obs(GRIP_OPEN))
    assert len(never.actions) == 30 and never.info["replan_before_close"]["planned_close_tick"] is None


def test_the_state_counts_as_the_tick_before_the_plan():
    policy = ReplanBeforeClosePolicy(_GripPlan(close_at=None))
    shut_from_start = _GripPlan(close_at=0).predict(_obs(0.0)).actions
    shut_at_20 = _GripPlan(close_at=20).predict(_obs(0.0)).actions
    # jaw open now, the plan shut from its first action: the edge is between the state and action 0
    assert policy.first_close(_obs(GRIP_OPEN).state, shut_from_start) == 0
    # jaw shut now, the plan opens it and shuts it at 20: the edge is the plan's own
    assert policy.first_close(_obs(0.0).state, shut_at_20) == 20
    # jaw shut now and the plan keeps it shut: no edge
    assert policy.first_close(_obs(0.0).state, shut_from_start) is None


def test_bad_settings_and_actions_without_a_gripper_are_refused():
    with pytest.raises(ValueError, match="min_ticks: expected a whole number"):
        ReplanBeforeClosePolicy(_GripPlan(5), min_ticks=0)
    with pytest.raises(ValueError, match="closed_below: expected a finite"):
        ReplanBeforeClosePolicy(_GripPlan(5), closed_below=float("nan"))

    class _TwoJoints(_GripPlan):
        def predict(self, obs: Observation) -> Step:
            return Step(actions=np.zeros((30, 2), np.float32))

    with pytest.raises(ValueError, match=r"expected \[ticks, dims > 5\] actions"):
        ReplanBeforeClosePolicy(_TwoJoints(None)).predict(_obs(GRIP_OPEN))


def test_eval_nano_replans_before_close_and_records_it(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("mujoco")
    from molmoact2.cli import main
    from molmoact2.evaluation.compare import compare, to_markdown
    from molmoact2.evaluation.nano_eval import EvalConfig
    from molmoact2.models.nano.factory import make_random_checkpoint

    ckpt = make_random_checkpoint(tmp_path / "nano_random")
    records = {}
    for flag in (False, True):
        out = tmp_path / f"eval_{flag}.json"
        assert main(["eval", "nano", "--checkpoint", str(ckpt), "--tasks", "pick_place", "--seeds-per-task", "1",
                     "--modes", "continuous", "--jobs", "1", "--num-steps", "2", "--out", str(out)]
                    + (["--replan-before-close"] if flag else [])) == 0
        records[flag] = json.loads(out.read_text())
    assert records[True]["config"]["replan_before_close"] is True
    assert records[False]["config"]["replan_before_close"] is False
    assert "`--replan-before-close`): no in old, yes in new" in to_markdown(compare(records[False], records[True]))
    with pytest.raises(ValueError, match="replan_before_close: not with temporal_ensemble"):
        EvalConfig(checkpoint=str(ckpt), temporal_ensemble=5, replan_before_close=True)
