"""The closed control loop, guarded: policy -> safety guard -> world, one `Step` per chunk.

    from molmoact2.sim import make_env
    from molmoact2.runner import ExpertPolicy, guard_for_env, run_episode

    env = make_env("touch", seed=0)
    for step in run_episode(ExpertPolicy(env), env, guard_for_env(env), max_steps=300):
        print(step.n_executed, step.info["safety"]["ok"], step.info["episode"]["stopped_by"])

Per chunk: `policy.predict(obs)` -> `guard.guard_step(step, obs.state)` (the verdict lands in
`step.info["safety"]`) -> the guard's chunk (unchanged, clipped or truncated) is executed tick by tick
in the env -> the Step is yielded with `n_executed` and `info["episode"]` (ticks run, success,
why the episode stopped, what the env clipped).

A refused chunk executes NOTHING: the runner never zero-fills, pads, crops or invents a "hold"
action, because on an absolute-joint robot a made-up target is a motion, not a no-op. By default a
refusal ends the episode (`on_refusal="stop"`); with `on_refusal="retry"` the policy is asked again
on the same observation (a sampling policy may do better), at most `max_consecutive_refusals` times.
The e-stop (`guard.estop()`, e.g. from a UI thread) is also honoured between ticks of a chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np

from molmoact2.models.base import Observation, Step
from molmoact2.robot.safety import SafetyConfig, SafetyGuard


def guard_for_env(env: Any, *, max_delta_per_tick: float | tuple[float, ...] | None = None,
                  on_limit: Literal["refuse", "clip"] = "refuse") -> SafetyGuard:
    """A guard with the env's own action space: its joint limits, its action dimension, its names."""
    return SafetyGuard(SafetyConfig(
        joint_low=tuple(float(v) for v in env.action_low), joint_high=tuple(float(v) for v in env.action_high),
        action_dim=int(env.action_dim), names=tuple(env.action_names), max_delta_per_tick=max_delta_per_tick,
        on_limit=on_limit,
    ))


class ExpertPolicy:
    """The simulator's scripted expert as a `Policy`. The expert is built from the env's CURRENT
    episode, so it is (re)made lazily after every `reset()` (which `run_episode` calls after `env.reset`)."""

    name = "expert"

    def __init__(self, env: Any, chunk_size: int = 30) -> None:
        self.env, self.chunk_size = env, chunk_size
        self._expert = None

    def reset(self) -> None:
        self._expert = None

    def predict(self, obs: Observation) -> Step:
        if self._expert is None:
            self._expert = self.env.expert(chunk_size=self.chunk_size)
        return self._expert.predict(obs)


def run_episode(
    policy: Any,
    env: Any,
    guard: SafetyGuard | None = None,
    max_steps: int | None = None,
    on_step: Callable[[Step], None] | None = None,
    *,
    seed: int | None = None,
    reset: bool = True,
    on_refusal: Literal["stop", "retry"] = "stop",
    max_consecutive_refusals: int = 3,
    summary: dict[str, Any] | None = None,
    observe_every_tick: bool = True,
) -> Iterator[Step]:
    """Run `policy` in `env` through `guard` and yield one Step per predicted chunk.

    max_steps   env ticks at most (default: the env's own time limit, which truncates anyway)
    on_step     called with each Step before it is yielded
    reset       reset env (with `seed`) and policy first; False continues from the env's current state
    summary     if given, filled at the end: success, ticks, chunks, refusals, stopped_by
    observe_every_tick  False renders only the last tick of each chunk (what the policy looks at
                next): evaluation speed. Needs an env whose step() takes `observe=` (SimEnv).
    """
    if on_refusal not in ("stop", "retry"):
        raise ValueError(f"on_refusal: expected 'stop' or 'retry', got {on_refusal!r}")
    if max_consecutive_refusals < 1:
        raise ValueError(f"max_consecutive_refusals: expected >= 1, got {max_consecutive_refusals}")
    guard = guard if guard is not None else guard_for_env(env)
    limit = int(max_steps if max_steps is not None else env.time_limit_steps)
    if limit < 1:
        raise ValueError(f"max_steps: expected >= 1 env ticks, got {limit}")
    if reset:
        obs, _info = env.reset(seed)
        policy.reset()
    else:
        obs = env.observe()
    ticks = chunks = refusals = consecutive = 0
    success, stopped_by = False, None
    while stopped_by is None:
        step = policy.predict(obs)
        if step.observation is None:
            step.observation = obs
        verdict = guard.guard_step(step, obs.state)
        chunk_info: dict[str, Any] = {"chunk": chunks, "env_step_start": ticks, "env_steps": 0, "success": False,
                                      "terminated": False, "truncated": False, "stopped_by": None,
                                      "env_clipped_dims": [], "estop_mid_chunk": False}
        chunks += 1
        executed: list[np.ndarray] = []
        if verdict.refused:
            refusals += 1
            consecutive += 1
            if on_refusal == "stop" or consecutive >= max_consecutive_refusals or guard.estopped:
                stopped_by = "estop" if guard.estopped else "refused"
        else:
            consecutive = 0
            clipped: set[str] = set()
            last = len(verdict.actions) - 1
            for i, action in enumerate(verdict.actions):
                if guard.estopped:  # pressed while this chunk was running: stop between ticks
                    chunk_info["estop_mid_chunk"] = True
                    stopped_by = "estop"
                    break
                if observe_every_tick:
                    obs, _reward, terminated, truncated, info = env.step(action)
                else:
                    seen, _reward, terminated, truncated, info = env.step(action, observe=i == last)
                    obs = seen if seen is not None else obs
                executed.append(np.asarray(action, np.float32))
                ticks += 1
                clipped.update(info.get("clipped_dims", []))
                if terminated or truncated:
                    success = bool(info.get("success", False))
                    chunk_info.update(terminated=bool(terminated), truncated=bool(truncated))
                    stopped_by = "success" if success else "time_limit"
                    break
                if ticks >= limit:
                    stopped_by = "max_steps"
                    break
            chunk_info["env_clipped_dims"] = sorted(clipped)
        dim = np.shape(step.actions)[1] if np.ndim(step.actions) == 2 else 0
        step.n_executed = len(executed)
        step.info["executed_actions"] = (np.stack(executed) if executed
                                         else np.empty((0, dim), np.float32))
        chunk_info.update(env_steps=len(executed), success=success, stopped_by=stopped_by)
        step.info["episode"] = chunk_info
        if on_step is not None:
            on_step(step)
        yield step
    if summary is not None:
        summary.update(success=success, ticks=ticks, chunks=chunks, refusals=refusals, stopped_by=stopped_by,
                       instruction=getattr(env, "instruction", ""))
