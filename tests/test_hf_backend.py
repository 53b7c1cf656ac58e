"""The real-checkpoint backend, driven offline through exactly the loading path used for real checkpoints
(AutoProcessor / AutoModelForImageTextToText with the directory's own remote code) on a tiny checkpoint
built by tests/fixtures/tiny_checkpoint.py."""

from __future__ import annotations

import json
import shutil
import uuid

import numpy as np
import pytest

from fixtures.tiny_checkpoint import NORM_TAGS, build_tiny_checkpoint, write_fake_safetensors_header
from molmoact2.models.base import CameraFrame, Observation, Policy, Step
from molmoact2.models.hf import (
    CheckpointError,
    HFCheckpointPolicy,
    change_mask,
    check_transformers_version,
    estimate_memory,
    mem_available_bytes,
    preflight,
)
from molmoact2.models.registry import load_policy

SO101 = "so100_so101_molmoact2"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    # A unique directory NAME: transformers caches remote code per directory basename.
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ck") / f"tiny_{uuid.uuid4().hex[:8]}")


def _copy(ckpt, tmp_path):
    dst = tmp_path / f"tiny_{uuid.uuid4().hex[:8]}"
    shutil.copytree(ckpt, dst)
    return dst


def _img(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 220, (h, w, 3), dtype=np.uint8)


def _obs(names=("front", "wrist"), dim=6, seed=0, state=None) -> Observation:
    cams = {n: CameraFrame(rgb=_img(seed + i)) for i, n in enumerate(names)}
    st = np.linspace(-0.5, 0.5, dim).astype(np.float32) if state is None else state
    return Observation(cameras=cams, state=st, instruction="Pick up the red cube.")


@pytest.fixture(scope="module")
def policy(ckpt):
    return HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=SO101, seed=0)


def test_continuous_step(policy):
    step = policy.predict(_obs())
    assert isinstance(step, Step) and step.backend == "hf"
    assert step.actions.shape == (30, 6) and step.actions.dtype == np.float32
    stats = json.loads((policy.checkpoint_dir / "norm_stats.json").read_text())["metadata_by_tag"][SO101]
    lo, hi = np.array(stats["action_stats"]["min"]), np.array(stats["action_stats"]["max"])
    assert np.all(step.actions >= lo - 1e-5) and np.all(step.actions <= hi + 1e-5)  # un-normalized units
    assert step.action_names == tuple(stats["action_stats"]["names"])
    assert step.depth_bins is None and step.generated_token_ids is None
    assert {"prepare_ms", "predict_action_ms", "total_ms"} <= set(step.timings_ms)
    assert step.info["norm_tag"] == SO101 and step.info["camera_order"] == ["front", "wrist"]
    assert isinstance(policy, Policy)
    # Seeded: reset() restarts the noise, so the same observation gives the same chunk.
    policy.reset()
    a = policy.predict(_obs()).actions
    policy.reset()
    np.testing.assert_array_equal(a, policy.predict(_obs()).actions)
    # A different state changes the actions (the state really reaches the model).
    policy.reset()
    b = policy.predict(_obs(state=np.full(6, 0.9, np.float32))).actions
    assert not np.allclose(a, b)


def test_cameras_reordered_by_name_and_step_saves(policy, tmp_path):
    obs = _obs(names=("wrist_cam", "front_cam"))
    step = policy.predict(obs)
    assert step.info["camera_order"] == ["front_cam", "wrist_cam"]
    loaded = Step.load(step.save(tmp_path / "s"))
    np.testing.assert_array_equal(loaded.actions, step.actions)


