"""Where does a lifted pick_place object go? Released over the bin, carried past it, never brought near, or slipped.

    .venv/bin/python scripts/probe_carry.py --checkpoint assets/nano --first-seed 50000 --seeds 50 --noise-seed 0
    # the eval's pick_place episodes (one thread, 1-2 s per layout); rows for the ones that lifted

`eval report` says how far each pick_place got (touched, lifted >= 2 cm, in the bin); this asks what happens
between "lifted" and "in the bin". It re-runs the eval's episodes (the policy's noise seeded with --noise-seed like
`eval nano`'s, targets past a joint limit clipped) and watches every tick: the gripper command the arm was sent,
the named object's height above its start, and where it is over the table relative to the bin's inner square.
Each episode that lifted the object at least 2 cm ends in one of:
  * success: the object rests in the bin and the gripper lets go;
  * slipped: the object fell while the gripper was still commanded shut (< 10 units: a grip that did not hold);
  * opened over the bin: released above the bin's inner square, yet not a success (bounced out, or still touched);
  * opened past the bin: released outside it after being carried over it (it went there, and let go too late);
  * opened short of the bin: released without ever being over it;
  * held at the time limit: still lifted when the episode ended.
Closed-loop runs are reproducible on one machine; another CPU's float rounding makes some episodes diverge, so a
record from another day may list other layouts as lifted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LIFT_M = 0.02        # sim.progress.LIFT_M: lifted means this far above its start
SHUT_UNITS = 10.0    # a gripper command below this is "shut" (GRIP_CLOSED 0, GRIP_TOUCH 8; open is 55)
OUTCOMES = ("success", "slipped", "opened over the bin", "opened past the bin", "opened short of the bin",
            "held at the time limit")


class CarryWatch:
    """The env as the episode loop sees it, plus one row per tick: (gripper command, height above start in m,
    over the bin's inner square, xy distance to the bin's centre in m)."""

    def __init__(self, env) -> None:
        self._env, self.rows = env, []
        self._start_z = 0.0

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, *args, **kwargs):
        out = self._env.reset(*args, **kwargs)
        self.rows = []
        self._start_z = float(self._env.object_pos(self._env.instance.target)[2])
        return out

    def step(self, action, *args, **kwargs):
        out = self._env.step(action, *args, **kwargs)
        env = self._env
        pos = env.object_pos(env.instance.target)
        local = env.in_bin_frame(pos)  # "over" the bin at any height: object_in_bin's frame, no height test
        inner = env.scene_config.bin_inner_half_m
        self.rows.append((float(np.asarray(action).reshape(-1)[-1]), float(pos[2]) - self._start_z,
                          bool(abs(local[0]) < inner and abs(local[1]) < inner), float(np.hypot(local[0], local[1]))))
        return out


def classify(rows: list[tuple], success: bool) -> dict | None:
    """One episode's outcome (module docstring) from its per-tick rows; None if it never lifted the object."""
    grip = np.array([r[0] for r in rows])
    height = np.array([r[1] for r in rows])
    over = np.array([r[2] for r in rows])
    dist = np.array([r[3] for r in rows])
    lifted = np.flatnonzero(height >= LIFT_M)
    if not len(lifted):
        return None
    last = int(lifted[-1])
    window = grip[max(0, last - 5):last + 2]  # the commands around the moment it came down
    row = {"lift_tick": int(lifted[0]), "lifted_ticks": int(len(lifted)),
           "max_height_cm": round(100 * float(height.max()), 1),
           "closest_to_bin_cm": round(100 * float(dist[lifted].min()), 1),
           "released_at_bin_cm": round(100 * float(dist[last]), 1),
           "grip_at_release": round(float(window.max()), 1), "was_over_bin": bool(over[lifted].any())}
    if success:
        outcome = "success"
    elif last == len(rows) - 1:
        outcome = "held at the time limit"
    elif window.max() < SHUT_UNITS:
        outcome = "slipped"
    elif over[last]:
        outcome = "opened over the bin"
    else:
        outcome = "opened past the bin" if row["was_over_bin"] else "opened short of the bin"
    return row | {"outcome": outcome}


def probe(policy, env: CarryWatch, first_seed: int, seeds: int, progress: bool = True) -> list[dict]:
    """Run `policy` on `seeds` pick_place layouts of `env` (a CarryWatch); one row per layout that lifted."""
    from tqdm.auto import tqdm

    from molmoact2.evaluation import closed_loop

    rows = []
    for seed in tqdm(range(first_seed, first_seed + seeds), desc="pick_place", unit="layout", file=sys.stderr,
                     disable=not progress):
        rec = closed_loop.rollout(policy, env, seed, on_limit="clip")
        found = classify(env.rows, bool(rec["success"]))
        if found is not None:
            rows.append({"seed": seed} | found)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="assets/nano")
    ap.add_argument("--first-seed", type=int, default=10000, help="first layout (eval nano's --first-seed)")
    ap.add_argument("--seeds", type=int, default=50, help="pick_place layouts")
    ap.add_argument("--noise-seed", type=int, default=0, help="the policy's noise seed (eval nano's --noise-seed)")
    ap.add_argument("--n-action-steps", type=int, default=None,
                    help="actions executed per policy query (default: the checkpoint's, as eval nano)")
    ap.add_argument("--out", help="write the rows as JSON here")
    a = ap.parse_args(argv)
    if a.seeds < 1:
        ap.error(f"--seeds: expected at least 1 layout, got {a.seeds}")

    import torch

    torch.set_num_threads(1)
    from molmoact2.models.nano.policy import NanoPolicy, load_nano
    from molmoact2.sim import make_env

    base = load_nano(a.checkpoint)
    policy = NanoPolicy(base.model, base.processor, seed=a.noise_seed, checkpoint_dir=a.checkpoint,
                        n_action_steps=a.n_action_steps)
    env = CarryWatch(make_env("pick_place", image_size=224, depth=False, segmentation=False))
    try:
        rows = probe(policy, env, a.first_seed, a.seeds)
    finally:
        env.close()
    counts = Counter(r["outcome"] for r in rows)
    per_query = a.n_action_steps or "the checkpoint's default"
    print(f"{a.checkpoint}, pick_place seeds {a.first_seed}-{a.first_seed + a.seeds - 1}, noise seed {a.noise_seed}, "
          f"actions per query: {per_query}; lifted >= 2 cm in {len(rows)} of {a.seeds}")
    print("| outcome | layouts |\n|---|---|")
    for name in OUTCOMES:
        print(f"| {name} | {counts.get(name, 0)} |")
    print("\n| seed | outcome | lifted ticks | closest to the bin's centre (cm) | released at (cm) | gripper command then |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['outcome']} | {r['lifted_ticks']} | {r['closest_to_bin_cm']} | "
              f"{r['released_at_bin_cm']} | {r['grip_at_release']} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"checkpoint": a.checkpoint, "first_seed": a.first_seed, "seeds": a.seeds,
                                           "noise_seed": a.noise_seed, "n_action_steps": policy.n_action_steps,
                                           "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
