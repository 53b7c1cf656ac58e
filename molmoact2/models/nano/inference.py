"""`predict_action` for Nano: the official keyword API and fields (molmoact2.md §2, checkpoint-layout.md),
plus what the workbench shows and the real model hides: every denoising state, the per-layer KV the
expert read (a summary, or the tensors with `return_context=True`), forward-pass counts and per-stage
timings (vision, prefill, depth decode, action expert / discrete decode, total).

Stages:
  1. state -> bins (tokens.discretize_state), prompt (tokens.build_robot_prompt), processor;
  2. vision: ViT + adapter on every camera; 3. prefill: one LM pass over the prompt, filling the KV cache;
  4. depth (optional, MolmoThink): `<depth_start>`, then per span of the change mask either greedy
     codes one by one (logits restricted to the 128 depth rows) or the cached codes replayed in the
     SAME pass as the next fed tokens, then `<depth_end>`;
  5. continuous: Euler-integrate the flow expert conditioned on every layer's cache; discrete: greedy
     decode `<action_start> ... <action_end> EOS`, parse strictly, OpenFAST-decode (errors raise).
`enable_cuda_graph` is accepted for API parity and has no effect (CPU; the real model also falls back).
With stages attached by `compiled.enable_compiled_inference(model)`, the optimized path runs vision, the prefill
(when it needs no logits) and the expert's velocity through torch.compile; `compiled_stages` in the output names
the stages that ran compiled in this call.

Speed (CPU, one thread; same function, fewer ops; `optimized=False` runs the plain reference path):
the LM takes its fused inference path (layers.py: fused q/k/v and gate/up, one q+k norm, cached RoPE
table, no mask when nothing is padded, no host syncs per token); passes whose logits nobody reads
(the prefill before a depth decode or the expert, the `<depth_end>` pass in continuous mode) only fill
the cache and skip the last layer's attention output and MLP; depth decoding computes only the 128
depth rows of lm_head; the expert precomputes per chunk everything that does not depend on the noisy
chunk (action_expert.ExpertPlan: time/adaLN conditioning of all 10 steps in one matmul per block,
context heads, RoPE, mask).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import torch

from molmoact2 import tokens as T
from molmoact2.depth import think
from molmoact2.models.flow_noise import check_noise_scale, check_plan_samples, medoid_index
from molmoact2.models.nano.action_expert import euler_integrate, euler_integrate_reference
from molmoact2.models.nano.compiled import compiled_stages
from molmoact2.models.nano.normalization import stats_dim, unnormalize_actions
from molmoact2.models.nano.relative_actions import from_expert_space, state_shift, to_expert_space
from molmoact2.models.nano.processing_nano import to_uint8_rgb

MODES = ("continuous", "discrete")


def _check_args(model, processor, images, task, norm_tag, mode, depth, action_tokenizer) -> dict[str, Any]:
    cfg = model.config
    if mode is None:
        raise ValueError("predict_action: inference_action_mode is required: 'continuous' (flow-matching expert) or "
                         "'discrete' (OpenFAST tokens; needs action_tokenizer=)")
    if mode not in MODES:
        raise ValueError(f"predict_action: inference_action_mode must be one of {MODES}, got {mode!r}")
    if processor is None:
        raise ValueError("predict_action: processor= is required (NanoProcessor.from_pretrained(DIR))")
    if not isinstance(task, str) or not task.strip():
        raise ValueError(f"predict_action: task= must be a non-empty instruction string, got {task!r}")
    if images is None or (isinstance(images, (list, tuple)) and not images):
        raise ValueError("predict_action: images= must be a non-empty list of camera images (main image first)")
    stats = model.norm_stats
    tags = sorted(stats["metadata_by_tag"])
    if norm_tag is None or norm_tag not in stats["metadata_by_tag"]:
        raise ValueError(f"predict_action: unknown norm_tag {norm_tag!r}. Valid tags: {', '.join(tags)}")
    if mode == "discrete" and action_tokenizer is None:
        raise ValueError("predict_action: inference_action_mode='discrete' needs action_tokenizer= (an OpenFAST "
                         "tokenizer, e.g. molmoact2.openfast.OpenFastProcessor.load(DIR)); it is not in the checkpoint")
    if depth and not cfg.enable_depth_reasoning:
        raise ValueError("predict_action: enable_depth_reasoning=True but this checkpoint was not trained for depth "
                         "reasoning (config.enable_depth_reasoning is False)")
    if mode == "continuous" and not cfg.add_action_expert:
        raise ValueError("predict_action: this checkpoint has no action expert (add_action_expert=False); use "
                         "inference_action_mode='discrete'")
    return stats["metadata_by_tag"][norm_tag] | {"_norm_mode": stats.get("norm_mode", "min_max")}


def _timer() -> dict[str, float]:
    return {"t": time.perf_counter()}


def _lap(clock: dict[str, float], timings: dict[str, float], name: str) -> None:
    now = time.perf_counter()
    timings[name] = timings.get(name, 0.0) + (now - clock["t"]) * 1e3
    clock["t"] = now


def decode_depth(model, cache, logits: torch.Tensor | None, main_image: np.ndarray, depth_cache: dict | None,
                 optimized: bool = True) -> dict[str, Any]:
    """MolmoThink depth decode into `cache`. Returns codes, mask, generated ids, pending tokens, calls.

    The last pending tokens (`<depth_end>` and possibly a replayed tail) are NOT fed here: the caller
    feeds them in its next pass, so an all-replayed frame costs exactly one LM pass."""
    cfg = model.config
    prev_image = prev_codes = None
    if depth_cache is not None:
        prev_image = np.asarray(depth_cache.get("image")) if depth_cache.get("image") is not None else None
        prev_codes = depth_cache.get("depth_bins")
        prev_codes = None if prev_codes is None else np.asarray(prev_codes, dtype=np.int64).reshape(-1)
    usable = (prev_image is not None and prev_codes is not None and prev_codes.size == cfg.num_depth_codes
              and prev_image.shape == main_image.shape)
    mask = think.update_mask(main_image, prev_image) if usable else np.ones(cfg.num_depth_codes, dtype=bool)
    base, n = cfg.depth_token_start_id, cfg.num_depth_tokens
    codes = np.zeros(cfg.num_depth_codes, dtype=np.int64)
    pending = [cfg.depth_start_token_id]
    calls = 0
    for span in think.update_spans(mask):
        if not span.changed:  # replay: teacher-forced together with whatever is fed next
            codes[span.start:span.end] = prev_codes[span.start:span.end]
            pending += (base + prev_codes[span.start:span.end]).tolist()
            continue
        for i in range(span.start, span.end):
            if optimized:  # only the 128 depth rows may be chosen, so only they are computed
                codes[i] = int(model.step(pending, cache, logit_rows=(base, base + n))[0].argmax())
            else:  # reference: the general path (tensor ids), every logit, then the depth rows
                codes[i] = int(model.step(torch.tensor([pending]), cache)[0, base:base + n].argmax())
            calls += 1
            pending = [base + int(codes[i])]
    pending.append(cfg.depth_end_token_id)
    generated = [cfg.depth_start_token_id, *(base + codes).tolist(), cfg.depth_end_token_id]
    return {"codes": codes, "mask": mask, "generated": generated, "pending": pending, "calls": calls}


def decode_discrete(model, cache, logits: torch.Tensor, max_tokens: int, optimized: bool = True,
                    grammar=None) -> tuple[list[int], int, int | None]:
    """Greedy. Without `grammar` unconstrained, as the real model: stops at EOS or after max_tokens. With an
    OpenFAST `LengthGrammar` (a workbench extension) every step takes the best id the grammar allows:
    `<action_start>`, ids that do not overrun the coefficient count, `<action_end>` once it is reached, then EOS
    (forced, so not computed). Returns (ids, forward calls, how many steps the grammar overrode the model's own
    greedy choice; None when unconstrained)."""
    eos = model.config.eos_token_id
    eos = [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]
    out, calls = [], 0
    if grammar is None:
        for _ in range(max_tokens):
            nxt = int(logits[0].argmax())
            out.append(nxt)
            if nxt in eos:
                break
            logits = model.step([nxt] if optimized else torch.tensor([[nxt]]), cache)
            calls += 1
        return out, calls, None
    cfg = model.config
    first, n_ids = int(cfg.action_token_start_id), len(grammar.token_bytes)
    if n_ids > cfg.num_action_tokens:
        raise ValueError(f"action_tokenizer has {n_ids} ids but the model reserves {cfg.num_action_tokens} action rows")
    if grammar.n_coefficients + 2 > max_tokens:  # <action_start> + at least one id per coefficient + <action_end>
        raise ValueError(f"max_action_tokens={max_tokens} cannot hold a constrained sequence of "
                         f"{grammar.n_coefficients} coefficients plus its markers; raise it to at least "
                         f"{grammar.n_coefficients + 2}")
    state, overrides, started = grammar.start, 0, False
    for _ in range(max_tokens):
        row = logits[0]
        mask = torch.zeros(row.shape[-1], dtype=torch.bool, device=row.device)
        if not started:
            mask[cfg.action_start_token_id] = True
        else:
            mask[first:first + n_ids] = torch.from_numpy(grammar.allowed(state))
            mask[cfg.action_end_token_id] = grammar.may_end(state)
        nxt = int(row.masked_fill(~mask, float("-inf")).argmax())
        overrides += nxt != int(row.argmax())
        out.append(nxt)
        if nxt == cfg.action_end_token_id:
            out.append(eos[0])
            return out, calls, overrides
        if started:
            state = grammar.advance(state, nxt - first)
        started = True
        logits = model.step([nxt] if optimized else torch.tensor([[nxt]]), cache)
        calls += 1
    raise ValueError(f"constrained decode: max_action_tokens={max_tokens} ids were not enough to reach "
                     f"{grammar.n_coefficients} coefficients (got {state[0]}); raise max_action_tokens")


def length_grammar(action_tokenizer, n_coefficients: int):
    """The tokenizer's `LengthGrammar` for `n_coefficients`, built once per tokenizer object and count."""
    from molmoact2.openfast.grammar import LengthGrammar

    if not all(hasattr(action_tokenizer, a) for a in ("vocab", "min_token", "max_token")):
        raise ValueError(f"constrain_action_tokens: needs an OpenFastProcessor (molmoact2.openfast), got "
                         f"{type(action_tokenizer).__name__}")
    cached = action_tokenizer.__dict__.setdefault("_length_grammars", {})
    if n_coefficients not in cached:
        cached[n_coefficients] = LengthGrammar.of(action_tokenizer, n_coefficients)
    return cached[n_coefficients]


