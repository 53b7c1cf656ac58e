"""Do the object's words steer the actions? Same scene, same state, same noise; only the name changes.

    rows = probe(lambda env: nano_policy, tasks=("touch", "pick_place"), seeds_per_task=20)
    summary = summarize(rows)

`eval nano --swap-targets` answers "where did the whole episode end up?"; this answers the question one
level down, per policy query, so a failure can be placed in the model:

* **words → actions**: two simulators are reset to the same layout, one naming the seed's own target, one
  naming another candidate (`SimEnv.reset(seed, options={"target": ...})`), and driven with the same
  actions, so their pictures and states stay identical. At each probe point the policy plans a chunk for
  each instruction with the same noise draw. `toward_named_m` = how much closer each instruction's planned
  jaw endpoint is to the object it names than the other instruction's endpoint is (averaged over both
  objects; clearly positive for a policy that follows the words — the scripted expert's one-chunk plans
  score about half the objects' distance apart — and about 0 for one that ignores them). `toward_noise_m` is the same number between two noise draws under ONE instruction: the spread
  a words effect must beat. `change_name_m` vs `change_noise_m` says whether the words change the plan at
  all (they can change it without steering it).
* **words → location**: the policy is asked "Point to the X" for both names (if it can answer
  questions); the object whose mask is nearest to the point is its choice. Chance = 1 / visible objects.
  This is the language model's grounding, before any action is involved.

Probe points: the first frame, and after `advance_chunks` chunks of the policy's own-instruction plan
(executed in both simulators through the safety guard, clipped at the joint limits like `eval nano`).
The scripted expert (`"expert"`) is the positive control: it reads the target from the simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

PROBE_TASKS = ("touch", "pick_place")  # tasks whose layouts name one object among several


def _endpoint(env: Any, step: Any) -> np.ndarray:
    world, _ = env.planned_path(np.asarray(step.actions))
    return world[len(step.actions) - 1]  # arm 0's jaw at the chunk's last action


def _plan(policy: Any, obs: Any, noise_seed: int | None) -> Any:
    if noise_seed is not None and hasattr(policy, "seed"):
        policy.seed = noise_seed  # NanoPolicy: reset() restarts its generator from .seed
    policy.reset()
    return policy.predict(obs)


def nearest_object(point_px: np.ndarray | None, segmentation: np.ndarray,
                   objects: Sequence[Any]) -> tuple[str | None, int]:
    """(name of the object whose visible pixels are nearest to point_px [x, y] (None without a point),
    how many of `objects` are visible)."""
    best, best_d, visible = None, np.inf, 0
    for obj in objects:
        rows, cols = np.nonzero(segmentation == obj.label)
        if rows.size == 0:
            continue
        visible += 1
        if point_px is None:
            continue
        d = float(np.min((cols + 0.5 - point_px[0]) ** 2 + (rows + 0.5 - point_px[1]) ** 2))
        if d < best_d:
            best, best_d = obj.name, d
    return best, visible


def _point_choice(policy: Any, env: Any, obs: Any, name: str) -> dict[str, Any]:
    from molmoact2 import spatial

    main = next(iter(obs.cameras))
    frame = obs.cameras[main]
    step = policy.ask([frame.rgb], spatial.point_prompt(f"the {name}"))
    pts = (step.points_px or {}).get("image_1")
    # No point (e.g. "There are none.") is a wrong choice; chance counts the objects in view either way.
    choice, visible = nearest_object(np.asarray(pts[0], float) if pts is not None and len(pts) else None,
                                     frame.segmentation, env.scene.objects)
    return {"answer": step.answer_text, "choice": choice, "visible_objects": visible}


def probe_layout(make_policy: Callable[[Any], Any], task: str, seed: int, *, advance_chunks: int = 2,
                 noise_seeds: tuple[int, int] = (0, 1), image_size: int = 224, ask: bool = True) -> list[dict[str, Any]]:
    """Probe rows for one layout (empty if it has a single candidate object)."""
    from molmoact2.evaluation.closed_loop import other_target
    from molmoact2.runner import guard_for_env
    from molmoact2.sim import make_env

    envs = [make_env(task, image_size=image_size, depth=False, segmentation=True) for _ in range(2)]
    try:
        other = other_target(envs[0], seed)
        if other is None:
            return []
        obs = [envs[0].reset(seed)[0], envs[1].reset(seed, options={"target": other})[0]]
        own = envs[0].instance.target
        names = (own, other)
        policies = [make_policy(envs[0]), make_policy(envs[1])]
        shared = policies[0] is policies[1]
        guard = guard_for_env(envs[0], on_limit="clip")
        rows: list[dict[str, Any]] = []
        for point in range(2):
            # the second point: both worlds advanced with the own instruction's plans
            obs = drive_worlds(envs, obs, policies[0], guard, driver=0, chunks=advance_chunks * point,
                               noise_seed=noise_seeds[0], who=f"words probe: {task} seed {seed}")
            steps = [_plan(p, o, noise_seeds[0]) for p, o in zip(policies, obs)]
            ends = [_endpoint(envs[0], s) for s in steps]
            pos = [envs[0].object_pos(n) for n in names]
            row = {"task": task, "seed": int(seed), "chunks_before": 0 if point == 0 else advance_chunks,
                   "own": own, "other": other, "instructions": [envs[0].instruction, envs[1].instruction],
                   "objects_apart_m": float(np.linalg.norm(pos[0] - pos[1])),
                   "change_name_m": float(np.linalg.norm(ends[0] - ends[1])),
                   "toward_named_m": _toward(ends[0], ends[1], pos)}
            if shared and hasattr(policies[0], "seed"):
                row |= noise_spread(policies[0], envs[0], obs[0], ends, pos, noise_seeds[1])
            if ask and hasattr(policies[0], "ask"):
                row["pointing"] = [_point_choice(policies[0], envs[0], obs[0], n) | {"named": n} for n in names]
            rows.append(row)
        return rows
    finally:
        for env in envs:
            env.close()


def drive_worlds(envs: Sequence[Any], obs: list[Any], policy: Any, guard: Any, *, driver: int, chunks: int,
                 noise_seed: int | None, who: str) -> list[Any]:
    """Execute `chunks` of `policy`'s plans for world `driver` in every world (through the safety guard), then
    check the worlds still look the same: a probe that swaps only the words needs identical pictures."""
    for _ in range(chunks):
        verdict = guard.check(_plan(policy, obs[driver], noise_seed).actions, obs[driver].state)
        if verdict.refused:
            raise RuntimeError(f"{who}: the safety guard refused the plan: "
                               + "; ".join(r.message for r in verdict.records))
        for action in verdict.actions:
            obs = [env.step(action)[0] for env in envs]
    if not all(np.array_equal(obs[0].cameras[c].rgb, o.cameras[c].rgb) for o in obs[1:] for c in obs[0].cameras):
        raise RuntimeError(f"{who}: the worlds diverged (same actions, different pictures); the probe needs "
                           "identical scenes")
    return obs


def noise_spread(policy: Any, env: Any, obs: Any, ends: Sequence[np.ndarray], refs: Sequence[np.ndarray],
                 noise_seed: int) -> dict[str, float]:
    """A noisy policy's second draw under the first instruction: how far it moves the plan and how much it
    "pulls" toward the references, the spread a words effect must beat."""
    again = _endpoint(env, _plan(policy, obs, noise_seed))
    return {"change_noise_m": float(np.linalg.norm(ends[0] - again)), "toward_noise_m": _toward(ends[0], again, refs)}


def _toward(end_a: np.ndarray, end_b: np.ndarray, pos: Sequence[np.ndarray]) -> float:
    """How much nearer plan a ends to object 0 than plan b does, and b to object 1 than a does (mean, m)."""
    d = lambda e, p: float(np.linalg.norm(e - p))  # noqa: E731
    return 0.5 * ((d(end_b, pos[0]) - d(end_a, pos[0])) + (d(end_a, pos[1]) - d(end_b, pos[1])))


def probe(make_policy: Callable[[Any], Any], *, tasks: Sequence[str] = PROBE_TASKS, seeds_per_task: int = 20,
          first_seed: int = 10000, advance_chunks: int = 2, ask: bool = True, progress: bool = True) -> list[dict[str, Any]]:
    """Probe `seeds_per_task` layouts with 2+ candidates per task (single-candidate seeds are skipped
    and do not count), starting at `first_seed`."""
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(tasks) * seeds_per_task, desc="words probe", unit="layout", disable=not progress)
    for task in tasks:
        done, seed = 0, first_seed
        while done < seeds_per_task:
            got = probe_layout(make_policy, task, seed, advance_chunks=advance_chunks, ask=ask)
            if got:
                rows += got
                done += 1
                bar.update(1)
            seed += 1
            if seed - first_seed > 20 * seeds_per_task + 100:
                raise RuntimeError(f"words probe: too few {task} layouts with 2+ candidate objects from seed {first_seed}")
    bar.close()
    return rows


def _mean_ci(values: Sequence[float]) -> dict[str, float] | None:
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return None
    half = 1.96 * float(v.std(ddof=1)) / np.sqrt(v.size) if v.size > 1 else float("nan")
    return {"mean": float(v.mean()), "ci95": half, "n": int(v.size)}


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per probe point (chunks_before): means with 95% intervals (normal approximation) of the endpoint
    changes and pulls, and the pointing choice rate vs chance."""
    out: dict[str, Any] = {}
    for before in sorted({r["chunks_before"] for r in rows}):
        rs = [r for r in rows if r["chunks_before"] == before]
        s = {key: _mean_ci([r.get(key) for r in rs]) for key in
             ("objects_apart_m", "change_name_m", "change_noise_m", "toward_named_m", "toward_noise_m")}
        asked = [p for r in rs for p in r.get("pointing", [])]
        if asked:
            s["pointing_named_object"] = float(np.mean([p["choice"] == p["named"] for p in asked]))
            s["pointing_chance"] = float(np.mean([1.0 / p["visible_objects"] if p["visible_objects"] else 0.0
                                                  for p in asked]))
            s["pointing_questions"] = len(asked)
        out[f"after_{before}_chunks"] = s
    return out


def cm(s: dict[str, float] | None) -> str:
    """A `_mean_ci` of metres as "mean ± 95% half-width" in cm ("–" when nothing was measured)."""
    return "–" if s is None else f"{100 * s['mean']:.2f} ± {100 * s['ci95']:.2f}"


def to_markdown(summary: dict[str, Any], name: str = "policy") -> str:
    """One table: rows = probe points, columns in cm (mean ± 95% half-width)."""
    lines = [f"words probe: {name}", "",
             "| probe point | objects apart cm | plan change, name swapped cm | plan change, new noise cm | "
             "pull toward the named object cm | same, two noise draws cm | points at the named object (chance) |",
             "|---|---|---|---|---|---|---|"]
    for key, s in summary.items():
        point = "–" if "pointing_named_object" not in s else \
            f"{100 * s['pointing_named_object']:.0f}% ({100 * s['pointing_chance']:.0f}%, n={s['pointing_questions']})"
        lines.append(f"| {key.replace('_', ' ')} | {cm(s['objects_apart_m'])} | {cm(s['change_name_m'])} | "
                     f"{cm(s['change_noise_m'])} | {cm(s['toward_named_m'])} | {cm(s['toward_noise_m'])} | {point} |")
    return "\n".join(lines)
