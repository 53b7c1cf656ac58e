"""Expert takeover: a policy drives first, then a fresh scripted expert finishes from where it left the arm.

    cfg = TakeoverConfig(policy="nano", min_chunks=1, max_chunks=6)
    roll_in = PolicyRollIn(cfg)
    info = roll_in(env, seed=3, target=None)   # {"policy_chunks": 4, "policy_ticks": 60, "ended": None, ...}
    TakeoverConfig(policy="nano", min_chunks=2, max_chunks=10, near_m=0.04)  # hand over near the object instead
    TakeoverConfig(policy="nano", min_chunks=1, max_chunks=10, missed=True)  # only after a grasp that missed
    # the env is now where the policy left it: record the expert from here (nano_data.record_episode)

Why: expert demos only visit the expert's own states. A policy's small errors take it elsewhere (the README's
"better imitation is not better control": open-loop error fell by a third, closed-loop success did not move),
and in most demo frames the arm's pose already says which object the instruction names. After a roll-in the
arm may be heading for the wrong object while the expert's actions go to the named one: only the words can
explain that label. This is DAgger's data in its plainest form (one takeover per episode, as in HG-DAgger):
the roll-in frames themselves are NOT recorded (nobody labelled them), the expert's part is.

The number of policy chunks before the takeover is drawn per layout from a seed-fixed generator, so a cache
is reproducible; the policy's own noise is seeded too (`seed`), and it runs through the same safety guard
as `eval nano` (out-of-limit targets clipped).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np


def parse_range(text: str, flag: str, what: str) -> tuple[int, int]:
    """'1-6' -> (1, 6); '3' -> (3, 3); else an error naming the flag and what it counts."""
    lo, _, hi = text.partition("-")
    try:
        return int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"{flag}: expected N or MIN-MAX ({what}), got {text!r}") from None


@dataclass(frozen=True)
class TakeoverConfig:
    policy: str  # a `load_policy` spec: 'nano', 'nano:DIR' (any Nano checkpoint directory)
    min_chunks: int = 1  # policy chunks before the expert takes over, drawn uniformly in [min, max] per layout
    max_chunks: int = 6
    depth_reasoning: bool = False  # the policy's Think mode
    seed: int = 0  # the policy's flow-matching noise
    # > 0: hand over at the first chunk boundary (from min_chunks on) where the jaw is within this distance of
    # the named object's centre, else after max_chunks. Why: with a drawn chunk count most hand-overs happen far
    # from the object, but the policy's remaining error is the last few centimetres of the reach (2-2.5 cm at
    # the close after five rounds); this puts the expert's corrections where that error is. In 3-D, not over
    # the table: the policy is above the object (2.8 cm across, median) after two chunks, long before it
    # descends and closes (tick ~90), so a horizontal test hands over as early as a drawn count.
    near_m: float = 0.0
    # > 0: hand over at the first chunk boundary (from min_chunks on) where the policy holds the named object
    # at least this far above where it rested (touching the jaw, `sim.expert.object_held`), else after
    # max_chunks. Why: the shipped Nano lets go of most objects it lifts half a second later, far short of the
    # bin (scripts/probe_carry.py); hand-overs with the object in the jaw make the expert's carry and release
    # (it starts from the lift, not the approach) the demos from there. Chunks of 30 ticks are coarse for a
    # half-second lift: pair it with a short `n_action_steps` (--takeover-chunk-ticks).
    lifted_m: float = 0.0
    # True: hand over at the first chunk boundary (from min_chunks on) where the jaw has closed on nothing (the
    # gripper at most MISSED_GRIP_UNITS, the named object not touching it); a roll-in that never misses is not
    # handed over (ended "no_miss"), so held-object states never get a restart. Why: the shipped Nano's first
    # close misses in nearly every pick_place layout; it lifts the empty jaw, re-opens and tries again, and
    # misses again (scripts/probe_regrasp.py). Its demos never show the states after a miss; the expert made
    # there re-opens and grasps precisely from them: a re-grasp demo. The DAgger rounds before 2026-12-06
    # restarted from held objects too, and taught letting go mid-carry.
    missed: bool = False
    threads: int = 1  # torch threads for the policy: data builds are usually run several at once
    # Ticks the policy executes per chunk (None: its own norm stats' n_action_steps). Why settable: a chunk is
    # the unit of the hand-over, and the shipped Nano's went from 15 to 30 ticks on 2026-12-05; the DAgger rounds
    # 1-5 drove 15.
    n_action_steps: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_chunks <= self.max_chunks:
            raise ValueError(f"takeover chunks: expected 1 <= min <= max, got {self.min_chunks}-{self.max_chunks}")
        if self.n_action_steps is not None and not 1 <= self.n_action_steps <= 30:
            raise ValueError(f"takeover chunk ticks: expected 1..30 (the action horizon), got {self.n_action_steps}")
        if not 0.0 <= self.near_m < 1.0:
            raise ValueError(f"takeover near: expected a distance in metres in [0, 1), got {self.near_m}")
        if not 0.0 <= self.lifted_m < 0.5:
            raise ValueError(f"takeover lifted: expected a height in metres in [0, 0.5), got {self.lifted_m}")
        if sum((self.near_m > 0, self.lifted_m > 0, self.missed)) > 1:
            raise ValueError("takeover: hand over near the object (near_m), with it lifted (lifted_m) or after a "
                             "missed grasp (missed): one of them, not several")

    @staticmethod
    def parse_chunks(text: str) -> tuple[int, int]:
        return parse_range(text, "--takeover-chunks", "policy chunks before the expert takes over")

    def chunks_for(self, seed: int) -> int:
        return int(np.random.default_rng([int(seed), 19]).integers(self.min_chunks, self.max_chunks + 1))


class PolicyRollIn:
    """Callable `(env, seed, target) -> info`: reset the env (aimed at `target` if given) and let the policy
    drive `cfg.chunks_for(seed)` chunks. `info["ended"]` is None when the expert can take over, else why the
    episode ended early (`success`: the policy solved it alone; `time_limit`, `refused`, ...).
    `counts` tallies those endings over all calls."""

    def __init__(self, cfg: TakeoverConfig) -> None:
        import torch

        from molmoact2.models.registry import load_policy

        torch.set_num_threads(cfg.threads)
        self.cfg = cfg
        self.policy = load_policy(cfg.policy, depth_reasoning=cfg.depth_reasoning, seed=cfg.seed,
                                  n_action_steps=cfg.n_action_steps)
        self.counts: Counter[str] = Counter()
        self.last: dict[str, Any] = {}

    def __call__(self, env: Any, seed: int, target: str | None = None) -> dict[str, Any]:
        from molmoact2.runner import guard_for_env, run_episode

        from molmoact2.sim.expert import object_held

        near, lifted, missed = self.cfg.near_m > 0, self.cfg.lifted_m > 0, self.cfg.missed
        want = self.cfg.max_chunks if near or lifted or missed else self.cfg.chunks_for(seed)
        if target is not None:
            env.reset(seed, options={"target": target})
            self.policy.reset()
        chunks, ended, did_miss = 0, None, False
        steps = run_episode(self.policy, env, guard_for_env(env, on_limit="clip"), seed=seed,
                            reset=target is None, observe_every_tick=False)
        for step in steps:
            chunks += 1
            ended = step.info["episode"]["stopped_by"]
            if ended is not None or chunks >= want:
                break
            if near and chunks >= self.cfg.min_chunks and jaw_to_target_m(env) <= self.cfg.near_m:
                break
            if lifted and chunks >= self.cfg.min_chunks and object_held(env, env.instance.target,
                                                                        env.instance.start_pos, self.cfg.lifted_m):
                break
            if missed and chunks >= self.cfg.min_chunks and grasp_missed(env):
                did_miss = True
                break
        steps.close()
        if missed and ended is None and not did_miss:
            ended = "no_miss"  # held it, or never closed: not a re-grasp state, so no demo from here
        self.counts[ended or "taken_over"] += 1
        nearest = nearest_object(env)
        self.last = {"policy": self.cfg.policy, "policy_chunks": chunks, "policy_ticks": int(env.steps),
                     "ended": ended, "jaw_to_target_m": round(jaw_to_target_m(env), 4),
                     "nearest_object": nearest, "near_target": nearest == getattr(env.instance, "target", None),
                     "held": object_held(env, env.instance.target, env.instance.start_pos)}
        return self.last


class WrongWayRollIn:
    """Callable `(env, seed, target) -> info` like PolicyRollIn, for direction pairs: the scripted expert of the
    OPPOSITE word (`other`, e.g. the push_left world when `env` is push_right) starts the episode for a
    seed-fixed number of ticks in [min_ticks, max_ticks], every action executed in both worlds, so `env` is
    left with the arm heading the wrong way and the word alone says to turn back.

    Why: the direction probe (`eval words --directions`) found every Nano follows the word at the first frame
    and hardly at all once the arm has moved; closed-loop wrong-way pushes are decided in the first chunks and
    then followed. Demos that start from the wrong-way pose are the frames where the words, not the arm's pose,
    must decide. Keep the roll-in short (tens of ticks at most): a long one leaves the arm at the object's far
    side or the object already pushed, and the expert's move back can sweep it the wrong way; failed
    recoveries are dropped like any failed demo, and `train data` reports how many."""

    def __init__(self, other: Any, min_ticks: int, max_ticks: int) -> None:
        if not 1 <= min_ticks <= max_ticks:
            raise ValueError(f"wrong-way ticks: expected 1 <= min <= max, got {min_ticks}-{max_ticks}")
        self.other, self.min_ticks, self.max_ticks = other, min_ticks, max_ticks
        self.counts: Counter[str] = Counter()
        self.last: dict[str, Any] = {}

    def ticks_for(self, seed: int, task: str) -> int:
        # Per seed and word: the two demos of a pair start at different points of the wrong plan.
        salt = sum(task.encode())
        return int(np.random.default_rng([int(seed), 23, salt]).integers(self.min_ticks, self.max_ticks + 1))

    def __call__(self, env: Any, seed: int, target: str | None = None) -> dict[str, Any]:
        if target is not None:
            env.reset(seed, options={"target": target})
        else:
            env.reset(seed)
        name = env.instance.target
        self.other.reset(seed, options={"target": name})
        if layout_signature(env) != layout_signature(self.other):
            raise RuntimeError(f"wrong-way roll-in: seed {seed} has different layouts for {env.task.name} and "
                               f"{self.other.task.name} (use it with direction pairs only)")
        want = self.ticks_for(seed, env.task.name)
        expert, done = self.other.expert(), 0
        while done < want:
            for action in expert.act(None)[: want - done]:
                env.step(action, observe=False)
                self.other.step(action, observe=False)
                done += 1
        if not np.array_equal(env.state(), self.other.state()):
            raise RuntimeError(f"wrong-way roll-in: seed {seed}: the two worlds diverged (same actions, "
                               "different arm states)")
        self.counts["taken_over"] += 1
        nearest = nearest_object(env)
        self.last = {"policy": f"expert:{self.other.task.name}", "policy_chunks": 0, "policy_ticks": int(env.steps),
                     "ended": None, "jaw_to_target_m": round(jaw_to_target_m(env), 4), "nearest_object": nearest,
                     "near_target": nearest == name}
        return self.last


# The gripper joint in robot units: 0 closed, 25 at home, 55 open; a jaw closed on an object (26 mm across or more
# where it grips) stops well above this (tests/test_nano_training.py checks an expert's grasp stays above 10).
MISSED_GRIP_UNITS = 5.0


def grasp_missed(env: Any) -> bool:
    """The jaw is closed on nothing: the gripper nearly shut and the named object not touching it."""
    gripper_units = float(env.state()[5])
    return gripper_units <= MISSED_GRIP_UNITS and not env.gripper_touches(env.instance.target)


def layout_signature(env: Any) -> list[tuple[str, tuple[float, ...]]]:
    """The current layout's objects and positions (m, to 0.1 mm): two worlds with equal signatures look the same."""
    return [(o.name, tuple(np.round(np.asarray(o.pos, float), 4))) for o in env.scene.objects]


def _jaw_world(env: Any) -> np.ndarray:
    return env.kinematics(0).path_world(env.state()[None, :6])[0]


def jaw_to_target_m(env: Any) -> float:
    """Distance from the jaw to the named object's centre now, in 3-D (how far the reach still has to go)."""
    target = env.object_pos(env.instance.target)
    return float(np.linalg.norm(_jaw_world(env) - np.asarray(target)[:3]))


def nearest_object(env: Any) -> str:
    """The scene object whose centre is nearest the jaw now: where the policy had taken the arm."""
    jaw = _jaw_world(env)
    return min(env.scene.objects, key=lambda o: float(np.linalg.norm(env.object_pos(o.name) - jaw))).name
