"""Building blocks shared by Nano's LM and action expert: RMSNorm, RoPE, SwiGLU, attention.

Why no registered buffers: transformers 5 builds models on the meta device before loading weights,
and non-persistent buffers (a RoPE table) would stay on meta. RoPE angles are cheap at Nano's sizes,
so they are computed per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMSNorm; `affine=False` gives the parameter-free variant (the expert's context norm, adaLN norms)."""

    def __init__(self, dim: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The fused kernel: decoding is dominated by per-op overhead at Nano's sizes.
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [B, T] (int) -> cos, sin [B, 1, T, head_dim] (rotate-half convention, as Qwen3)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.float()[..., None] * inv_freq  # [B, T, hd/2]
    emb = torch.cat([angles, angles], dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q [B, H, Tq, d], k/v [B, H_kv, Tk, d] (GQA: H_kv divides H), mask bool [B, 1, Tq, Tk] True = attend."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=k.shape[1] != q.shape[1])


class KVCache:
    """Per-layer post-RoPE keys/values [B, kv_heads, T, head_dim] plus the key padding mask [B, T].

    The action expert reads exactly these tensors (molmoact2.md §6: per-layer KV conditioning)."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.key_mask: torch.Tensor | None = None  # bool [B, T]: True = a real (non-padding) token
        self.positions: torch.Tensor | None = None  # long [B, T]: RoPE position of each cached token

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else int(self.keys[0].shape[2])

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def context(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s K and V as [B, T, kv_heads*head_dim] (the expert's input layout)."""
        k, v = self.keys[layer], self.values[layer]
        b, h, t, d = k.shape
        return k.transpose(1, 2).reshape(b, t, h * d), v.transpose(1, 2).reshape(b, t, h * d)


class LMAttention(nn.Module):
    """Qwen3 attention: GQA, per-head RMSNorm on q and k before RoPE, no biases."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        if self.n_heads % self.n_kv:
            raise ValueError(f"num_attention_heads={self.n_heads} must be a multiple of num_key_value_heads={self.n_kv}")
        d = cfg.hidden_size
        self.q_proj = nn.Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, self.n_kv * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d, bias=False)
        self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps) if cfg.use_qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps) if cfg.use_qk_norm else nn.Identity()

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int):
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, self.n_heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, t, self.n_kv, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        y = attend(q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class LMBlock(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LMAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, cos, sin, mask, cache, layer):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


class NanoLM(nn.Module):
    """Qwen3-style decoder. Input embedding = `vocab_size` rows + `additional_vocab_size` extra rows (image
    tokens, inputs only); `lm_head` lives on the parent model and has `vocab_size` rows."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.embed_extra = nn.Embedding(max(cfg.additional_vocab_size, 1), cfg.hidden_size)
        self.layers = nn.ModuleList(LMBlock(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        base = ids < self.cfg.vocab_size
        out = self.embed_tokens(torch.where(base, ids, 0))
        if not bool(base.all()):
            extra = self.embed_extra(torch.where(base, 0, ids - self.cfg.vocab_size))
            out = torch.where(base[..., None], out, extra)
        return out

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        """x: input embeddings [B, T, d]; attention_mask [B, T] for the NEW tokens (1 = real).

        Positions continue from the cache; the mask is causal over (cache + new) and hides padding."""
        b, t, _ = x.shape
        new_mask = attention_mask.bool()
        past_mask = cache.key_mask if cache is not None and cache.key_mask is not None else new_mask[:, :0]
        past_pos = cache.positions if cache is not None and cache.positions is not None else None
        start = past_pos.max(dim=1).values + 1 if past_pos is not None and past_pos.numel() else \
            torch.zeros(b, dtype=torch.long, device=x.device)
        # Position = count of real tokens before this one (left padding does not shift positions).
        positions = start[:, None] + torch.cumsum(new_mask.long(), dim=1) - 1
        positions = positions.clamp(min=0)
        key_mask = torch.cat([past_mask, new_mask], dim=1)
        n_past = past_mask.shape[1]
        q_idx = torch.arange(t, device=x.device)[:, None] + n_past
        k_idx = torch.arange(n_past + t, device=x.device)[None, :]
        mask = (k_idx <= q_idx)[None, None] & key_mask[:, None, None, :]
        mask = mask | (k_idx == q_idx)[None, None]  # a padding query attends to itself (no NaN rows)
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, cache, i)
        if cache is not None:
            cache.key_mask = key_mask
            cache.positions = positions if past_pos is None else torch.cat([past_pos, positions], dim=1)
        return self.norm(x)
