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
`--plans K` also asks why it lets go: at every query where the named object is held (`sim.expert.object_held`,
2 cm up), K extra plans are drawn with the probe's own noise (the episode runs on the policy's own plan, so it is
the eval's episode) from the real observation and from the same one with the gripper joint's state set to 0 (the
jaw closed on nothing, as after a missed grasp), and each plan's first tick that opens the jaw is recorded. The
expert never opens a held object farther than 10 cm from the bin's centre, so every such opening is learned
elsewhere.
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
OPEN_UNITS = 30.0    # a planned gripper target above this opens the jaw (open 55; a held object stops it at ~15-20)
FAR_M = 0.10         # "far from the bin": the object's centre this far from the bin's centre (inner half-side 5 cm)
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


def first_open(actions: np.ndarray) -> int:
    """The first tick of a plan [T, D] (robot units, gripper last) whose gripper target opens the jaw; -1 if none."""
    ticks = np.flatnonzero(np.asarray(actions)[:, -1] > OPEN_UNITS)
    return int(ticks[0]) if len(ticks) else -1


class PlanProbe:
    """A NanoPolicy as the episode loop sees it, plus K extra plans at every query where the named object is held
    (module docstring). `rows` holds one dict per such query; `layout` is set by `probe` before each episode."""

    def __init__(self, policy, env, k: int, seed: int = 1234) -> None:
        self._policy, self._env, self.k, self.seed = policy, env, k, seed
        self.rows: list[dict] = []
        self.layout = -1

    def __getattr__(self, name):
        return getattr(self._policy, name)

    def reset(self) -> None:
        self._policy.reset()

    def predict(self, obs):
        from molmoact2.sim.expert import object_held

        env = self._env
        if object_held(env, env.instance.target, env.instance.start_pos, LIFT_M):
            local = env.in_bin_frame(env.object_pos(env.instance.target))
            state = np.asarray(obs.state, dtype=np.float32)
            row = {"seed": self.layout, "tick": int(env.steps), "grip_state": round(float(state[-1]), 2),
                   "bin_cm": round(100 * float(np.hypot(local[0], local[1])), 1)}
            for name, grip in (("real", None), ("closed_on_nothing", 0.0)):
                row[name] = self.draw(obs, state if grip is None else np.concatenate([state[:-1], [grip]]))
            self.rows.append(row)
        return self._policy.predict(obs)

    def draw(self, obs, state: np.ndarray) -> list[int]:
        """first_open of K plans from `obs` with `state`, each time from the same noise (the variants compare)."""
        import torch

        from molmoact2.models.hf import order_cameras

        p = self._policy
        order, _ = order_cameras(obs, p.meta.get("camera_keys"), p.norm_tag)
        generator = torch.Generator().manual_seed(self.seed)
        ticks = []
        for _ in range(self.k):
            out = p.model.predict_action(
                processor=p.processor, images=[obs.cameras[c].rgb for c in order], task=obs.instruction,
                state=state, norm_tag=p.norm_tag, inference_action_mode="continuous", enable_depth_reasoning=False,
                num_steps=p.num_steps, generator=generator, normalize_language=True, enable_cuda_graph=False,
                return_dict=True)
            ticks.append(first_open(out["actions"][0].numpy()))
        return ticks


def open_rates(rows: list[dict], key: str, far_m: float = FAR_M) -> dict:
    """Over the queries with the object held farther than `far_m` from the bin's centre: how many, and the share
    of `key`'s plans that open the jaw within the chunk and within its first 5 ticks."""
    far = [r[key] for r in rows if r["bin_cm"] > 100 * far_m]
    ticks = np.array(far, dtype=int).reshape(-1)
    if not len(ticks):
        return {"queries": 0, "open": None, "open_5": None}
    return {"queries": len(far), "open": round(float(np.mean(ticks >= 0)), 3),
            "open_5": round(float(np.mean((ticks >= 0) & (ticks < 5))), 3)}


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
        if isinstance(policy, PlanProbe):
            policy.layout = seed
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
    ap.add_argument("--plans", type=int, default=0, metavar="K",
                    help="at each query with the object held, draw K extra plans and record where they open the "
                         "jaw (0 = off; about 0.1 s per plan)")
    ap.add_argument("--out", help="write the rows as JSON here")
    a = ap.parse_args(argv)
    if a.seeds < 1:
        ap.error(f"--seeds: expected at least 1 layout, got {a.seeds}")
    if a.plans < 0:
        ap.error(f"--plans: expected a number of plans >= 0 (0 = off), got {a.plans}")

    import torch

    torch.set_num_threads(1)
    from molmoact2.models.nano.policy import NanoPolicy, load_nano
    from molmoact2.sim import make_env

    base = load_nano(a.checkpoint)
    policy = NanoPolicy(base.model, base.processor, seed=a.noise_seed, checkpoint_dir=a.checkpoint,
                        n_action_steps=a.n_action_steps)
    env = CarryWatch(make_env("pick_place", image_size=224, depth=False, segmentation=False))
    planner = PlanProbe(policy, env, a.plans) if a.plans else None
    try:
        rows = probe(planner or policy, env, a.first_seed, a.seeds)
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
    record = {"checkpoint": a.checkpoint, "first_seed": a.first_seed, "seeds": a.seeds, "noise_seed": a.noise_seed,
              "n_action_steps": policy.n_action_steps, "rows": rows}
    if planner is not None:
        record |= {"plans_per_query": a.plans, "plans": planner.rows,
                   "open_rates_far": {k: open_rates(planner.rows, k) for k in ("real", "closed_on_nothing")}}
        print(f"\nPlans with the object held farther than {100 * FAR_M:.0f} cm from the bin's centre ({a.plans} per "
              f"query; the expert opens in none):")
        print("| gripper state | queries | plans opening the jaw in the chunk | ... in its first 5 ticks |")
        print("|---|---|---|---|")
        for key, label in (("real", "as observed"), ("closed_on_nothing", "set to 0 (closed on nothing)")):
            r = record["open_rates_far"][key]
            print(f"| {label} | {r['queries']} | {r['open']} | {r['open_5']} |")
    if a.out:
        Path(a.out).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
