"""Expert episodes as a stream of `Step`s, for viewers (the app's Simulator tab, notebooks, .rrd files).

One Step every `stride` control steps: the observation at that instant (both cameras with depth,
K and pose), the part of the current chunk still to execute, and its planned end-effector path
(forward kinematics, 3-D and projected into every camera).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from molmoact2.models.base import Step


def expert_steps(task: str, seed: int = 0, image_size: int = 224, stride: int = 5, summary: dict | None = None) -> Iterator[Step]:
    """Run the scripted expert on `task`/`seed` and yield Steps. `summary` (if given) is filled at the end
    with success, steps, instruction."""
    from molmoact2.sim import make_env

    if stride < 1:
        raise ValueError(f"stride: expected >= 1 control steps, got {stride}")
    env = make_env(task, seed=seed, image_size=image_size)
    try:
        obs, info = env.reset(seed)
        expert = env.expert()
        base = {"task": task, "seed": int(seed), "instruction": env.instruction, "target": info["target"]}
        i, done, success = 0, False, False
        while not done:
            chunk = expert.act(obs)
            for k, action in enumerate(chunk):
                if i % stride == 0:
                    rest = np.asarray(chunk[k:], np.float32)
                    path_world, path_px = env.planned_path(rest, obs)
                    yield Step(
                        index=i, timestamp_s=obs.timestamp_s, backend="expert", observation=obs, actions=rest,
                        action_names=env.action_names, action_units=env.action_units,
                        n_executed=int(min(stride, len(rest))), planned_path_world=path_world, planned_path_px=path_px,
                        info=dict(base, success=False),
                    )
                obs, reward, terminated, truncated, info = env.step(action)
                i += 1
                if terminated or truncated:
                    done, success = True, bool(info["success"])
                    break
        hold = np.asarray(obs.state, np.float32)[None, :]
        path_world, path_px = env.planned_path(hold, obs)
        yield Step(index=i, timestamp_s=obs.timestamp_s, backend="expert", observation=obs, actions=hold,
                   action_names=env.action_names, action_units=env.action_units, n_executed=1,
                   planned_path_world=path_world, planned_path_px=path_px, info=dict(base, success=success))
        if summary is not None:
            summary.update(base, success=success, steps=i, time_limit_steps=env.time_limit_steps)
    finally:
        env.close()
