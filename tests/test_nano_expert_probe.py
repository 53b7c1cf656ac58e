"""expert_probe: re-running Nano's flow expert on an edited per-layer context (notebook 04's experiments)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import STATE, TAG, TASK, image, one_thread_fixture, randomize_, tiny  # noqa: E402
from molmoact2.models.nano.expert_probe import (  # noqa: E402
    chunk_horizon, denoise_from_context, initial_noise, with_layer_context)

one_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def mp():
    model, proc = tiny(seed=3)
    randomize_(model.action_expert, seed=3)  # a live expert: the velocity depends on the context
    return model, proc


def _predict(model, proc, img_seed=0, **kw):
    return model.predict_action(processor=proc, images=[image(img_seed), image(img_seed + 1, 48, 64)], task=TASK,
                                state=STATE, norm_tag=TAG, inference_action_mode="continuous",
                                generator=torch.Generator().manual_seed(7), return_context=True, **kw)


def test_unedited_context_reproduces_predict_action(mp):
    model, proc = mp
    out = _predict(model, proc)
    noise = initial_noise(model, TAG, 7)
    assert tuple(noise.shape) == (1, chunk_horizon(model, TAG), model.config.max_action_dim)
    states = denoise_from_context(model, out["context_kv"], out["context_mask"], noise, norm_tag=TAG)
    assert states.shape == out["denoising_states"][:, 0].shape == (11, 30, 6)
    np.testing.assert_array_equal(states, out["denoising_states"][:, 0])
    normed = denoise_from_context(model, out["context_kv"], out["context_mask"], noise, norm_tag=TAG, normalized=True)
    np.testing.assert_array_equal(normed, out["denoising_states_normalized"][:, 0, :, :6])
    few = denoise_from_context(model, out["context_kv"], out["context_mask"], noise, norm_tag=TAG, num_steps=3,
                               n_action_steps=5)
    assert few.shape == (4, 5, 6)
    np.testing.assert_array_equal(few[0], states[0, :5])  # same start noise
    assert not np.allclose(few[-1], states[-1, :5])  # 3 Euler steps land elsewhere than 10


def test_swapping_every_layer_gives_the_other_observations_chunk(mp):
    model, proc = mp
    a, b = _predict(model, proc, 0), _predict(model, proc, 10)
    assert a["context_kv"][0][0].shape == b["context_kv"][0][0].shape
    layers = range(len(a["context_kv"]))
    swapped = with_layer_context(a["context_kv"], layers, b["context_kv"])
    states = denoise_from_context(model, swapped, a["context_mask"], initial_noise(model, TAG, 7), norm_tag=TAG)
    np.testing.assert_allclose(states, b["denoising_states"][:, 0], atol=1e-4)
    assert not np.allclose(a["actions"].numpy(), b["actions"].numpy(), atol=1e-3)  # the images matter


def test_zeroing_one_layer_changes_the_chunk_and_leaves_the_input_alone(mp):
    model, proc = mp
    out = _predict(model, proc)
    before = [k.copy() for k, _ in out["context_kv"]]
    edited = with_layer_context(out["context_kv"], [1], "zeros")
    assert not edited[1][0].any() and not edited[1][1].any()
    np.testing.assert_array_equal(edited[0][0], out["context_kv"][0][0])
    for k0, (k, _v) in zip(before, out["context_kv"]):
        np.testing.assert_array_equal(k0, k)  # the caller's arrays are not modified
    states = denoise_from_context(model, edited, out["context_mask"], initial_noise(model, TAG, 7), norm_tag=TAG)
    assert np.abs(states[-1] - out["actions"][0].numpy()).max() > 1e-3


def test_clear_errors(mp):
    model, proc = mp
    out = _predict(model, proc)
    with pytest.raises(ValueError, match="layers must be in 0..1"):
        with_layer_context(out["context_kv"], [5], "zeros")
    with pytest.raises(ValueError, match="'zeros' or another"):
        with_layer_context(out["context_kv"], [0], "noise")
    short = [(k[:, :-1], v[:, :-1]) for k, v in out["context_kv"]]
    with pytest.raises(ValueError, match="same token count"):
        with_layer_context(out["context_kv"], [0], short)
    with pytest.raises(ValueError, match="noise must be"):
        denoise_from_context(model, out["context_kv"], out["context_mask"], torch.zeros(1, 3, 32), norm_tag=TAG)
    with pytest.raises(ValueError, match="unknown norm_tag"):
        initial_noise(model, "nope", 0)
    with pytest.raises(ValueError, match="expected 2 per-layer"):
        denoise_from_context(model, out["context_kv"][:1], out["context_mask"], initial_noise(model, TAG, 7),
                             norm_tag=TAG)
