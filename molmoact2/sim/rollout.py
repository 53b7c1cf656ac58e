"""Run a chunk-producing policy (a scripted expert, or anything with `act(obs) -> [H, D]`) in a SimEnv.

One loop for evaluation, recording and the app: the callback sees every executed step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from molmoact2.models.base import Observation


@dataclass
class EpisodeResult:
    task: str
    seed: int
    instruction: str
    success: bool
    steps: int
    actions: list[np.ndarray] = field(default_factory=list)  # executed (requested) action per step
    states: list[np.ndarray] = field(default_factory=list)  # state observed BEFORE each action


def run_episode(
    env,
    seed: int,
    policy=None,
    on_step: Callable[[int, Observation, np.ndarray, dict], None] | None = None,
    on_chunk: Callable[[Observation, np.ndarray], None] | None = None,
    keep: bool = False,
    max_steps: int | None = None,
    target: str | None = None,
    reset: bool = True,
) -> EpisodeResult:
    """Reset `env` to `seed` and run `policy` (default: the env's scripted expert) until success or time limit.

    `on_step(i, obs_before, action, info_after)` is called for each executed step; `on_chunk(obs, chunk)`
    once per predicted chunk. With `keep=True` the result holds the state/action series. Works with any
    env exposing reset/step/action_dim/instruction -- a `SimEnv` or a `GymAdapter` (then pass `policy`).
    `max_steps` stops early (counted as not successful). `target` names another object of the seed's
    layout to aim at (a SimEnv `reset` option; see `SimEnv.target_options()`). `reset=False` continues from
    the env's current state (e.g. the expert taking over where another policy left the arm); `seed` and
    `target` are then only recorded, and the env's step count and time limit carry on.
    """
    if reset:
        obs, info = env.reset(seed, options={"target": target}) if target is not None else env.reset(seed)
    else:
        if target is not None:
            raise ValueError("run_episode: target= needs reset=True (it is a reset option)")
        obs = env.observe()
    if policy is None:
        if not hasattr(env, "expert"):
            raise ValueError(f"run_episode: {type(env).__name__} has no scripted expert; pass policy=")
        policy = env.expert()
    task = getattr(getattr(env, "task", None), "name", None) or type(env).__name__
    result = EpisodeResult(task, seed, env.instruction, False, 0)
    while True:
        chunk = np.asarray(policy.act(obs))
        if chunk.ndim != 2 or chunk.shape[1] != env.action_dim or len(chunk) == 0:
            raise ValueError(f"policy.act: expected a chunk [H>0, {env.action_dim}], got {list(chunk.shape)}")
        if on_chunk:
            on_chunk(obs, chunk)
        for action in chunk:
            prev = obs
            obs, reward, terminated, truncated, info = env.step(action)
            if keep:
                result.states.append(np.asarray(prev.state, np.float32))
                result.actions.append(np.asarray(action, np.float32))
            if on_step:
                on_step(result.steps, prev, action, info)
            result.steps += 1
            if terminated or truncated:
                result.success = bool(info.get("success", False))
                return result
            if max_steps is not None and result.steps >= max_steps:
                return result
