"""Scripted experts: privileged (they read object poses from the simulator), closed-loop per phase.

Each task is a list of phases (move above, descend, close, lift, ...). A phase is planned when the
previous one has been queued, starting from the previous phase's final target, with the object poses
of that moment; joint trajectories are smooth (minimum-jerk in joint space, or straight Cartesian
lines solved by damped-least-squares IK at every 30 Hz step). `act(obs)` returns the next chunk of
up to `chunk_size` absolute joint targets in robot units.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from molmoact2.models.base import Observation, Step
from molmoact2.sim.kinematics import top_down_rotation
from molmoact2.sim.units import rad_to_units, units_to_rad

GRIP_OPEN = 55.0  # robot units: ~0.88 rad, jaws ~55 mm apart (objects are <= 30 mm across)
GRIP_CLOSED = 0.0  # the position servo presses on the object with its force limit
GRIP_TOUCH = 8.0  # nearly closed: the fingertips form one small probe
HOVER_M = 0.07  # above the object's top
CARRY_Z_M = 0.12
HELD_LIFT_M = 0.015  # above its starting height, touching the jaw: in the jaw, not resting on the table
CART_SPEED = 0.15  # m/s for straight-line descents/lifts
JOINT_SPEED = 1.6  # rad/s of the fastest joint for free moves

Phase = Callable[["Planner", np.ndarray], np.ndarray]  # (planner, start units [D]) -> trajectory [T, D]


def min_jerk(n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n + 1)[1:]
    return 10 * t**3 - 15 * t**4 + 6 * t**5


class Planner:
    """Motion primitives for arm `i` of an env; trajectories are full action vectors (all arms)."""

    def __init__(self, env, arm: int = 0) -> None:
        self.env, self.arm = env, arm
        self.kin = env.kinematics(arm)
        self.fps = env.fps
        self.sl = slice(6 * arm, 6 * arm + 6)

    def _rad(self, units6: np.ndarray) -> np.ndarray:
        return units_to_rad(units6, self.kin.arm.joint_range_rad)

    def _units(self, rad6: np.ndarray) -> np.ndarray:
        return rad_to_units(rad6, self.kin.arm.joint_range_rad)

    def solve(self, pos, rot, seed_units: np.ndarray) -> np.ndarray:
        q_seed = self._rad(seed_units)
        q5, err = self.kin.ik(pos, rot, q_seed[:5])
        if err > 0.01:  # retry from a neutral top-down-ish seed before giving up
            q5b, errb = self.kin.ik(pos, rot, np.array([math.atan2(pos[1], pos[0]), 0.0, 0.0, 1.2, 0.0]))
            if errb < err:
                q5, err = q5b, errb
        q = q_seed.copy()
        q[:5] = q5
        return self._units(q)

    def move(self, start: np.ndarray, pos, rot, grip: float | None = None, min_s: float = 0.4) -> np.ndarray:
        """Joint-space minimum-jerk move to the IK solution of (pos, rot)."""
        goal_arm = self.solve(pos, rot, start[self.sl])
        if grip is not None:
            goal_arm[5] = grip
        goal = start.copy()
        goal[self.sl] = goal_arm
        dq = np.abs(self._rad(goal_arm)[:5] - self._rad(start[self.sl])[:5]).max()
        n = max(int(min_s * self.fps), int(math.ceil(dq / JOINT_SPEED * self.fps)))
        return start + min_jerk(n)[:, None] * (goal - start)[None, :]

    def line(self, start: np.ndarray, pos, rot, speed: float = CART_SPEED) -> np.ndarray:
        """Straight Cartesian line of the jaw midpoint from where `start` puts it to `pos`."""
        p0, _ = self.kin.grasp_point(self._rad(start[self.sl]))
        dist = float(np.linalg.norm(np.asarray(pos) - p0))
        n = max(int(0.3 * self.fps), int(math.ceil(dist / speed * self.fps)))
        out, cur = [], start.copy()
        for s in min_jerk(n):
            nxt = cur.copy()
            nxt[self.sl] = self.solve(p0 + s * (np.asarray(pos) - p0), rot, cur[self.sl])
            nxt[self.sl][5] = start[self.sl][5]
            out.append(nxt)
            cur = nxt
        return np.array(out)

    def grip(self, start: np.ndarray, value: float, seconds: float = 0.5) -> np.ndarray:
        goal = start.copy()
        goal[6 * self.arm + 5] = value
        n = int(seconds * self.fps)
        return start + min_jerk(n)[:, None] * (goal - start)[None, :]

    def hold(self, start: np.ndarray, seconds: float) -> np.ndarray:
        return np.repeat(start[None, :], max(1, int(seconds * self.fps)), axis=0)

    # ---- grasp geometry ------------------------------------------------------------------------
    def jaw_rotation(self, name: str, start: np.ndarray, above: np.ndarray) -> np.ndarray:
        """Top-down rotation whose jaw axis closes across the object, choosing the symmetric option
        that needs the least wrist roll from the current pose."""
        obj = self.env.scene.object(name)
        R_obj = self.env.object_xmat(name)
        if obj.shape == "cylinder":
            bearing = math.atan2(above[1] - self.kin.arm_base_xy[1], above[0] - self.kin.arm_base_xy[0])
            base_dirs = [bearing + math.pi / 2]
            sym = [0.0, math.pi / 2, math.pi, -math.pi / 2]
        elif obj.shape == "block":
            yaw = math.atan2(R_obj[1, 0], R_obj[0, 0])
            base_dirs = [yaw + math.pi / 2]  # close across the short side (local y)
            sym = [0.0, math.pi]
        else:
            yaw = math.atan2(R_obj[1, 0], R_obj[0, 0])
            base_dirs = [yaw]
            sym = [0.0, math.pi / 2, math.pi, -math.pi / 2]
        # Judge the options at grasp height, where top-down is reachable and the yaw matters.
        return self.best_rotation(start, above, [d0 + s for d0 in base_dirs for s in sym])

    def push_rotation(self, direction: np.ndarray, start: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Jaw axis across the push direction (the two fingertips side by side form a wider pusher);
        of the two opposite choices, the one the wrist reaches with the least roll."""
        return self.best_rotation(start, at, [math.atan2(direction[0], -direction[1]) + s for s in (0.0, math.pi)])

    def best_rotation(self, start: np.ndarray, at: np.ndarray, jaw_yaws: list[float]) -> np.ndarray:
        best, best_cost = None, np.inf
        roll_now = self._rad(start[self.sl])[4]
        for yaw in jaw_yaws:
            rot = top_down_rotation(np.array([math.cos(yaw), math.sin(yaw)]))
            q = self._rad(self.solve(at, rot, start[self.sl]))
            pos, R = self.kin.grasp_point(q)
            err = np.linalg.norm(pos - at) + 0.05 * np.linalg.norm(R - rot)
            cost = err * 10 + abs(q[4] - roll_now) * 0.01
            if cost < best_cost:
                best, best_cost = rot, cost
        return best


