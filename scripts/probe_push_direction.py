"""Which way did a failed push go? Pushed the wrong way, too little, or never touched.

    .venv/bin/python scripts/probe_push_direction.py --checkpoint assets/nano --tasks push_right,push_left
    # 50 held-out layouts per task, about 1 min per task on one thread

A push succeeds when the named object moves 5 cm along the asked direction (`sim/tasks.py` `Push`: right = +y,
left = -y) and stays on the table. `molmoact2 eval nano` says only that a push failed; this probe runs the same
episodes (held-out seeds from 10000, the policy's noise seeded with --noise-seed like the eval's, targets past a
joint limit clipped) and, for each failure, measures where the object ended relative to where it started:
  * never touched: the gripper did not reach the named object;
  * wrong way: moved at least 2 cm AGAINST the asked direction (the words "left" / "right" not followed);
  * too little: touched, but moved less than 5 cm the asked way (and not 2 cm the other).
It prints the counts per task and, per failed layout, the displacement along the asked direction and across it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WRONG_WAY_M = 0.02  # this far against the asked direction is a push the wrong way, not a wobble


def classify(moved_along_m: float, touched: bool, success: bool) -> str:
    """One word for how a push episode ended (see the module docstring)."""
    if success:
        return "success"
    if not touched:
        return "never touched"
    return "wrong way" if moved_along_m <= -WRONG_WAY_M else "too little"


def probe_task(policy, env, first_seed: int, seeds: int, progress: bool = True) -> list[dict]:
    """Run `policy` on `seeds` layouts of `env`'s push task; one row per layout (see the module docstring)."""
    from tqdm.auto import tqdm

    from molmoact2.evaluation import closed_loop

    direction = np.asarray(env.task.direction[:2], dtype=float)  # on the table: +y right, -y left
    rows = []
    for seed in tqdm(range(first_seed, first_seed + seeds), desc=env.task.name, unit="layout", file=sys.stderr,
                     disable=not progress):
        rec = closed_loop.rollout(policy, env, seed, on_limit="clip")
        inst = env.instance
        moved = env.object_pos(inst.target) - inst.start_pos
        along = float(moved[:2] @ direction)
        across = float(abs(moved[:2] @ np.array([direction[1], -direction[0]])))
        rows.append({"seed": seed, "success": bool(rec["success"]), "along_m": along, "across_m": across,
                     "outcome": classify(along, bool(rec["progress"]["touched"]), bool(rec["success"]))})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="assets/nano", help="Nano checkpoint directory")
    ap.add_argument("--tasks", default="push_right,push_left", help="comma-separated push tasks")
    ap.add_argument("--seeds", type=int, default=50, help="held-out layouts per task")
    ap.add_argument("--first-seed", type=int, default=10000, help="first layout seed (held-out: from 10000)")
    ap.add_argument("--noise-seed", type=int, default=0, help="the policy's flow-noise seed (as eval nano's)")
    args = ap.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in ("push_left", "push_right")]
    if bad or not tasks:
        ap.error(f"--tasks: expected push_left and/or push_right, got {args.tasks!r}")
    if args.seeds < 1:
        ap.error(f"--seeds: expected at least 1 layout, got {args.seeds}")

    import torch

    import molmoact2  # noqa: F401  (offline settings, MUJOCO_GL)
    from molmoact2.models.nano.policy import NanoPolicy, load_nano
    from molmoact2.sim import make_env

    torch.set_num_threads(1)
    base = load_nano(args.checkpoint)
    policy = NanoPolicy(base.model, base.processor, seed=args.noise_seed, checkpoint_dir=args.checkpoint)
    for task in tasks:
        env = make_env(task, image_size=224, depth=False, segmentation=False)  # the eval's render size
        try:
            rows = probe_task(policy, env, args.first_seed, args.seeds)
        finally:
            env.close()
        counts = Counter(r["outcome"] for r in rows)
        print(f"{task}: {len(rows)} layouts; " + ", ".join(f"{k} {counts.get(k, 0)}" for k in
                                                          ("success", "wrong way", "too little", "never touched")))
        failed = [r for r in rows if not r["success"]]
        if failed:
            print("  failures (seed: cm along the asked direction / across it, outcome):")
            print("  " + "; ".join(f"{r['seed']}: {100 * r['along_m']:+.1f} / {100 * r['across_m']:.1f} "
                                   f"{r['outcome']}" for r in failed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
