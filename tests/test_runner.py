"""The guarded control loop on a real MuJoCo world: the scripted expert runs through the safety guard,
and a policy that emits NaN or the wrong dimension is refused, executes nothing, and says so in the Step."""

from __future__ import annotations

import time

import numpy as np
import pytest

from molmoact2.models.base import Step
from molmoact2.robot.safety import SafetyConfig, SafetyGuard
from molmoact2.runner import ExpertPolicy, guard_for_env, run_episode


@pytest.fixture()
def env():
    from molmoact2.sim import make_env

    e = make_env("touch", seed=0, image_size=64, depth=False, segmentation=False)
    yield e
    e.close()


class Corrupting:
    """The expert, with its chunks corrupted on chosen calls (NaN, or one extra dimension)."""

    def __init__(self, env, kind: str, bad_calls: set[int]) -> None:
        self.inner, self.kind, self.bad_calls, self.calls = ExpertPolicy(env), kind, bad_calls, 0
        self.name = f"corrupt-{kind}"

    def reset(self) -> None:
        self.inner.reset()
        self.calls = 0

    def predict(self, obs):
        step = self.inner.predict(obs)
        if self.calls in self.bad_calls:
            actions = np.array(step.actions, np.float32)
            if self.kind == "nan":
                actions[3, 1] = np.nan
            else:
                actions = np.concatenate([actions, actions[:, :1]], axis=1)  # 7-D for a 6-D arm
            step = Step(backend=self.name, observation=obs, actions=actions)
        self.calls += 1
        return step


def test_expert_episode_through_the_guard(env):
    t0 = time.perf_counter()
    seen, summary = [], {}
    steps = list(run_episode(ExpertPolicy(env), env, guard_for_env(env), max_steps=300, on_step=seen.append,
                             seed=0, summary=summary))
    assert steps == seen and len(steps) >= 2
    for s in steps:
        assert s.info["safety"]["ok"] and not s.info["safety"]["refused"]
        assert s.n_executed == s.info["episode"]["env_steps"] == len(s.info["executed_actions"])
        # Nothing modified: what ran is exactly the prefix of what the expert proposed.
        np.testing.assert_array_equal(s.info["executed_actions"], s.actions[: s.n_executed])
    assert summary["success"] and summary["stopped_by"] == "success" and summary["refusals"] == 0
    assert steps[-1].info["episode"]["success"] and steps[-1].info["episode"]["terminated"]
    assert summary["ticks"] == sum(s.n_executed for s in steps) == env.steps
    assert time.perf_counter() - t0 < 30


def test_max_steps_stops_mid_chunk(env):
    steps = list(run_episode(ExpertPolicy(env), env, guard_for_env(env), max_steps=7, seed=0))
    assert len(steps) == 1 and steps[0].n_executed == 7 and env.steps == 7
    assert steps[0].info["episode"]["stopped_by"] == "max_steps"


@pytest.mark.parametrize("kind, rule", [("nan", "finite"), ("dim", "dimension")])
def test_bad_chunk_refused_and_nothing_executed(env, kind, rule, tmp_path):
    summary = {}
    steps = list(run_episode(Corrupting(env, kind, {0}), env, guard_for_env(env), max_steps=300, seed=0,
                             summary=summary))
    assert len(steps) == 1
    step = steps[0]
    safety = step.info["safety"]
    assert safety["refused"] and not safety["ok"] and safety["records"][0]["rule"] == rule
    assert step.n_executed == 0 and step.info["executed_actions"].shape[0] == 0
    assert step.info["episode"]["stopped_by"] == "refused"
    assert env.steps == 0  # the world never moved: no zero-filled or cropped chunk reached it
    assert summary == {**summary, "success": False, "refusals": 1, "ticks": 0}
    # The refusal survives a save/load (recordings show it).
    back = Step.load(step.save(tmp_path / "s"))
    assert back.info["safety"]["records"][0]["rule"] == rule


def test_retry_after_refusal_continues(env):
    summary = {}
    steps = list(run_episode(Corrupting(env, "nan", {1}), env, guard_for_env(env), max_steps=300, seed=0,
                             on_refusal="retry", summary=summary))
    refused = [s for s in steps if s.info["safety"]["refused"]]
    assert len(refused) == 1 and refused[0].info["episode"]["chunk"] == 1 and refused[0].n_executed == 0
    assert summary["refusals"] == 1 and summary["ticks"] == env.steps > 0
    # Every corrupted call refused -> the bounded retries end the episode.
    always = Corrupting(env, "dim", set(range(100)))
    steps = list(run_episode(always, env, guard_for_env(env), seed=0, on_refusal="retry",
                             max_consecutive_refusals=3, summary=summary))
    assert len(steps) == 3 and all(s.info["safety"]["refused"] for s in steps)
    assert summary["stopped_by"] == "refused" and env.steps == 0


def test_joint_limit_and_jump_rules_reach_the_step(env):
    # A guard stricter than the expert: a tiny max change per tick refuses its first chunk.
    strict = SafetyGuard(SafetyConfig(action_dim=6, max_delta_per_tick=1e-3))
    steps = list(run_episode(ExpertPolicy(env), env, strict, seed=0))
    assert steps[-1].info["safety"]["records"][0]["rule"] == "max_delta" and env.steps == 0
    # Truncation keeps only the safe prefix, and only that prefix runs.
    trunc = SafetyGuard(SafetyConfig(action_dim=6, max_delta_per_tick=1.0, on_jump="truncate"))
    first = next(run_episode(ExpertPolicy(env), env, trunc, seed=0))
    assert not first.info["safety"]["refused"] and 0 < first.n_executed < len(first.actions)
    record = first.info["safety"]["records"][0]
    assert record["rule"] == "max_delta" and record["action"] == "truncated" and record["step"] == first.n_executed
    assert env.steps == first.n_executed


def test_estop_between_ticks(env):
    guard = guard_for_env(env)
    real_step = env.step

    def step_then_press(action):  # the e-stop is pressed (e.g. from the UI) after the 3rd tick
        out = real_step(action)
        if env.steps == 3:
            guard.estop("operator")
        return out

    env.step = step_then_press
    steps = list(run_episode(ExpertPolicy(env), env, guard, seed=0))
    assert len(steps) == 1 and steps[0].n_executed == 3 and steps[0].info["episode"]["estop_mid_chunk"]
    assert steps[0].info["episode"]["stopped_by"] == "estop"
    env.step = real_step
    # While engaged, the next episode's first chunk is refused outright.
    steps = list(run_episode(ExpertPolicy(env), env, guard, seed=0))
    assert steps[0].info["safety"]["records"][0]["rule"] == "estop" and steps[0].info["episode"]["stopped_by"] == "estop"
    guard.release()
    assert next(run_episode(ExpertPolicy(env), env, guard, seed=0)).info["safety"]["ok"]


def test_argument_errors(env):
    with pytest.raises(ValueError, match="on_refusal"):
        next(run_episode(ExpertPolicy(env), env, on_refusal="ignore"))
    with pytest.raises(ValueError, match="max_steps"):
        next(run_episode(ExpertPolicy(env), env, max_steps=0))
