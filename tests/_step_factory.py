"""Shared test builders for Step-based tests (imported by test_base, test_recording, test_viz).

Lives beside the tests (not in the package) because it builds synthetic data only tests need.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from molmoact2.models.base import CameraFrame, Observation, Step


def make_full_step(seed: int = 0, index: int = 3) -> Step:
    """A Step with every field populated, covering every dtype the format must keep."""
    rng = np.random.default_rng(seed)
    h, w, horizon, dim = 12, 16, 5, 6
    cams = {
        "front": CameraFrame(
            rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            depth_m=np.where(rng.random((h, w)) < 0.1, np.nan, rng.random((h, w))).astype(np.float32),
            segmentation=rng.integers(-1, 4, (h, w)).astype(np.int32),
            K=np.array([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], dtype=np.float64),
            T_world_cam=np.eye(4, dtype=np.float64),
        ),
        "wrist": CameraFrame(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
    }
    obs = Observation(
        cameras=cams,
        state=rng.normal(size=dim).astype(np.float32),
        instruction="put the red cube in the bowl",
        state_names=tuple(f"joint_{i}" for i in range(dim)),
        timestamp_s=1.25,
    )
    return Step(
        index=index,
        timestamp_s=0.5 + index,
        backend="nano",
        observation=obs,
        prompt_text="<setup> put the red cube </setup>",
        prompt_token_ids=rng.integers(0, 5000, 17).astype(np.int64),
        generated_text="<depth_start> ... <action_end>",
        generated_token_ids=rng.integers(0, 5000, 9).astype(np.int64),
        answer_text="(412, 233)",
        depth_bins=rng.integers(0, 128, 100).astype(np.int64),
        depth_update_mask=rng.random(100) < 0.3,
        depth_decoded=rng.random((h, w)).astype(np.float32),
        action_token_ids=rng.integers(0, 2048, 11).astype(np.int64),
        actions=rng.normal(size=(horizon, dim)).astype(np.float32),
        action_names=tuple(f"joint_{i}" for i in range(dim)),
        action_units="rad",
        n_executed=3,
        denoising_states=rng.normal(size=(4, horizon, dim)).astype(np.float32),
        planned_path_world=rng.normal(size=(horizon, 3)).astype(np.float32),
        planned_path_px={"front": rng.random((horizon, 2)).astype(np.float32) * 16, "wrist": np.zeros((horizon, 2), np.float32)},
        points_px={"front": np.array([[3.5, 4.25]], dtype=np.float32)},
        timings_ms={"prefill": 12.5, "depth_decode": 3.25, "action_expert": 7.0, "total": 22.75},
        info={
            "seed": 7,
            "ok": True,
            "note": "nested",
            "nothing": None,
            "nested": {
                "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
                "i64": np.array([-(2**40), 2**40], dtype=np.int64),
                "flags": np.array([True, False, True]),
                "f64": np.array([np.pi, np.inf, -0.0]),
                "deeper": {"f32": np.array([[1.5, np.nan]], dtype=np.float32)},
            },
            "list_of_arrays": [np.ones(2, np.float32), np.zeros((0, 3), np.int64)],
        },
    )


def assert_same(a, b, where: str = "step") -> None:
    """Deep equality that also demands identical array dtype and shape (NaN == NaN)."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{where}: expected ndarray, got {type(b).__name__}"
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} -> {b.dtype}"
        assert a.shape == b.shape, f"{where}: shape {a.shape} -> {b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} -> {list(b) if isinstance(b, dict) else b}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {type(a).__name__}[{len(a)}] -> {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} -> {b!r}"
