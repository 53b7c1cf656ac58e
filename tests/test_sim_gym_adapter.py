"""The same control loop drives a foreign gymnasium env (gym-aloha, real MuJoCo) through GymAdapter."""

from __future__ import annotations

import numpy as np
import pytest

import molmoact2  # noqa: F401
from molmoact2.models.base import Observation
from molmoact2.sim.gym_adapter import GymAdapter


@pytest.fixture(scope="module")
def aloha():
    env = GymAdapter.make("gym_aloha/AlohaTransferCube-v0", obs_type="pixels_agent_pos", instruction="transfer the cube")
    yield env
    env.close()


def test_aloha_through_adapter(aloha):
    obs, info = aloha.reset(seed=0)
    assert isinstance(obs, Observation) and obs.main_camera == "top"
    assert obs.cameras["top"].rgb.shape == (480, 640, 3) and obs.state.shape == (14,)
    assert obs.state_names[0] == "left_waist" and aloha.action_dim == 14
    hold = np.clip(obs.state, aloha.action_low, aloha.action_high)
    obs, reward, terminated, truncated, info = aloha.step(hold)
    assert not info["clipped"] and "success" in info
    big = hold.copy()
    big[0] = 5.0
    _, _, _, _, info = aloha.step(big)
    assert info["clipped"] and info["clipped_dims"] == ["left_waist"]
    with pytest.raises(ValueError, match=r"expected an action of shape \[14\]"):
        aloha.step(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        aloha.step(np.full(14, np.nan))


def test_same_control_loop_drives_the_adapter(aloha):
    from molmoact2.sim.rollout import run_episode

    class Hold:  # a chunk policy: hold the current joint positions for 3 steps
        def act(self, obs):
            return np.repeat(np.clip(obs.state, aloha.action_low, aloha.action_high)[None], 3, axis=0)

    seen = []
    res = run_episode(aloha, seed=1, policy=Hold(), on_step=lambda i, obs, a, info: seen.append(obs.state.shape), max_steps=4)
    assert res.steps == 4 and not res.success and seen == [(14,)] * 4
    with pytest.raises(ValueError, match="pass policy="):
        run_episode(aloha, seed=1)
