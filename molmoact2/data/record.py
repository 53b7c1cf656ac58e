"""Record scripted-expert episodes from the simulator as a LeRobot v3.0 dataset."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def record_expert_dataset(
    task: str,
    out: str | os.PathLike,
    episodes: int = 10,
    first_seed: int = 0,
    image_size: int = 224,
    keep_failures: bool = False,
    max_attempts_factor: int = 3,
) -> Path:
    """Run the expert on seeds first_seed, first_seed+1, ... and keep `episodes` successful ones
    (or every episode with `keep_failures`). Frames are the observation BEFORE each action."""
    from tqdm import tqdm

    from molmoact2.data.lerobot import LeRobotWriter
    from molmoact2.sim import make_env
    from molmoact2.sim.rollout import run_episode

    env = make_env(task, image_size=image_size, depth=False, segmentation=False)
    cams = env.cameras
    robot_type = "so101_follower_sim" if env.action_dim == 6 else "bi_so101_follower_sim"
    writer = LeRobotWriter(out, fps=env.fps, names=env.action_names, cameras=cams, robot_type=robot_type)
    kept, seed = 0, first_seed
    bar = tqdm(total=episodes, desc=f"record {task}", unit="ep", file=sys.stderr)
    try:
        while kept < episodes:
            if seed - first_seed >= episodes * max_attempts_factor:
                raise RuntimeError(f"record: only {kept}/{episodes} successful episodes in {seed - first_seed} seeds")
            frames: dict[str, list[np.ndarray]] = {c: [] for c in cams}

            def grab(i, obs, action, info):
                for c in cams:
                    frames[c].append(obs.cameras[c].rgb)

            res = run_episode(env, seed, on_step=grab, keep=True)
            seed += 1
            if not res.success and not keep_failures:
                continue
            writer.add_episode(res.instruction, np.stack(res.actions), np.stack(res.states), frames)
            kept += 1
            bar.update(1)
    finally:
        bar.close()
        env.close()
    return writer.finalize()
