"""Nano's network: vocabulary layout, image tokens, causal LM with a KV cache, config checks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import image, one_thread_fixture, tiny  # noqa: E402

one_thread = one_thread_fixture()
from molmoact2 import tokens as T  # noqa: E402


@pytest.fixture(scope="module")
def mp():
    return tiny()


def test_vocabulary_layout_matches_the_real_one(mp):
    model, proc = mp
    cfg, vocab = model.config, proc.tokenizer.get_vocab()
    # Every special token of the real tokenizer is a single token.
    for tok in T.special_tokens():
        assert tok in vocab, tok
        assert proc.tokenizer.encode(tok, add_special_tokens=False) == [vocab[tok]]
    # Generatable tokens are below vocab_size (the lm_head rows); image tokens are the extra rows.
    assert model.lm_head.out_features == cfg.vocab_size == cfg.text_config.vocab_size
    assert cfg.text_config.additional_vocab_size == 9
    assert max(vocab[t] for t in T.special_tokens(include_image=False)) < cfg.vocab_size
    assert min(vocab[t] for t in ("<|image|>", "<im_patch>", "<im_col>")) >= cfg.vocab_size
    assert cfg.depth_token_start_id == vocab["<depth_0>"] and cfg.action_token_start_id == vocab["<action_0>"]
    assert cfg.state_token_start_id == vocab["<state_0>"] and cfg.image_patch_id == vocab["<im_patch>"]
    assert cfg.eos_token_id == vocab["<|im_end|>"]


def test_processor_expands_images_and_prepends_eos(mp):
    model, proc = mp
    prompt = T.build_robot_prompt("pick the cube", np.array([1, 2, 3]), "setup", "control", 2)
    enc = proc(text=prompt, images=[image(0), image(1, 48, 64)])
    ids = enc["input_ids"][0]
    rows, cols = proc.image_grid
    assert ids[0] == proc.tokenizer.eos_token_id
    assert int((ids == model.config.image_patch_id).sum()) == 2 * rows * cols
    assert enc["pixel_values"].shape == (2, 3, 64, 64)
    assert float(enc["pixel_values"].min()) >= -1 and float(enc["pixel_values"].max()) <= 1
    with pytest.raises(ValueError, match="placeholder"):
        proc(text=prompt, images=[image(0)])


def test_image_feature_count_must_match(mp):
    model, proc = mp
    enc = proc(text=T.IMAGE + "hi", images=[image(0)])
    with pytest.raises(ValueError, match="<im_patch>"):
        model(enc["input_ids"], enc["attention_mask"], torch.cat([enc["pixel_values"]] * 2))
    with pytest.raises(ValueError, match="pixel_values"):
        model(enc["input_ids"], enc["attention_mask"])


def test_logits_shape_and_causality(mp):
    model, proc = mp
    enc = proc(text=T.IMAGE + "The task is to pick up the cube.", images=[image(0)])
    ids = enc["input_ids"]
    with torch.no_grad():
        a = model(ids, enc["attention_mask"], enc["pixel_values"])["logits"]
        ids2 = ids.clone()
        ids2[0, -1] = 7  # change only the last token: earlier positions must not move
        b = model(ids2, enc["attention_mask"], enc["pixel_values"])["logits"]
    assert a.shape == (1, ids.shape[1], model.config.vocab_size)
    assert torch.equal(a[0, :-1], b[0, :-1]) and not torch.equal(a[0, -1], b[0, -1])


def test_kv_cache_matches_a_full_pass(mp):
    model, proc = mp
    enc = proc(text=T.IMAGE + "Point to the red cube", images=[image(3)])
    ids = enc["input_ids"]
    with torch.no_grad():
        full = model(ids, enc["attention_mask"], enc["pixel_values"])["logits"][0, -1]
        cache = model.new_cache()
        model(ids[:, :-3], enc["attention_mask"][:, :-3], enc["pixel_values"], cache=cache)
        model.step(ids[0, -3:-1].tolist(), cache)
        last = model.step([int(ids[0, -1])], cache)[0]
    assert cache.length == ids.shape[1]
    assert torch.allclose(full, last, atol=1e-5)
    k, v = cache.context(0)
    tc = model.config.text_config
    assert k.shape == v.shape == (1, ids.shape[1], tc.num_key_value_heads * tc.head_dim)


def test_left_padding_does_not_change_the_answer(mp):
    model, proc = mp
    texts = [T.IMAGE + "short", T.IMAGE + "a much longer question about the red cube"]
    ims = [[image(0)], [image(1)]]
    with torch.no_grad():
        batch = proc(text=texts, images=ims)
        out = model(batch["input_ids"], batch["attention_mask"], batch["pixel_values"])["logits"][:, -1]
        single = proc(text=texts[0], images=ims[0])
        alone = model(single["input_ids"], single["attention_mask"], single["pixel_values"])["logits"][0, -1]
    assert torch.allclose(out[0], alone, atol=1e-4)


def test_config_checks():
    from molmoact2.models.nano.configuration_nano import NanoActionExpertConfig, NanoConfig, NanoVitConfig

    with pytest.raises(ValueError, match="num_layers"):
        NanoConfig(text_config={"num_hidden_layers": 3}, action_expert_config={"num_layers": 2})
    with pytest.raises(ValueError, match="causal_attn"):
        NanoActionExpertConfig(causal_attn=True)
    with pytest.raises(ValueError, match="multiple"):
        NanoVitConfig(image_default_input_size=[60, 64], image_patch_size=8)
    with pytest.raises(ValueError, match="with_token_ids"):
        from molmoact2.models.nano import NanoForConditionalGeneration

        NanoForConditionalGeneration(NanoConfig())
