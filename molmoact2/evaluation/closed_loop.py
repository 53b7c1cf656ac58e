"""One closed-loop episode of a policy in the simulator, through the safety guard, as a result record.

    env = make_env("touch", depth=False, segmentation=False)
    rec = rollout(policy, env, seed=10000)      # {"success": True, "ticks": 94, "stopped_by": "success", ...}

Joint targets outside the arm's limits are CLIPPED by the guard by default and counted (`clipped_targets`,
`max_overshoot`): the scripted expert itself drives `wrist_flex` to its limit, so a model trained on it lands
a few units past it; with `on_limit="refuse"` such a chunk ends the episode instead.
Only the last tick of every chunk is rendered (what the policy looks at next), so an episode costs
one render per policy query instead of one per tick. A policy exception (e.g. a discrete decode
that fails to parse) ends the episode as a failure and is recorded, never swallowed.
Each record also says which object the jaw came closest to (checked at the end of every chunk):
`went_to_target` separates grounding errors (wrong object) from motor errors (right object, missed).
`progress` says how far a failure got with the named object, checked at every tick (`sim.progress`): touched
it, the most it rose above its starting height and slid across the table, and (pick_place) whether it was ever
inside the bin: where a pick-and-place stops, reach, grasp or carry.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def rollout(policy: Any, env: Any, seed: int, *, max_steps: int | None = None,
            on_limit: str = "clip", target: str | None = None) -> dict[str, Any]:
    """`target` aims the seed's layout at another of its objects (`SimEnv.target_options()`): the
    instruction names it instead, the picture is the same."""
    from molmoact2.runner import guard_for_env, run_episode
    from molmoact2.sim.progress import ProgressWatch

    summary: dict[str, Any] = {}
    policy_ms: list[float] = []
    depth_cells: list[float] = []
    clipped, overshoot = 0, 0.0
    closest_m: dict[str, float] = {}  # object -> the jaw's closest approach to its centre, sampled once per chunk
    error = None
    t0 = time.perf_counter()
    if target is not None:
        env.reset(seed, options={"target": target})
        policy.reset()
    watched = ProgressWatch(env)
    try:
        for step in run_episode(policy, watched, guard_for_env(env, on_limit=on_limit), max_steps=max_steps,
                                seed=seed, reset=target is None, summary=summary, observe_every_tick=False):
            for r in step.info.get("safety", {}).get("records", []):
                if r["rule"] == "joint_limits" and r["action"] == "clipped":
                    clipped += 1
                    overshoot = max(overshoot, abs(r["value"] - r["limit"]))
            if "total_ms" in step.timings_ms:  # the model's own figure (the scripted expert reports none)
                policy_ms.append(float(step.timings_ms["total_ms"]))
            if step.depth_update_mask is not None:
                depth_cells.append(float(np.mean(step.depth_update_mask)))
            _track_closest(env, closest_m)
    except Exception as exc:  # noqa: BLE001 -- recorded as this episode's failure, with its message
        error = f"{type(exc).__name__}: {exc}"
    return {
        "task": env.task.name, "seed": int(seed), "instruction": summary.get("instruction", env.instruction),
        "success": bool(summary.get("success", False)) and error is None,
        "stopped_by": "error" if error else summary.get("stopped_by"), "error": error,
        "ticks": int(summary.get("ticks", env.steps)), "chunks": int(summary.get("chunks", len(policy_ms))),
        "refusals": int(summary.get("refusals", 0)), "on_limit": on_limit,
        "clipped_targets": clipped, "max_overshoot": round(overshoot, 3),  # robot units past the joint limit
        "policy_ms_mean": float(np.mean(policy_ms)) if policy_ms else None,
        # Think mode: mean fraction of the 100 depth cells re-predicted per query (first query = all)
        "depth_cells_changed": float(np.mean(depth_cells)) if depth_cells else None,
        "wall_s": round(time.perf_counter() - t0, 2),
        **_went_to(env, closest_m),
        **watched.record(),
    }


def other_target(env: Any, seed: int) -> str | None:
    """Another object the seed's layout could host the task with (a seed-fixed choice, shared by
    `eval nano --swap-targets` and `eval words`), or None if the layout has a single candidate."""
    env.reset(seed)
    others = [n for n in env.target_options() if n != env.instance.target]
    return others[int(np.random.default_rng([seed, 17]).integers(len(others)))] if others else None


def _track_closest(env: Any, closest_m: dict[str, float]) -> None:
    jaw = env.kinematics(0).path_world(env.state()[None, :6])[0]
    for obj in env.scene.objects:
        d = float(np.linalg.norm(env.object_pos(obj.name) - jaw))
        closest_m[obj.name] = min(closest_m.get(obj.name, np.inf), d)


def _went_to(env: Any, closest_m: dict[str, float]) -> dict[str, Any]:
    """Which object the arm went for: a failure next to the wrong object is a grounding error (the model
    read the instruction or the image wrong), one next to the target is a motor error."""
    target = getattr(env.instance, "target", None)
    if not closest_m or target not in closest_m:  # a task without one named object has nothing to check
        return {}
    nearest = min(closest_m, key=closest_m.get)
    return {"target": target, "closest_object": nearest, "went_to_target": nearest == target,
            "target_closest_m": round(closest_m[target], 4), "n_objects": len(closest_m)}
