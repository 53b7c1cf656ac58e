"""Nano's vision path: a small pre-LN ViT per camera -> features of `vit_layers` concatenated ->
2x2 attention pooling -> SwiGLU projector to the LM width (the real model's recipe, molmoact2.md §1,
with SigLIP2 so400m/14 at 378 px replaced by a few layers at 64 px)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from molmoact2.models.nano.layers import SwiGLU


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class NanoViT(nn.Module):
    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.image_patch_size
        self.patch_embed = nn.Linear(3 * p * p, cfg.hidden_size)
        self.pos_embed = nn.Parameter(torch.zeros(cfg.image_num_pos, cfg.hidden_size))
        self.blocks = nn.ModuleList(ViTBlock(cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
                                             cfg.layer_norm_eps) for _ in range(cfg.num_hidden_layers))

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """pixels [N, 3, H, W] in [-1, 1] -> hidden states after each block, each [N, h*w, width]."""
        n, c, h, w = pixels.shape
        expect = tuple(self.cfg.image_default_input_size)
        if (h, w) != expect:
            raise ValueError(f"NanoViT: expected images of {expect[0]}x{expect[1]} (the processor resizes), got {h}x{w}")
        p = self.cfg.image_patch_size
        patches = pixels.view(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // p) * (w // p), -1)
        x = self.patch_embed(patches) + self.pos_embed
        states = []
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return states


class ImageAdapter(nn.Module):
    """Concatenate chosen ViT layers, pool each 2x2 window with attention (query = window mean), project."""

    def __init__(self, cfg, vit_cfg) -> None:
        super().__init__()
        self.cfg, self.vit_cfg = cfg, vit_cfg
        dim = vit_cfg.hidden_size * len(cfg.vit_layers)
        self.heads = cfg.num_attention_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.in_proj = nn.Linear(dim, cfg.text_hidden_size, bias=False)
        self.projector = SwiGLU(cfg.text_hidden_size, cfg.intermediate_size)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        """-> [N, rows*cols, text_hidden] pooled tokens in row-major order (one per `<im_patch>`)."""
        x = torch.cat([states[i] for i in self.cfg.vit_layers], dim=-1)
        n, _, d = x.shape
        size, p = self.vit_cfg.image_default_input_size, self.vit_cfg.image_patch_size
        gh, gw = size[0] // p, size[1] // p
        ph, pw = self.cfg.pooling_size
        windows = x.view(n, gh // ph, ph, gw // pw, pw, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, ph * pw, d)
        hd = d // self.heads
        q = self.q(windows.mean(dim=1, keepdim=True)).view(-1, 1, self.heads, hd).transpose(1, 2)
        k = self.k(windows).view(-1, ph * pw, self.heads, hd).transpose(1, 2)
        v = self.v(windows).view(-1, ph * pw, self.heads, hd).transpose(1, 2)
        pooled = self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(-1, d))
        pooled = pooled.view(n, (gh // ph) * (gw // pw), d)
        h = self.in_proj(pooled)
        return h + self.projector(h)
