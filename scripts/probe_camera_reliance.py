"""Which camera does Nano act from? The closed loop with one camera's picture replaced.

    .venv/bin/python scripts/probe_camera_reliance.py --checkpoint assets/nano --seeds 20     # ~5 min per mode

Every held-out layout (seeds from 10000, as `molmoact2 eval nano`) runs once per mode, the policy's noise seed 0
each time, the safety guard clipping as in the eval. The modes change only what the policy is shown; the world, the
state and the safety guard are untouched:

  * `none`: both cameras as rendered (the ordinary closed loop);
  * `wrist_grey` / `front_grey`: that camera's picture mid-grey (128) at every query: nothing to read;
  * `wrist_frozen` / `front_frozen`: that camera's first picture of the episode at every query: a scene that
    looks right but never shows the arm move.

Per task and mode it prints success, the named object touched / lifted 2 cm, and the jaw's closest approach to the
named object's centre over the episode (3-D, cm, median): a camera the policy ignores changes none of them when it
is grey, and one it steers by sends the jaw elsewhere. `--modes` splits the work across processes (one thread each).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from molmoact2.sim.progress import ProgressWatch  # noqa: E402  (numpy only: cheap)
from molmoact2.training.nano_examples import GREY_UINT8  # noqa: E402  (the grey training blanks with)

MODES = ("none", "wrist_grey", "wrist_frozen", "front_grey", "front_frozen")


class CameraSwap:
    """The env with one camera's picture replaced in every observation it returns (reset, step, observe)."""

    def __init__(self, env: Any, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        self._env, self.mode = env, mode
        self._first: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def _swap(self, obs: Any) -> Any:
        if obs is None or self.mode == "none":
            return obs
        camera, how = self.mode.split("_")
        if camera not in obs.cameras:
            raise ValueError(f"mode {self.mode}: the env has no {camera!r} camera (has {list(obs.cameras)})")
        frame = obs.cameras[camera]
        if how == "grey":
            rgb = np.full_like(frame.rgb, GREY_UINT8)
        else:
            if self._first is None:  # the episode's first picture, kept until the next reset
                self._first = frame.rgb.copy()
            rgb = self._first
        return dataclasses.replace(obs, cameras={**obs.cameras, camera: dataclasses.replace(frame, rgb=rgb)})

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        self._first = None
        obs, info = self._env.reset(*args, **kwargs)
        return self._swap(obs), info

    def observe(self) -> Any:
        return self._swap(self._env.observe())

    def step(self, *args: Any, **kwargs: Any) -> Any:
        obs, *rest = self._env.step(*args, **kwargs)
        return (self._swap(obs), *rest)


class _NearWatch(ProgressWatch):
    """The progress watcher plus the jaw's closest 3-D approach to the named object's centre."""

    def _begin(self) -> None:
        super()._begin()
        self.closest_cm = float("inf")

    def step(self, *args: Any, **kwargs: Any) -> Any:
        out = super().step(*args, **kwargs)
        env = self._env
        jaw_m = env.kinematics(0).path_world(env.state()[None, :6])[0]
        self.closest_cm = min(self.closest_cm, 100 * float(np.linalg.norm(jaw_m - env.object_pos(env.instance.target))))
        return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="assets/nano", help="Nano checkpoint directory")
    p.add_argument("--seeds", type=int, default=20, help="layouts per task, from --first-seed")
    p.add_argument("--first-seed", type=int, default=10000)
    p.add_argument("--tasks", default="touch,pick_place", help="single-arm tasks with a named object, comma-separated")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    a = p.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        p.error(f"--modes: expected some of {', '.join(MODES)}, got {a.modes!r}")
    if a.seeds < 1:
        p.error(f"--seeds: expected >= 1, got {a.seeds}")

    import torch
    from tqdm.auto import tqdm

    from molmoact2.models.nano.policy import NanoPolicy, load_nano
    from molmoact2.runner import guard_for_env, run_episode
    from molmoact2.sim import make_env

    torch.set_num_threads(a.threads)
    base = load_nano(a.checkpoint)
    rows: list[dict[str, Any]] = []
    for task in [t for t in a.tasks.split(",") if t]:
        env = make_env(task, image_size=224, depth=False, segmentation=False)  # the eval's render size
        for mode in modes:
            watch = _NearWatch(CameraSwap(env, mode))
            policy = NanoPolicy(base.model, base.processor, seed=0, checkpoint_dir=a.checkpoint)
            episodes = []
            for seed in tqdm(range(a.first_seed, a.first_seed + a.seeds), desc=f"{task} {mode}", unit="layout",
                             file=sys.stderr):
                summary: dict = {}
                for _ in run_episode(policy, watch, guard_for_env(env, on_limit="clip"), seed=seed, summary=summary,
                                     observe_every_tick=False):
                    pass
                episodes.append({"success": bool(summary["success"]), "touched": watch.touched_tick is not None,
                                 "lifted": watch.lifted_tick is not None, "closest_cm": watch.closest_cm})
            rows.append({"task": task, "mode": mode, "episodes": len(episodes),
                         **{k: sum(e[k] for e in episodes) for k in ("success", "touched", "lifted")},
                         "closest_cm_median": float(np.median([e["closest_cm"] for e in episodes]))})
        env.close()

    print(f"\n{a.checkpoint}, held-out seeds {a.first_seed}–{a.first_seed + a.seeds - 1}, policy noise seed 0\n")
    print("| task | shown | success | touched | lifted ≥ 2 cm | jaw's closest approach, median (cm) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        n = r["episodes"]
        print(f"| {r['task']} | {r['mode']} | {r['success']}/{n} | {r['touched']}/{n} | {r['lifted']}/{n} | "
              f"{r['closest_cm_median']:.1f} |")
    if a.out:
        Path(a.out).write_text(json.dumps({"checkpoint": a.checkpoint, "first_seed": a.first_seed,
                                           "seeds": a.seeds, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