def test_depth_cache_carries_over(ckpt):
    pol = HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=SO101, depth_reasoning=True, seed=1)
    obs1 = _obs(seed=3)
    s1 = pol.predict(obs1)
    assert s1.depth_bins.shape == (100,) and s1.depth_update_mask.all()
    assert s1.generated_token_ids.shape == (102,)
    assert pol.depth_cache is not None and pol.depth_cache["depth_bins"].tolist() == s1.depth_bins.tolist()
    # Same scene at half brightness: every patch keeps its direction (cosine 1), so MolmoThink replays every
    # cell from the cache -- the codes stay those of step 1, although a fresh prediction would differ.
    dim = {n: CameraFrame(rgb=(c.rgb // 2).astype(np.uint8)) for n, c in obs1.cameras.items()}
    obs2 = Observation(cameras=dim, state=obs1.state, instruction=obs1.instruction)
    s2 = pol.predict(obs2)
    assert not s2.depth_update_mask.any() and s2.info["depth_cache_used"]
    np.testing.assert_array_equal(s2.depth_bins, s1.depth_bins)
    pol.reset()
    assert pol.depth_cache is None
    fresh = pol.predict(obs2)
    assert fresh.depth_update_mask.all() and not np.array_equal(fresh.depth_bins, s1.depth_bins)
    # A local change re-predicts only the changed cells.
    rgb = obs2.cameras["front"].rgb.copy()
    rgb[:10, :10] = 255 - rgb[:10, :10]
    obs3 = Observation(cameras={"front": CameraFrame(rgb=rgb), "wrist": obs2.cameras["wrist"]},
                       state=obs1.state, instruction=obs1.instruction)
    s3 = pol.predict(obs3)
    assert 0 < s3.depth_update_mask.sum() < 100
    np.testing.assert_array_equal(s3.depth_update_mask, change_mask(obs2.cameras["front"].rgb, rgb))
    keep = ~s3.depth_update_mask
    np.testing.assert_array_equal(s3.depth_bins[keep], fresh.depth_bins[keep])


class BinTokenizer:
    """A test stand-in for an OpenFAST tokenizer object: 2048 uniform bins per value (call/decode interface)."""

    def __call__(self, chunk):
        chunk = np.asarray(chunk)
        return [np.clip(np.round((c.reshape(-1) + 1) / 2 * 2047), 0, 2047).astype(int).tolist() for c in chunk]

    def decode(self, ids, time_horizon, action_dim):
        return np.stack([np.asarray(i, float).reshape(time_horizon, action_dim) / 2047 * 2 - 1 for i in ids])


def test_discrete_mode_with_tokenizer_object(ckpt):
    with pytest.raises(CheckpointError, match="OpenFAST tokenizer"):
        HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=SO101, mode="discrete")
    tok = BinTokenizer()
    pol = HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=SO101, mode="discrete", action_tokenizer=tok,
                             seed=0)
    step = pol.predict(_obs())
    assert step.action_token_ids.shape == (30 * 6,)
    assert step.action_token_ids.min() >= 0 and step.action_token_ids.max() <= 2047
    decoded = tok.decode([step.action_token_ids], 30, 6)[0]
    stats = json.loads((ckpt / "norm_stats.json").read_text())["metadata_by_tag"][SO101]["action_stats"]
    lo, hi = np.array(stats["min"]), np.array(stats["max"])
    np.testing.assert_allclose(step.actions, (decoded + 1) / 2 * (hi - lo) + lo, rtol=1e-5, atol=1e-5)
    assert "<action_start>" in step.generated_text and "<action_end>" in step.generated_text


def test_discrete_mode_with_openfast_directory(ckpt, tmp_path):
    from molmoact2.openfast import OpenFastProcessor

    rng = np.random.default_rng(0)
    # Constant +-1 chunks pin the alphabet to the widest DC range any chunk in [-1, 1] can reach.
    chunks = [np.full((30, 6), 1.0), np.full((30, 6), -1.0)]
    chunks += [np.clip(np.cumsum(rng.normal(0, 0.1, (30, 6)), 0), -1, 1) for _ in range(60)]
    tok_dir = OpenFastProcessor.fit(chunks, vocab_size=300, scale=10).save(tmp_path / "openfast")
    pol = HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=SO101, mode="discrete",
                             action_tokenizer=str(tok_dir), seed=0)
    assert isinstance(pol.action_tokenizer, OpenFastProcessor)
    step = pol.predict(_obs())
    assert step.actions.shape == (30, 6) and np.all(np.isfinite(step.actions))
    again = pol.action_tokenizer.decode([step.action_token_ids.tolist()], 30, 6)[0]
    stats = json.loads((ckpt / "norm_stats.json").read_text())["metadata_by_tag"][SO101]["action_stats"]
    lo, hi = np.array(stats["min"]), np.array(stats["max"])
    np.testing.assert_allclose(step.actions, (again + 1) / 2 * (hi - lo) + lo, rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="does not exist"):
        HFCheckpointPolicy(ckpt, trust_remote_code=True, norm_tag=SO101, mode="discrete",
                           action_tokenizer=str(tmp_path / "missing"))


