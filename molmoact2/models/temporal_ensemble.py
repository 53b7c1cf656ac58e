"""Temporal ensembling of action chunks (ACT, Zhao et al. 2023) around any chunk-predicting policy.

    policy = TemporalEnsemblePolicy(NanoPolicy(model, processor, n_action_steps=30), query_every=10)
    step = policy.predict(obs)   # 10 actions: each tick's mean over every plan that covers it

The inner policy returns its whole plan each query; this wrapper asks it every `query_every` ticks and executes,
for each tick, the weighted mean of the actions that every still-running plan had planned for that tick. Plans
are weighted as ACT weights them, exp(-decay * age order), with the OLDEST plan weighted most, so a new plan bends
the path rather than replacing it: `w = exp(-decay_per_tick * (start_tick - oldest_start_tick))`.
A workbench extension, not something the real model does (its `predict_action` returns one plan per call).

Ticks are counted from what the runner actually executed (`Step.n_executed`, which `run_episode` fills in),
so a chunk cut short still keeps the plans aligned with the arm's clock.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from molmoact2.models.base import Observation, Step


class TemporalEnsemblePolicy:
    def __init__(self, policy: Any, query_every: int, decay_per_tick: float = 0.01) -> None:
        if int(query_every) != query_every or query_every < 1:
            raise ValueError(f"query_every: expected a whole number of ticks >= 1, got {query_every!r}")
        if not np.isfinite(decay_per_tick) or decay_per_tick < 0:
            raise ValueError(f"decay_per_tick: expected a finite number >= 0 (0 = plans weighted equally), "
                             f"got {decay_per_tick!r}")
        self.inner, self.query_every, self.decay_per_tick = policy, int(query_every), float(decay_per_tick)
        self.name = f"{getattr(policy, 'name', type(policy).__name__)} + temporal ensemble every {self.query_every}"
        self.reset()

    def __getattr__(self, name: str) -> Any:  # norm_tag, meta, mode... of the wrapped policy
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def reset(self) -> None:
        self.inner.reset()
        self._plans: list[tuple[int, np.ndarray]] = []  # (tick the plan starts at, [horizon, dim] robot units)
        self._tick = 0
        self._last: Step | None = None

    def predict(self, obs: Observation) -> Step:
        if self._last is not None:  # advance by what the runner executed of the previous ensemble chunk
            ran = self._last.n_executed
            self._tick += int(len(self._last.actions) if ran is None else ran)
        step = self.inner.predict(obs)
        plan = np.asarray(step.actions, np.float32)
        if plan.ndim != 2 or len(plan) < self.query_every:
            raise ValueError(f"temporal ensemble: the policy returned {list(plan.shape)} actions per query; "
                             f"asking every {self.query_every} ticks needs plans of >= {self.query_every} actions "
                             f"(give the wrapped policy n_action_steps = its horizon)")
        self._plans = [(s, p) for s, p in self._plans if s + len(p) > self._tick] + [(self._tick, plan)]
        mixed = np.empty((self.query_every, plan.shape[1]), np.float32)
        covering = []
        for i in range(self.query_every):
            tick = self._tick + i
            live = [(s, p[tick - s]) for s, p in self._plans if s <= tick < s + len(p)]
            oldest = min(s for s, _ in live)
            w = np.exp(-self.decay_per_tick * np.array([s - oldest for s, _ in live], np.float64))
            mixed[i] = (w[:, None] * np.stack([a for _, a in live])).sum(0) / w.sum()
            covering.append(len(live))
        info = dict(step.info)
        info["temporal_ensemble"] = {
            "query_every": self.query_every, "decay_per_tick": self.decay_per_tick, "plans_per_tick": covering,
            # how far the executed actions are from what this query alone planned (robot units)
            "max_abs_from_new_plan": float(np.max(np.abs(mixed - plan[: self.query_every]))),
        }
        out = dataclasses.replace(step, actions=mixed, n_executed=self.query_every, info=info)
        self._last = out
        return out
