"""Scripted experts solve a handful of seeds per task; chunks and planned paths are well-formed.
(The 100-seed measurement is `scripts/eval_experts.py`.)"""

from __future__ import annotations

import numpy as np
import pytest

import molmoact2  # noqa: F401
from molmoact2.sim import make_env
from molmoact2.sim.rollout import run_episode


@pytest.mark.parametrize("task,seeds", [("touch", (0, 1)), ("pick_place", (0, 1)), ("push_left", (2,)), ("push_right", (3,))])
def test_expert_solves_seeds(task, seeds):
    env = make_env(task, image_size=32, cameras=("front",), depth=False, segmentation=False)
    for seed in seeds:
        res = run_episode(env, seed, keep=True)
        assert res.success, f"{task} seed {seed}: expert failed ({res.instruction})"
        acts = np.stack(res.actions)
        assert acts.shape[1] == 6 and np.all(np.isfinite(acts))
        # smooth: no joint jumps more than 10 units (of 200) between consecutive 30 Hz targets
        assert np.abs(np.diff(acts[:, :5], axis=0)).max() < 10.0
    env.close()


def test_expert_step_record_has_chunk_and_planned_path():
    env = make_env("pick_place", seed=0, image_size=64)
    obs, _ = env.reset(0)
    expert = env.expert()
    step = expert.predict(obs)
    assert step.backend == "expert" and step.actions.shape[1] == 6 and 1 <= len(step.actions) <= 30
    assert step.action_names == env.action_names and step.planned_path_world.shape == (len(step.actions), 3)
    assert set(step.planned_path_px) == {"front", "wrist"}
    # the path starts near the current end-effector position and is in front of the front camera
    px = step.planned_path_px["front"]
    assert np.all(np.isfinite(px)) and np.all((px > -50) & (px < 64 + 50))
    env.close()


def test_planned_path_fk_matches_simulated_end_effector():
    """Execute a chunk and compare the FK-predicted path with where the gripper actually went."""
    env = make_env("touch", seed=4, image_size=32, cameras=("front",), depth=False, segmentation=False)
    obs, _ = env.reset(4)
    expert = env.expert()
    chunk = expert.act(obs)
    path, _ = env.planned_path(chunk)
    kin = env.kinematics()
    from molmoact2.sim.units import units_to_rad

    actual = []
    for a in chunk:
        obs, *_ = env.step(a)
        actual.append(kin.grasp_point(units_to_rad(obs.state, kin.arm.joint_range_rad))[0])
    err = np.linalg.norm(np.array(actual)[-1] - path[-1])
    assert err < 0.02, f"final planned vs reached end-effector differ by {err:.3f} m"


def test_standalone_kinematics_reads_real_recording_units():
    from molmoact2.sim.kinematics import ArmKinematics, project_points

    kin = ArmKinematics.standalone()
    chunk = np.zeros((4, 6))
    chunk[:, 0] = [0, 10, 20, 30]
    path = kin.path_world(chunk)
    assert path.shape == (4, 3) and np.all(np.diff(np.arctan2(path[:, 1], path[:, 0])) != 0)
    with pytest.raises(ValueError, match=r"expected a chunk \[H, 6\]"):
        kin.path_world(np.zeros((3, 5)))
    K = np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]])
    T = np.eye(4)
    px = project_points(np.array([[0, 0, 1.0], [0.1, 0, 1.0], [0, 0, -1.0]]), K, T)
    assert np.allclose(px[0], [50, 50]) and np.allclose(px[1], [60, 50]) and np.all(np.isnan(px[2]))


def test_eval_experts_cli_prints_success_table(capsys):
    from molmoact2.cli import main

    assert main(["sim", "eval-experts", "--seeds", "2", "--tasks", "touch"]) == 0
    out = capsys.readouterr().out
    assert "touch" in out and "2/2" in out and "100%" in out


def test_units_round_trip_and_limits():
    from molmoact2.sim.units import rad_to_units, units_to_rad

    rng_rad = np.array([[-1.9, 1.9], [-1.7, 1.7], [-1.69, 1.69], [-1.66, 1.66], [-2.7, 2.8], [-0.17, 1.75]])
    u = np.array([[-100, -50, 0, 50, 100, 0], [100, 100, -100, -100, -100, 100.0]])
    q = units_to_rad(u, rng_rad)
    assert np.allclose(q[0, 0], -1.9) and np.allclose(q[0, 2], 0.0) and np.allclose(q[0, 5], -0.17)
    assert np.allclose(q[1, 5], 1.75) and np.allclose(rad_to_units(q, rng_rad), u)