def test_ask_spatial_question(policy):
    img = np.full((80, 120, 3), 20, np.uint8)
    img[60:80, 90:120] = 250  # brightest cell: bottom-right quarter-cell (row 3, col 3)
    step = policy.ask([img], "Point to the bright square.")
    assert step.answer_text.startswith("<points") and "875 875" in step.answer_text
    assert step.prompt_token_ids is not None and step.generated_token_ids is not None
    assert "generate_ms" in step.timings_ms
    assert step.info["spatial"]["ok"] and step.info["spatial"]["n_points"] == 1
    np.testing.assert_allclose(step.points_px["image_1"], [[0.875 * 120, 0.875 * 80]], atol=1.0)
    # Two images: the prompt numbers them; points stay on image 1 (the tiny model points there).
    two = policy.ask([img, np.zeros((10, 10, 3), np.uint8)], "Point to the bright square.")
    assert set(two.points_px) == {"image_1"}
    with pytest.raises(ValueError, match="uint8"):
        policy.ask([img.astype(np.float32)], "Point to it.")


# ---- errors that name the fix -------------------------------------------------------------------------
def test_trust_remote_code_is_opt_in(ckpt):
    with pytest.raises(CheckpointError) as err:
        HFCheckpointPolicy(ckpt, norm_tag=SO101)
    msg = str(err.value)
    assert str(ckpt) in msg and "modeling_molmoact2.py" in msg and "trust_remote_code=True" in msg


def test_norm_tag_errors_list_valid_tags(ckpt):
    with pytest.raises(CheckpointError, match="unknown norm_tag 'franka'") as err:
        preflight(ckpt, norm_tag="franka", trust_remote_code=True)
    for tag in NORM_TAGS:
        assert tag in str(err.value)
    with pytest.raises(CheckpointError, match="choose one with norm_tag="):
        preflight(ckpt, trust_remote_code=True)


