"""A relative action expert (`action_expert_config.relative_dims`): trained on action minus state, its plans come
back absolute, exactly the absolute expert's output shifted by the normalized state."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from _nano_fixtures import STATE, TAG, TASK, image, one_thread_fixture, randomize_, tiny  # noqa: E402
from molmoact2 import tokens as T  # noqa: E402

one_thread = one_thread_fixture()
ARM = [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def mp():
    model, proc = tiny(seed=2)
    randomize_(model.action_expert, seed=2)  # a live expert, so its output is not the same for every input
    return model, proc


@contextlib.contextmanager
def relative(model, dims):
    """The same weights read as a relative expert (the dims are read at run time from the config)."""
    cfg = model.config.action_expert_config
    before = cfg.relative_dims
    cfg.relative_dims = list(dims)
    try:
        yield model
    finally:
        cfg.relative_dims = before


def _normalized_state(model):
    stats = model.norm_stats
    return T.normalize_state(STATE, stats["metadata_by_tag"][TAG]["action_stats"], stats["norm_mode"])


def test_training_target_is_action_minus_state_on_the_arm_and_absolute_on_the_gripper(mp):
    from molmoact2.models.nano.train_step import build_example

    model, proc = mp
    chunk = np.linspace(-40, 40, 30 * 6, dtype=np.float32).reshape(30, 6)
    common = dict(style="action", images=[image(0, 64, 64), image(1, 64, 64)], norm_tag=TAG, task=TASK, state=STATE,
                  actions=chunk)
    absolute = build_example(model, proc, **common)["actions"].numpy()
    with relative(model, ARM):
        rel = build_example(model, proc, **common)["actions"].numpy()
    shift = _normalized_state(model)
    assert np.allclose(rel[:30, ARM], absolute[:30, ARM] - shift[ARM], atol=1e-6)
    assert np.array_equal(rel[:30, 5], absolute[:30, 5])          # the gripper stays an absolute command
    assert np.abs(shift[ARM]).max() > 0.05                        # the state is not at the stats' centre: a real shift
    assert not rel[:, 6:].any() and not absolute[:, 6:].any()     # padding untouched


def test_plan_is_the_same_expert_output_shifted_back_by_the_state(mp):
    model, proc = mp
    args = dict(processor=proc, images=[image(0), image(1, 48, 64)], task=TASK, state=STATE, norm_tag=TAG,
                inference_action_mode="continuous", enable_depth_reasoning=False)
    a = model.predict_action(generator=torch.Generator().manual_seed(4), **args)
    with relative(model, ARM):
        r = model.predict_action(generator=torch.Generator().manual_seed(4), **args)
        prefix = np.full((3, 6), 0.25, np.float32)
        pinned = model.predict_action(generator=torch.Generator().manual_seed(4), action_prefix_normalized=prefix,
                                      **args)
    shift = _normalized_state(model)
    plan_a, plan_r = a["denoising_states_normalized"][-1, 0, :, :6], r["denoising_states_normalized"][-1, 0, :, :6]
    assert np.allclose(plan_r[:, ARM], plan_a[:, ARM] + shift[ARM], atol=1e-5)
    assert np.allclose(plan_r[:, 5], plan_a[:, 5], atol=1e-6)
    # robot units follow from the absolute plan: the relative model's actions differ from the absolute one's
    assert not np.allclose(r["actions"].numpy(), a["actions"].numpy(), atol=1e-3)
    # a carried prefix is given absolute and comes back absolute (pinned in the expert's space, shifted both ways)
    assert np.allclose(pinned["denoising_states_normalized"][-1, 0, :3, :6], 0.25, atol=1e-5)


def test_bad_relative_dims_and_a_probe_without_the_state_stop_with_errors(mp):
    from molmoact2.models.nano.configuration_nano import NanoActionExpertConfig
    from molmoact2.models.nano.expert_probe import denoise_from_context

    for bad in ([0, 0], [40], [-1]):
        with pytest.raises(ValueError, match="relative_dims must be distinct dims in 0..31"):
            NanoActionExpertConfig(relative_dims=bad)
    assert NanoActionExpertConfig(relative_dims=[4, 1]).relative_dims == [1, 4]
    model, proc = mp
    from molmoact2.models.nano.relative_actions import state_shift

    stats = model.norm_stats["metadata_by_tag"][TAG]["action_stats"]
    for dims, state in (([0, 6], STATE), ([0], STATE[:5])):
        with relative(model, dims), pytest.raises(ValueError, match="both must list the same joints"):
            state_shift(model.config, state, stats, model.norm_stats["norm_mode"])
    layers = model.config.text_config.num_hidden_layers
    kv = [(np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 4), np.float32))] * layers
    with relative(model, ARM), pytest.raises(ValueError, match=r"pass state="):
        denoise_from_context(model, kv, np.ones((1, 2), bool), torch.zeros(1, 30, 32), norm_tag=TAG)
