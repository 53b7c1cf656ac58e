"""NanoPolicy (Observation -> Step) and the registry's `load_policy("nano", ...)`."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import STATE, image, one_thread_fixture  # noqa: E402
from molmoact2.models.base import CameraFrame, Observation, Policy, Step  # noqa: E402
from molmoact2.models.registry import load_policy  # noqa: E402

one_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from molmoact2.models.nano.factory import make_random_checkpoint

    return make_random_checkpoint(tmp_path_factory.mktemp("nano") / "nano_random", seed=4)


def _obs(main=None, names=("wrist", "front")) -> Observation:
    # Deliberately out of order: the policy must reorder by the tag's camera_keys (front first).
    frames = {"wrist": CameraFrame(rgb=image(11, 48, 64)), "front": CameraFrame(rgb=image(10) if main is None else main)}
    return Observation(cameras={n: frames[n] for n in names}, state=STATE, instruction="Pick up the red cube.")


def test_registry_default_path_says_how_to_build(tmp_path, monkeypatch):
    # `nano` pointed at an empty directory, so the test holds whether or not assets/nano/ is shipped.
    monkeypatch.setenv("MOLMOACT2_NANO_DIR", str(tmp_path / "no_nano_here"))
    with pytest.raises(FileNotFoundError) as err:
        load_policy("nano")
    msg = str(err.value)
    assert "holds no Nano checkpoint" in msg and "molmoact2.models.nano.factory" in msg and "http://" in msg
    with pytest.raises(FileNotFoundError, match="expected a Nano checkpoint directory"):
        load_policy("nano", path="/nonexistent/nano")


def test_policy_step_with_depth_and_cache(ckpt, tmp_path):
    pol = load_policy("nano", path=str(ckpt), depth_reasoning=True, seed=0)
    assert isinstance(pol, Policy) and pol.norm_tag == "so101_sim_molmoact2"
    step = pol.predict(_obs())
    assert isinstance(step, Step) and step.backend == "nano"
    assert step.info["camera_order"] == ["front", "wrist"]
    assert step.actions.shape == (30, 6) and step.actions.dtype == np.float32
    assert step.action_names[0] == "shoulder_pan.pos"
    assert step.depth_bins.shape == (100,) and step.depth_update_mask.all()
    assert step.denoising_states.shape == (11, 30, 6)
    assert np.allclose(step.denoising_states[-1], step.actions)
    assert step.generated_text.startswith("<depth_start>") and step.generated_text.endswith("<depth_end>")
    for stage in ("vision_ms", "prefill_ms", "depth_ms", "action_expert_ms", "total_ms"):
        assert step.timings_ms[stage] > 0
    again = pol.predict(_obs())  # same image: everything replayed from the cache
    assert not again.depth_update_mask.any() and np.array_equal(again.depth_bins, step.depth_bins)
    assert again.info["forward_calls"]["depth"] == 1 and again.index == 1
    back = Step.load(step.save(tmp_path / "s"))
    assert np.array_equal(back.depth_bins, step.depth_bins) and np.array_equal(back.denoising_states, step.denoising_states)
    pol.reset()
    assert pol.depth_cache is None and pol.predict(_obs()).depth_update_mask.all()


def test_policy_seed_reproducible_and_errors(ckpt):
    a = load_policy("nano", path=str(ckpt), seed=3)
    b = load_policy("nano", path=str(ckpt), seed=3)
    assert np.array_equal(a.predict(_obs()).actions, b.predict(_obs()).actions)
    with pytest.raises(ValueError, match="expects 2 cameras"):
        a.predict(_obs(names=("front",)))
    with pytest.raises(ValueError, match="Valid tags: so101_sim_molmoact2"):
        load_policy("nano", path=str(ckpt), norm_tag="franka_droid")
    with pytest.raises(ValueError, match="action_tokenizer"):
        load_policy("nano", path=str(ckpt), mode="discrete")


def test_ask_spatial_question(ckpt):
    pol = load_policy("nano", path=str(ckpt))
    step = pol.ask([image(3)], "Point to the red cube", max_new_tokens=4)
    assert step.backend == "nano" and 1 <= step.generated_token_ids.shape[0] <= 4
    assert isinstance(step.answer_text, str) and "spatial" in step.info


def test_carry_steps_continue_the_previous_plan_and_drop_it_when_it_was_not_executed(ckpt):
    """carry_steps=5: the second chunk's first 5 actions ARE the first plan's actions for those ticks (its
    actions 15..19), when the arm is where the first chunk ended; far from there the carry is dropped and
    the Step says why. The discrete mode cannot carry, and says so."""
    from molmoact2.models.nano.normalization import unnormalize_actions

    pol = load_policy("nano", path=str(ckpt), seed=0, n_action_steps=15, carry_steps=5)
    first = pol.predict(_obs())
    assert first.actions.shape == (15, 6) and first.info["carry"]["steps"] == 0
    planned = unnormalize_actions(pol._carry, pol.meta["action_stats"], pol.model.norm_stats.get("norm_mode", "min_max"))
    moved = _obs()
    moved.state = first.actions[-1].copy()  # as if the chunk had been executed
    second = pol.predict(moved)
    assert second.info["carry"]["steps"] == 5 and second.info["carry"]["state_gap"] < 1e-6
    assert np.allclose(second.actions[:5], planned, atol=1e-3)
    assert not np.allclose(second.actions[5:10], planned, atol=1e-3)  # the free part is the new plan's own

    far = _obs()
    far.state = second.actions[-1] + np.array([40.0, 0, 0, 0, 0, 0], np.float32)  # shoulder_pan 40 units off
    third = pol.predict(far)
    assert third.info["carry"]["steps"] == 0 and "not executed" in third.info["carry"]["note"]
    pol.reset()
    assert pol.predict(_obs()).info["carry"]["steps"] == 0  # a new episode starts without a plan

    whole = load_policy("nano", path=str(ckpt), seed=0, n_action_steps=30, carry_steps=5)
    whole.predict(_obs())
    assert whole.predict(_obs()).info["carry"]["note"].startswith("nothing to carry")  # no plan left over

    plain = load_policy("nano", path=str(ckpt), seed=0, n_action_steps=15)
    assert "carry" not in plain.predict(_obs()).info
    with pytest.raises(ValueError, match="only the continuous"):
        load_policy("nano", path=str(ckpt), mode="discrete", action_tokenizer=str(_tokenizer_dir()), carry_steps=5)
    with pytest.raises(ValueError, match="whole number >= 0"):
        load_policy("nano", path=str(ckpt), carry_steps=-1)
    # the start-noise scale: continuous only, in range; at 0 the noise seed no longer changes the plan
    with pytest.raises(ValueError, match="noise_scale: only the continuous"):
        load_policy("nano", path=str(ckpt), mode="discrete", action_tokenizer=str(_tokenizer_dir()), noise_scale=0.0)
    with pytest.raises(ValueError, match=r"noise_scale: expected a number in 0..2.0"):
        load_policy("nano", path=str(ckpt), noise_scale=-1)
    seeded = [load_policy("nano", path=str(ckpt), seed=s, noise_scale=0.0).predict(_obs()).actions for s in (0, 1)]
    assert np.array_equal(seeded[0], seeded[1])
    # plan samples: continuous only; the Step says which draw was kept and how far the others were from it
    with pytest.raises(ValueError, match="plan_samples: only the continuous"):
        load_policy("nano", path=str(ckpt), mode="discrete", action_tokenizer=str(_tokenizer_dir()), plan_samples=4)
    info = load_policy("nano", path=str(ckpt), seed=0, plan_samples=4).predict(_obs()).info["plan_samples"]
    assert info["k"] == 4 and 0 <= info["choice"] < 4 and info["distance_to_kept_normalized"][info["choice"]] == 0
    assert "plan_samples" not in load_policy("nano", path=str(ckpt), seed=0).predict(_obs()).info


def _tokenizer_dir():
    from molmoact2.training.nano_trainer import DEFAULT_ACTION_TOKENIZER

    return DEFAULT_ACTION_TOKENIZER
