"""Drive any gymnasium environment with the same control loop as `SimEnv`.

`GymAdapter` turns a gymnasium env's observations into `molmoact2.models.base.Observation`
(cameras from a pixels dict, state from a vector key) and checks actions the same way SimEnv does
(shape, NaN, clipping to the action space reported in `info`). Example with gym-aloha (installed):

    env = GymAdapter.make("gym_aloha/AlohaTransferCube-v0", obs_type="pixels_agent_pos",
                          instruction="transfer the cube to the other arm")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_dim))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from molmoact2.models.base import CameraFrame, Observation

# Known layouts of installed environments: state names for their vector observation.
_ALOHA_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
KNOWN_STATE_NAMES: dict[str, tuple[str, ...]] = {
    "gym_aloha": tuple(f"{side}_{j}" for side in ("left", "right") for j in _ALOHA_JOINTS),
}


class GymAdapter:
    """Wrap a gymnasium env. `pixels_key`/`state_key` name the dict entries holding images and the state."""

    def __init__(
        self,
        env,
        instruction: str = "",
        pixels_key: str = "pixels",
        state_key: str = "agent_pos",
        state_names: tuple[str, ...] | None = None,
        fps: int | None = None,
    ) -> None:
        self.env = env
        self.instruction = instruction
        self.pixels_key, self.state_key = pixels_key, state_key
        space = env.action_space
        if not hasattr(space, "shape") or space.shape is None or len(space.shape) != 1:
            raise ValueError(f"GymAdapter: expected a 1-D Box action space, got {space}")
        self.action_dim = int(space.shape[0])
        self.action_low = np.asarray(space.low, dtype=np.float64)
        self.action_high = np.asarray(space.high, dtype=np.float64)
        self.state_names = state_names
        self.action_names = state_names if state_names and len(state_names) == self.action_dim else tuple(
            f"action_{i}" for i in range(self.action_dim)
        )
        self.action_units = "environment units (see the environment's documentation)"
        self.fps = fps or int(getattr(env, "metadata", {}).get("render_fps", 30))
        self.steps = 0

    @classmethod
    def make(cls, env_id: str, instruction: str = "", **kwargs: Any) -> "GymAdapter":
        import importlib

        import gymnasium as gym

        namespace = env_id.split("/", 1)[0]
        try:
            importlib.import_module(namespace)  # registers the env ids (e.g. gym_aloha)
        except ImportError:
            pass
        env = gym.make(env_id, **kwargs)
        return cls(env, instruction=instruction, state_names=KNOWN_STATE_NAMES.get(namespace))

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[Observation, dict]:
        raw, info = self.env.reset(seed=seed, options=options)
        self.steps = 0
        return self._observation(raw), dict(info)

    def step(self, action) -> tuple[Observation, float, bool, bool, dict]:
        arr = np.asarray(action, dtype=np.float64)
        if arr.shape != (self.action_dim,):
            raise ValueError(f"GymAdapter.step: expected an action of shape [{self.action_dim}], got {list(arr.shape)}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("GymAdapter.step: action has NaN/inf; expected finite values")
        applied = np.clip(arr, self.action_low, self.action_high)
        clipped = applied != arr
        raw, reward, terminated, truncated, info = self.env.step(applied.astype(self.env.action_space.dtype))
        self.steps += 1
        info = dict(info)
        info["clipped"] = bool(clipped.any())
        info["clipped_dims"] = [self.action_names[i] for i in np.flatnonzero(clipped)]
        info.setdefault("success", bool(info.get("is_success", False)))
        return self._observation(raw), float(reward), bool(terminated), bool(truncated), info

    def _observation(self, raw) -> Observation:
        if isinstance(raw, dict):
            pixels = raw.get(self.pixels_key)
            state = raw.get(self.state_key)
        else:  # a bare image or vector observation
            pixels, state = (raw, None) if np.ndim(raw) == 3 else (None, raw)
        if isinstance(pixels, np.ndarray):
            pixels = {"image": pixels}
        if not pixels:
            pixels = {"render": self.env.render()}
            if pixels["render"] is None:
                raise ValueError("GymAdapter: the environment has no pixel observation and render() returned None")
        cameras = {name: CameraFrame(rgb=np.ascontiguousarray(img, dtype=np.uint8)) for name, img in pixels.items()}
        state = np.zeros(0, np.float32) if state is None else np.asarray(state, np.float32).reshape(-1)
        names = self.state_names if self.state_names and len(self.state_names) == len(state) else None
        return Observation(cameras=cameras, state=state, instruction=self.instruction, state_names=names,
                           timestamp_s=self.steps / self.fps)

    def close(self) -> None:
        self.env.close()
