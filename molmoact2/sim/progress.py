"""How far an episode got with the named object, watched at every tick.

    watched = ProgressWatch(env)             # pass `watched` to run_episode instead of env
    for step in run_episode(policy, watched, guard, seed=3): ...
    watched.record()    # {"progress": {"touched": True, "lift_max_m": 0.004, "slide_max_m": 0.031, ...}}
    watched.describe()  # "touched the purple block at tick 47 · lifted it 0.4 cm at most · slid it 3.1 cm
                        #  · not in the bin yet"

Why a wrapper: the episode loop steps the env 15 times per chunk and yields once, and a grasp or a touch can
begin and end inside one chunk. Success says only whether a task was done; these stages say where a failure
stopped (reach, grasp, carry), which is what a policy's debugger asks first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LIFT_M = 0.02   # the named object this far above its start was carried (it rests on the table; a push tilts it less)
SLIDE_M = 0.02  # ... this far across the table was pushed or dragged (push success needs 5 cm)


class ProgressWatch:
    """The env as `run_episode` sees it (every attribute is the env's own), plus a look at the named
    object after every `step`. Starts watching at `reset`, or at the first `observe` after the caller
    reset the env itself (`run_episode(reset=False)`)."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self._target: str | None = None
        self._start_m = np.zeros(3)
        self._begun, self._watches_bin = False, False
        self.ticks = 0
        self.touched_tick: int | None = None   # first tick the gripper touched the named object
        self.lifted_tick: int | None = None    # first tick it was LIFT_M above its start
        self.in_bin_tick: int | None = None    # pick_place: first tick it was inside the bin
        self.lift_m, self.slide_m = 0.0, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        out = self._env.reset(*args, **kwargs)
        self._begin()
        return out

    def observe(self) -> Any:
        if not self._begun:
            self._begin()
        return self._env.observe()

    def step(self, *args: Any, **kwargs: Any) -> Any:
        out = self._env.step(*args, **kwargs)
        self.ticks += 1
        if self._target is not None:
            self._look(self._target)
        return out

    def _look(self, target: str) -> None:
        env, pos = self._env, self._env.object_pos(target)
        self.lift_m = max(self.lift_m, float(pos[2] - self._start_m[2]))
        self.slide_m = max(self.slide_m, float(np.linalg.norm(pos[:2] - self._start_m[:2])))
        if self.touched_tick is None and env.gripper_touches(target):
            self.touched_tick = self.ticks
        if self.lifted_tick is None and self.lift_m >= LIFT_M:
            self.lifted_tick = self.ticks
        if self.in_bin_tick is None and self._watches_bin and env.object_in_bin(target):
            self.in_bin_tick = self.ticks

    def _begin(self) -> None:
        env = self._env
        target = getattr(env.instance, "target", None)
        self._target = target if target in {o.name for o in env.scene.objects} else None  # else: nothing to watch
        self._watches_bin = env.task.name == "pick_place"
        self._start_m = env.object_pos(self._target) if self._target else np.zeros(3)
        self._begun, self.ticks = True, 0
        self.touched_tick = self.lifted_tick = self.in_bin_tick = None
        self.lift_m, self.slide_m = 0.0, 0.0

    def record(self) -> dict[str, Any]:
        """`{"progress": {...}}` for a result record, or {} for a task without one named object."""
        if self._target is None:
            return {}
        progress: dict[str, Any] = {"touched": self.touched_tick is not None, "touched_tick": self.touched_tick,
                                    "lift_max_m": round(self.lift_m, 4), "slide_max_m": round(self.slide_m, 4)}
        if self._watches_bin:
            progress["in_bin"] = self.in_bin_tick is not None
            progress["in_bin_tick"] = self.in_bin_tick
        return {"progress": progress}

    def describe(self) -> str:
        """One line for a status bar ("" before the episode starts or without a named object)."""
        if self._target is None or not self._begun:
            return ""
        parts = [f"touched the {self._target} at tick {self.touched_tick}" if self.touched_tick is not None
                 else f"has not touched the {self._target}",
                 f"lifted it {100 * self.lift_m:.1f} cm at most" + (f" (≥ {100 * LIFT_M:.0f} cm at tick "
                                                                    f"{self.lifted_tick})" if self.lifted_tick else ""),
                 f"slid it {100 * self.slide_m:.1f} cm"]
        if self._watches_bin:
            parts.append(f"in the bin at tick {self.in_bin_tick}" if self.in_bin_tick is not None
                         else "not in the bin yet")
        return " · ".join(parts)
