"""SO-101 joint names and the unit convention of the simulator's action/state vectors.

Why normalized units and not radians: MolmoAct2-SO100_101 and LeRobot SO-101 recordings (e.g. the
real `so101_record_test` sample) use LeRobot's motor normalization -- arm joints in -100..100 over
the calibrated range, gripper in 0..100 (0 = closed). The simulator speaks the same units so a
real checkpoint's chunk, a recorded dataset and our own demos are interchangeable.

Sim calibration (the MJCF is the "new calibration": joint zero = middle of its range):
    arm joint:  value = 100 * (q_rad - mid) / half_range    (-100 = lower limit, +100 = upper limit)
    gripper:    value = 100 * (q_rad - lo) / (hi - lo)        (0 = closed at the lower limit)
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
# LeRobot's feature names for an SO-101 follower (see meta/info.json of a real recording).
FEATURE_NAMES: tuple[str, ...] = tuple(f"{name}.pos" for name in JOINT_NAMES)
ACTION_UNITS = "lerobot_normalized (arm joints -100..100 over the joint range, gripper 0..100 with 0 = closed)"
GRIPPER_INDEX = 5

# Limits in robot units, per dimension (the same for every SO-101 in the sim).
UNIT_LOW = np.array([-100.0] * 5 + [0.0])
UNIT_HIGH = np.array([100.0] * 6)


def units_to_rad(values: np.ndarray, joint_range_rad: np.ndarray) -> np.ndarray:
    """Robot units [..., 6] -> joint radians [..., 6]; `joint_range_rad` is [6, 2] (lo, hi) from the model."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = joint_range_rad[:, 0], joint_range_rad[:, 1]
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    out = mid + values / 100.0 * half
    out[..., GRIPPER_INDEX] = lo[GRIPPER_INDEX] + values[..., GRIPPER_INDEX] / 100.0 * (hi[GRIPPER_INDEX] - lo[GRIPPER_INDEX])
    return out


def rad_to_units(q_rad: np.ndarray, joint_range_rad: np.ndarray) -> np.ndarray:
    """Inverse of `units_to_rad`."""
    q_rad = np.asarray(q_rad, dtype=np.float64)
    lo, hi = joint_range_rad[:, 0], joint_range_rad[:, 1]
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    out = (q_rad - mid) / half * 100.0
    out[..., GRIPPER_INDEX] = (q_rad[..., GRIPPER_INDEX] - lo[GRIPPER_INDEX]) / (hi[GRIPPER_INDEX] - lo[GRIPPER_INDEX]) * 100.0
    return out


def tile_names(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    """Feature names for several arms, e.g. ("left_", "right_") -> left_shoulder_pan.pos ... right_gripper.pos."""
    return tuple(f"{p}{n}" for p in prefixes for n in FEATURE_NAMES)
