"""Re-plan just before a planned grasp: run a chunk only up to the tick where it would close the jaw.

    policy = ReplanBeforeClosePolicy(NanoPolicy(model, processor))
    step = policy.predict(obs)   # the plan's actions up to (not including) its open -> shut edge, if that is >= 5 ticks out

Nano executes its whole 30-action plan per query, so the tick at which the jaw shuts is decided up to 30 ticks
earlier, from a picture of the arm far from the object (`scripts/probe_grasp.py`: the close comes on time but
3-4 cm off the object's centre). This wrapper cuts the chunk at the plan's first falling edge of the gripper
command (from at or above `closed_below` to below it, the state counting as the tick before the plan) and asks
again there, so the close is decided from a picture taken at the object. A close planned fewer than `min_ticks`
ticks out runs as planned: each cut therefore advances the arm by at least `min_ticks` ticks, and an arm that keeps
deferring its close still moves. A workbench extension, like `n_action_steps`: the real model's
`predict_action` returns the plan, and how much of it runs is the caller's choice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from molmoact2.models.base import Observation, Step
from molmoact2.sim.expert import GRIP_OPEN
from molmoact2.sim.units import GRIPPER_INDEX


class ReplanBeforeClosePolicy:
    def __init__(self, policy: Any, *, gripper_index: int = GRIPPER_INDEX, closed_below: float = GRIP_OPEN / 2,
                 min_ticks: int = 5) -> None:
        if int(min_ticks) != min_ticks or min_ticks < 1:
            raise ValueError(f"min_ticks: expected a whole number of ticks >= 1, got {min_ticks!r}")
        if not np.isfinite(closed_below):
            raise ValueError(f"closed_below: expected a finite gripper command (robot units), got {closed_below!r}")
        self.inner, self.gripper_index = policy, int(gripper_index)
        self.closed_below, self.min_ticks = float(closed_below), int(min_ticks)
        self.name = f"{getattr(policy, 'name', type(policy).__name__)} + re-plan before close"

    def __getattr__(self, name: str) -> Any:  # norm_tag, meta, mode, reset... of the wrapped policy
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def first_close(self, state: np.ndarray, actions: np.ndarray) -> int | None:
        """Index of the plan's first open -> shut edge of the gripper command, or None if it has none."""
        grip = np.concatenate([[float(state[self.gripper_index])], actions[:, self.gripper_index]])
        edges = np.flatnonzero((grip[:-1] >= self.closed_below) & (grip[1:] < self.closed_below))
        return int(edges[0]) if len(edges) else None

    def predict(self, obs: Observation) -> Step:
        step = self.inner.predict(obs)
        actions = np.asarray(step.actions)
        if actions.ndim != 2 or actions.shape[1] <= self.gripper_index:
            raise ValueError(f"re-plan before close: expected [ticks, dims > {self.gripper_index}] actions with the "
                             f"gripper at index {self.gripper_index}, got {list(actions.shape)}")
        close = self.first_close(np.asarray(obs.state, np.float64), actions)
        cut = close if close is not None and close >= self.min_ticks else None
        info = dict(step.info)
        info["replan_before_close"] = {"planned_close_tick": close, "cut_at": cut, "planned_ticks": len(actions)}
        if cut is None:
            return dataclasses.replace(step, info=info)
        return dataclasses.replace(step, actions=actions[:cut], n_executed=cut, info=info)
