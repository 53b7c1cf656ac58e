"""Nano's inference through `torch.compile` (inductor on the CPU): the same numbers with less overhead.

    from molmoact2.models.nano.compiled import enable_compiled_inference
    enable_compiled_inference(model)          # then model.predict_action(...) as usual; the first call compiles
    enable_compiled_inference(model, False)   # back to the eager path (or NanoPolicy(..., compiled=True))

Why: on 2 cores a continuous call runs at ~4 times its arithmetic floor (bench/nano_latency.py). Its matmuls are
small ([30 x 128] in the expert, ~175 tokens x 256 in the LM) and each sits between eager elementwise ops (norms,
RoPE, SwiGLU, adaLN) that each cost a dispatch. Inductor fuses those ops into C++ loops; `max_autotune` benchmarks
its own GEMM kernels against the library's for each of these shapes; `freezing` makes the weights constants it can
prepack. Three stages are compiled, each for static shapes:

  vision    `encode_images` (one graph per camera count and image size)
  prefill   the LM over the prompt, keys and values only (`prefill_kv`)
  velocity  the action expert's `forward` (one Euler step; the loop stays in Python, so every denoising state is
            still returned, and the carry-over prefix is applied as in `euler_integrate`)

Prompt lengths differ by instruction (every layout names its own objects), and a graph per length would compile
again and again. So both length-dependent stages run on lengths rounded up to a multiple of `LENGTH_BUCKET`: the
prefill gets zero embeddings appended after the prompt (causal attention: no real token sees them, so the real
tokens' keys and values are exactly the unpadded ones; they are cut off before the cache is filled), and the expert
reads the context padded with masked-out keys. A few graphs then cover every instruction.

Used where they apply: the prefill only when nothing is padded and no logits are needed (continuous and Think
modes; a discrete decode reads the prefill's logits, so it keeps the eager prefill), the expert in continuous mode.
The first call at a new shape compiles (20-30 s on 2 cores for the shipped Nano's three stages; a prompt in a new
length bucket, or Think mode's longer context, means new prefill and expert graphs); later calls reuse them.
Results match the eager path up to float summation order (tests/test_nano_compiled.py).
Needs a C++ compiler (g++, installed by scripts/setup.sh). The weights are frozen into the compiled code: compile a
model after loading it and never while training it (after a weight changes, the next call raises: `check_fresh`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import torch

from molmoact2.models.nano.action_expert import _check_prefix, _pin

# Inductor options (see the module docstring). `max_autotune` costs compile time: it times every GEMM choice
# once per shape, and keeps the library's kernel where that is faster.
# `freezing` is not an option torch.compile passes through (it is read before inductor's options apply), so it is
# set around every compiled call instead (`_frozen`).
# The two report settings keep inductor from writing its autotuning tables to stderr on every first call.
COMPILE_OPTIONS = {"max_autotune": True, "max_autotune_report_choices_stats": False,
                   "autotune_num_choices_displayed": 0}
# Prompt and context lengths are rounded up to a multiple of this (see the module docstring): at most 15 padded
# tokens (~8% more prefill work on the ~175-token robot prompt) for a handful of graphs instead of one per length.
LENGTH_BUCKET = 16
# dynamo's default allows 8 graphs per function; Think mode's contexts (prompt + depth codes) add their own buckets.
RECOMPILE_LIMIT = 64


def bucket(length: int) -> int:
    """`length` rounded up to a multiple of LENGTH_BUCKET."""
    return -(-length // LENGTH_BUCKET) * LENGTH_BUCKET


class _KVSink:
    """The part of `KVCache` that `NanoLM._layer_fast` writes: one (K, V) per layer, nothing concatenated."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[layer], self.values[layer] = k, v
        return k, v


def prefill_kv(lm, specs: list[tuple], x: torch.Tensor, cos: torch.Tensor, sin_s: torch.Tensor):
    """The LM's fused prefill of an empty cache (`NanoLM._forward_fast` with `need_output=False`) as a pure
    function: embeddings x [B, T, d] and the RoPE tables of positions 0..T-1 in, every layer's K and V out."""
    sink = _KVSink(len(specs))
    last = len(specs) - 1
    for i, spec in enumerate(specs):
        x = lm._layer_fast(i, spec, x, cos, sin_s, None, True, sink, kv_only=i == last)
    return sink.keys, sink.values


