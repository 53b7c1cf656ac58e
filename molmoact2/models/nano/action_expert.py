"""The flow-matching action expert, as molmoact2.md §6 describes the real one.

* Conditioning: LM layer l's cached post-RoPE K and V ([B, T, kv_heads*head_dim]) go through ONE
  shared `context_k_proj` / `context_v_proj` (Linear kv_dim -> width, no bias) and a parameter-free
  RMSNorm; DiT block l cross-attends to them. Sharing the projection is what lets one small module
  read every layer: the layers differ, the reader does not.
* Block (adaLN-Zero): RMSNorm -> bidirectional self-attention over the chunk (1-D RoPE, QK RMSNorm)
  -> cross-attention -> SwiGLU MLP; 9 modulation chunks from the time embedding, zero-initialized
  so every block starts as the identity.
* Output: 2-chunk final modulation + zero-initialized Linear(width -> 32), so the untrained velocity
  is exactly 0 (Euler then returns the initial noise; tests rely on it).
* Flow convention: t = 0 noise, t = 1 data; x_t = (1 - t) eps + t a; target velocity a - eps.
* Inference (`euler_integrate`): what does not depend on the noisy chunk is computed once per chunk
  (`ActionExpert.plan`: the time/adaLN conditioning of all steps in one matmul per block, the context
  heads, RoPE, mask, weights) and each step runs `DiTBlock.forward_planned` (same math, fewer ops).
  Training uses `forward`; `euler_integrate_reference` is the plain loop the tests compare against.
* Carry-over (`prefix`, a workbench extension the real model does not have): the first k actions are pinned
  to a given chunk (the previous plan's actions for those ticks), at every step noised to the step's time with
  the same start noise, x_t[:k] = (1 - t) eps[:k] + t prefix; the expert, attending over the whole chunk,
  continues from them. Why: each replan draws new noise, and where the data has two modes (gripper open or
  shut) consecutive chunks can pick different ones; pinning the overlap keeps the chosen one (inpainting).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from molmoact2.models.nano.layers import RMSNorm, SwiGLU, apply_rope, apply_rope_fast, rope_cos_sin, signed_sin

TIME_SAMPLING_OFFSET = 0.001  # t = 0.001 + 0.999 * Beta(1, 1.5): never exactly pure noise
BETA_ALPHA, BETA_BETA = 1.0, 1.5


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t [B] in [0, 1] -> [B, dim] sinusoids. t is scaled by 1000 so the 0..1 flow time spans the
    frequencies the DiT embedding was designed for (integer diffusion steps 0..1000)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def zero_linear(din: int, dout: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(din, dout, bias=bias)
    layer._nano_zero_init = True  # _init_weights keeps it at zero (adaLN-Zero)
    nn.init.zeros_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def chunk_rope(h: int, head_dim: int, theta: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D RoPE over the chunk's step index 0..h-1."""
    return rope_cos_sin(torch.arange(h, device=like.device)[None], head_dim, theta, like.dtype)


