"""make_env / reset / step / rendering of the single-arm SO-101 world (real MuJoCo, EGL)."""

from __future__ import annotations

import numpy as np
import pytest

import molmoact2  # noqa: F401  (offline env: MUJOCO_GL=egl before mujoco is imported)
from molmoact2.models.base import Observation
from molmoact2.sim import make_env, task_names
from molmoact2.sim.units import FEATURE_NAMES


@pytest.fixture(scope="module")
def env():
    e = make_env("pick_place", seed=3, image_size=96)
    yield e
    e.close()


def test_reset_returns_observation_with_both_cameras(env):
    obs, info = env.reset(3)
    assert isinstance(obs, Observation)
    assert list(obs.cameras) == ["front", "wrist"] and obs.main_camera == "front"
    assert obs.state.shape == (6,) and obs.state_names == FEATURE_NAMES
    assert "bin" in obs.instruction and info["target"] in obs.instruction
    for name, frame in obs.cameras.items():
        assert frame.rgb.shape == (96, 96, 3) and frame.rgb.dtype == np.uint8
        assert frame.depth_m.shape == (96, 96) and frame.depth_m.dtype == np.float32
        finite = frame.depth_m[np.isfinite(frame.depth_m)]
        assert finite.size > 0.5 * frame.depth_m.size and finite.min() > 0.005 and finite.max() < 5.0
        assert frame.segmentation.shape == (96, 96)
        assert frame.K.shape == (3, 3) and frame.T_world_cam.shape == (4, 4)
        assert frame.rgb.std() > 5  # not a blank image
    labels = info["segmentation_labels"]
    seg = obs.cameras["front"].segmentation
    assert labels.index("table") in seg and labels.index("bin") in seg


def test_same_seed_same_scene_and_different_seed_differs(env):
    a, _ = env.reset(11)
    b, _ = env.reset(11)
    c, _ = env.reset(12)
    assert np.array_equal(a.cameras["front"].rgb, b.cameras["front"].rgb)
    assert not np.array_equal(a.cameras["front"].rgb, c.cameras["front"].rgb)


def test_depth_and_intrinsics_agree_with_object_position(env):
    """Back-project the target object's segmentation pixels with K, T_world_cam and depth: they land on the object."""
    obs, info = env.reset(5)
    frame = obs.cameras["front"]
    label = info["segmentation_labels"].index(info["target"])
    v, u = np.nonzero(frame.segmentation == label)
    assert len(u) > 5, "target object should be visible in the front camera"
    z = frame.depth_m[v, u]
    pts_cam = np.stack([(u - frame.K[0, 2]) * z / frame.K[0, 0], (v - frame.K[1, 2]) * z / frame.K[1, 1], z], 1)
    pts = pts_cam @ frame.T_world_cam[:3, :3].T + frame.T_world_cam[:3, 3]
    centre = env.object_pos(info["target"])
    assert np.linalg.norm(pts.mean(0)[:2] - centre[:2]) < 0.025
    assert np.all(pts[:, 2] > -0.005) and np.all(pts[:, 2] < 0.06)


def test_step_holds_pose_and_reports_clipping(env):
    obs, _ = env.reset(3)
    target = obs.state.copy()
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(target)
    assert np.abs(obs.state[:5] - target[:5]).max() < 3.0
    assert not info["clipped"]
    over = target.copy()
    over[1] = 180.0
    _, _, _, _, info = env.step(over)
    assert info["clipped"] and info["clipped_dims"] == ["shoulder_lift.pos"]
    assert info["applied_action"][1] == 100.0


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 6)), np.full(6, np.nan)])
def test_bad_actions_raise_with_expected_shape(env, bad):
    env.reset(3)
    with pytest.raises(ValueError, match=r"expected|NaN"):
        env.step(bad)


def test_reset_can_aim_the_same_layout_at_another_object(env):
    """Contrastive demos and the words-vs-layout check: same picture, only the named object changes."""
    own, info = env.reset(3)
    others = [n for n in env.target_options() if n != info["target"]]
    assert info["target"] in env.target_options() and others, "seed 3 should host pick_place with 2+ objects"
    template = own.instruction.replace(info["target"], "{obj}")
    again, info2 = env.reset(3, options={"target": others[0]})
    assert np.array_equal(own.cameras["front"].rgb, again.cameras["front"].rgb)  # the very same layout
    assert info2["target"] == env.instance.target == others[0]
    assert again.instruction == template.format(obj=others[0]) != own.instruction
    assert np.allclose(env.instance.start_pos, env.object_pos(others[0]))
    with pytest.raises(ValueError, match="expected one of this pick_place layout's candidates"):
        env.reset(3, options={"target": "golden teapot"})
    with pytest.raises(ValueError, match="only 'target'"):
        env.reset(3, options={"colour": "red"})
    assert env.reset(3, options={"target": None})[1]["target"] == info["target"]


def test_two_worlds_in_one_thread_render_their_own_pictures():
    """Rigs of one size share the thread's GL context; each must read its own framebuffer. Two worlds
    stepped in turn (the words probe's set-up) show what each shows when it renders alone."""
    a = make_env("touch", image_size=32, cameras=("front",), depth=False, segmentation=False)
    b = make_env("touch", image_size=32, cameras=("front",), depth=False, segmentation=False)
    a.reset(5)
    b.reset(6)  # created last: its framebuffer is the bound one
    hold_a = a.state().copy()
    hold_a[0] += 20.0  # the arm moves in a's picture only
    frame_a = a.step(hold_a)[0].cameras["front"].rgb
    frame_b = b.step(b.state())[0].cameras["front"].rgb
    again_a, again_b = a.observe().cameras["front"].rgb, b.observe().cameras["front"].rgb
    assert not np.array_equal(frame_a, frame_b)  # different layouts: a stale read would make them equal
    assert np.array_equal(frame_a, again_a) and np.array_equal(frame_b, again_b)
    a.close()
    b.close()


def test_unknown_task_lists_valid_ones():
    with pytest.raises(ValueError, match="valid tasks: .*pick_place.*touch"):
        make_env("fly_to_the_moon")
    assert {"touch", "pick_place", "push_left", "push_right"} <= set(task_names())


def test_time_limit_truncates():
    env = make_env("touch", seed=0, image_size=32, cameras=("front",), depth=False, segmentation=False)
    obs, _ = env.reset(0)
    hold = obs.state.copy()
    truncated = False
    for _ in range(env.time_limit_steps):
        obs, reward, terminated, truncated, info = env.step(hold)
        assert not terminated
    assert truncated and reward == 0.0
    env.close()


def test_worker_thread_renders_and_releases_its_gl_context():
    """The app runs episodes in worker threads: each renders with its own EGL context and frees it."""
    import threading

    from molmoact2.sim import render

    out = {}

    def work():
        env = make_env("touch", seed=2, image_size=32, cameras=("front",), segmentation=False)
        obs, _ = env.reset(2)
        out["rgb_std"] = float(obs.cameras["front"].rgb.std())
        env.close()
        out["released"] = render.release_thread_gl_contexts()

    t = threading.Thread(target=work)
    t.start()
    t.join(120)
    assert out["rgb_std"] > 5 and out["released"] == 1
    assert not [k for k in render._GL_POOL if k[0] == t.ident]