@dataclass(frozen=True)
class CompiledStages:
    """The compiled callables of one model (see the module docstring); built by `enable_compiled_inference`."""

    vision: Any
    prefill: Any
    velocity: Any
    lm: Any
    specs: list
    weights: tuple  # (parameter, _version, data_ptr) of every model weight when compiled: see `check_fresh`

    def check_fresh(self) -> None:
        """Raise if any weight was replaced or updated in place since compiling (the compiled code froze the old
        values, so its answers would silently belong to another model)."""
        for param, version, ptr in self.weights:
            if param._version != version or param.data_ptr() != ptr:
                raise RuntimeError("compiled inference: the model's weights changed since enable_compiled_inference "
                                   "(the compiled code holds the old ones); call enable_compiled_inference(model) "
                                   "again, or enable_compiled_inference(model, False) for the eager path")

    def prefill_into(self, x: torch.Tensor, cache) -> None:
        """Fill an EMPTY `KVCache` from the prompt embeddings x [B, T, d] (no padding), as the eager fast path does."""
        if cache.length:
            raise ValueError("compiled prefill: the cache must be empty (the compiled graph starts at position 0)")
        b, t, d = x.shape
        padded = bucket(t)
        if padded > t:  # appended after the prompt: causal attention keeps them out of every real token's K/V
            x = torch.cat([x, x.new_zeros(b, padded - t, d)], dim=1)
        cos, sin_s = self.lm.rope_table().get(padded, x.dtype, x.device)
        keys, values = self.prefill(x, cos[:padded, None], sin_s[:padded, None])
        cache.keys[:] = [k[:, :, :t] for k in keys]  # [B, kv_heads, T, hd]: the padding cut off
        cache.values[:] = [v[:, :, :t] for v in values]
        cache.key_mask = cache.positions = None  # built on demand, as after the eager fast path
        cache.dense_length = t

    def integrate(self, expert, x0: torch.Tensor, contexts, ctx_mask, num_steps: int,
                  dim_mask: torch.Tensor | None = None, prefix: torch.Tensor | None = None) -> list[torch.Tensor]:
        """`action_expert.euler_integrate` with the compiled velocity: the same Euler steps, every state returned."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        _check_prefix(prefix, x0)
        projected = expert.project_contexts(contexts)
        b, t = projected[0][0].shape[:2]
        mask = torch.ones((b, t), dtype=torch.bool, device=x0.device) if ctx_mask is None else ctx_mask.bool()
        padded = bucket(t)
        if padded > t:  # masked-out keys: the expert attends to exactly the real context
            projected = [(torch.cat([k, k.new_zeros(b, padded - t, k.shape[2])], dim=1),
                          torch.cat([v, v.new_zeros(b, padded - t, v.shape[2])], dim=1)) for k, v in projected]
            mask = torch.cat([mask, mask.new_zeros(b, padded - t)], dim=1)
        x = x0 if dim_mask is None else x0 * dim_mask
        start, states = x, [x]
        dt = 1.0 / num_steps
        for i in range(num_steps):
            time = torch.full((x.shape[0],), i / num_steps, dtype=x.dtype, device=x.device)
            v = self.velocity(x, time, projected, mask)
            if dim_mask is not None:
                v = v * dim_mask
            x = _pin(x + dt * v, start, prefix, (i + 1) / num_steps)
            states.append(x)
        return states


def _frozen(compiled):
    """Call `compiled` with inductor's freezing on (weights as constants: prepacked for the CPU matmuls), without
    changing the setting for anything else in the process."""
    import torch._inductor.config as inductor_config

    def call(*args):
        with inductor_config.patch(freezing=True):
            return compiled(*args)

    return call


def find_compiler() -> str:
    """The C++ compiler inductor will call, or a clear error naming what to install."""
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("compiled inference needs a C++ compiler (torch.compile's CPU backend writes C++): none of "
                       "g++, c++, clang++ is on PATH. Install one (Debian: `apt-get install g++`, as scripts/setup.sh "
                       "does) or use the eager path (compiled=False)")


def enable_compiled_inference(model, enable: bool = True) -> CompiledStages | None:
    """Attach compiled stages to a Nano model (its `predict_action` then uses them), or detach them. Compiling
    happens lazily, on the first call at each shape. Returns the stages (None when disabled)."""
    if not enable:
        model.__dict__["compiled_stages"] = None
        return None
    find_compiler()
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    specs = model.lm._fast_specs()
    if specs is None:
        raise ValueError("compiled inference: this model's LM layers do not have the structure of the fused "
                         "inference path (layers.NanoLM._fast_specs); use the eager path")
    model.eval()
    lm = model.lm

    def prefill(x, cos, sin_s):
        return prefill_kv(lm, specs, x, cos, sin_s)

    def compile_(fn):
        return _frozen(torch.compile(fn, dynamic=False, options=dict(COMPILE_OPTIONS)))

    stages = CompiledStages(vision=compile_(model.encode_images), prefill=compile_(prefill),
                            velocity=compile_(model.action_expert.forward),
                            lm=lm, specs=specs,
                            weights=tuple((p, p._version, p.data_ptr()) for p in model.parameters()))
    model.__dict__["compiled_stages"] = stages
    return stages


def compiled_stages(model) -> CompiledStages | None:
    """The stages attached by `enable_compiled_inference`, or None (eager)."""
    return model.__dict__.get("compiled_stages")
