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
