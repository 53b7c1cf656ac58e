"""Bimanual SO-101 world: 12-D action/state, three cameras, and the handover expert."""

from __future__ import annotations

import numpy as np

import molmoact2  # noqa: F401
from molmoact2.sim import make_env, task_names
from molmoact2.sim.rollout import run_episode


def test_bimanual_layout_and_handover_expert():
    assert "handover" in task_names()
    env = make_env("handover", seed=1, image_size=48)
    obs, info = env.reset(1)
    assert list(obs.cameras) == ["front", "left_wrist", "right_wrist"]
    assert obs.state.shape == (12,) and env.action_dim == 12
    assert obs.state_names[0] == "left_shoulder_pan.pos" and obs.state_names[6] == "right_shoulder_pan.pos"
    assert {"left arm", "right arm", "bin"} <= set(info["segmentation_labels"])
    # The object starts out of the right arm's reach and the bin out of the left arm's: a real handover.
    left_base, right_base = (env.kinematics(i).arm_base_xy for i in (0, 1))
    target = env.object_pos(info["target"])[:2]
    bin_xy = env.object_pos("bin")[:2]
    assert np.linalg.norm(target - left_base) < 0.2 < np.linalg.norm(target - right_base) - 0.05
    assert np.linalg.norm(bin_xy - right_base) < 0.2 < np.linalg.norm(bin_xy - left_base) - 0.05
    env.close()

    fast = make_env("handover", image_size=32, cameras=("front",), depth=False, segmentation=False)
    touched_by = set()

    def watch(i, obs, action, info):
        for arm in (0, 1):
            if fast.gripper_touches(fast.instance.target, arm=arm):
                touched_by.add(arm)

    res = run_episode(fast, 1, on_step=watch)
    assert res.success, f"handover seed 1 failed: {res.instruction}"
    assert touched_by == {0, 1}, "both arms must hold the object at some point"
    fast.close()
