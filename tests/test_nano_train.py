"""Nano's training step: every style's loss goes down, and a model that learned a discrete chunk decodes it."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _nano_fixtures import STATE, TAG, TASK, image, one_thread_fixture, openfast, tiny  # noqa: E402
from molmoact2 import tokens as T  # noqa: E402
from molmoact2.models.nano.train_step import build_example, collate, compute_losses, train_step  # noqa: E402

one_thread = one_thread_fixture()


def _chunk(h=30):
    t = np.linspace(0, 1, h)[:, None]
    return (np.sin(2 * np.pi * t * np.array([0.5, 0.7, 0.9, 0.3, 0.6, 0.4])) * 40 + 50).astype(np.float32)


def _examples(model, proc):
    ims = [image(0, 64, 64), image(1, 64, 64)]
    codes = np.arange(100) % 128
    common = dict(images=ims, norm_tag=TAG, task=TASK, state=STATE)
    return [
        build_example(model, proc, style="action", actions=_chunk(), **common),
        build_example(model, proc, style="depth", depth_bins=codes, **common),
        build_example(model, proc, style="depth_action", depth_bins=codes[::-1].copy(), actions=_chunk()[::-1].copy(),
                      **common),
        build_example(model, proc, style="qa", images=[ims[0]], question="Point to the red cube",
                      answer='<points coords="1 1 500 400">red cube</points>'),
    ]


def test_examples_labels_and_expert_mask():
    model, proc = tiny()
    ex = _examples(model, proc)
    a, d, da, qa = ex
    # Only the generated part is supervised; the depth+action example's action chunk is padded to 30x32.
    assert (a["labels"] != -100).sum() == 0  # a continuous-only sample has no token target
    assert (d["labels"] != -100).sum() == 103 and int(d["depth_input"].sum()) == 100
    assert da["actions"].shape == (30, 32) and da["action_mask"][:, :6].all() and not da["action_mask"][:, 6:].any()
    assert float(da["actions"].abs().max()) <= 1.0
    assert bool(da["hide_from_expert"][-1]) and not da["hide_from_expert"][:-1].any()  # EOS is hidden
    alone = collate([a], proc)
    with torch.no_grad():
        assert float(compute_losses(model, alone)["lm_loss"]) == 0.0
    with_ids = build_example(model, proc, style="action", images=[image(0), image(1)], norm_tag=TAG, task=TASK,
                             state=STATE, action_ids=[5, 6, 7])
    hidden = with_ids["input_ids"][with_ids["hide_from_expert"]].tolist()
    tid = proc.token_ids
    assert hidden == [tid.action_start_token_id, *(tid.action_token_start_id + np.array([5, 6, 7])).tolist(),
                      tid.action_end_token_id, tid.eos_token_ids[0]]
    assert qa["actions"] is None and (qa["labels"] != -100).sum() > 5
    with pytest.raises(ValueError, match="needs depth_bins"):
        build_example(model, proc, style="depth", images=[image(0)], norm_tag=TAG, task=TASK, state=STATE)
    with pytest.raises(ValueError, match="unknown norm_tag"):
        build_example(model, proc, style="action", images=[image(0)], norm_tag="x", task=TASK, state=STATE,
                      actions=_chunk())


def test_a_few_steps_reduce_every_loss():
    model, proc = tiny(seed=2)
    batch = collate(_examples(model, proc), proc)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = {k: float(v) for k, v in compute_losses(model, batch, generator=torch.Generator().manual_seed(5)).items()}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):
        train_step(model, batch, opt, generator=g, num_noise_samples=2)
    with torch.no_grad():
        after = {k: float(v) for k, v in compute_losses(model, batch, generator=torch.Generator().manual_seed(5)).items()}
    assert after["lm_loss"] < 0.7 * before["lm_loss"], (before, after)
    assert after["flow_loss"] < before["flow_loss"], (before, after)


def test_learned_discrete_chunk_decodes_through_openfast():
    model, proc = tiny(seed=3)
    chunk = _chunk()
    meta = model.norm_stats["metadata_by_tag"][TAG]
    from molmoact2.models.nano.normalization import normalize_actions

    normed = normalize_actions(chunk, meta["action_stats"], "min_max")
    tok = openfast(extra=[normed])
    ids = tok.encode(normed[None])[0]
    ims = [image(0, 64, 64), image(1, 64, 64)]
    codes = (np.arange(100) * 7) % 128
    common = dict(images=ims, norm_tag=TAG, task=TASK, state=STATE, action_ids=ids)
    batch = collate([build_example(model, proc, style="action", **common),
                     build_example(model, proc, style="depth_action", depth_bins=codes, **common)], proc)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(80):
        losses = train_step(model, batch, opt, depth_noise_p=0.0)
        if losses["lm_loss"] < 0.01:
            break
    run = dict(processor=proc, images=ims, task=TASK, state=STATE, norm_tag=TAG, inference_action_mode="discrete",
               action_tokenizer=tok, max_action_tokens=len(ids) + 4)
    out = model.predict_action(**run)
    gen = out["generated_token_ids"][0].numpy()
    parsed = T.parse_generated(gen, proc.token_ids)
    assert parsed.action_ids.tolist() == list(ids) and parsed.eos is not None and parsed.depth_bins is None
    assert out["actions"].shape == (1, 30, 6)
    # Un-normalized decode reproduces the chunk up to FAST quantization (scale 10 on a [-1, 1] range).
    assert np.abs(out["actions"][0].numpy() - chunk).max() < 10.0
    assert np.array_equal(out["action_token_ids"], np.asarray(ids))
    # A tokenizer that expects another chunk shape cannot decode these ids: it raises, never a zero chunk.
    from dataclasses import replace

    from molmoact2.openfast import DecodeError, OpenFastProcessor

    wrong = OpenFastProcessor(tok.tokenizer, replace(tok.config, action_dim=7))
    with pytest.raises(DecodeError):
        model.predict_action(**(run | {"action_tokenizer": wrong}))
    # Discrete + depth: generated ids are the depth segment, then the action segment, then EOS.
    both = model.predict_action(**run, enable_depth_reasoning=True)
    parsed = T.parse_generated(both["generated_token_ids"], proc.token_ids)
    assert parsed.style == "robot_depth_action" and np.array_equal(parsed.depth_bins, codes)
    assert parsed.action_ids.tolist() == list(ids)
    assert np.array_equal(both["depth_bins"][0].numpy(), codes)