class ScriptedExpert:
    """Phase-scripted expert. Also satisfies the `Policy` protocol (`predict(obs) -> Step`)."""

    name = "expert"

    def __init__(self, env, phases: list[Phase], chunk_size: int = 30, planners: list[Planner] | None = None) -> None:
        if not 1 <= chunk_size <= 30:
            raise ValueError(f"chunk_size: expected 1..30 steps, got {chunk_size}")
        self.env, self.chunk_size = env, chunk_size
        self._phases = list(phases)
        self.planners = planners or [Planner(env, 0)]
        self.reset()

    def reset(self) -> None:
        self._queue: list[np.ndarray] = []
        self._next_phase = 0
        self._last: np.ndarray | None = None

    @property
    def done(self) -> bool:
        return self._next_phase >= len(self._phases) and not self._queue

    def act(self, obs: Observation | None = None) -> np.ndarray:
        """Next chunk [H, D] of absolute joint targets (robot units), H <= chunk_size."""
        if self._last is None:
            self._last = self.env.state().copy()
        # A phase is planned only once the previous one has been executed, from the sim state of that
        # moment (closed loop); so a chunk ends at a phase boundary and may be shorter than chunk_size.
        if not self._queue and self._next_phase < len(self._phases):
            traj = self._phases[self._next_phase](self.planners, self._last)
            self._next_phase += 1
            self._queue.extend(list(np.asarray(traj)))
        if not self._queue:  # finished: hold the final pose
            self._queue = [self._last.copy()] * self.chunk_size
        chunk = np.array(self._queue[: self.chunk_size], dtype=np.float32)
        self._queue = self._queue[self.chunk_size :]
        self._last = chunk[-1].astype(np.float64)
        return chunk

    def predict(self, obs: Observation) -> Step:
        import time

        t0 = time.perf_counter()
        chunk = self.act(obs)
        path_world, path_px = self.env.planned_path(chunk, obs)
        return Step(
            index=self.env.steps, timestamp_s=obs.timestamp_s, backend="expert", observation=obs,
            actions=chunk, action_names=self.env.action_names, action_units=self.env.action_units,
            n_executed=len(chunk), planned_path_world=path_world, planned_path_px=path_px,
            timings_ms={"total": (time.perf_counter() - t0) * 1000.0},
            info={"task": self.env.task.name, "instruction": self.env.instruction},
        )


