"""Step / Observation / CameraFrame: lossless persistence and clear errors on bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from _step_factory import assert_same, make_full_step

from molmoact2.models.base import STEP_FORMAT, CameraFrame, Observation, Policy, Step


def test_full_step_round_trip_is_lossless(tmp_path):
    step = make_full_step()
    step.save(tmp_path / "s")
    back = Step.load(tmp_path / "s")
    assert_same(step, back)
    # Spot-check the dtypes the brief names, so a regression reads clearly.
    assert back.observation.cameras["front"].rgb.dtype == np.uint8
    assert back.depth_bins.dtype == np.int64
    assert back.depth_update_mask.dtype == np.bool_
    assert back.actions.dtype == np.float32
    assert back.info["nested"]["f64"].dtype == np.float64
    assert np.isnan(back.observation.cameras["front"].depth_m).any()
    assert back.observation.main_camera == "front"  # camera order survives (main image first)
    assert list(back.timings_ms) == ["prefill", "depth_decode", "action_expert", "total"]


def test_assert_same_detects_a_dtype_change():
    # The comparison above must be able to fail, or the round-trip test proves nothing.
    a = make_full_step()
    b = make_full_step()
    b.actions = b.actions.astype(np.float64)
    with pytest.raises(AssertionError, match="dtype"):
        assert_same(a, b)


def test_minimal_step_with_none_fields_round_trips(tmp_path):
    step = Step()
    step.save(tmp_path / "empty")
    back = Step.load(tmp_path / "empty")
    assert_same(step, back)
    for f in dataclasses.fields(Step):
        if f.name not in ("index", "timestamp_s", "backend", "timings_ms", "info"):
            assert getattr(back, f.name) is None, f.name


def test_partially_filled_step_round_trips(tmp_path):
    obs = Observation(cameras={"top": CameraFrame(rgb=np.zeros((4, 5, 3), np.uint8))}, state=np.zeros(2), instruction="hi")
    step = Step(index=9, observation=obs, actions=np.ones((3, 2), np.float64), timings_ms={"total": 1.0})
    step.save(tmp_path / "p")
    back = Step.load(tmp_path / "p")
    assert_same(step, back)
    assert back.observation.state_names is None and back.depth_bins is None


def test_camera_order_survives_save(tmp_path):
    # The first camera is the "main image" (MolmoThink's); sorting keys on save would change it.
    cams = {name: CameraFrame(rgb=np.zeros((2, 2, 3), np.uint8)) for name in ("zeta", "alpha", "mid")}
    Step(observation=Observation(cameras=cams, state=np.zeros(1), instruction="")).save(tmp_path / "o")
    back = Step.load(tmp_path / "o")
    assert list(back.observation.cameras) == ["zeta", "alpha", "mid"]
    assert back.observation.main_camera == "zeta"


def test_saved_json_is_readable_and_arrays_are_not_inlined(tmp_path):
    make_full_step().save(tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "step.json").read_text())
    assert doc["format"] == STEP_FORMAT
    assert doc["step"]["backend"] == "nano"
    assert set(doc["step"]["actions"]) == {"__array__"}
    assert not (tmp_path / "s" / "step.json.partial").exists()


def test_colliding_flattened_keys_do_not_overwrite(tmp_path):
    # info["a.b"] and info["a"]["b"] flatten to the same npz key; both arrays must survive.
    step = Step(info={"a.b": np.array([1], np.int64), "a": {"b": np.array([2], np.int64)}})
    step.save(tmp_path / "c")
    back = Step.load(tmp_path / "c")
    assert back.info["a.b"].tolist() == [1]
    assert back.info["a"]["b"].tolist() == [2]


# ---- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"depth_bins": np.zeros(99, np.int64)}, r"depth_bins: expected shape \[100\], got \[99\]"),
        ({"depth_bins": np.zeros((10, 10), np.int64)}, r"depth_bins: expected shape \[100\], got \[10, 10\]"),
        ({"depth_bins": np.full(100, 128, np.int64)}, r"depth_bins: expected codes in 0..127, got range 128..128"),
        ({"depth_bins": np.full(100, -1, np.int64)}, r"depth_bins: expected codes in 0..127, got range -1..-1"),
        ({"depth_update_mask": np.zeros(10, bool)}, r"depth_update_mask: expected shape \[100\], got \[10\]"),
        ({"actions": np.zeros(6, np.float32)}, r"actions: expected \[horizon, action_dim\], got shape \[6\]"),
        ({"actions": np.zeros((2, 3, 4), np.float32)}, r"actions: expected \[horizon, action_dim\], got shape \[2, 3, 4\]"),
        ({"actions": np.zeros((4, 6), np.float32), "action_names": ("a", "b")}, r"action_names: expected 6 names, got 2"),
    ],
)
def test_step_rejects_bad_input_with_a_clear_message(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Step(**kwargs)


@pytest.mark.parametrize(
    "rgb, pattern",
    [
        (np.zeros((4, 5, 3), np.float32), r"expected uint8 \[H, W, 3\], got float32 \[4, 5, 3\]"),
        (np.zeros((4, 5), np.uint8), r"expected uint8 \[H, W, 3\], got uint8 \[4, 5\]"),
        (np.zeros((4, 5, 4), np.uint8), r"expected uint8 \[H, W, 3\], got uint8 \[4, 5, 4\]"),
    ],
)
def test_camera_frame_rejects_bad_rgb(rgb, pattern):
    with pytest.raises(ValueError, match=pattern):
        CameraFrame(rgb=rgb)


def test_camera_frame_rejects_mismatched_depth_and_bad_matrices():
    rgb = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match=r"depth_m: expected shape \[4, 5\] like rgb, got \[5, 4\]"):
        CameraFrame(rgb=rgb, depth_m=np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match=r"K: expected \[3, 3\], got \[4, 4\]"):
        CameraFrame(rgb=rgb, K=np.eye(4))
    with pytest.raises(ValueError, match=r"T_world_cam: expected \[4, 4\], got \[3, 4\]"):
        CameraFrame(rgb=rgb, T_world_cam=np.zeros((3, 4)))


def test_observation_rejects_bad_input():
    cam = {"c": CameraFrame(rgb=np.zeros((2, 2, 3), np.uint8))}
    with pytest.raises(ValueError, match="at least one camera"):
        Observation(cameras={}, state=np.zeros(2), instruction="")
    with pytest.raises(ValueError, match=r"expected a 1-D raw robot state, got shape \[2, 2\]"):
        Observation(cameras=cam, state=np.zeros((2, 2)), instruction="")
    with pytest.raises(ValueError, match="expected 3 names"):
        Observation(cameras=cam, state=np.zeros(3), instruction="", state_names=("a",))


def test_save_refuses_unstorable_values(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store set at 'step.info.s'"):
        Step(info={"s": {1, 2}}).save(tmp_path / "a")
    with pytest.raises(TypeError, match="dict keys must be str"):
        Step(info={1: "x"}).save(tmp_path / "b")
    with pytest.raises(TypeError, match="dtype object"):
        Step(info={"o": np.array([{"x": 1}], dtype=object)}).save(tmp_path / "c")


def test_load_errors_name_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"step.json \(written by Step.save\), not found"):
        Step.load(tmp_path / "nowhere")
    make_full_step().save(tmp_path / "s")
    meta = tmp_path / "s" / "step.json"
    doc = json.loads(meta.read_text())
    doc["format"] = "something_else.v9"
    meta.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"expected format 'molmoact2_workbench_step.v1', got 'something_else.v9'"):
        Step.load(tmp_path / "s")
    Step().save(tmp_path / "t")
    (tmp_path / "t" / "arrays.npz").unlink()
    with pytest.raises(FileNotFoundError, match="arrays.npz"):
        Step.load(tmp_path / "t")


def test_policy_protocol_is_runtime_checkable():
    class Dummy:
        name = "dummy"

        def reset(self) -> None:
            pass

        def predict(self, obs: Observation) -> Step:
            return Step()

    assert isinstance(Dummy(), Policy)
    assert not isinstance(object(), Policy)