@torch.no_grad()
def predict_action(model, *, processor=None, images=None, task=None, state=None, norm_tag=None,
                   inference_action_mode=None, enable_depth_reasoning=False, depth_cache=None, action_tokenizer=None,
                   num_steps=None, n_action_steps=None, generator=None, normalize_language=True,
                   enable_cuda_graph=True, return_dict=True, max_action_tokens: int = 256,
                   return_context: bool = False, optimized: bool = True, action_prefix_normalized=None,
                   noise_scale: float = 1.0, plan_samples: int = 1, constrain_action_tokens: bool = False) -> Any:
    """See the module docstring. `optimized=False` runs the plain reference computation (general LM
    path, every logit, the plain Euler loop): same results up to float summation order, slower; the
    latency bench and the tests compare the two. `action_prefix_normalized` [k, action_dim] (model space,
    continuous mode only; a workbench extension) pins the chunk's first k actions, e.g. to the previous
    plan's actions for those ticks (`action_expert` "Carry-over"); the full plan of every call is in
    `denoising_states_normalized[-1]`. `noise_scale` (continuous mode; a workbench extension) multiplies the
    expert's start noise: 1 = the trained N(0, I), 0 = always start from its mean (a deterministic plan).
    `plan_samples` K > 1 (continuous mode; a workbench extension) integrates K start draws in one batch and keeps
    the medoid plan (`flow_noise.medoid_index` over the executed actions, model space): every draw is returned
    in `plan_samples_normalized` [K, H, action_dim] and the kept one's index in `plan_choice`.
    `constrain_action_tokens` (discrete mode; a workbench extension) decodes the OpenFAST ids under their length
    grammar (`decode_discrete`), so the chunk always decodes; `action_grammar_overrides` then counts the steps
    where the grammar replaced the model's own choice (the real model decodes unconstrained and can fail)."""
    timings: dict[str, float] = {}
    clock = _timer()
    t_start = clock["t"]
    mode = inference_action_mode
    meta = _check_args(model, processor, images, task, norm_tag, mode, enable_depth_reasoning, action_tokenizer)
    cfg = model.config
    norm_mode = meta["_norm_mode"]
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    action_dim = stats_dim(meta["action_stats"], "action")
    state_dim = stats_dim(meta["state_stats"], "state")
    raw_state = np.asarray(state if not hasattr(state, "detach") else state.detach().cpu().numpy(), dtype=np.float32)
    raw_state = raw_state.reshape(-1) if raw_state.ndim == 2 and raw_state.shape[0] == 1 else raw_state
    if raw_state.ndim != 1 or raw_state.shape[0] != state_dim:
        raise ValueError(f"predict_action: norm_tag {norm_tag!r} expects a raw state of {state_dim} dims, got shape "
                         f"{list(raw_state.shape)}")
    horizon = int(meta.get("action_horizon", cfg.max_action_horizon))
    if horizon > cfg.max_action_horizon:
        raise ValueError(f"norm stats action_horizon={horizon} exceeds max_action_horizon={cfg.max_action_horizon}")
    n_exec = int(n_action_steps or meta.get("n_action_steps") or horizon)
    if not 1 <= n_exec <= horizon:
        raise ValueError(f"predict_action: n_action_steps must be in 1..{horizon}, got {n_exec}")
    steps = int(num_steps or cfg.flow_matching_num_steps)
    noise_scale = check_noise_scale(noise_scale)
    plan_samples = check_plan_samples(plan_samples)
    if plan_samples > 1 and mode != "continuous":
        raise ValueError(f"plan_samples: only the continuous (flow-matching) mode draws plans, not {mode!r}")
    if constrain_action_tokens and mode != "discrete":
        raise ValueError(f"constrain_action_tokens: only the discrete (OpenFAST) mode decodes action ids, not {mode!r}")
    # A relative expert (relative_actions.py) plans change from this state; everything outside it is absolute.
    shift = state_shift(cfg, raw_state, meta["action_stats"], norm_mode)
    prefix = None
    if action_prefix_normalized is not None:
        if mode != "continuous":
            raise ValueError(f"action_prefix_normalized: only the continuous (flow-matching) mode takes a prefix, "
                             f"not {mode!r}")
        arr = np.asarray(action_prefix_normalized, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != action_dim or not 1 <= arr.shape[0] < horizon or not np.isfinite(arr).all():
            raise ValueError(f"action_prefix_normalized: expected finite [k, {action_dim}] with 1 <= k < {horizon} "
                             f"(the horizon), got shape {list(arr.shape)}")
        prefix = torch.zeros((1, arr.shape[0], cfg.max_action_dim), dtype=torch.float32)
        prefix[0, :, :action_dim] = torch.from_numpy(to_expert_space(arr, shift))

    # 1. prompt
    bins = T.discretize_state(raw_state, meta["state_stats"], norm_mode)
    style = "robot_depth_action" if enable_depth_reasoning else "robot_action"
    prompt = T.build_robot_prompt(task, bins, meta.get("setup_type", ""), meta.get("control_mode", ""), len(images),
                                  style, add_setup_tokens=cfg.add_setup_tokens,
                                  add_control_tokens=cfg.add_control_tokens, normalize_language=normalize_language)
    inputs = processor(text=prompt, images=images)
    input_ids = inputs["input_ids"].to(model.device)
    attention_mask = inputs["attention_mask"].to(model.device)
    # Compiled stages (molmoact2.models.nano.compiled), when attached: the optimized path only.
    stages = compiled_stages(model) if optimized else None
    if stages is not None:
        stages.check_fresh()
    used_compiled: list[str] = []
    _lap(clock, timings, "prepare_ms")
    # Inference mode (optimized path): no autograd bookkeeping at all. Only numpy arrays and Python
    # values leave this block; the returned tensors are made after it, so callers get normal tensors.
    with torch.inference_mode() if optimized else contextlib.nullcontext():
        # 2. vision
        pixels = inputs["pixel_values"].to(model.device, model.dtype)
        feats = stages.vision(pixels) if stages is not None else model.encode_images(pixels)
        used_compiled += ["vision"] if stages is not None else []
        _lap(clock, timings, "vision_ms")
        # 3. prefill
        cache = model.new_cache()
        # The prefill's logits are read only by a discrete decode that starts right after it; otherwise the
        # pass only fills the cache (depth decoding starts by feeding <depth_start>; the expert reads K/V).
        need_logits = (mode == "discrete" and not enable_depth_reasoning) or not optimized
        if stages is not None and not need_logits and bool(attention_mask.all()):
            stages.prefill_into(model.embed_inputs(input_ids, image_features=feats), cache)
            logits = None
            used_compiled.append("prefill")
        else:
            logits = model.forward(input_ids, attention_mask, image_features=feats, cache=cache, logits_to_keep=1,
                                   fast=optimized, need_logits=need_logits)["logits"]
            logits = logits[:, -1] if logits is not None else None
        _lap(clock, timings, "prefill_ms")
        generated: list[int] = []
        depth = None
        calls = {"prefill": 1, "depth": 0, "action": 0}
        main = to_uint8_rgb(images[0])
        if enable_depth_reasoning:
            depth = decode_depth(model, cache, logits, main, depth_cache, optimized)
            # <depth_end> (+ a replayed tail) joins the cache; its logits matter only to a discrete decode.
            logits = model.step(depth["pending"], cache, need_logits=mode == "discrete") if optimized else \
                model.step(torch.tensor([depth["pending"]]), cache)
            calls["depth"] = depth["calls"] + 1
            generated += depth["generated"]
            _lap(clock, timings, "depth_ms")

        denoise = None
        action_ids = overrides = None
        samples, choice = None, None
        if mode == "continuous":
            contexts = [cache.context(layer) for layer in range(cfg.text_config.num_hidden_layers)]
            ctx_mask = cache.key_mask
            if plan_samples > 1:  # one observation, K draws: the batch rows share the context
                contexts = [(k.expand(plan_samples, -1, -1), v.expand(plan_samples, -1, -1)) for k, v in contexts]
                ctx_mask = ctx_mask.expand(plan_samples, -1)
                if prefix is not None:
                    prefix = prefix.expand(plan_samples, -1, -1)
            x0 = torch.randn((plan_samples, horizon, cfg.max_action_dim), generator=generator, device=model.device,
                             dtype=torch.float32)
            if noise_scale != 1.0:  # drawn all the same, so a seeded run's later draws do not shift with the scale
                x0 = x0 * noise_scale
            dim_mask = None
            if cfg.mask_action_dim_padding:
                dim_mask = torch.zeros(cfg.max_action_dim, device=model.device)
                dim_mask[:action_dim] = 1.0
            integrate = euler_integrate if optimized else euler_integrate_reference
            if stages is not None:
                integrate = stages.integrate
                used_compiled.append("expert")
            states = integrate(model.action_expert, x0.to(model.dtype), contexts, ctx_mask, steps,
                               None if dim_mask is None else dim_mask.to(model.dtype),
                               None if prefix is None else prefix.to(model.device, model.dtype))
            denoise = from_expert_space(torch.stack(states).float().cpu().numpy(), shift)  # [S+1, K, H, 32]
            if plan_samples > 1:
                samples = denoise[-1][:, :, :action_dim].copy()
                choice = medoid_index(samples[:, :n_exec])  # judged on what will be executed
                denoise = denoise[:, choice:choice + 1]
            normed = denoise[-1][:, :n_exec, :action_dim]
            calls["action"] = steps
            _lap(clock, timings, "action_expert_ms")
        else:
            tok_dim = getattr(getattr(action_tokenizer, "config", None), "action_dim", None) or action_dim
            if tok_dim < action_dim:
                raise ValueError(f"action_tokenizer decodes {tok_dim} dims but norm_tag {norm_tag!r} has {action_dim}")
            grammar = length_grammar(action_tokenizer, horizon * tok_dim) if constrain_action_tokens else None
            toks, calls["action"], overrides = decode_discrete(model, cache, logits, max_action_tokens, optimized,
                                                               grammar)
            generated += toks
            parsed = T.parse_generated(np.asarray(toks, dtype=np.int64), processor.token_ids)  # raises TokenFormatError
            if parsed.action_ids is None:
                raise T.TokenFormatError("discrete decode produced no action segment", expected="<action_start> ... "
                                         "<action_end>", got=parsed.raw, where="generated tokens")
            action_ids = parsed.action_ids
            # OpenFastProcessor.decode raises DecodeError on a malformed sequence (never a zero chunk).
            decoded = np.asarray(action_tokenizer.decode([action_ids.tolist()], time_horizon=horizon, action_dim=tok_dim))
            normed = decoded[:, :n_exec, :action_dim].astype(np.float32)
            _lap(clock, timings, "discrete_decode_ms")

    actions = unnormalize_actions(normed, meta["action_stats"], norm_mode)
    timings["total_ms"] = (time.perf_counter() - t_start) * 1e3
    out: dict[str, Any] = {
        "actions": torch.from_numpy(actions.astype(np.float32)),
        "generated_token_ids": torch.tensor([generated], dtype=torch.long) if generated else None,
        "depth_bins": torch.from_numpy(depth["codes"][None]) if depth is not None else None,
        "depth_cache": {"image": main.copy(), "depth_bins": depth["codes"].copy()} if depth is not None else None,
        # workbench extras
        "depth_update_mask": depth["mask"] if depth is not None else None,
        "action_token_ids": action_ids,
        "action_grammar_overrides": overrides,
        "denoising_states_normalized": denoise,
        "plan_samples_normalized": samples,
        "plan_choice": choice,
        "denoising_states": None if denoise is None else
        unnormalize_actions(denoise[:, :, :n_exec, :action_dim], meta["action_stats"], norm_mode),
        "kv_summary": [_kv_summary(cache, layer) for layer in range(cfg.text_config.num_hidden_layers)],
        "forward_calls": calls,
        "timings_ms": timings,
        "compiled_stages": used_compiled,
        "prompt_text": prompt,
        "prompt_token_ids": input_ids[0].cpu().numpy(),
        "norm_tag": norm_tag,
    }
    if return_context:
        out["context_kv"] = [tuple(t.float().cpu().numpy() for t in cache.context(layer))
                             for layer in range(cfg.text_config.num_hidden_layers)]
        out["context_mask"] = cache.key_mask.cpu().numpy()
    if not return_dict:
        return out["actions"], out["generated_token_ids"], out["depth_bins"], out["depth_cache"]
    return out


def _kv_summary(cache, layer: int) -> dict[str, Any]:
    # RMS over all elements does not depend on the layout: read the cache as stored (no transposed copy).
    k, v = cache.keys[layer], cache.values[layer]
    b, h, t, d = k.shape
    return {"layer": layer, "tokens": int(t), "kv_dim": int(h * d),
            "k_rms": float(k.float().pow(2).mean().sqrt()), "v_rms": float(v.float().pow(2).mean().sqrt())}