# ---- task scripts ---------------------------------------------------------------------------------
def _top_z(env, name: str) -> float:
    return float(env.object_pos(name)[2] + env.scene.object(name).half_height_m)


def _grasp_z(env, name: str) -> float:
    return max(float(env.object_pos(name)[2]), 0.016)


def touch_phases(env, target: str, arm: int = 0) -> list[Phase]:
    state = {}

    def above(P, s):
        p = P[arm]
        pos = env.object_pos(target)
        state["above"] = np.array([pos[0], pos[1], _top_z(env, target) + HOVER_M])
        state["rot"] = p.jaw_rotation(target, s, np.array([pos[0], pos[1], _top_z(env, target)]))
        return p.move(s, state["above"], state["rot"], grip=GRIP_TOUCH)

    def down(P, s):
        pos = env.object_pos(target)
        # Fingertips reach ~8 mm below the jaw midpoint: aim the midpoint just above the top face.
        return P[arm].line(s, [pos[0], pos[1], _top_z(env, target) + 0.002], state["rot"], speed=0.1)

    return [above, down, lambda P, s: P[arm].hold(s, 1.0)]


def pick_phases(env, target: str, place: Callable[[], np.ndarray], arm: int = 0, retreat: bool = True,
                release_z: float = 0.07, held: bool = False) -> list[Phase]:
    """Pick `target` and release it at `place()` (an xy target, evaluated when that phase starts), with
    the jaw midpoint at `release_z` (0.07 m: dropped into a bin; grasp height: set down on the table).
    `held`: the object is already in the closed jaw (a policy lifted it before handing over, see
    `object_held`): keep the jaw's current orientation, close firmly, and go on from the lift; the approach
    would open the jaw first and drop it."""
    state = {}

    def regrip(P, s):
        p = P[arm]
        _, state["rot"] = p.kin.grasp_point(p._rad(s[p.sl]))
        return p.grip(s, GRIP_CLOSED, 0.2)

    def above(P, s):
        p = P[arm]
        pos = env.object_pos(target)
        state["above"] = np.array([pos[0], pos[1], _top_z(env, target) + HOVER_M])
        state["rot"] = p.jaw_rotation(target, s, np.array([pos[0], pos[1], _grasp_z(env, target)]))
        return p.move(s, state["above"], state["rot"], grip=GRIP_OPEN)

    def descend(P, s):
        pos = env.object_pos(target)
        return P[arm].line(s, [pos[0], pos[1], _grasp_z(env, target)], state["rot"])

    def close(P, s):
        return np.concatenate([P[arm].grip(s, GRIP_CLOSED, 0.5), P[arm].hold(P[arm].grip(s, GRIP_CLOSED, 0.5)[-1], 0.25)])

    def lift(P, s):
        p = P[arm]
        cur, _ = p.kin.grasp_point(p._rad(s[p.sl]))
        return p.line(s, [cur[0], cur[1], CARRY_Z_M], state["rot"])

    def carry(P, s):
        p = P[arm]
        xy = place()
        # Keep the jaw yaw that holds the object; only translate.
        return p.move(s, np.array([xy[0], xy[1], CARRY_Z_M]), state["rot"], min_s=0.8)

    def lower(P, s):
        p = P[arm]
        xy = place()
        return p.line(s, [xy[0], xy[1], release_z], state["rot"])

    def release(P, s):
        return np.concatenate([P[arm].grip(s, GRIP_OPEN, 0.4), P[arm].hold(P[arm].grip(s, GRIP_OPEN, 0.4)[-1], 0.2)])

    def up(P, s):
        p = P[arm]
        cur, _ = p.kin.grasp_point(p._rad(s[p.sl]))
        return p.line(s, [cur[0], cur[1], CARRY_Z_M + 0.03], state["rot"])

    phases = [regrip, lift, carry, lower, release] if held else [above, descend, close, lift, carry, lower, release]
    if retreat:
        phases.append(up)
    return phases


