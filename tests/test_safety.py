"""One test (or more) per rule of the safety guard; every refusal must be recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from molmoact2.models.base import Step
from molmoact2.robot.safety import (
    SafetyConfig,
    SafetyGuard,
    SafetyRefused,
    limits_from_norm_stats,
)

LOW = (-1.0, -1.0, 0.0)
HIGH = (1.0, 1.0, 1.0)


def _ramp(h: int = 5, d: int = 3, step: float = 0.05) -> np.ndarray:
    return (np.arange(h)[:, None] * step * np.ones((1, d))).astype(np.float32)


def test_clean_chunk_passes_unchanged():
    guard = SafetyGuard(SafetyConfig(joint_low=LOW, joint_high=HIGH, max_delta_per_tick=0.1))
    chunk = _ramp()
    v = guard.check(chunk, np.zeros(3))
    assert v.ok and not v.refused and v.records == []
    np.testing.assert_array_equal(v.actions, chunk)
    assert v.actions.dtype == np.float32


def test_nan_refused_not_zero_filled():
    guard = SafetyGuard()
    chunk = _ramp()
    chunk[2, 1] = np.nan
    v = guard.check(chunk)
    assert v.refused and v.actions is None
    (rec,) = v.records
    assert rec.rule == "finite" and rec.step == 2 and rec.dim == 1
    assert guard.log[-1] is rec


def test_nan_state_refused():
    v = SafetyGuard().check(_ramp(), np.array([0.0, np.inf, 0.0]))
    assert v.refused and v.records[0].rule == "finite"


def test_dimension_mismatch_refused_never_padded():
    guard = SafetyGuard(SafetyConfig(action_dim=4))
    v = guard.check(_ramp(d=3))
    assert v.refused
    assert v.records[0].rule == "dimension" and "padding" in v.records[0].message
    # The current state's dimension is checked too, even without a configured action_dim.
    v2 = SafetyGuard().check(_ramp(d=3), np.zeros(6))
    assert v2.refused and v2.records[0].rule == "dimension"
    # 1-D input is not a chunk.
    assert SafetyGuard().check(np.zeros(3)).records[0].rule == "dimension"


def test_chunk_length_limits():
    guard = SafetyGuard(SafetyConfig(min_chunk_length=2, max_chunk_length=10))
    assert guard.check(_ramp(h=11)).records[0].rule == "chunk_length"
    assert guard.check(_ramp(h=1)).records[0].rule == "chunk_length"
    assert guard.check(_ramp(h=10)).ok


def test_joint_limits_refuse_and_clip():
    chunk = _ramp()
    chunk[3, 2] = 1.5
    refuse = SafetyGuard(SafetyConfig(joint_low=LOW, joint_high=HIGH))
    v = refuse.check(chunk)
    assert v.refused
    assert [(r.rule, r.step, r.dim, r.limit) for r in v.records] == [("joint_limits", 3, 2, 1.0)]
    clip = SafetyGuard(SafetyConfig(joint_low=LOW, joint_high=HIGH, on_limit="clip"))
    v2 = clip.check(chunk)
    assert v2.ok and v2.actions[3, 2] == pytest.approx(1.0)
    assert v2.records[0].action == "clipped"


def test_max_delta_from_state_and_between_steps():
    guard = SafetyGuard(SafetyConfig(max_delta_per_tick=0.1))
    # First target too far from where the robot is now.
    v = guard.check(_ramp(), np.full(3, 0.5))
    assert v.refused and v.records[0].rule == "max_delta" and v.records[0].step == 0
    # A jump inside the chunk.
    chunk = _ramp()
    chunk[3:, 0] += 0.5
    v2 = guard.check(chunk, np.zeros(3))
    assert v2.refused and (v2.records[0].step, v2.records[0].dim) == (3, 0)
    # Per-dimension limits.
    per_dim = SafetyGuard(SafetyConfig(max_delta_per_tick=(1.0, 0.01, 1.0)))
    assert per_dim.check(_ramp(), np.zeros(3)).records[0].dim == 1


def test_max_delta_truncate_keeps_safe_prefix():
    guard = SafetyGuard(SafetyConfig(max_delta_per_tick=0.1, on_jump="truncate"))
    chunk = _ramp()
    chunk[3:, 0] += 0.5
    v = guard.check(chunk, np.zeros(3))
    assert v.ok and v.actions.shape == (3, 3)
    np.testing.assert_array_equal(v.actions, chunk[:3])
    assert v.records[0].action == "truncated"
    # A jump at step 0 leaves nothing to execute: refused.
    assert guard.check(chunk, np.full(3, 0.9)).refused


def test_estop_refuses_until_released():
    guard = SafetyGuard()
    guard.estop("operator")
    v = guard.check(_ramp())
    assert v.refused and v.records[0].rule == "estop" and "operator" in v.records[0].message
    with pytest.raises(SafetyRefused, match="e-stop"):
        guard.require(_ramp())
    guard.release()
    assert guard.check(_ramp()).ok
    assert [r.action for r in guard.log if r.rule == "estop"] == ["engaged", "refused", "refused", "released"]


def test_verdict_lands_in_step_info_and_survives_save(tmp_path):
    guard = SafetyGuard(SafetyConfig(joint_low=LOW, joint_high=HIGH))
    step = Step(actions=_ramp() + 5.0)
    v = guard.guard_step(step, np.zeros(3))
    assert v.refused
    info = step.info["safety"]
    assert info["refused"] is True and info["records"][0]["rule"] == "joint_limits"
    json.dumps(info)  # structured and JSON-able
    loaded = Step.load(step.save(tmp_path / "s"))
    assert loaded.info["safety"]["records"][0]["rule"] == "joint_limits"


def test_config_validation_and_limits_from_stats():
    with pytest.raises(ValueError, match="joint_low must be <="):
        SafetyConfig(joint_low=(1.0,), joint_high=(0.0,))
    with pytest.raises(ValueError, match="on_limit"):
        SafetyConfig(on_limit="ignore")  # type: ignore[arg-type]
    low, high = limits_from_norm_stats({"min": [0.0, -1.0], "max": [1.0, 1.0]}, margin_frac=0.5)
    assert low == (-0.5, -2.0) and high == (1.5, 2.0)
