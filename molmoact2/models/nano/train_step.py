"""One training step of Nano on a batch mixing the paper's styles (action, depth, depth+action, QA).

    ex = build_example(model, processor, style="depth_action", images=[front, wrist], task="pick up the cube",
                       state=raw_state, norm_tag="so101_sim_molmoact2", actions=raw_chunk, depth_bins=codes)
    batch = collate([ex, ...], processor)
    losses = train_step(model, batch, optimizer)

Losses: next-token cross-entropy on the generated part (depth codes, discrete OpenFAST tokens, answers,
EOS) + flow matching on continuous chunks (molmoact2.md §6). The expert reads every layer's K/V of the
SAME teacher-forced pass; the action-token span and EOS are hidden from it (cross-attention mask), as
in the real model, so at inference it sees exactly prompt (+ depth). 10% of teacher-forced depth
INPUT codes are replaced by random codes (targets unchanged): the model must not copy its own errors.
The simulator data pipeline and the training loop live in `molmoact2.training` (`molmoact2 train nano`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from molmoact2 import tokens as T
from molmoact2.models.nano.action_expert import flow_matching_loss
from molmoact2.models.nano.grounding import (ExpertCrossQueries, HeadInputs, cell_fractions, collate_grounding,
                                             coordinate_token_indices, expert_grounding_loss, expert_head_attention,
                                             grounding_loss, head_attention)
from molmoact2.models.nano.normalization import normalize_actions, stats_dim
from molmoact2.models.nano.offset import ExpertStream, collate_offset, offset_loss
from molmoact2.models.nano.reach import collate_reach, reach_loss
from molmoact2.models.nano.relative_actions import state_shift, to_expert_space

STYLES = ("action", "depth", "depth_action", "qa")
_PROMPT_STYLE = {"action": "robot_action", "depth": "robot_depth", "depth_action": "robot_depth_action"}


def build_example(model, processor, *, style: str, images: list[Any], norm_tag: str | None = None,
                  task: str | None = None, state: Any = None, actions: Any = None, depth_bins: Any = None,
                  action_ids: Any = None, question: str | None = None, answer: str | None = None,
                  ground_mask: Any = None, reach_xy: Any = None, offset: Any = None) -> dict[str, Any]:
    """Token ids, labels, images and (normalized, padded) action targets for one sample. `ground_mask` (the named
    object's pixels in the first image: a [H, W] mask, or counts per cell of a finer grid) adds the grounding target
    (grounding.py): for 'qa' at the pointing answer's coordinate tokens, for 'action' / 'depth_action' at the state
    tokens and the prompt's last token. `reach_xy` (robot styles only) adds the reach target (reach.py) for the
    prompt's last position: the object's centre in the image, standardized. `offset` [H, 3] (with a continuous
    `actions` chunk of H steps) adds the expert's offset target (offset.py): object minus jaw at each step,
    standardized."""
    if style not in STYLES:
        raise ValueError(f"style: expected one of {STYLES}, got {style!r}")
    cfg = model.config
    tid = processor.token_ids
    if style == "qa":
        if not question or answer is None:
            raise ValueError("style 'qa' needs question= and answer=")
        content = [{"type": "image", "image": im} for im in images] + [{"type": "text", "text": question}]
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
        completion = processor.tokenizer.encode(answer, add_special_tokens=False) + [cfg.eos_token_id]
        meta = None
    else:
        stats = model.norm_stats
        if norm_tag not in stats["metadata_by_tag"]:
            raise ValueError(f"unknown norm_tag {norm_tag!r}. Valid tags: {sorted(stats['metadata_by_tag'])}")
        meta = stats["metadata_by_tag"][norm_tag]
        norm_mode = stats.get("norm_mode", "min_max")
        if style in ("depth", "depth_action") and depth_bins is None:
            raise ValueError(f"style {style!r} needs depth_bins= (100 codes, the carried-forward buffer)")
        if style in ("action", "depth_action") and actions is None and action_ids is None:
            raise ValueError(f"style {style!r} needs actions= (continuous chunk) and/or action_ids= (OpenFAST ids)")
        bins = T.discretize_state(np.asarray(state, dtype=np.float32), meta["state_stats"], norm_mode)
        prompt = T.build_robot_prompt(task, bins, meta.get("setup_type", ""), meta.get("control_mode", ""),
                                      len(images), _PROMPT_STYLE[style], add_setup_tokens=cfg.add_setup_tokens,
                                      add_control_tokens=cfg.add_control_tokens)
        depth_part = depth_bins if style != "action" else None
        action_part = action_ids if style != "depth" else None
        # A continuous-only action sample has no token target: its only loss is flow matching.
        completion = [] if depth_part is None and action_part is None else \
            T.encode_generated_ids(tid, depth_part, action_part, eos=True).tolist()
    enc = processor(text=prompt, images=images)
    prompt_ids = enc["input_ids"][0].tolist()
    ids = prompt_ids + completion
    labels = [-100] * len(prompt_ids) + completion
    # The expert must not see the discrete action span or EOS (it never does at inference).
    hide = np.zeros(len(ids), dtype=bool)
    in_action = False
    eos = set(tid.eos_token_ids)
    for i in range(len(prompt_ids), len(ids)):
        if ids[i] == tid.action_start_token_id:
            in_action = True
        hide[i] = in_action or ids[i] in eos
        if ids[i] == tid.action_end_token_id:
            in_action = False
    base = tid.depth_token_start_id
    is_depth_input = np.array([i >= len(prompt_ids) and base <= t < base + T.NUM_DEPTH_TOKENS for i, t in enumerate(ids)])
    ex: dict[str, Any] = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                          "pixel_values": enc.get("pixel_values"), "hide_from_expert": torch.from_numpy(hide),
                          "depth_input": torch.from_numpy(is_depth_input), "actions": None, "action_mask": None}
    if ground_mask is not None:
        ex["grounding"] = _grounding_target(processor, prompt_ids, len(prompt_ids), answer, ground_mask, style) \
            if style == "qa" else _action_grounding_target(processor, prompt_ids, ground_mask, style)
    if reach_xy is not None:
        if style == "qa":
            raise ValueError("reach_xy= is for robot examples (style action, depth or depth_action), not 'qa'")
        ex["reach"] = {"position": len(prompt_ids) - 1, "target": np.asarray(reach_xy, dtype=np.float32)}
    if actions is not None and style in ("action", "depth_action"):
        a = np.asarray(actions, dtype=np.float32)
        dim = stats_dim(meta["action_stats"], "action")
        if a.ndim != 2 or a.shape[1] != dim or a.shape[0] > cfg.max_action_horizon:
            raise ValueError(f"actions: expected [H <= {cfg.max_action_horizon}, {dim}] raw robot units, got {list(a.shape)}")
        padded = np.zeros((cfg.max_action_horizon, cfg.max_action_dim), dtype=np.float32)
        mask = np.zeros_like(padded)
        norm_mode = stats.get("norm_mode", "min_max")
        shift = state_shift(cfg, state, meta["action_stats"], norm_mode)  # None unless the expert is relative
        padded[: a.shape[0], :dim] = to_expert_space(normalize_actions(a, meta["action_stats"], norm_mode), shift)
        mask[: a.shape[0], :dim] = 1.0
        ex["actions"], ex["action_mask"] = torch.from_numpy(padded), torch.from_numpy(mask)
        if offset is not None:
            o = np.asarray(offset, dtype=np.float32)
            if o.shape != (a.shape[0], 3):
                raise ValueError(f"offset: expected [{a.shape[0]}, 3] (one object-minus-jaw row per chunk step), "
                                 f"got {list(o.shape)}")
            target = np.zeros((cfg.max_action_horizon, 3), dtype=np.float32)
            target[: len(o)] = o
            ex["offset"] = {"target": target, "mask": (np.arange(cfg.max_action_horizon) < len(o)).astype(np.float32)}
    elif offset is not None:
        raise ValueError("offset= needs a continuous actions= chunk (style 'action' or 'depth_action')")
    return ex


def _first_image_positions(processor, prompt_ids: list[int]) -> np.ndarray:
    rows, cols = processor.image_grid
    patch = processor.tokenizer.convert_tokens_to_ids("<im_patch>")
    positions = [i for i, t in enumerate(prompt_ids) if t == patch][: rows * cols]
    if len(positions) != rows * cols:
        raise ValueError(f"grounding: expected {rows * cols} <im_patch> tokens for the first image, "
                         f"got {len(positions)}")
    return np.asarray(positions)


def _grounding_target(processor, prompt_ids: list[int], n_prompt: int, answer: str | None, mask: Any,
                      style: str) -> dict[str, Any] | None:
    """Query positions (those predicting the first point's coordinate tokens), the first image's `<im_patch>`
    positions and the object's share of each token cell; None if the answer holds no point."""
    if style != "qa":
        raise ValueError(f"_grounding_target is for style 'qa' (a pointing answer), got style {style!r}")
    coords = coordinate_token_indices(processor.tokenizer, answer)
    if not coords:
        return None
    return {"query_positions": [n_prompt + j - 1 for j in coords],
            "image_positions": _first_image_positions(processor, prompt_ids),
            "target": cell_fractions(mask, processor.image_grid)}


def _action_grounding_target(processor, prompt_ids: list[int], mask: Any, style: str) -> dict[str, Any]:
    """Query positions for a robot example: the state tokens (`<state_start>` .. `<state_end>`) and the prompt's
    last token, all after the instruction, so they can read which object it names."""
    if style not in ("action", "depth_action"):
        raise ValueError(f"ground_mask= needs a pointing answer (style 'qa') or an action target (style 'action' "
                         f"or 'depth_action'), got style {style!r}")
    tid = processor.token_ids
    try:
        start, end = prompt_ids.index(tid.state_start_token_id), prompt_ids.index(tid.state_end_token_id)
    except ValueError:
        raise ValueError("action grounding: expected the state tokens (<state_start> .. <state_end>) in the prompt")
    return {"query_positions": list(range(start, end + 1)) + [len(prompt_ids) - 1],
            "image_positions": _first_image_positions(processor, prompt_ids),
            "target": cell_fractions(mask, processor.image_grid)}


def collate(examples: list[dict[str, Any]], processor) -> dict[str, torch.Tensor]:
    """Right-pad to a batch. Chunks of samples without continuous actions get an all-zero mask."""
    width = max(len(e["input_ids"]) for e in examples)
    b = len(examples)
    pad = processor.tokenizer.pad_token_id
    out = {"input_ids": torch.full((b, width), pad, dtype=torch.long),
           "attention_mask": torch.zeros((b, width), dtype=torch.long),
           "labels": torch.full((b, width), -100, dtype=torch.long),
           "hide_from_expert": torch.ones((b, width), dtype=torch.bool),
           "depth_input": torch.zeros((b, width), dtype=torch.bool)}
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        out["input_ids"][i, :n] = e["input_ids"]
        out["attention_mask"][i, :n] = 1
        out["labels"][i, :n] = e["labels"]
        out["hide_from_expert"][i, :n] = e["hide_from_expert"]
        out["depth_input"][i, :n] = e["depth_input"]
    pix = [e["pixel_values"] for e in examples if e["pixel_values"] is not None]
    if pix:
        out["pixel_values"] = torch.cat(pix)
    template = next((e for e in examples if e["actions"] is not None), None)
    if template is not None:
        out["actions"] = torch.stack([e["actions"] if e["actions"] is not None else torch.zeros_like(template["actions"])
                                      for e in examples])
        out["action_mask"] = torch.stack([e["action_mask"] if e["action_mask"] is not None
                                          else torch.zeros_like(template["action_mask"]) for e in examples])
    grounding = collate_grounding(examples)
    if grounding is not None:
        out["grounding"] = grounding
    reach = collate_reach(examples)
    if reach is not None:
        out["reach"] = reach
    offset = collate_offset(examples)
    if offset is not None:
        out["offset"] = offset
    return out


def compute_losses(model, batch: dict[str, torch.Tensor], *, generator: torch.Generator | None = None,
                   depth_noise_p: float = 0.1, num_noise_samples: int = 1, flow_weight: float = 1.0,
                   row_losses: bool = False, ground_weight: float = 0.0, ground_layer: int = 3,
                   ground_head: int = 0, reach_weight: float = 0.0, reach_layer: int = -1,
                   expert_ground_weight: float = 0.0, expert_ground_block: int = 3,
                   expert_ground_head: int = 1, offset_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """`ground_weight > 0` adds the grounding loss (grounding.py) of head `ground_head` in layer `ground_layer`
    on the batch's pointing answers (`ground_loss`); `reach_weight > 0` the reach loss (reach.py) of layer
    `reach_layer`'s value at the prompt's last position (`reach_loss`); `expert_ground_weight > 0` the same grounding
    cross-entropy for head `expert_ground_head` of the action expert's block `expert_ground_block`, in the batch's
    action examples that carry the instruction's object (`expert_ground_loss`); `offset_weight > 0` the expert's
    offset loss (offset.py) on the action examples that carry object-minus-jaw targets (`offset_loss`).
    `row_losses=True` adds detached per-sample figures for progress displays (the training loss itself is
    unchanged): `lm_row_sum`/`lm_row_count` [B] (token cross-entropy summed / counted per sample) and `flow_row` [B]
    (per-sample flow MSE, NaN for samples without a continuous target)."""
    cfg = model.config
    ids = batch["input_ids"]
    if depth_noise_p > 0 and bool(batch["depth_input"].any()):
        flip = batch["depth_input"] & (torch.rand(ids.shape, generator=generator) < depth_noise_p)
        random_codes = cfg.depth_token_start_id + torch.randint(0, cfg.num_depth_tokens, ids.shape, generator=generator)
        ids = torch.where(flip, random_codes, ids)  # labels keep the true codes
    cache = model.new_cache()
    grounded = ground_weight > 0 and "grounding" in batch
    with HeadInputs(model, ground_layer) if grounded else contextlib.nullcontext() as captured:
        out = model.forward(ids, batch["attention_mask"], batch.get("pixel_values"), cache=cache,
                            labels=batch["labels"])
    losses = {"lm_loss": out["loss"]}
    total = out["loss"]
    if grounded:
        g = batch["grounding"]
        probs = head_attention(captured, cache, batch["attention_mask"].bool(), g["rows"], g["queries"], ground_head)
        losses["ground_loss"] = grounding_loss(probs, g["keys"], g["target"])
        total = total + ground_weight * losses["ground_loss"]
    if reach_weight > 0 and "reach" in batch:
        losses["reach_loss"] = reach_loss(cache, reach_layer, batch["reach"])
        total = total + reach_weight * losses["reach_loss"]
    if row_losses:
        with torch.no_grad():
            labels = batch["labels"][:, 1:]
            ce = torch.nn.functional.cross_entropy(out["logits"][:, :-1].detach().float().transpose(1, 2),
                                                   labels, ignore_index=-100, reduction="none")
            losses["lm_row_sum"] = ce.sum(dim=1)
            losses["lm_row_count"] = (labels != -100).sum(dim=1)
            losses["flow_row"] = torch.full((ids.shape[0],), float("nan"))
    if "actions" in batch and bool(batch["action_mask"].any()):
        rows = batch["action_mask"].flatten(1).any(dim=1)  # samples with a continuous target
        contexts = [tuple(t[rows] for t in cache.context(layer)) for layer in range(cfg.text_config.num_hidden_layers)]
        ctx_mask = (batch["attention_mask"].bool() & ~batch["hide_from_expert"])[rows]
        g = batch.get("grounding")
        # Grounded samples among those the flow loss runs on (position within `rows`), each once.
        picked = None
        if expert_ground_weight > 0 and g is not None:
            sub = torch.cumsum(rows.long(), 0) - 1
            first = {int(r): i for i, r in reversed(list(enumerate(g["rows"].tolist()))) if bool(rows[int(r)])}
            if first:
                order = sorted(first)
                picked = (torch.tensor([int(sub[r]) for r in order]), torch.tensor([first[r] for r in order]))
        off = batch.get("offset") if offset_weight > 0 else None
        if off is not None:
            off = {k: v[rows[off["rows"]]] for k, v in off.items()}  # only samples the flow loss runs on
            off["samples"] = (torch.cumsum(rows.long(), 0) - 1)[off["rows"]]
        with ExpertCrossQueries(model.action_expert, expert_ground_block, expert_ground_head) if picked is not None \
                else contextlib.nullcontext() as captured, \
                ExpertStream(model.action_expert) if off is not None else contextlib.nullcontext() as stream:
            flow = flow_matching_loss(model.action_expert, batch["actions"][rows], batch["action_mask"][rows],
                                      contexts, ctx_mask, generator=generator, num_noise_samples=num_noise_samples,
                                      return_rows=row_losses)
        if off is not None and len(off["samples"]):
            losses["offset_loss"] = offset_loss(stream.stream, int(rows.sum()), off["samples"], off["target"],
                                                off["mask"])
            total = total + offset_weight * losses["offset_loss"]
        if picked is not None:
            samples, which = picked
            probs = expert_head_attention(captured, contexts[expert_ground_block][0], ctx_mask, samples)
            losses["expert_ground_loss"] = expert_grounding_loss(probs, g["keys"][which], g["target"][which])
            total = total + expert_ground_weight * losses["expert_ground_loss"]
        if row_losses:
            flow, losses["flow_row"][rows] = flow[0], flow[1].float()
        losses["flow_loss"] = flow
        total = total + flow_weight * flow
    losses["loss"] = total
    return losses


def train_step(model, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None = None,
               **kw: Any) -> dict[str, Any]:
    """Losses (floats) of one step; with an optimizer, also backward + update (grad-norm clipped at 1).
    Per-sample figures (`row_losses=True`) come back as float lists."""
    model.train()
    losses = compute_losses(model, batch, **kw)
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    return {k: float(v.detach()) if v.ndim == 0 else v.detach().float().tolist() for k, v in losses.items()}
