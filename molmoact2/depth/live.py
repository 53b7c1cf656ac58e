"""Sequences of main-camera frames for the Think debugger: the simulator expert run live, or the
self-contained boxes scene (a cube sliding past a static camera)."""

from __future__ import annotations

import numpy as np

from molmoact2.models.base import CameraFrame, Observation, Step


def _steps_from_frames(frames: list[CameraFrame], camera: str, instruction: str, backend: str) -> list[Step]:
    return [Step(index=i, timestamp_s=float(i), backend=backend,
                 observation=Observation(cameras={camera: f}, state=np.zeros(1, np.float32), instruction=instruction))
            for i, f in enumerate(frames)]


def boxes_steps(seed: int = 0, n_steps: int = 24, brightness_step: int | None = None) -> list[Step]:
    """Self-contained MuJoCo demo (no simulator package needed)."""
    from molmoact2.depth.boxes import render_boxes_sequence

    frames = render_boxes_sequence(seed, n_steps, brightness_step=brightness_step)
    return _steps_from_frames(frames, "front", "watch the red cube slide", "boxes-scene")


def sim_expert_steps(task: str = "pick_place", seed: int = 0, n_steps: int = 30, camera: str = "front",
                     actions_per_step: int = 10) -> list[Step]:
    """Run the simulator's scripted expert; one Step per policy call (a chunk of `actions_per_step`
    30 Hz actions, like a policy with n_action_steps=10), holding the static front camera's frame
    that the policy (and MolmoThink's change mask) would see at that call."""
    try:
        from molmoact2.sim import make_env
    except ImportError as exc:
        raise RuntimeError("the simulator (molmoact2.sim.make_env) is not available in this install") from exc

    env = make_env(task, seed=seed, cameras=(camera,), segmentation=False)
    try:
        obs, _info = env.reset(seed=seed)
        expert = env.expert(chunk_size=actions_per_step)
        frames, instruction = [], obs.instruction
        for _ in range(n_steps):
            if camera not in obs.cameras:
                raise KeyError(f"sim_expert_steps: expected camera {camera!r}, got {list(obs.cameras)}")
            frames.append(obs.cameras[camera])
            done = False
            for action in expert.act(obs):
                obs, _reward, terminated, truncated, _info = env.step(action)
                if terminated or truncated:
                    done = True
                    break
            if done:
                frames.append(obs.cameras[camera])
                break
    finally:
        env.close()
    return _steps_from_frames(frames, camera, instruction, f"sim-expert:{task}")