class DiTBlock(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        w, self.heads = cfg.hidden_size, cfg.num_heads
        self.head_dim = w // cfg.num_heads
        self.rope, self.rope_theta = cfg.rope, cfg.rope_theta
        self.norm1 = RMSNorm(w, affine=False)
        self.qkv = nn.Linear(w, 3 * w, bias=False)
        self.q_norm = RMSNorm(self.head_dim) if cfg.qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if cfg.qk_norm else nn.Identity()
        self.attn_out = nn.Linear(w, w, bias=False)
        self.norm2 = RMSNorm(w, affine=False)
        self.cross_q = nn.Linear(w, w, bias=False)
        self.cross_q_norm = RMSNorm(self.head_dim) if cfg.qk_norm else nn.Identity()
        self.cross_out = nn.Linear(w, w, bias=False)
        self.norm3 = RMSNorm(w, affine=False)
        self.mlp = SwiGLU(w, int(w * cfg.mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), zero_linear(w, 9 * w))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, c, ctx_k, ctx_v, ctx_mask, rope=None):
        """x [B, H, w] chunk; c [B, w] time embedding; ctx_k/ctx_v [B, T, w] (projected, normed);
        ctx_mask bool [B, 1, 1, T] True = attend; rope = (cos, sin) of the chunk positions (shared by blocks)."""
        b, h, w = x.shape
        (sh_sa, sc_sa, g_sa, sh_ca, sc_ca, g_ca, sh_mlp, sc_mlp, g_mlp) = self.adaLN_modulation(c).chunk(9, dim=-1)
        # Bidirectional self-attention over the chunk (no causal mask: every step sees the whole plan).
        q, k, v = self.qkv(modulate(self.norm1(x), sh_sa, sc_sa)).chunk(3, dim=-1)
        q, k, v = self.q_norm(self._heads(q)), self.k_norm(self._heads(k)), self._heads(v)
        if self.rope:
            cos, sin = rope if rope is not None else chunk_rope(h, self.head_dim, self.rope_theta, x)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h, w)
        x = x + g_sa[:, None] * self.attn_out(y)
        # Cross-attention to this block's LM layer.
        q = self.cross_q_norm(self._heads(self.cross_q(modulate(self.norm2(x), sh_ca, sc_ca))))
        y = F.scaled_dot_product_attention(q, self._heads(ctx_k), self._heads(ctx_v), attn_mask=ctx_mask)
        x = x + g_ca[:, None] * self.cross_out(y.transpose(1, 2).reshape(b, h, w))
        return x + g_mlp[:, None] * self.mlp(modulate(self.norm3(x), sh_mlp, sc_mlp))

    def planned_weights(self) -> tuple:
        """What `forward_planned` reads, fetched once per chunk instead of through nn.Module attribute
        lookups in every step: weights, eps values, head layout, and the q/k norm weights stacked
        [2, 1, hd] (None if q/k are not normed that way; then they are normed one by one)."""
        qk_w = None
        if _affine_pair(self.q_norm, self.k_norm):
            qk_w = torch.stack([self.q_norm.weight, self.k_norm.weight])[:, None]
        cross_q_norm = self.cross_q_norm if not isinstance(self.cross_q_norm, nn.Identity) else None
        m = self.mlp
        return (self.qkv.weight, self.attn_out.weight, self.cross_q.weight, self.cross_out.weight, m.gate_proj.weight,
                m.up_proj.weight, m.down_proj.weight, self.norm1.eps, self.norm2.eps, self.norm3.eps, qk_w,
                self.q_norm.eps if qk_w is not None else None, cross_q_norm, self.heads, self.head_dim, self.rope)

    def forward_planned(self, x, weights, mods, ctx_kh, ctx_vh, ctx_mask, rope):
        """`forward` for inference with everything that does not depend on x precomputed (ExpertPlan):
        weights = `planned_weights()`; mods [9, 1, 1, w] = (shift, 1 + scale, gate) x (self-attn,
        cross-attn, MLP) of this step; ctx_kh/ctx_vh [B, heads, T, hd] projected, normed, split into
        heads; rope = (cos, signed sin) [H, 1, 1, hd]; ctx_mask None (nothing padded) or bool [B, 1, 1, T].
        Same math in fewer ops: q and k are normed and rotated together in the [B, H, 2, heads, hd]
        layout (both act on the last dim only), and addcmul does shift + x * scale1 and x + gate * y
        in one op each."""
        (w_qkv, w_attn_out, w_cross_q, w_cross_out, w_gate, w_up, w_down, eps1, eps2, eps3, qk_w, eps_qk,
         cross_q_norm, nh, hd, use_rope) = weights
        b, h, w = x.shape
        sh_sa, sc_sa, g_sa, sh_ca, sc_ca, g_ca, sh_mlp, sc_mlp, g_mlp = mods.unbind(0)
        qkv = F.linear(torch.addcmul(sh_sa, F.rms_norm(x, (w,), None, eps1), sc_sa), w_qkv).view(b, h, 3, nh, hd)
        qk = qkv[:, :, :2]
        if qk_w is not None:
            qk = F.rms_norm(qk, (hd,), None, eps_qk) * qk_w
        else:
            qk = torch.stack([self.q_norm(qk[:, :, 0]), self.k_norm(qk[:, :, 1])], dim=2)
        if use_rope:
            qk = apply_rope_fast(qk, *rope)
        q, k = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, qkv[:, :, 2].transpose(1, 2)).transpose(1, 2).reshape(b, h, w)
        x = torch.addcmul(x, g_sa, F.linear(y, w_attn_out))
        q = F.linear(torch.addcmul(sh_ca, F.rms_norm(x, (w,), None, eps2), sc_ca), w_cross_q).view(b, h, nh, hd)
        q = (q if cross_q_norm is None else cross_q_norm(q)).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, ctx_kh, ctx_vh, attn_mask=ctx_mask)
        x = torch.addcmul(x, g_ca, F.linear(y.transpose(1, 2).reshape(b, h, w), w_cross_out))
        m = torch.addcmul(sh_mlp, F.rms_norm(x, (w,), None, eps3), sc_mlp)
        return torch.addcmul(x, g_mlp, F.linear(F.silu(F.linear(m, w_gate)) * F.linear(m, w_up), w_down))


