"""After a grasp that closed on nothing, does the policy open the jaw and try again?

    .venv/bin/python scripts/probe_regrasp.py --checkpoint assets/nano /tmp/other --seeds 40 --first-seed 90000

Runs each checkpoint's pick_place episodes on the same layouts (the eval's render size, safety guard and noise
seed 0) and watches every tick for the state `train data --takeover-missed` hands over at: the jaw shut on nothing
(`takeover.grasp_missed`: gripper at most MISSED_GRIP_UNITS, the named object not touching it). Per checkpoint:
  * episodes with a miss, and the tick of the first;
  * after it, episodes where the jaw opened again (gripper joint above half open): a re-grasp started;
  * ... and where the object was then lifted off the table, and the episode succeeded;
  * success over all layouts.
Why: a pick_place episode has 450 ticks, time for several tries; what a policy does after its first close
misses decides most of its pick_place score. `--trace` in scripts/probe_grasp.py shows one episode chunk by chunk.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from molmoact2.sim.progress import ProgressWatch  # noqa: E402  (numpy only: cheap)


class _MissWatch(ProgressWatch):
    """ProgressWatch (touches, lifts) plus the first tick the jaw is shut on nothing, the first tick after
    it that the gripper joint is above `open_above` again, and the largest lift of the object after that."""

    def __init__(self, env, open_above: float) -> None:
        super().__init__(env)
        self.open_above = open_above
        self.miss_tick: int | None = None
        self.reopen_tick: int | None = None
        self.lift_after_reopen_m = 0.0

    def _begin(self) -> None:
        super()._begin()
        self.miss_tick = self.reopen_tick = None
        self.lift_after_reopen_m = 0.0

    def step(self, *args, **kwargs):
        from molmoact2.training.takeover import grasp_missed

        out = super().step(*args, **kwargs)
        env = self._env
        if self.miss_tick is None:
            if grasp_missed(env):
                self.miss_tick = self.ticks
        elif self.reopen_tick is None:
            if float(env.state()[5]) > self.open_above:
                self.reopen_tick = self.ticks
        else:
            lift = float(env.object_pos(env.instance.target)[2] - self._start_m[2])
            self.lift_after_reopen_m = max(self.lift_after_reopen_m, lift)
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", default=["assets/nano"], help="Nano checkpoint directories")
    p.add_argument("--seeds", type=int, default=40, help="pick_place layouts from --first-seed")
    p.add_argument("--first-seed", type=int, default=90000)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)

    import torch
    from tqdm.auto import tqdm

    from molmoact2.models.nano.policy import NanoPolicy, load_nano
    from molmoact2.runner import guard_for_env, run_episode
    from molmoact2.sim import make_env
    from molmoact2.sim.expert import GRIP_OPEN, HELD_LIFT_M

    torch.set_num_threads(a.threads)
    env = make_env("pick_place", image_size=224, depth=False, segmentation=False)  # the eval's render size
    watch = _MissWatch(env, open_above=GRIP_OPEN / 2)
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    rows: dict[str, list[dict]] = {}
    for ckpt in a.checkpoint:
        base = load_nano(ckpt)
        policy = NanoPolicy(base.model, base.processor, seed=0, checkpoint_dir=ckpt)
        rows[ckpt] = []
        for seed in tqdm(seeds, desc=f"regrasp probe {Path(ckpt).name}", unit="layout", file=sys.stderr):
            summary: dict = {}
            for _ in run_episode(policy, watch, guard_for_env(env, on_limit="clip"), seed=seed, summary=summary,
                                 observe_every_tick=False):
                pass
            rows[ckpt].append({"miss": watch.miss_tick, "reopen": watch.reopen_tick,
                               "relift": watch.lift_after_reopen_m >= HELD_LIFT_M,
                               "success": bool(summary["success"])})
    env.close()

    def count(ckpt, keep) -> str:
        return f"{sum(bool(keep(r)) for r in rows[ckpt])}/{len(rows[ckpt])}"

    def median_miss(ckpt) -> str:
        ticks = [r["miss"] for r in rows[ckpt] if r["miss"] is not None]
        return f"{np.median(ticks):.0f}" if ticks else "–"

    print(f"\npick_place seeds {seeds.start}–{seeds.stop - 1}, noise seed 0; a miss: the jaw shut on nothing\n")
    print("| | " + " | ".join(Path(c).name or c for c in rows) + " |")
    print("|---|" + "---|" * len(rows))
    lines = [
        ("episodes with a miss", lambda c: count(c, lambda r: r["miss"] is not None)),
        ("tick of the first miss, median", median_miss),
        ("... the jaw opened again after it", lambda c: count(c, lambda r: r["reopen"] is not None)),
        ("... then lifted the object", lambda c: count(c, lambda r: r["relift"])),
        ("... and succeeded", lambda c: count(c, lambda r: r["miss"] is not None and r["success"])),
        ("success, all layouts", lambda c: count(c, lambda r: r["success"])),
    ]
    for label, cell in lines:
        print(f"| {label} | " + " | ".join(cell(c) for c in rows) + " |")


if __name__ == "__main__":
    main()
