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


def _ref_and_fast_caches(model, enc, split):
    """Prefill ids[:split] then feed the rest one token at a time, once through the reference path
    (tensor ids: the general path) and once through the inference fast path (lists, fast=True)."""
    ids, am, pix = enc["input_ids"], enc["attention_mask"], enc["pixel_values"]
    out = {}
    for name, fast in (("ref", False), ("fast", True)):
        cache = model.new_cache()
        logits = [model(ids[:, :split], am[:, :split], pix, cache=cache, logits_to_keep=1, fast=fast)["logits"][0, -1]]
        for tok in ids[0, split:].tolist():
            logits.append(model.step(torch.tensor([[tok]]) if not fast else [tok], cache)[0])
        out[name] = (torch.stack(logits), cache)
    return out


def test_fast_inference_path_matches_the_reference(mp):
    model, proc = mp
    enc = proc(text=T.IMAGE + "Point to the red cube and then to the bowl", images=[image(4)])
    n = enc["input_ids"].shape[1]
    with torch.no_grad():
        out = _ref_and_fast_caches(model, enc, n - 6)
        (lr, cr), (lf, cf) = out["ref"], out["fast"]
        assert torch.allclose(lf, lr, atol=1e-5, rtol=1e-5) and torch.equal(lf.argmax(-1), lr.argmax(-1))
        assert cf.length == cr.length == n and cf.dense_length == n
        assert torch.equal(cf.key_mask, cr.key_mask) and torch.equal(cf.positions, cr.positions)
        for layer in range(model.config.text_config.num_hidden_layers):
            for a, b in zip(cf.context(layer), cr.context(layer)):
                assert torch.allclose(a, b, atol=1e-5)
        # A multi-token chunk after a cache (the replayed depth codes) takes the offset causal mask.
        cache = model.new_cache()
        model(enc["input_ids"][:, :-6], enc["attention_mask"][:, :-6], enc["pixel_values"], cache=cache, fast=True)
        chunk = model.step(enc["input_ids"][0, -6:].tolist(), cache)
        assert torch.allclose(chunk[0], lr[-1], atol=1e-5)
        # Only some lm_head rows; or none at all (need_logits=False) with the same cache contents.
        silent = _copy_cache(cache)
        rows = model.step([5], cache, logit_rows=(3, 40))
        whole = model.step([5], out["fast"][1])
        assert rows.shape == (1, 37) and torch.allclose(rows, whole[:, 3:40], atol=1e-6)
        assert model.step([5], silent, need_logits=False) is None
        assert silent.length == cache.length == n + 1
        for layer in range(model.config.text_config.num_hidden_layers):
            assert torch.allclose(silent.keys[layer], cache.keys[layer], atol=1e-6)
            assert torch.allclose(silent.values[layer], cache.values[layer], atol=1e-6)


def _copy_cache(cache):
    from molmoact2.models.nano.layers import KVCache

    c = KVCache(len(cache.keys))
    c.keys, c.values = list(cache.keys), list(cache.values)
    c.key_mask, c.positions, c.dense_length = cache.key_mask, cache.positions, cache.dense_length
    return c


def test_fast_path_falls_back_on_padding_and_follows_weight_updates(mp):
    model, proc = mp
    texts = [T.IMAGE + "short", T.IMAGE + "a much longer question about the red cube"]
    batch = proc(text=texts, images=[[image(0)], [image(1)]])
    with torch.no_grad():
        # A left-padded cache: the fast request must give the reference answer (positions skip padding).
        caches = [model.new_cache() for _ in range(2)]
        for cache, fast in zip(caches, (False, True)):
            model(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], cache=cache, fast=fast)
        ref = model.step(torch.tensor([[9], [9]]), caches[0])
        fast = model.step([[9], [9]], caches[1])
        assert caches[1].dense_length == 0 and torch.allclose(fast, ref, atol=1e-5)
    # The fused q/k/v and gate/up weights are a cache: an in-place update (an optimizer step) must show.
    from molmoact2.models.nano.factory import build_random_nano

    m2, p2 = build_random_nano("tiny", seed=5)
    enc = p2(text=T.IMAGE + "Point to the cube", images=[image(2)])
    with torch.no_grad():
        before = _ref_and_fast_caches(m2, enc, enc["input_ids"].shape[1] - 2)["fast"][0]
        m2.lm.layers[0].mlp.up_proj.weight.add_(0.5)
        m2.lm.layers[1].self_attn.k_proj.weight.mul_(1.5)
        after = _ref_and_fast_caches(m2, enc, enc["input_ids"].shape[1] - 2)
    assert not torch.allclose(before, after["fast"][0], atol=1e-3)
    assert torch.allclose(after["fast"][0], after["ref"][0], atol=1e-5, rtol=1e-5)
    # ... and so must a replaced parameter object (load_state_dict(assign=True), manual surgery).
    layer = m2.lm.layers[1]
    layer.mlp.down_proj.weight = torch.nn.Parameter(layer.mlp.down_proj.weight.detach() * -1.0)
    with torch.no_grad():
        swapped = _ref_and_fast_caches(m2, enc, enc["input_ids"].shape[1] - 2)
    assert not torch.allclose(swapped["fast"][0], after["fast"][0], atol=1e-3)
    assert torch.allclose(swapped["fast"][0], swapped["ref"][0], atol=1e-5, rtol=1e-5)


def test_fast_rope_equals_rotate_half_rope():
    from molmoact2.models.nano.layers import RopeTable, apply_rope, apply_rope_fast, rope_cos_sin

    table = RopeTable(16, 10000.0)
    cos_t, sin_t = table.get(300, torch.float32, "cpu")  # grows past the first 256 rows
    assert cos_t.shape[0] >= 300 and table.get(10, torch.float32, "cpu")[0] is cos_t  # cached, not rebuilt
    pos = torch.tensor([[0, 5, 17, 255, 299]])
    cos, sin = rope_cos_sin(pos, 16, 10000.0, torch.float32)
    assert torch.allclose(cos_t[pos[0]], cos[0, 0], atol=1e-7) and torch.allclose(sin_t[pos[0], 8:], sin[0, 0, :, 8:], atol=1e-7)
    assert torch.allclose(sin_t[pos[0], :8], -sin[0, 0, :, :8], atol=1e-7)  # signed: first half negated
    x = torch.randn(2, 3, 5, 16)
    assert torch.allclose(apply_rope_fast(x, cos_t[pos[0]], sin_t[pos[0]]), apply_rope(x, cos, sin), atol=1e-6)


def test_save_checkpoint_fp16_leaves_the_callers_model_in_fp32(tmp_path):
    from molmoact2.models.nano.factory import build_random_nano, save_checkpoint

    model, proc = build_random_nano("tiny", seed=0)
    save_checkpoint(model, proc, tmp_path / "half", dtype="float16")
    assert model.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())