class ActionExpert(nn.Module):
    def __init__(self, cfg, kv_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.hidden_size
        if w % cfg.num_heads:
            raise ValueError(f"action expert hidden_size={w} must be divisible by num_heads={cfg.num_heads}")
        self.input_proj = nn.Linear(cfg.max_action_dim, w)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.timestep_embed_dim, w), nn.SiLU(), nn.Linear(w, w))
        # ONE shared reader of every layer's KV cache.
        self.context_k_proj = nn.Linear(kv_dim, w, bias=False)
        self.context_v_proj = nn.Linear(kv_dim, w, bias=False)
        self.context_norm = RMSNorm(w, affine=False) if cfg.context_layer_norm else nn.Identity()
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.num_layers))
        self.final_norm = RMSNorm(w, affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), zero_linear(w, 2 * w))
        self.final_proj = zero_linear(w, cfg.max_action_dim)

    def project_contexts(self, contexts: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Raw per-layer (K, V) [B, T, kv_dim] -> shared projection + parameter-free RMSNorm, [B, T, width].
        Done once per chunk: the context does not change across denoising steps."""
        if len(contexts) != len(self.blocks):
            raise ValueError(f"action expert: expected {len(self.blocks)} per-layer contexts (one per LM layer), "
                             f"got {len(contexts)}")
        return [(self.context_norm(self.context_k_proj(k)), self.context_norm(self.context_v_proj(v)))
                for k, v in contexts]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, projected: list[tuple[torch.Tensor, torch.Tensor]],
                ctx_mask: torch.Tensor) -> torch.Tensor:
        """Velocity [B, H, 32] at noisy chunk x_t [B, H, 32], time t [B]; `projected[l]` = LM layer l's
        (K, V) after `project_contexts`; ctx_mask bool [B, T] True = attend."""
        c = self.time_mlp(timestep_embedding(t, self.cfg.timestep_embed_dim).to(x_t.dtype))
        x = self.input_proj(x_t)
        rope = chunk_rope(x.shape[1], self.blocks[0].head_dim, self.cfg.rope_theta, x) if self.cfg.rope else None
        mask = ctx_mask[:, None, None, :]
        for block, (pk, pv) in zip(self.blocks, projected):
            x = block(x, c, pk, pv, mask, rope)
        shift, scale = self.final_modulation(c).chunk(2, dim=-1)
        return self.final_proj(modulate(self.final_norm(x), shift, scale))

    @torch.no_grad()
    def plan(self, projected: list[tuple[torch.Tensor, torch.Tensor]], ctx_mask: torch.Tensor, times: list[float],
             horizon: int, dtype: torch.dtype) -> "ExpertPlan":
        """Everything of `forward` that does not depend on x_t, for every time in `times` at once: the
        time embedding and every block's adaLN modulation (one batched matmul per block instead of one
        per step), the chunk RoPE, the context split into heads, and the mask (None if nothing is
        padded: attending to every key is what an all-True mask means)."""
        device = projected[0][0].device
        t = torch.tensor(times, dtype=dtype, device=device)
        c = self.time_mlp(timestep_embedding(t, self.cfg.timestep_embed_dim).to(dtype))  # [S, w]
        w = self.cfg.hidden_size
        mods = []
        for block in self.blocks:
            m = block.adaLN_modulation(c).view(len(times), 9, 1, 1, w)
            m[:, 1::3] += 1.0  # scale -> 1 + scale (modulate's factor), once instead of every step
            mods.append(m.unbind(0))
        fshift, fscale = self.final_modulation(c).chunk(2, dim=-1)
        final = [(fshift[i:i + 1, None], 1.0 + fscale[i:i + 1, None]) for i in range(len(times))]
        rope = None
        if self.cfg.rope:  # [H, 1, 1, hd]: the chunk-step axis of the [B, H, 2, heads, hd] q/k layout
            cos, sin = chunk_rope(horizon, self.blocks[0].head_dim, self.cfg.rope_theta, c)
            rope = (cos[0, 0][:, None, None], signed_sin(sin[0, 0])[:, None, None])
        heads = [(blk._heads(k).contiguous(), blk._heads(v).contiguous()) for blk, (k, v) in zip(self.blocks, projected)]
        mask = None if bool(ctx_mask.all()) else ctx_mask[:, None, None, :]
        out = (self.input_proj.weight, self.input_proj.bias, self.final_norm.eps, self.final_proj.weight, self.final_proj.bias)
        return ExpertPlan(mods=[list(step) for step in zip(*mods)], final=final, rope=rope, heads=heads, mask=mask,
                          weights=[blk.planned_weights() for blk in self.blocks], io=out)

    def velocity(self, x_t: torch.Tensor, plan: "ExpertPlan", step: int) -> torch.Tensor:
        """`forward(x_t, times[step], ...)` through a precomputed `plan` (inference only)."""
        w_in, b_in, eps_out, w_out, b_out = plan.io
        x = F.linear(x_t, w_in, b_in)
        for block, weights, mods, (kh, vh) in zip(self.blocks, plan.weights, plan.mods[step], plan.heads):
            x = block.forward_planned(x, weights, mods, kh, vh, plan.mask, plan.rope)
        shift, scale1 = plan.final[step]
        return F.linear(torch.addcmul(shift, F.rms_norm(x, (x.shape[-1],), None, eps_out), scale1), w_out, b_out)


def _affine_pair(a: nn.Module, b: nn.Module) -> bool:
    """Two affine RMSNorms with the same eps: normable as one (a norm, then a per-row weight)."""
    return (isinstance(a, RMSNorm) and isinstance(b, RMSNorm) and a.weight is not None and b.weight is not None
            and a.eps == b.eps)


class ExpertPlan:
    """What `ActionExpert.plan` precomputes for one chunk: mods[step][block] [9, 1, 1, w], final[step]
    = (shift, 1 + scale) [1, 1, w], rope (cos, signed sin) [H, 1, 1, hd] or None, heads[block] = (K, V)
    [B, heads, T, hd], mask None or bool [B, 1, 1, T], weights[block] = DiTBlock.planned_weights(),
    io = (input_proj weight, bias, final norm eps, final_proj weight, bias)."""

    __slots__ = ("mods", "final", "rope", "heads", "mask", "weights", "io")

    def __init__(self, mods, final, rope, heads, mask, weights, io) -> None:
        self.mods, self.final, self.rope, self.heads, self.mask = mods, final, rope, heads, mask
        self.weights, self.io = weights, io


# ---- flow matching ---------------------------------------------------------------------------------
def sample_time(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """t = 0.001 + 0.999 * Beta(1, 1.5) via inverse CDF (torch's Beta has no generator argument):
    for Beta(1, b), F^-1(u) = 1 - (1 - u)^(1/b)."""
    u = torch.rand(batch, generator=generator, device=device)
    beta = 1.0 - (1.0 - u) ** (1.0 / BETA_BETA)
    return TIME_SAMPLING_OFFSET + (1.0 - TIME_SAMPLING_OFFSET) * beta


def flow_matching_loss(expert: ActionExpert, actions: torch.Tensor, action_mask: torch.Tensor,
                       contexts, ctx_mask, generator: torch.Generator | None = None,
                       num_noise_samples: int = 1, return_rows: bool = False):
    """Masked MSE between predicted and target velocity. actions/action_mask [B, H, 32] (mask: 1 = real
    step and dim). K noise samples reuse one LM pass by repeating the contexts along the batch.
    `return_rows=True` also returns each sample's own masked MSE [B] (detached; for progress displays)."""
    b = actions.shape[0]
    k = int(num_noise_samples)
    if k > 1:
        actions, action_mask = actions.repeat(k, 1, 1), action_mask.repeat(k, 1, 1)
        contexts = [(ck.repeat(k, 1, 1), cv.repeat(k, 1, 1)) for ck, cv in contexts]
        ctx_mask = ctx_mask.repeat(k, 1)
    noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype)
    t = sample_time(b * k, generator, actions.device).to(actions.dtype)
    x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * actions
    v = expert(x_t, t, expert.project_contexts(contexts), ctx_mask)
    mask = action_mask.to(v.dtype)
    err = (v - (actions - noise)) ** 2 * mask
    loss = err.sum() / mask.sum().clamp(min=1.0)
    if not return_rows:
        return loss
    with torch.no_grad():
        rows = err.detach().reshape(k, b, -1).sum(dim=(0, 2)) / mask.reshape(k, b, -1).sum(dim=(0, 2)).clamp(min=1.0)
    return loss, rows


