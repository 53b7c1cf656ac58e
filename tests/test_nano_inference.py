"""Nano's predict_action: official fields, MolmoThink replay, discrete decoding, errors, save/load round trip."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import STATE, TAG, TASK, image, one_thread_fixture, openfast, randomize_, tiny  # noqa: E402
from molmoact2 import tokens as T  # noqa: E402
from molmoact2.depth import think  # noqa: E402

one_thread = one_thread_fixture()


@pytest.fixture(scope="module")
def mp():
    model, proc = tiny(seed=1)
    randomize_(model.action_expert, seed=1)  # a live expert: actions depend on the context
    return model, proc


def _predict(model, proc, images=None, **kw):
    args = dict(processor=proc, images=images or [image(0), image(1, 48, 64)], task=TASK, state=STATE, norm_tag=TAG,
                inference_action_mode="continuous")
    args.update(kw)
    return model.predict_action(**args)


def test_continuous_fields_and_units(mp):
    model, proc = mp
    out = _predict(model, proc, generator=torch.Generator().manual_seed(0))
    assert out["actions"].dtype == torch.float32 and out["actions"].shape == (1, 30, 6)
    assert out["generated_token_ids"] is None and out["depth_bins"] is None and out["depth_cache"] is None
    # Workbench extras: every denoising state, in normalized space and robot units.
    assert out["denoising_states_normalized"].shape == (11, 1, 30, 32)
    assert not out["denoising_states_normalized"][:, :, :, 6:].any()  # padded dims stay zero
    assert np.allclose(out["denoising_states"][-1, 0], out["actions"][0].numpy())
    expected = (out["denoising_states_normalized"][-1, 0, :, :6] + 1) / 2 * np.array([200.0] * 5 + [100.0]) \
        + np.array([-100.0] * 5 + [0.0])
    assert np.allclose(out["actions"][0].numpy(), expected, atol=1e-4)  # min_max un-normalization
    assert [s["layer"] for s in out["kv_summary"]] == [0, 1]
    assert out["kv_summary"][0]["tokens"] == out["prompt_token_ids"].shape[0]
    for stage in ("vision_ms", "prefill_ms", "action_expert_ms", "total_ms"):
        assert out["timings_ms"][stage] > 0
    assert out["forward_calls"] == {"prefill": 1, "depth": 0, "action": 10}
    assert "<state_start>" in out["prompt_text"] and out["prompt_text"].endswith(T.ACTION_OUTPUT)
    # num_steps / n_action_steps
    short = _predict(model, proc, num_steps=3, n_action_steps=5, generator=torch.Generator().manual_seed(0))
    assert short["actions"].shape == (1, 5, 6) and short["denoising_states"].shape == (4, 1, 5, 6)
    actions, gen, bins, cache = _predict(model, proc, return_dict=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(actions, out["actions"]) and gen is None and bins is None and cache is None


def test_seeded_generator_is_bit_identical_and_seed_matters(mp):
    model, proc = mp
    a = _predict(model, proc, generator=torch.Generator().manual_seed(7))["actions"]
    b = _predict(model, proc, generator=torch.Generator().manual_seed(7))["actions"]
    c = _predict(model, proc, generator=torch.Generator().manual_seed(8))["actions"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noise_scale_zero_starts_from_the_mean_and_bad_scales_are_refused(mp):
    model, proc = mp
    mean7 = _predict(model, proc, generator=torch.Generator().manual_seed(7), noise_scale=0.0)
    mean8 = _predict(model, proc, generator=torch.Generator().manual_seed(8), noise_scale=0.0)
    assert torch.equal(mean7["actions"], mean8["actions"])  # the seed no longer matters
    assert not mean7["denoising_states_normalized"][0].any()  # Euler started at the noise's mean, 0
    # Every tick starts equal and the expert tells ticks apart only by (relative) RoPE: one pose for the chunk
    assert np.ptp(mean7["actions"][0].numpy(), axis=0).max() < 1e-3
    half = _predict(model, proc, generator=torch.Generator().manual_seed(7), noise_scale=0.5)
    full = _predict(model, proc, generator=torch.Generator().manual_seed(7))
    assert np.allclose(half["denoising_states_normalized"][0], 0.5 * full["denoising_states_normalized"][0])
    for bad in (-0.1, 2.5, float("nan"), "big"):
        with pytest.raises(ValueError, match=r"noise_scale: expected a number in 0..2.0"):
            _predict(model, proc, noise_scale=bad)


def test_plan_samples_keep_the_medoid_of_k_draws_and_one_draw_is_unchanged(mp):
    from molmoact2.models.flow_noise import medoid_index

    model, proc = mp
    one = _predict(model, proc, generator=torch.Generator().manual_seed(7))
    also_one = _predict(model, proc, generator=torch.Generator().manual_seed(7), plan_samples=1)
    assert torch.equal(one["actions"], also_one["actions"]) and also_one["plan_choice"] is None
    out = _predict(model, proc, generator=torch.Generator().manual_seed(7), plan_samples=6, n_action_steps=10)
    samples, choice = out["plan_samples_normalized"], out["plan_choice"]
    assert samples.shape == (6, 30, 6) and out["denoising_states_normalized"].shape == (11, 1, 30, 32)
    assert len({samples[i].tobytes() for i in range(6)}) == 6  # six different draws
    # the kept plan is the one nearest the others over the executed ticks, and it is what is returned
    dist = [sum(np.linalg.norm(samples[i, :10] - samples[j, :10]) for j in range(6)) for i in range(6)]
    assert choice == int(np.argmin(dist)) == medoid_index(samples[:, :10])
    assert np.allclose(out["denoising_states_normalized"][-1, 0, :, :6], samples[choice])
    assert out["actions"].shape == (1, 10, 6)
    assert np.allclose(out["denoising_states"][-1, 0], out["actions"][0].numpy())
    # a carried-over prefix pins every draw
    prefix = np.full((4, 6), 0.25, np.float32)
    pinned = _predict(model, proc, generator=torch.Generator().manual_seed(7), plan_samples=3,
                      action_prefix_normalized=prefix)
    assert np.allclose(pinned["plan_samples_normalized"][:, :4], 0.25, atol=1e-5)
    for bad in (0, 65, 2.5, True, "8"):
        with pytest.raises(ValueError, match=r"plan_samples: expected a whole number in 1..64"):
            _predict(model, proc, plan_samples=bad)


def test_medoid_index_picks_the_central_plan_and_never_a_broken_one():
    from molmoact2.models.flow_noise import medoid_index

    plans = np.array([[0.0], [1.0], [1.2], [5.0], [6.0]])[:, None]  # [K, 1, 1]
    assert medoid_index(plans) == 2  # 1.2 is nearest the rest: 10.0 summed (1.0: 10.2, 5.0: 13.8)
    assert medoid_index(np.array([[[3.0]]])) == 0
    plans_nan = np.array([[np.nan], [9.0], [1.0], [1.1]])[:, None]
    assert medoid_index(plans_nan) == 3  # the NaN draw is left out, not averaged in: 1.1 is the middle
    with pytest.raises(ValueError, match="expected at least one plan"):
        medoid_index(np.zeros((0, 3, 2)))
    with pytest.raises(ValueError, match="every plan has a non-finite value"):
        medoid_index(np.full((2, 1, 1), np.nan))


def test_actions_depend_on_the_prompt_through_the_kv_cache(mp):
    model, proc = mp
    a = _predict(model, proc, generator=torch.Generator().manual_seed(7), return_context=True)
    b = _predict(model, proc, generator=torch.Generator().manual_seed(7), task="Open the drawer.")
    assert not torch.equal(a["actions"], b["actions"])
    assert len(a["context_kv"]) == 2 and a["context_kv"][0][0].shape[1] == a["prompt_token_ids"].shape[0]


def test_think_first_frame_replay_and_partial_update(mp):
    model, proc = mp
    main = image(5)
    first = _predict(model, proc, images=[main, image(6)], enable_depth_reasoning=True,
                     generator=torch.Generator().manual_seed(0))
    bins = first["depth_bins"]
    assert bins.shape == (1, 100) and int(bins.min()) >= 0 and int(bins.max()) <= 127
    gen = first["generated_token_ids"]
    assert gen.shape == (1, 102)
    parsed = T.parse_generated(gen, proc.token_ids)
    assert np.array_equal(parsed.depth_bins, bins[0].numpy())
    assert first["depth_update_mask"].all() and first["forward_calls"]["depth"] == 101  # 100 codes + <depth_end>
    assert first["prompt_text"].endswith(T.DEPTH_OUTPUT + T.ACTION_OUTPUT)
    cache = first["depth_cache"]
    assert cache["image"].dtype == np.uint8 and cache["image"].shape == main.shape
    assert cache["depth_bins"].dtype == np.int64 and cache["depth_bins"].shape == (100,)

    # Identical image: no cell re-decoded, one pass replays all 100 codes, identical bins and actions.
    again = _predict(model, proc, images=[main, image(6)], enable_depth_reasoning=True, depth_cache=cache,
                     generator=torch.Generator().manual_seed(0))
    assert not again["depth_update_mask"].any() and again["forward_calls"]["depth"] == 1
    assert torch.equal(again["depth_bins"], bins)
    # Same KV content, computed in one pass instead of 101: equal up to float summation order.
    assert torch.allclose(again["actions"], first["actions"], atol=1e-3)

    # Change a 3-cell strip (row 4, cols 2..4 of the 10x10 grid): only those cells are decoded.
    moved = main.copy()
    moved[4 * 32:5 * 32, 2 * 32:5 * 32] = 255 - moved[4 * 32:5 * 32, 2 * 32:5 * 32]
    expected_mask = think.update_mask(moved, main)
    assert np.flatnonzero(expected_mask).tolist() == [42, 43, 44]
    part = _predict(model, proc, images=[moved, image(6)], enable_depth_reasoning=True, depth_cache=cache,
                    generator=torch.Generator().manual_seed(0))
    assert np.array_equal(part["depth_update_mask"], expected_mask)
    assert part["forward_calls"]["depth"] == 3 + 1
    keep = ~expected_mask
    assert np.array_equal(part["depth_bins"][0].numpy()[keep], cache["depth_bins"][keep])
    # A cache of the wrong size means a full decode (first-frame behaviour).
    wrong = {"image": main[:100], "depth_bins": cache["depth_bins"]}
    full = _predict(model, proc, images=[main, image(6)], enable_depth_reasoning=True, depth_cache=wrong)
    assert full["depth_update_mask"].all() and full["forward_calls"]["depth"] == 101


def test_replayed_codes_equal_what_greedy_decoding_would_give(mp):
    # Replaying the cached codes teacher-forced must leave the KV cache as if they had been decoded:
    # the same image twice gives the same actions whether the second step replays or decodes fully.
    model, proc = mp
    main = image(9)
    first = _predict(model, proc, images=[main, image(6)], enable_depth_reasoning=True,
                     generator=torch.Generator().manual_seed(3))
    replay = _predict(model, proc, images=[main, image(6)], enable_depth_reasoning=True,
                      depth_cache=first["depth_cache"], generator=torch.Generator().manual_seed(3))
    assert torch.allclose(replay["actions"], first["actions"], atol=1e-3)
    assert not torch.allclose(replay["actions"], _predict(model, proc, images=[main, image(6)],
                                                          generator=torch.Generator().manual_seed(3))["actions"],
                              atol=1e-3)  # and the depth prefix does matter to the expert


def test_discrete_mode_errors_are_raised_never_zeros(mp):
    model, proc = mp
    tok = openfast()
    # A random model does not follow the grammar: strict parsing raises.
    with pytest.raises((T.TokenFormatError, ValueError)):
        _predict(model, proc, inference_action_mode="discrete", action_tokenizer=tok, max_action_tokens=12)


def test_constrained_discrete_decode_always_decodes(mp):
    model, proc = mp
    tok = openfast()
    # The random model above cannot follow the grammar on its own; under the OpenFAST length grammar it must.
    out = _predict(model, proc, inference_action_mode="discrete", action_tokenizer=tok, constrain_action_tokens=True)
    assert out["actions"].shape == (1, 30, 6) and torch.isfinite(out["actions"]).all()
    ids = out["generated_token_ids"][0].tolist()
    cfg = model.config
    assert ids[0] == cfg.action_start_token_id and ids[-2:] == [cfg.action_end_token_id, cfg.eos_token_id]
    assert out["action_grammar_overrides"] > 0  # it had to step in
    assert out["forward_calls"]["action"] == len(ids) - 2  # EOS is forced, not computed
    again = _predict(model, proc, inference_action_mode="discrete", action_tokenizer=tok, constrain_action_tokens=True,
                     optimized=False)
    assert again["generated_token_ids"].tolist() == out["generated_token_ids"].tolist()
    with pytest.raises(ValueError, match="max_action_tokens=12 cannot hold"):
        _predict(model, proc, inference_action_mode="discrete", action_tokenizer=tok, constrain_action_tokens=True,
                 max_action_tokens=12)
    with pytest.raises(ValueError, match="only the discrete"):
        _predict(model, proc, constrain_action_tokens=True)


def test_errors(mp, tmp_path):
    model, proc = mp
    with pytest.raises(ValueError, match="inference_action_mode is required"):
        _predict(model, proc, inference_action_mode=None)
    with pytest.raises(ValueError, match="one of"):
        _predict(model, proc, inference_action_mode="fast")
    with pytest.raises(ValueError, match=f"unknown norm_tag 'franka_droid'. Valid tags: {TAG}"):
        _predict(model, proc, norm_tag="franka_droid")
    with pytest.raises(ValueError, match="needs action_tokenizer"):
        _predict(model, proc, inference_action_mode="discrete")
    with pytest.raises(ValueError, match="expects a raw state of 6 dims"):
        _predict(model, proc, state=np.zeros(7))
    with pytest.raises(ValueError, match="n_action_steps"):
        _predict(model, proc, n_action_steps=31)
    no_depth, p2 = tiny(enable_depth_reasoning=False)
    with pytest.raises(ValueError, match="not trained for depth reasoning"):
        _predict(no_depth, p2, enable_depth_reasoning=True)


def test_save_load_round_trip_offline_bit_identical(mp, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import molmoact2.models.nano  # noqa: F401  (registers the Auto classes)
    from molmoact2.models.nano.factory import save_checkpoint

    model, proc = mp
    d = save_checkpoint(model, proc, tmp_path / f"nano_{uuid.uuid4().hex[:6]}")
    files = {p.name for p in d.iterdir()}
    assert {"config.json", "model.safetensors", "norm_stats.json", "processor_config.json", "tokenizer.json",
            "tokenizer_config.json", "generation_config.json"} <= files
    config = json.loads((d / "config.json").read_text())
    assert config["model_type"] == "molmoact2_nano" and "auto_map" not in config
    for field in ("depth_token_start_id", "action_token_start_id", "state_token_start_id", "image_patch_id",
                  "max_action_dim", "max_action_horizon", "flow_matching_num_steps", "num_depth_codes",
                  "enable_depth_reasoning", "text_config", "vit_config", "adapter_config", "action_expert_config"):
        assert field in config, field
    assert config["max_action_dim"] == 32 and config["flow_matching_num_steps"] == 10 and config["num_depth_codes"] == 100
    stats = json.loads((d / "norm_stats.json").read_text())
    assert stats["format"] == "molmoact2_norm_stats.v1" and TAG in stats["metadata_by_tag"]
    pc = json.loads((d / "processor_config.json").read_text())
    assert isinstance(pc["image_processor"], dict) and pc["image_processor"]["crop_mode"] == "resize"

    m2 = AutoModelForImageTextToText.from_pretrained(str(d))
    p2 = AutoProcessor.from_pretrained(str(d), trust_remote_code=True, extra_special_tokens={})
    assert type(m2) is type(model) and type(p2) is type(proc)
    assert p2.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(d)).get_vocab() == proc.tokenizer.get_vocab()  # plain, offline
    for kw in ({}, {"enable_depth_reasoning": True}):
        a = _predict(model, proc, generator=torch.Generator().manual_seed(11), **kw)
        b = _predict(m2, p2, generator=torch.Generator().manual_seed(11), **kw)
        assert torch.equal(a["actions"], b["actions"])
        if kw:
            assert torch.equal(a["depth_bins"], b["depth_bins"])


def test_generate_after_chat_template(mp):
    model, proc = mp
    msgs = [{"role": "user", "content": [{"type": "image", "image": image(2)}, {"type": "text", "text": "Point to the cube"}]}]
    text = proc.apply_chat_template(msgs, tokenize=False)
    assert text.startswith(T.IM_START + "user\n" + T.IMAGE) and text.endswith(T.IM_START + "assistant\n")
    inputs = proc.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True)
    seq = model.generate(**inputs, max_new_tokens=5)
    assert seq.shape[0] == 1 and inputs["input_ids"].shape[1] < seq.shape[1] <= inputs["input_ids"].shape[1] + 5
    assert torch.equal(seq[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])


def test_greedy_generate_equals_teacher_forced_argmax(mp):
    """Spatial answers come from `generate` (token by token, KV cache); training scores one full forward.
    Fed its own answer, the full forward must predict every generated token: a wrong answer is then the
    model's, not a mismatch between the two paths (the README's pointing diagnosis relies on this)."""
    model, proc = mp
    msgs = [{"role": "user", "content": [{"type": "image", "image": image(3)}, {"type": "text", "text": "How many cubes are there?"}]}]
    inputs = proc.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=True)
    seq = model.generate(**inputs, max_new_tokens=12)
    n = inputs["input_ids"].shape[1]
    assert seq.shape[1] > n + 1
    with torch.no_grad():
        logits = model(seq, torch.ones_like(seq), inputs["pixel_values"], cache=model.new_cache())["logits"]
    assert torch.equal(logits[0, n - 1:-1].argmax(-1), seq[0, n:])


def _reference_predict(model, proc, images, depth: bool, seed: int):
    """predict_action's continuous / Think (full depth) result computed plainly: reference LM passes
    (tensor ids, no fast path), full-logit argmax over the depth rows, the plain Euler loop."""
    from molmoact2.models.nano.action_expert import euler_integrate_reference
    from molmoact2.models.nano.normalization import unnormalize_actions

    cfg = model.config
    meta = model.norm_stats["metadata_by_tag"][TAG]
    bins = T.discretize_state(STATE, meta["state_stats"], "min_max")
    prompt = T.build_robot_prompt(TASK, bins, meta["setup_type"], meta["control_mode"], len(images),
                                  "robot_depth_action" if depth else "robot_action")
    enc = proc(text=prompt, images=images)
    with torch.no_grad():
        cache = model.new_cache()
        logits = model(enc["input_ids"], enc["attention_mask"], enc["pixel_values"], cache=cache)["logits"][:, -1]
        codes = []
        if depth:
            base = cfg.depth_token_start_id
            logits = model.step(torch.tensor([[cfg.depth_start_token_id]]), cache)
            for _ in range(cfg.num_depth_codes):
                codes.append(int(logits[0, base:base + cfg.num_depth_tokens].argmax()))
                logits = model.step(torch.tensor([[base + codes[-1]]]), cache)
            model.step(torch.tensor([[cfg.depth_end_token_id]]), cache)
        contexts = [cache.context(layer) for layer in range(cfg.text_config.num_hidden_layers)]
        x0 = torch.randn((1, 30, cfg.max_action_dim), generator=torch.Generator().manual_seed(seed))
        dim_mask = (torch.arange(cfg.max_action_dim) < 6).float()
        states = euler_integrate_reference(model.action_expert, x0, contexts, cache.key_mask, 10, dim_mask)
    normed = states[-1][:, :, :6].numpy()
    return unnormalize_actions(normed, meta["action_stats"], "min_max"), np.asarray(codes), states


@pytest.mark.parametrize("depth", [False, True])
def test_predict_action_equals_a_plain_reference_computation(mp, depth):
    # The optimized inference (fused LM path, skipped unused logits, planned Euler) computes the same
    # actions as the straightforward pipeline, and the same greedy depth codes.
    model, proc = mp
    images = [image(21), image(22, 48, 64)]
    out = _predict(model, proc, images=images, enable_depth_reasoning=depth, generator=torch.Generator().manual_seed(4))
    ref_actions, ref_codes, ref_states = _reference_predict(model, proc, images, depth, seed=4)
    assert np.abs(out["denoising_states_normalized"][-1] - ref_states[-1].numpy()).max() < 1e-5
    assert np.abs(out["denoising_states_normalized"][-1] - out["denoising_states_normalized"][0]).max() > 0.05
    assert np.allclose(out["actions"].numpy(), ref_actions, atol=1e-4, rtol=0)
    # predict_action's own reference switch (the latency bench compares the two) agrees as well.
    plain = _predict(model, proc, images=images, enable_depth_reasoning=depth, optimized=False,
                     generator=torch.Generator().manual_seed(4))
    assert np.allclose(plain["actions"].numpy(), ref_actions, atol=1e-4, rtol=0)
    assert plain["forward_calls"] == out["forward_calls"]
    if depth:
        assert np.array_equal(out["depth_bins"][0].numpy(), ref_codes)
        assert torch.equal(plain["depth_bins"], out["depth_bins"])
        # and adaptive replay of those codes lands on the same actions (one pass instead of 101)
        again = _predict(model, proc, images=images, enable_depth_reasoning=True, depth_cache=out["depth_cache"],
                         generator=torch.Generator().manual_seed(4))
        assert np.allclose(again["actions"].numpy(), ref_actions, atol=1e-3, rtol=0)


def test_returned_tensors_are_ordinary_tensors(mp):
    # The optimized path computes under torch.inference_mode; what it returns must still be usable
    # like any tensor (in-place edits, autograd), so it is built outside that block.
    model, proc = mp
    out = _predict(model, proc, enable_depth_reasoning=True, generator=torch.Generator().manual_seed(0))
    for key in ("actions", "generated_token_ids", "depth_bins"):
        assert not out[key].is_inference(), key
    out["actions"].add_(1.0)
    out["depth_bins"].add_(1)
    assert out["actions"].float().requires_grad_().sum().requires_grad
