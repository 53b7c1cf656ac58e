"""Where does a pick-and-place grasp go wrong? The moment the gripper first closes, compared with the expert.

    .venv/bin/python scripts/probe_grasp.py --checkpoint assets/nano --seeds 20      # about 2 min on one thread

For held-out pick_place layouts (seeds from 10000, as `molmoact2 eval nano`; `--first-seed 0`: the layouts the
training data used, a fitting check), the policy and the scripted expert
each run one episode through the safety guard (out-of-limit targets clipped, as in the eval). Every tick the
probe notes the commanded gripper and where the jaw is relative to the named object's centre. At the first tick
the gripper command, having opened, falls below half open again (the expert's close phase) it reports:
  * the jaw's horizontal distance to the object's centre and its height above it (cm);
  * whether the gripper had touched the object yet.
A grasp needs the jaw within about 1.5 cm horizontally and at the object's height when it closes; the expert
rows show what that looks like. Two more rows ask which of two failures it is: the jaw's closest approach to the
object (at grasp height, at any tick before the close: did a moment to close pass by?), and how far the object
had been shoved across the table by the time the gripper closed (did the approach push it out of reach?).

    .venv/bin/python scripts/probe_grasp.py --trace 10001 [--carry-steps 5]

prints one policy episode chunk by chunk instead: the commanded gripper at every third tick, and where the jaw
is after the chunk (does the gripper flip between open and shut from one chunk to the next?).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from molmoact2.sim.progress import ProgressWatch  # noqa: E402  (numpy only: cheap)


class _CloseWatch(ProgressWatch):
    """The progress watcher (touches, every tick) plus the first tick the gripper command falls below
    `closed_below` after having been above it (home is shut, so the jaw opens first) and where the jaw was then;
    until that tick also the jaw's closest approach at grasp height (|height| < GRASP_HEIGHT_CM)."""

    GRASP_HEIGHT_CM = 2.0

    def __init__(self, env, closed_below: float) -> None:
        super().__init__(env)
        self.closed_below, self.at_close, self.opened = closed_below, None, False
        self.closest_cm = float("inf")

    def _begin(self) -> None:
        super()._begin()
        self.at_close, self.opened = None, False
        self.closest_cm = float("inf")

    def step(self, action, **kwargs):
        out = super().step(action, **kwargs)
        grip = float(np.asarray(action)[5])
        self.opened = self.opened or grip >= self.closed_below
        if self.at_close is not None:
            return out
        env = self._env
        target_m = env.object_pos(env.instance.target)
        rel = env.kinematics(0).path_world(env.state()[None, :6])[0] - target_m
        horizontal_cm, height_cm = 100 * float(np.linalg.norm(rel[:2])), 100 * float(rel[2])
        if self.opened and grip < self.closed_below:
            # the start position is ProgressWatch's, taken at the episode's first observation
            self.at_close = {"tick": self.ticks, "horizontal_cm": horizontal_cm, "height_cm": height_cm,
                             "touched_before": self.touched_tick is not None,
                             "closest_before_cm": self.closest_cm,
                             "shoved_cm": 100 * float(np.linalg.norm(target_m[:2] - self._start_m[:2]))}
        elif self.opened and abs(height_cm) < self.GRASP_HEIGHT_CM:
            self.closest_cm = min(self.closest_cm, horizontal_cm)
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano", help="Nano checkpoint directory")
    p.add_argument("--seeds", type=int, default=20,
                   help="pick_place layouts from --first-seed (held-out from 10000; below it the training layouts)")
    p.add_argument("--first-seed", type=int, default=10000)
    p.add_argument("--num-steps", type=int, default=None, help="Euler steps (default: the checkpoint's own)")
    p.add_argument("--carry-steps", type=int, default=0, help="NanoPolicy carry_steps (0 = off)")
    p.add_argument("--trace", type=int, default=None, metavar="SEED", help="print one episode chunk by chunk")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch
    from tqdm.auto import tqdm

    from molmoact2.models.nano.policy import NanoPolicy, load_nano
    from molmoact2.runner import ExpertPolicy, guard_for_env, run_episode
    from molmoact2.sim import make_env
    from molmoact2.sim.expert import GRIP_OPEN

    torch.set_num_threads(a.threads)
    base = load_nano(a.checkpoint)
    env = make_env("pick_place", image_size=224, depth=False, segmentation=False)  # the eval's render size
    watch = _CloseWatch(env, closed_below=GRIP_OPEN / 2)
    policies = {"nano": NanoPolicy(base.model, base.processor, seed=0, num_steps=a.num_steps,
                                   checkpoint_dir=a.checkpoint, carry_steps=a.carry_steps),
                "expert": ExpertPolicy(env)}
    if a.trace is not None:
        _trace(policies["nano"], env, a.trace)
        env.close()
        return
    rows: dict[str, list] = {name: [] for name in policies}
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    for seed in tqdm(seeds, desc="grasp probe", unit="layout", file=sys.stderr):
        for name, policy in policies.items():
            summary: dict = {}
            for _ in run_episode(policy, watch, guard_for_env(env, on_limit="clip"), seed=seed, summary=summary,
                                 observe_every_tick=False):
                pass
            rows[name].append((watch.at_close, watch.touched_tick is not None, bool(summary["success"])))
    env.close()

    def med(vals):
        return f"{np.median(vals):.1f} (IQR {np.percentile(vals, 25):.1f}–{np.percentile(vals, 75):.1f})" if vals else "–"

    split = "held-out" if seeds.start >= 10000 else "TRAINING (seen in training; a fitting check)"
    print(f"\npick_place, {split} seeds {seeds.start}–{seeds.stop - 1}; the gripper 'closes' at the first tick its "
          f"command, having opened, falls below {GRIP_OPEN / 2:.1f} units (half open)\n")
    print("| at the first close | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    closes = {n: [r[0] for r in rs if r[0] is not None] for n, rs in rows.items()}
    lines = [
        ("episodes in which the gripper closed", lambda n: f"{len(closes[n])}/{len(rows[n])}"),
        ("tick of the first close, median", lambda n: med([c["tick"] for c in closes[n]])),
        ("jaw to object centre, horizontal (cm), median",
         lambda n: med([c["horizontal_cm"] for c in closes[n]])),
        ("jaw height above the object centre (cm), median", lambda n: med([c["height_cm"] for c in closes[n]])),
        ("closed within 1.5 cm horizontally and 2 cm in height",
         lambda n: f"{sum(c['horizontal_cm'] < 1.5 and abs(c['height_cm']) < 2 for c in closes[n])}/{len(closes[n])}"),
        ("closest approach before the close, open and at grasp height (cm), median",
         lambda n: med([c["closest_before_cm"] for c in closes[n] if np.isfinite(c["closest_before_cm"])])),
        ("... within 1.5 cm at some tick before the close",
         lambda n: f"{sum(c['closest_before_cm'] < 1.5 for c in closes[n])}/{len(closes[n])}"),
        ("object shoved across the table by the close (cm), median", lambda n: med([c["shoved_cm"] for c in closes[n]])),
        ("... shoved 2 cm or more", lambda n: f"{sum(c['shoved_cm'] >= 2 for c in closes[n])}/{len(closes[n])}"),
        ("had touched the object before closing", lambda n: f"{sum(c['touched_before'] for c in closes[n])}/{len(closes[n])}"),
        ("touched the object at some tick", lambda n: f"{sum(r[1] for r in rows[n])}/{len(rows[n])}"),
        ("success", lambda n: f"{sum(r[2] for r in rows[n])}/{len(rows[n])}"),
    ]
    for label, cell in lines:
        print(f"| {label} | " + " | ".join(cell(n) for n in rows) + " |")


def _trace(policy, env, seed: int) -> None:
    from molmoact2.runner import guard_for_env, run_episode

    print(f"pick_place seed {seed}: one row per chunk\n")
    print("| first tick | gripper command, every 3rd tick | jaw to object, horizontal / height (cm) | touching | carried |")
    print("|---|---|---|---|---|")
    for step in run_episode(policy, env, guard_for_env(env, on_limit="clip"), seed=seed, observe_every_tick=False):
        grip = step.info["executed_actions"][::3, 5]
        jaw = env.kinematics(0).path_world(env.state()[None, :6])[0]
        rel = jaw - env.object_pos(env.instance.target)
        carried = step.info.get("carry", {}).get("steps", "–")
        print(f"| {step.info['episode']['env_step_start']} | {' '.join(f'{g:.0f}' for g in grip)} | "
              f"{100 * np.linalg.norm(rel[:2]):.1f} / {100 * rel[2]:.1f} | "
              f"{'yes' if env.gripper_touches(env.instance.target) else 'no'} | {carried} |")


if __name__ == "__main__":
    main()
