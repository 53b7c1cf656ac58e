"""Building blocks shared by Nano's LM and action expert: RMSNorm, RoPE, SwiGLU, attention.

Why no registered buffers: transformers 5 builds models on the meta device before loading weights,
and non-persistent buffers (a RoPE table) would stay on meta. The training path computes RoPE angles
per call; the inference fast path (`NanoLM.forward(..., fast=True)`, no autograd) reads a table
cached on the module as a plain attribute, grown on demand, with the same formula.

Inference fast path, and why it is faster on CPU: at Nano's sizes a decode step is dominated by
per-op dispatch cost and weight reads, not arithmetic, so it issues fewer ops: fused q/k/v and
gate/up weights, one norm for q and k, RoPE as x*cos + roll(x)*sin_signed, no attention mask when
nothing is padded, no host syncs, and no nn.Module attribute lookups per token (`NanoLM._fast_specs`).
It computes the same function; results agree with the reference path up to float summation order
(tests/test_nano_model.py and tests/test_nano_inference.py compare both). It is taken only when
asked (`fast=True`), without autograd, and without padding: training never runs it.
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


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """sin with its first half negated, for `apply_rope_fast` (negation is exact: same products)."""
    half = sin.shape[-1] // 2
    return torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)


def apply_rope_fast(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """`apply_rope` in 4 ops instead of 7: roll(x, half) = cat(x[half:], x[:half]) and the sign of
    rotate-half moved into the (precomputed) sin table."""
    return x * cos + torch.roll(x, x.shape[-1] // 2, -1) * sin_signed


class RopeTable:
    """cos / signed-sin rows for positions 0..n-1, computed once with `rope_cos_sin`'s formula and
    grown on demand (a plain attribute, not a buffer: see the module docstring)."""

    def __init__(self, head_dim: int, theta: float) -> None:
        self.head_dim, self.theta = head_dim, theta
        self.table: tuple[torch.Tensor, torch.Tensor] | None = None  # one attribute: swapped atomically

    def get(self, n: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """-> cos, sin_signed [n_table, head_dim] with n_table >= n."""
        table = self.table
        if table is None or table[0].shape[0] < n or table[0].dtype != dtype or table[0].device != torch.device(device):
            size = max(256, 1 << (max(n, 1) - 1).bit_length())
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable in any mode
                cos, sin = rope_cos_sin(torch.arange(size, device=device)[None], self.head_dim, self.theta, dtype)
                table = self.table = (cos[0, 0].contiguous(), signed_sin(sin[0, 0]).contiguous())
        return table


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
        self._key_mask: torch.Tensor | None = None  # bool [B, T]: True = a real (non-padding) token
        self._positions: torch.Tensor | None = None  # long [B, T]: RoPE position of each cached token
        # Length up to which the fast path KNOWS the cache holds no padding (positions = 0..T-1), so it
        # can skip the mask and the host sync that checking it would cost on every decode step; the
        # all-True mask and 0..T-1 positions are then only built when someone reads them.
        self.dense_length = 0

    @property
    def key_mask(self) -> torch.Tensor | None:
        if self._key_mask is None and self.dense_length and self.dense_length == self.length:
            k = self.keys[0]
            self._key_mask = torch.ones((k.shape[0], self.length), dtype=torch.bool, device=k.device)
        return self._key_mask

    @key_mask.setter
    def key_mask(self, value: torch.Tensor | None) -> None:
        self._key_mask = value

    @property
    def positions(self) -> torch.Tensor | None:
        if self._positions is None and self.dense_length and self.dense_length == self.length:
            k = self.keys[0]
            self._positions = torch.arange(self.length, device=k.device).expand(k.shape[0], self.length)
        return self._positions

    @positions.setter
    def positions(self, value: torch.Tensor | None) -> None:
        self._positions = value

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

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor, cache: KVCache | None, fast: bool = False,
                need_output: bool = True) -> torch.Tensor | None:
        """x: input embeddings [B, T, d]; attention_mask [B, T] for the NEW tokens (1 = real).

        Positions continue from the cache; the mask is causal over (cache + new) and hides padding.
        `fast=True` (inference: needs a cache and no autograd) takes the fused path when nothing in the
        cache or the new tokens is padded, else this reference path. `need_output=False` (fast path
        only) fills the cache and skips what only the output needs: the last layer's attention output
        and MLP, and the final norm; it then returns None (the action expert reads only the cache)."""
        if fast and cache is not None and not torch.is_grad_enabled() and self._dense(cache, attention_mask):
            specs = self._fast_specs()
            if specs is not None:
                return self._forward_fast(x, cache, need_output, specs)
        b, t, _ = x.shape
        if attention_mask is None:
            attention_mask = torch.ones((b, t), dtype=torch.long, device=x.device)
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

    # ---- inference fast path (see the module docstring) -------------------------------------------
    def rope_table(self) -> RopeTable:
        """The cached RoPE table of the fast paths (built on first use; kept out of the state dict)."""
        table = self.__dict__.get("_rope_table")
        if table is None:
            table = self.__dict__["_rope_table"] = RopeTable(self.cfg.head_dim, self.cfg.rope_theta)
        return table

    @staticmethod
    def _dense(cache: KVCache, attention_mask: torch.Tensor | None) -> bool:
        """True when neither the cache nor the new tokens hold padding (one host sync at most)."""
        n = cache.length
        if n and cache.dense_length != n:
            if cache.key_mask is None or not bool(cache.key_mask.all()):
                return False
            cache.dense_length = n
        return attention_mask is None or bool(attention_mask.all())

    def _fast_specs(self) -> list[tuple] | None:
        """Per layer, what the fast path reads, fetched once instead of through nn.Module attribute
        lookups on every token: the [q; k; v] and [gate; up] weights concatenated (one matmul each
        instead of 3 and 2), the q/k norm weights as one [heads + kv_heads, head_dim] table (one norm
        for q and k), the other weights and the eps values. Rebuilt when any source parameter is
        replaced, moved (storage changes) or updated in place (optimizer steps bump `_version`).
        None when a layer does not have the structure the fast path assumes (then: reference path)."""
        state = self.__dict__.get("_fast_state")
        if state is not None and all(mod._parameters.get(name) is ref and ref._version == ver and ref.data_ptr() == ptr
                                     for mod, name, ref, ver, ptr in state[0]):
            return state[1]
        specs: list[tuple] | None = []
        entries = []
        for layer in self.layers:
            a, m = layer.self_attn, layer.mlp
            norms = (layer.input_layernorm, layer.post_attention_layernorm, a.q_norm, a.k_norm)
            if not all(isinstance(n, RMSNorm) and n.weight is not None for n in norms) or a.q_norm.eps != a.k_norm.eps:
                specs = None
                break
            owners = [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj, *norms]
            ws = [mod._parameters["weight"] for mod in owners]
            entries += [(mod, "weight", w, w._version, w.data_ptr()) for mod, w in zip(owners, ws)]
            with torch.inference_mode(False), torch.no_grad():  # normal tensors, usable in any mode
                w_qkv, w_gu = torch.cat(ws[0:3]), torch.cat(ws[4:6])
                w_qk_norm = torch.cat([ws[9].expand(a.n_heads, -1), ws[10].expand(a.n_kv, -1)]).contiguous()
            specs.append((w_qkv, w_gu, w_qk_norm, ws[3], ws[6], ws[7], norms[0].eps, ws[8], norms[1].eps, a.q_norm.eps,
                          a.n_heads, a.n_kv, a.head_dim))
        self.__dict__["_fast_state"] = (entries, specs)
        return specs

    def _forward_fast(self, x: torch.Tensor, cache: KVCache, need_output: bool, specs: list[tuple]) -> torch.Tensor | None:
        b, t, _ = x.shape
        n_past = cache.length
        cos, sin_s = self.rope_table().get(n_past + t, x.dtype, x.device)
        # No padding: position = index. [T, 1, hd] broadcasts over the heads of the [B, T, heads, hd] layout.
        cos, sin_s = cos[n_past:n_past + t, None], sin_s[n_past:n_past + t, None]
        # Masks: one new token sees every cached key (no mask); a first chunk is plain causal; a chunk
        # after a cache needs the offset causal mask (True = attend), as the reference builds it.
        mask, causal = None, False
        if t > 1 and n_past == 0:
            causal = True
        elif t > 1:
            q_idx = torch.arange(n_past, n_past + t, device=x.device)[:, None]
            mask = torch.arange(n_past + t, device=x.device)[None, :] <= q_idx
        last = len(specs) - 1
        for i, spec in enumerate(specs):
            x = self._layer_fast(i, spec, x, cos, sin_s, mask, causal, cache, kv_only=not need_output and i == last)
        cache.key_mask = cache.positions = None  # built on demand (see KVCache)
        cache.dense_length = n_past + t
        return self.norm(x) if need_output else None

    @staticmethod
    def _layer_fast(i, spec, x, cos, sin_s, mask, causal, cache, kv_only):
        """One LMBlock: q and k are normed and rotated together in the [B, T, heads, hd] layout (norm
        and RoPE act on the last dim, so the layout does not change them), then viewed as heads."""
        w_qkv, w_gu, w_qk_norm, w_o, w_down, w_in, eps_in, w_post, eps_post, eps_qk, nh, nkv, hd = spec
        b, t, d = x.shape
        nq, nk = nh * hd, nkv * hd
        h = F.rms_norm(x, (d,), w_in, eps_in)
        if kv_only:  # the expert reads this layer's K and V; nothing after them is needed
            kv = F.linear(h, w_qkv[nq:])
            k = F.rms_norm(kv[..., :nk].view(b, t, nkv, hd), (hd,), None, eps_qk) * w_qk_norm[nh:]
            k = apply_rope_fast(k, cos, sin_s).transpose(1, 2)
            cache.append(i, k, kv[..., nk:].view(b, t, nkv, hd).transpose(1, 2))
            return x
        qkv = F.linear(h, w_qkv)
        qk = F.rms_norm(qkv[..., :nq + nk].view(b, t, nh + nkv, hd), (hd,), None, eps_qk) * w_qk_norm
        qk = apply_rope_fast(qk, cos, sin_s).transpose(1, 2)  # [B, heads + kv_heads, T, hd]
        k, v = cache.append(i, qk[:, nh:], qkv[..., nq + nk:].view(b, t, nkv, hd).transpose(1, 2))
        y = F.scaled_dot_product_attention(qk[:, :nh], k, v, attn_mask=mask, is_causal=causal, enable_gqa=nkv != nh)
        x = x + F.linear(y.transpose(1, 2).reshape(b, t, nq), w_o)
        gate, up = F.linear(F.rms_norm(x, (d,), w_post, eps_post), w_gu).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w_down)