def test_missing_norm_stats_and_files(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path)
    (d / "norm_stats.json").unlink()
    with pytest.raises(CheckpointError, match="norm_stats.json"):
        preflight(d, norm_tag=SO101, trust_remote_code=True)
    d2 = _copy(ckpt, tmp_path)
    (d2 / "tokenizer.json").unlink()
    (d2 / "modeling_molmoact2.py").unlink()
    with pytest.raises(CheckpointError) as err:
        preflight(d2, norm_tag=SO101, trust_remote_code=True)
    assert "tokenizer.json" in str(err.value) and "modeling_molmoact2.py" in str(err.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        preflight(tmp_path / "nope", trust_remote_code=True)


def test_bad_norm_stats_format(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path)
    (d / "norm_stats.json").write_text(json.dumps({"format": "other", "tags": {}}))
    with pytest.raises(CheckpointError, match="molmoact2_norm_stats.v1"):
        preflight(d, norm_tag=SO101, trust_remote_code=True)


def test_missing_torchvision_named(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path)
    proc = d / "image_processing_molmoact2.py"
    proc.write_text("import torchvision\nimport einops_not_really\n" + proc.read_text())
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here; the missing-package path cannot be exercised")
    with pytest.raises(CheckpointError) as err:
        preflight(d, norm_tag=SO101, trust_remote_code=True)
    assert "torchvision (imported by image_processing_molmoact2.py)" in str(err.value)


def test_depth_on_a_checkpoint_without_depth(ckpt, tmp_path):
    d = _copy(ckpt, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["enable_depth_reasoning"] = False
    cfg["n_obs_steps"] = 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="n_obs_steps=2"), pytest.raises(CheckpointError, match="not trained for depth"):
        HFCheckpointPolicy(d, trust_remote_code=True, norm_tag=SO101, depth_reasoning=True)
    pre = preflight(d, norm_tag=SO101, trust_remote_code=True, transformers_version="5.23.0")
    assert any("n_obs_steps=2" in w for w in pre.warnings) and any("5.4-5.5" in w for w in pre.warnings)


def test_camera_count_and_state_dim(policy):
    with pytest.raises(ValueError, match=r"expects 2 cameras in this order: \['front', 'wrist'\]"):
        policy.predict(_obs(names=("front",)))
    with pytest.raises(ValueError, match="expects a raw state of 6 dims"):
        policy.predict(_obs(dim=7))


def test_transformers_version_check():
    assert check_transformers_version("5.5.4") is None and check_transformers_version("5.4.0") is None
    for bad in ("5.23.0", "4.57.1", "6.0.0"):
        assert "5.4-5.5" in check_transformers_version(bad)


def test_memory_estimate_from_header_only(ckpt, tmp_path):
    est = estimate_memory(ckpt)
    assert est.n_tensors == 3 and est.float_elements == 32 * 35 + 32 + 32
    d = _copy(ckpt, tmp_path)
    # 22 GB of fp32 declared in a header with NO tensor data: the check must read only the header.
    n = 22 * 10**9 // 4
    write_fake_safetensors_header(d / "model.safetensors", {"w": ("F32", [n // 1000, 1000])})
    assert (d / "model.safetensors").stat().st_size < 1000
    est = estimate_memory(d)
    assert est.bytes_at("float32") == (n // 1000) * 1000 * 4 and est.bytes_at("bfloat16") == est.bytes_at("float32") // 2
    with pytest.raises(CheckpointError) as err:
        preflight(d, norm_tag=SO101, trust_remote_code=True, device="cpu", dtype="float32",
                  memory_available_bytes=24 * 2**30)
    msg = str(err.value)
    assert "refusing to load" in msg and "dtype='bfloat16'" in msg and "GPU" in msg and "/act server" in msg
    # bf16 fits in 24 GiB: accepted by the memory check (the load itself is not attempted here).
    pre = preflight(d, norm_tag=SO101, trust_remote_code=True, device="cpu", dtype="bfloat16",
                    memory_available_bytes=24 * 2**30)
    assert pre.dtype == "bfloat16"
    # Against this machine's real MemAvailable: a header declaring 4x that must be refused.
    n_f32 = mem_available_bytes()  # elements; 4 bytes each = 4x MemAvailable
    write_fake_safetensors_header(d / "model.safetensors", {"w": ("F32", [n_f32 // 1000, 1000])})
    with pytest.raises(CheckpointError, match="refusing to load"):
        HFCheckpointPolicy(d, trust_remote_code=True, norm_tag=SO101, device="cpu", dtype="float32")


# ---- the registry ---------------------------------------------------------------------------------------
def test_registry(ckpt, tmp_path, monkeypatch):
    # Point `nano` at an empty directory: the test holds whether or not assets/nano/ is shipped.
    monkeypatch.setenv("MOLMOACT2_NANO_DIR", str(tmp_path / "no_nano_here"))
    with pytest.raises(FileNotFoundError) as err:
        load_policy("nano")
    assert "holds no Nano checkpoint" in str(err.value) and "http://" in str(err.value)
    assert "checkpoint" in str(err.value)
    with pytest.raises(FileNotFoundError, match="hf download allenai/MolmoAct2-DROID"):
        load_policy("allenai/MolmoAct2-DROID")
    with pytest.raises(TypeError, match="do not apply"):
        load_policy(str(ckpt), trust_remote_code=True, norm_tag=SO101, timeout_s=3)
    pol = load_policy(str(ckpt), trust_remote_code=True, norm_tag="franka_droid")
    step = pol.predict(_obs(names=("external", "wrist"), dim=8))
    assert step.actions.shape == (15, 8)
