"""Compiled inference (molmoact2.models.nano.compiled): the same chunks as the eager path, in every mode that uses it.

Compiles for real (inductor writes and builds C++ with g++): the module's first call takes ~20-60 s."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import STATE, TAG, TASK, image, openfast, randomize_, tiny  # noqa: E402
from molmoact2.models.nano.compiled import (LENGTH_BUCKET, compiled_stages, enable_compiled_inference,  # noqa: E402
                                            find_compiler)


@pytest.fixture(scope="module")
def mp():
    model, proc = tiny(seed=3)
    randomize_(model.action_expert, seed=3)  # a live expert: actions depend on the context
    return model, proc


def _predict(model, proc, **kw):
    args = dict(processor=proc, images=[image(0), image(1, 48, 64)], task=TASK, state=STATE, norm_tag=TAG,
                inference_action_mode="continuous", generator=torch.Generator().manual_seed(0), num_steps=3)
    return model.predict_action(**(args | kw))


def _both(model, proc, **kw):
    """(eager, compiled) outputs of the same call; the model is left eager."""
    enable_compiled_inference(model, False)
    eager = _predict(model, proc, **kw)
    enable_compiled_inference(model)
    try:
        return eager, _predict(model, proc, **kw)
    finally:
        enable_compiled_inference(model, False)


def test_compiled_continuous_and_think_give_the_eager_chunks(mp):
    model, proc = mp
    eager, comp = _both(model, proc)
    assert eager["compiled_stages"] == [] and comp["compiled_stages"] == ["vision", "prefill", "expert"]
    states_e, states_c = eager["denoising_states_normalized"], comp["denoising_states_normalized"]
    assert states_c.shape == states_e.shape == (4, 1, 30, 32)
    assert np.abs(states_c - states_e).max() < 1e-4
    # The cache the expert read is the eager one: same per-layer K/V sizes and values.
    assert [s["tokens"] for s in comp["kv_summary"]] == [s["tokens"] for s in eager["kv_summary"]]
    assert np.allclose([s["k_rms"] for s in comp["kv_summary"]], [s["k_rms"] for s in eager["kv_summary"]], atol=1e-5)
    # Prompts are padded to a multiple of LENGTH_BUCKET tokens: a prompt of another length gives its eager chunk too.
    other_e, other_c = _both(model, proc, task="Touch the small blue ball on the left, please.")
    lengths = {len(eager["prompt_token_ids"]), len(other_e["prompt_token_ids"])}
    assert len(lengths) == 2 and any(n % LENGTH_BUCKET for n in lengths), lengths
    assert np.abs(other_c["denoising_states_normalized"] - other_e["denoising_states_normalized"]).max() < 1e-4
    # Think: the depth decode runs eagerly on the compiled prefill's cache; codes and chunk agree.
    eager_t, comp_t = _both(model, proc, enable_depth_reasoning=True)
    assert comp_t["compiled_stages"] == ["vision", "prefill", "expert"]
    assert np.array_equal(comp_t["depth_bins"].numpy(), eager_t["depth_bins"].numpy())
    assert np.abs(comp_t["actions"].numpy() - eager_t["actions"].numpy()).max() < 1e-2  # robot units (degrees)
    # A carried-over prefix is pinned the same way.
    prefix = np.linspace(-0.5, 0.5, 4 * 6, dtype=np.float32).reshape(4, 6)
    eager_p, comp_p = _both(model, proc, action_prefix_normalized=prefix)
    assert np.abs(comp_p["denoising_states_normalized"] - eager_p["denoising_states_normalized"]).max() < 1e-4
    assert np.allclose(comp_p["denoising_states_normalized"][-1, 0, :4, :6], prefix, atol=1e-5)


def test_a_discrete_decode_keeps_the_eager_prefill_and_a_changed_model_is_not_silently_stale(mp):
    model, proc = mp
    enable_compiled_inference(model)
    try:
        out = _predict(model, proc, inference_action_mode="discrete", action_tokenizer=openfast(),
                       constrain_action_tokens=True, num_steps=None)
        assert out["compiled_stages"] == ["vision"]  # the decode reads the prefill's logits: eager prefill
        assert _predict(model, proc, optimized=False)["compiled_stages"] == []  # the reference path stays plain
        with torch.no_grad():  # weights changed after compiling: the compiled code holds the old ones
            model.action_expert.final_proj.bias.add_(0.0)
        with pytest.raises(RuntimeError, match="changed since .*enable_compiled_inference"):
            _predict(model, proc)
    finally:
        enable_compiled_inference(model, False)
    assert compiled_stages(model) is None
    assert _predict(model, proc)["compiled_stages"] == []


def test_no_compiler_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no g++, c++ or clang++
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler.*g\\+\\+"):
        find_compiler()
