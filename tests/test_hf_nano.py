"""A MolmoAct2-Nano checkpoint through the REAL-checkpoint backend (HFCheckpointPolicy / load_policy(DIR)).

Nano's model_type `molmoact2_nano` is registered natively with transformers (no auto_map, no code in the
directory), so no trust_remote_code is demanded; every other preflight check still runs. The same
random tiny checkpoint driven through NanoPolicy must give bit-identical steps: one model, two doors.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import STATE, image, one_thread_fixture  # noqa: E402
from molmoact2.models.base import CameraFrame, Observation, Policy  # noqa: E402
from molmoact2.models.hf import CheckpointError, HFCheckpointPolicy, change_mask, preflight  # noqa: E402
from molmoact2.models.registry import load_policy  # noqa: E402

one_thread = one_thread_fixture()
TAG = "so101_sim_molmoact2"


@pytest.fixture(scope="module")
def nano_dir(tmp_path_factory):
    from molmoact2.models.nano.factory import make_random_checkpoint

    return make_random_checkpoint(tmp_path_factory.mktemp("hfnano") / "nano_random", seed=7)


def _obs(front: np.ndarray) -> Observation:
    cams = {"front": CameraFrame(rgb=front), "wrist": CameraFrame(rgb=image(21, 48, 64))}
    return Observation(cameras=cams, state=STATE, instruction="Pick up the red cube.")


def _episode() -> list[Observation]:
    first = image(20, 64, 64)
    changed = first.copy()
    changed[:16, :16] = 255 - changed[:16, :16]  # one corner changes: only its cells are re-predicted
    return [_obs(first), _obs(first), _obs(changed)]


def test_preflight_native_type_needs_no_trust(nano_dir):
    pre = preflight(nano_dir)  # trust_remote_code=False (the default)
    assert pre.native_model_type == "molmoact2_nano" and pre.code_files == []
    assert pre.norm_tag == TAG and pre.warnings == []  # no transformers-range note: there is no remote code
    with pytest.raises(CheckpointError, match="unknown norm_tag 'franka_droid'.*so101_sim_molmoact2"):
        preflight(nano_dir, norm_tag="franka_droid")


def test_nano_through_hf_backend_with_depth_cache(nano_dir):
    pol = load_policy(str(nano_dir), depth_reasoning=True, seed=0)  # a plain directory spec
    assert isinstance(pol, HFCheckpointPolicy) and isinstance(pol, Policy)
    s1, s2, s3 = (pol.predict(o) for o in _episode())
    assert s1.backend == "hf" and s1.actions.shape == (30, 6) and s1.actions.dtype == np.float32
    assert np.all(np.isfinite(s1.actions)) and s1.action_names[0] == "shoulder_pan.pos"
    assert s1.info["native_model_type"] == "molmoact2_nano" and not s1.info["remote_code"]
    assert s1.depth_bins.shape == (100,) and s1.depth_update_mask.all() and s1.generated_token_ids.shape == (102,)
    assert s1.generated_text.startswith("<depth_start>")
    # Step 2, same image: the cache came back in and every cell was replayed. (The cache now holds step 3.)
    assert not s2.depth_update_mask.any() and s2.info["depth_cache_used"]
    np.testing.assert_array_equal(s2.depth_bins, s1.depth_bins)
    np.testing.assert_array_equal(pol.depth_cache["image"], _episode()[2].cameras["front"].rgb)  # the latest main image
    # Step 3, a changed corner: only changed cells re-predicted, the rest replayed from step 2.
    mask = change_mask(_episode()[1].cameras["front"].rgb, _episode()[2].cameras["front"].rgb)
    assert 0 < mask.sum() < 100
    np.testing.assert_array_equal(s3.depth_update_mask, mask)
    np.testing.assert_array_equal(s3.depth_bins[~mask], s1.depth_bins[~mask])
    pol.reset()
    assert pol.depth_cache is None


def test_same_model_through_nano_policy_is_bit_identical(nano_dir):
    hf = HFCheckpointPolicy(nano_dir, depth_reasoning=True, seed=3)
    nano = load_policy(f"nano:{nano_dir}", depth_reasoning=True, seed=3)
    assert type(nano).__name__ == "NanoPolicy"
    for obs in _episode():
        a, b = hf.predict(obs), nano.predict(obs)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.depth_bins, b.depth_bins)
        np.testing.assert_array_equal(a.depth_update_mask, b.depth_update_mask)  # our mask == the model's own
        np.testing.assert_array_equal(a.generated_token_ids, b.generated_token_ids)


def test_other_checks_still_apply(nano_dir, tmp_path):
    d = tmp_path / "unknown_type"
    shutil.copytree(nano_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "molmoact2_nano_from_the_future"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="auto_map.*'molmoact2_nano_from_the_future' is not registered"):
        preflight(d)
    # A Nano-typed directory that ships code is loaded WITH that code, so it needs the opt-in again.
    d2 = tmp_path / "with_code"
    shutil.copytree(nano_dir, d2)
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_extra.ExtraConfig"}
    (d2 / "config.json").write_text(json.dumps(cfg))
    (d2 / "configuration_extra.py").write_text("# code a user must read before trusting\n")
    with pytest.raises(CheckpointError, match="configuration_extra.py.*trust_remote_code=True"):
        preflight(d2)
    d3 = tmp_path / "no_stats"
    shutil.copytree(nano_dir, d3)
    (d3 / "norm_stats.json").unlink()
    with pytest.raises(CheckpointError, match="norm_stats.json"):
        preflight(d3)
    with pytest.raises(CheckpointError, match="refusing to load"):
        preflight(nano_dir, device="cpu", dtype="float32", memory_available_bytes=1024)
    with pytest.raises(ValueError, match="expects a raw state of 6 dims"):
        HFCheckpointPolicy(nano_dir).predict(Observation(cameras=_episode()[0].cameras, state=np.zeros(7),
                                                         instruction="x"))