def _pin(x: torch.Tensor, x0: torch.Tensor, prefix: torch.Tensor | None, t: float) -> torch.Tensor:
    """x with its first k actions replaced by `prefix` [B, k, 32] noised to time t (see the module docstring)."""
    if prefix is None:
        return x
    k = prefix.shape[1]
    return torch.cat([(1.0 - t) * x0[:, :k] + t * prefix, x[:, k:]], dim=1)


def _check_prefix(prefix: torch.Tensor | None, x0: torch.Tensor) -> None:
    if prefix is not None and not (prefix.ndim == 3 and prefix.shape[0] == x0.shape[0]
                                   and 1 <= prefix.shape[1] < x0.shape[1] and prefix.shape[2] == x0.shape[2]):
        raise ValueError(f"prefix: expected [B, k, {x0.shape[2]}] with 1 <= k < {x0.shape[1]} (the horizon), "
                         f"got {list(prefix.shape)}")


@torch.no_grad()
def euler_integrate(expert: ActionExpert, x0: torch.Tensor, contexts, ctx_mask, num_steps: int,
                    dim_mask: torch.Tensor | None = None, prefix: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Euler from noise x0 (t = 0) to data (t = 1): t_i = i / steps, x += dt * v. Returns every state
    [x0, x1, ..., x_steps]; `contexts` are the raw per-layer (K, V). `dim_mask` [32] zeroes padded action dims of
    the start and of each velocity. `prefix` [B, k, 32] pins the first k actions (carry-over, module docstring)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    _check_prefix(prefix, x0)
    projected = expert.project_contexts(contexts)
    x = x0 if dim_mask is None else x0 * dim_mask
    start = x
    states = [x]
    dt = 1.0 / num_steps
    # Same steps as `euler_integrate_reference` (tests compare them); the time conditioning, the
    # context heads and the RoPE table are computed once for the whole integration.
    plan = expert.plan(projected, ctx_mask, [i / num_steps for i in range(num_steps)], x.shape[1], x.dtype)
    for i in range(num_steps):
        v = expert.velocity(x, plan, i)
        if dim_mask is not None:
            v = v * dim_mask
        x = _pin(x + dt * v, start, prefix, (i + 1) / num_steps)
        states.append(x)
    return states


@torch.no_grad()
def euler_integrate_reference(expert: ActionExpert, x0: torch.Tensor, contexts, ctx_mask, num_steps: int,
                              dim_mask: torch.Tensor | None = None, prefix: torch.Tensor | None = None
                              ) -> list[torch.Tensor]:
    """`euler_integrate` written plainly with the training-time `ActionExpert.forward` (the
    correctness reference for the planned fast path)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    _check_prefix(prefix, x0)
    projected = expert.project_contexts(contexts)
    x = x0 if dim_mask is None else x0 * dim_mask
    start = x
    states = [x]
    dt = 1.0 / num_steps
    for i in range(num_steps):
        t = torch.full((x.shape[0],), i / num_steps, device=x.device, dtype=x.dtype)
        v = expert(x, t, projected, ctx_mask)
        if dim_mask is not None:
            v = v * dim_mask
        x = _pin(x + dt * v, start, prefix, (i + 1) / num_steps)
        states.append(x)
    return states