def object_held(env, name: str, start_pos: np.ndarray, lift_m: float = HELD_LIFT_M) -> bool:
    """True if `name` is off the table in the gripper: touching it and at least `lift_m` above `start_pos`
    (where it rested at the episode's start). A pick expert started now begins from the lift (`held`)."""
    return bool(env.gripper_touches(name) and env.object_pos(name)[2] >= float(start_pos[2]) + lift_m)


def _extent_along(env, name: str, direction: np.ndarray) -> float:
    """Half-extent of the object's footprint along a horizontal direction (metres)."""
    from molmoact2.sim.scene import SHAPES

    obj = env.scene.object(name)
    if obj.shape == "cylinder":
        return SHAPES["cylinder"]["radius"]
    R = env.object_xmat(name)
    half = np.asarray(SHAPES[obj.shape]["half_xyz"])
    return float(sum(abs(R[:, i] @ direction) * half[i] for i in range(2)))


def push_phases(env, target: str, direction: np.ndarray, arm: int = 0, distance_m: float = 0.08, stroke_m: float = 0.03) -> list[Phase]:
    state = {}

    def behind(P, s):
        p = P[arm]
        pos = env.object_pos(target)
        back = _extent_along(env, target, direction) + 0.025
        state["start"] = pos - direction * back
        state["start_obj"] = pos.copy()
        z = 0.012  # push low: a tall cylinder pushed at mid-height tips over
        state["rot"] = p.push_rotation(direction, s, np.array([state["start"][0], state["start"][1], z]))
        state["z"] = z
        return p.move(s, [state["start"][0], state["start"][1], z + 0.07], state["rot"], grip=GRIP_TOUCH)

    def down(P, s):
        return P[arm].line(s, [state["start"][0], state["start"][1], state["z"]], state["rot"])

    def sweep(P, s):
        # Closed loop in short strokes: re-centre the pusher on the object each stroke, so an object
        # that slides sideways off the narrow fingertips is caught again.
        pos = env.object_pos(target)
        done_m = float((pos - state["start_obj"]) @ direction)
        if done_m >= distance_m:
            return P[arm].hold(s, 0.1)
        back = _extent_along(env, target, direction) + 0.008  # pusher half-thickness ~ 8 mm
        aim = pos - direction * back + direction * min(stroke_m, distance_m - done_m + 0.01)
        return P[arm].line(s, [aim[0], aim[1], state["z"]], state["rot"], speed=0.1)

    def up(P, s):
        p = P[arm]
        cur, _ = p.kin.grasp_point(p._rad(s[p.sl]))
        return p.line(s, [cur[0], cur[1], cur[2] + 0.06], state["rot"])

    return [behind, down, *([sweep] * 6), up]


def make_expert(env, chunk_size: int = 30) -> ScriptedExpert:
    task, inst = env.task, env.instance
    if inst is None:
        raise RuntimeError("expert(): call env.reset() first")
    if getattr(task, "make_phases", None) is not None:  # bimanual tasks bring their own script
        phases, planners = task.make_phases(env)
        return ScriptedExpert(env, phases, chunk_size, planners)
    if task.name == "touch":
        phases = touch_phases(env, inst.target)
    elif task.name == "pick_place":
        def bin_xy():
            return env.object_pos("bin")[:2]

        phases = pick_phases(env, inst.target, bin_xy, held=object_held(env, inst.target, inst.start_pos))
    elif task.name.startswith("push_"):
        phases = push_phases(env, inst.target, task.direction)
    else:
        raise ValueError(f"no scripted expert for task {task.name!r}")
    return ScriptedExpert(env, phases, chunk_size)
