"""Grounding loss: one attention head is told where the named object is while the point is written.

Why: every Nano run so far learned where objects tend to be, not which one a name means (docs/nano_experiments.md
"Where do the words get lost?"): even after `train vision` taught the image tokens what is where, the answers'
nearest object is the named one at chance on held-out layouts. The answer tokens give the language model only a
weak, indirect signal for the step it is missing: attend from the coordinate being written to the image token that
holds the named object. This loss gives that step a direct signal (attention supervision): at every position that
predicts a coordinate token of the first point, ONE head (`head`) of ONE layer (`layer`) should put its attention on
the `<im_patch>` tokens covering the object, in proportion to the object's pixels in each token cell.

The action path gets the same signal (`train nano --ground-actions`): in robot examples with an action target, the
same head, at the state tokens and the prompt's last token (positions after the instruction whose keys and values
the action expert reads), is told where the instruction's object is in the front image. Why: the arm went to the
named object about as often as to another one (docs/nano_experiments.md "Does the arm follow the words?"), even
after pointing learned the names; the expert reads the language model's cache, so the cache has to hold where the
named object is. It works once the head already reads names: from Nano-ER, grounding each demo's first frames
(`--ground-actions-first`) made the arm follow the words (the shipped Nano; docs/nano_experiments.md "Acting from
Nano-ER").

    loss = mean over those positions of  - sum_cells target[cell] * log attention[cell]

The attention is the head's own softmax over every key it may see (causal, padding hidden), so mass on text
tokens counts against it. Training only: at inference the head is an ordinary head (the answer format, the
weights and the API do not change); what it looks at is a picture of where the model is reading.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

# The first point of a Molmo2-ER points answer: coords="<image> <index> <x> <y> ...
_FIRST_POINT = re.compile(r'coords="\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)')


def cell_fractions(mask_hw: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Share of the object's pixels in each token cell, row-major like the `<im_patch>` tokens, [rows * cols],
    summing to 1. `mask_hw` is a [H, W] bool mask, or pixel counts per cell of a finer grid (the demo caches'
    `target_px48`). Raises if it is empty: a question about an object nobody can see has no target."""
    weights = np.asarray(mask_hw)
    if weights.ndim != 2 or (weights.dtype != bool and weights.min(initial=0) < 0):
        raise ValueError(f"grounding mask: expected [H, W] bool or non-negative counts, got shape "
                         f"{list(weights.shape)} dtype {weights.dtype}")
    weights = weights.astype(np.float64)
    total = float(weights.sum())
    if total == 0:
        raise ValueError("grounding mask: the named object covers no pixel of the image")
    rows, cols = grid
    h, w = weights.shape
    out = np.zeros(rows * cols, np.float32)
    for r in range(rows):
        for c in range(cols):
            out[r * cols + c] = weights[r * h // rows:(r + 1) * h // rows, c * w // cols:(c + 1) * w // cols].sum()
    return out / total


def coordinate_token_indices(tokenizer: Any, answer: str) -> list[int]:
    """Indices (into `tokenizer.encode(answer, add_special_tokens=False)`) of the tokens spelling the first point's
    x and y. Empty when the answer holds no point (counts, "There are none.")."""
    m = _FIRST_POINT.search(answer)
    if m is None:
        return []
    start, end = m.start(3), m.end(4)
    enc = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
    # Byte-level BPE offsets may include a leading space; any overlap with the x..y span counts.
    return [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < end and b > start and b > a]


def collate_grounding(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor] | None:
    """Flatten the examples' grounding targets into rows: (sample, query position, image token positions [cells],
    target [cells]). None when no example has one."""
    rows, queries, keys, targets = [], [], [], []
    for i, e in enumerate(examples):
        g = e.get("grounding")
        if g is None:
            continue
        for q in g["query_positions"]:
            rows.append(i), queries.append(q), keys.append(g["image_positions"]), targets.append(g["target"])
    if not rows:
        return None
    return {"rows": torch.tensor(rows), "queries": torch.tensor(queries),
            "keys": torch.as_tensor(np.stack(keys)), "target": torch.as_tensor(np.stack(targets))}


class HeadInputs:
    """Captures what layer `layer`'s attention receives (its normed input and RoPE tables) during one forward."""

    def __init__(self, model, layer: int) -> None:
        n = len(model.lm.layers)
        if not 0 <= layer < n:
            raise ValueError(f"grounding layer {layer}: expected 0..{n - 1} (the language model has {n} layers)")
        self.attn = model.lm.layers[layer].self_attn
        self.layer = layer
        self.inputs: tuple | None = None
        self._hook = None

    def __enter__(self) -> "HeadInputs":
        def grab(_module, args):
            self.inputs = (args[0], args[1], args[2])  # x, cos, sin

        self._hook = self.attn.register_forward_pre_hook(grab)
        return self

    def __exit__(self, *exc) -> None:
        self._hook.remove()


def head_attention(captured: HeadInputs, cache, key_mask: torch.Tensor, rows: torch.Tensor, queries: torch.Tensor,
                   head: int) -> torch.Tensor:
    """Attention probabilities [N, T] of `head` at (rows, queries), recomputed from the captured input and the
    cache's keys: the same numbers the layer's scaled_dot_product_attention used."""
    from molmoact2.models.nano.layers import apply_rope

    attn = captured.attn
    if not 0 <= head < attn.n_heads:
        raise ValueError(f"grounding head {head}: expected 0..{attn.n_heads - 1}")
    x, cos, sin = captured.inputs
    hd = attn.head_dim
    q = attn.q_proj.weight[head * hd:(head + 1) * hd]
    q = torch.nn.functional.linear(x[rows, queries], q)  # [N, hd]
    q = attn.q_norm(q)
    q = apply_rope(q, cos[rows, 0, queries], sin[rows, 0, queries])
    k = cache.keys[captured.layer][rows, head // (attn.n_heads // attn.n_kv)]  # [N, T, hd], post-RoPE
    scores = torch.einsum("nd,ntd->nt", q, k) / hd ** 0.5
    t = torch.arange(k.shape[1], device=k.device)
    allowed = (t[None] <= queries[:, None]) & key_mask[rows]
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)


def example_head_cells(model, processor, example: dict, layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
    """For one example built with a grounding target (`train_step.build_example(..., ground_mask=...)`): head
    (`layer`, `head`)'s attention on each first-image `<im_patch>` token [cells], averaged over the grounded query
    positions, and the target's share of each cell [cells]. One forward pass, read as `head_attention` reads it."""
    from molmoact2.models.nano.train_step import collate  # train_step imports this module

    batch = collate([example], processor)
    cache = model.new_cache()
    with torch.inference_mode(), HeadInputs(model, layer) as captured:
        model.forward(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], cache=cache)
        g = batch["grounding"]
        probs = head_attention(captured, cache, batch["attention_mask"].bool(), g["rows"], g["queries"], head)
    return probs.gather(1, g["keys"]).mean(0).numpy(), g["target"][0].numpy()


def grounding_loss(probs: torch.Tensor, keys: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the target cell shares against the attention on those cells (mean over rows)."""
    on_cells = probs.gather(1, keys).clamp_min(1e-8)
    return -(target * on_cells.log()).sum(dim=1).mean()


class ExpertCrossQueries:
    """Captures block `block`'s cross-attention queries ([B, heads, H, hd], after their norm) while the action expert
    runs its training-time `forward` (`train nano --expert-ground-weight`)."""

    def __init__(self, expert, block: int, head: int) -> None:
        n = len(expert.blocks)
        if not 0 <= block < n:
            raise ValueError(f"expert grounding block {block}: expected 0..{n - 1} (the expert has {n} blocks)")
        if not 0 <= head < expert.blocks[block].heads:
            raise ValueError(f"expert grounding head {head}: expected 0..{expert.blocks[block].heads - 1}")
        self.expert, self.block, self.head = expert, block, head
        self.queries: torch.Tensor | None = None
        self._hook = None

    def __enter__(self) -> "ExpertCrossQueries":
        def grab(_module, _inputs, out):
            self.queries = out

        self._hook = self.expert.blocks[self.block].cross_q_norm.register_forward_hook(grab)
        return self

    def __exit__(self, *exc) -> None:
        self._hook.remove()


def expert_head_attention(captured: ExpertCrossQueries, context_k: torch.Tensor, ctx_mask: torch.Tensor,
                          samples: torch.Tensor) -> torch.Tensor:
    """Attention probabilities [K, N, H, T] of the captured head, for the N `samples` (indices into the B samples the
    expert ran on) at every chunk step H, per noise draw K: recomputed from the captured queries and the block's keys,
    the same numbers its scaled_dot_product_attention used. `context_k` [B, T, kv_dim] is the raw LM key cache of the
    block's layer (projected here as the expert projects it), `ctx_mask` [B, T] what the expert may attend to. With K
    noise draws the queries are [K * B, ...] (draw-major, as flow_matching_loss repeats them)."""
    expert, blk = captured.expert, captured.expert.blocks[captured.block]
    q = captured.queries  # [K * B, heads, H, hd]
    b = context_k.shape[0]
    if q is None or q.shape[0] % b:
        raise RuntimeError(f"expert grounding: expected queries for a multiple of {b} samples, got "
                           f"{None if q is None else list(q.shape)}")
    k = blk._heads(expert.context_norm(expert.context_k_proj(context_k)))[:, captured.head]  # [B, T, hd]
    q = q.view(q.shape[0] // b, b, *q.shape[1:])[:, samples, captured.head]  # [K, N, H, hd]
    scores = torch.einsum("knhd,ntd->knht", q, k[samples]) / blk.head_dim ** 0.5
    return scores.masked_fill(~ctx_mask[samples][None, :, None, :], float("-inf")).softmax(dim=-1)


def expert_grounding_loss(probs: torch.Tensor, keys: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The grounding cross-entropy for one head of the expert's cross-attention (`expert_head_attention` [K, N, H, T]):
    every step of the chunk, in each grounded sample, should look at the front-image tokens covering the
    instruction's object. `keys` [N, cells] are the samples' image token positions, `target` [N, cells] the object's
    share of each cell."""
    draws, n, steps, t = probs.shape
    flat = probs.permute(0, 2, 1, 3).reshape(-1, t)  # rows ordered (draw, step, sample)
    return grounding_loss(flat, keys.repeat(draws * steps, 1), target.repeat(draws * steps, 1))
