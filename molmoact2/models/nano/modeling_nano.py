"""MolmoAct2-Nano: ViT + adapter -> Qwen3-style LM (+ KV cache) -> flow-matching action expert.

A transformers `PreTrainedModel`, registered with `AutoModelForImageTextToText` by
`molmoact2.models.nano` so `from_pretrained(dir)` works offline without remote code. The action
API (`predict_action`) lives in inference.py; this file holds the network and its token-level passes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from molmoact2.models.nano.action_expert import ActionExpert
from molmoact2.models.nano.configuration_nano import NanoConfig
from molmoact2.models.nano.layers import KVCache, NanoLM, RMSNorm
from molmoact2.models.nano.vision import ImageAdapter, NanoViT

NORM_STATS_FORMAT = "molmoact2_norm_stats.v1"


class NanoPreTrainedModel(PreTrainedModel):
    config_class = NanoConfig
    base_model_prefix = "nano"
    main_input_name = "input_ids"
    _no_split_modules: list[str] = []

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Our own scheme so transformers' generic init cannot undo adaLN-Zero: zero-marked layers stay zero.
        std = self.config.text_config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "_nano_zero_init", False):
                nn.init.zeros_(module.weight)
            else:
                nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
        elif isinstance(module, (RMSNorm, nn.LayerNorm)):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NanoViT):
            nn.init.normal_(module.pos_embed, 0.0, std)


class NanoForConditionalGeneration(NanoPreTrainedModel):
    """The whole Nano model. Inputs as the processor makes them: input_ids, attention_mask, pixel_values."""

    def __init__(self, config: NanoConfig) -> None:
        super().__init__(config)
        tc = config.text_config
        if not tc.vocab_size:
            raise ValueError("NanoConfig.text_config.vocab_size is 0: fill the token ids from a tokenizer first "
                             "(NanoConfig.with_token_ids(tokenizer.get_vocab()); factory.build_random_nano does it)")
        self.vit = NanoViT(config.vit_config)
        self.adapter = ImageAdapter(config.adapter_config, config.vit_config)
        self.lm = NanoLM(tc)
        self.lm_head = nn.Linear(tc.hidden_size, tc.vocab_size, bias=False)
        kv_dim = tc.num_key_value_heads * tc.head_dim
        self.action_expert = ActionExpert(config.action_expert_config, kv_dim)
        self._norm_stats: dict[str, Any] | None = None
        self.post_init()

    # ---- norm stats: read from next to the weights, as the real model does -----------------------
    @property
    def norm_stats(self) -> dict[str, Any]:
        if self._norm_stats is None:
            base = getattr(self.config, "_name_or_path", "") or ""
            path = Path(base) / self.config.norm_stats_filename
            if not base or not path.is_file():
                raise ValueError(
                    f"no {self.config.norm_stats_filename} for this model (looked in {str(path)!r}): load it from a local "
                    f"checkpoint directory with from_pretrained(DIR), or set model.norm_stats = {{...}}")
            self._norm_stats = json.loads(path.read_text())
        return self._norm_stats

    @norm_stats.setter
    def norm_stats(self, value: dict[str, Any]) -> None:
        if value.get("format") != NORM_STATS_FORMAT or not isinstance(value.get("metadata_by_tag"), dict):
            raise ValueError(f"norm_stats: expected format {NORM_STATS_FORMAT!r} with 'metadata_by_tag', "
                             f"got format {value.get('format')!r}")
        self._norm_stats = value

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> "NanoForConditionalGeneration":
        model = super().from_pretrained(*args, **kwargs)
        # Loaded tensors are views into the memory-mapped safetensors file, 8-byte aligned; CPU kernels
        # then take other SIMD paths than for freshly allocated (64-byte aligned) tensors and results
        # differ in the last bit. Owning aligned copies makes a save/load round trip bit-identical
        # (and releases the file).
        with torch.no_grad():
            for p in list(model.parameters()) + list(model.buffers()):
                p.data = p.data.clone()
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)
        # The real layout ships generation_config.json; our greedy `generate` reads the same ids from config.
        gen = {"eos_token_id": self.config.eos_token_id, "pad_token_id": self.config.pad_token_id, "do_sample": False}
        (Path(save_directory) / "generation_config.json").write_text(json.dumps(gen, indent=2))
        if self._norm_stats is not None or getattr(self.config, "_name_or_path", ""):
            stats = self.norm_stats
            (Path(save_directory) / self.config.norm_stats_filename).write_text(json.dumps(stats, indent=1))

    # ---- token-level passes ---------------------------------------------------------------------
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> [N, rows*cols, d] pooled image tokens."""
        return self.adapter(self.vit(pixel_values))

    def embed_inputs(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                     image_features: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with image features ADDED at `<im_patch>` positions (Molmo style), in order."""
        x = self.lm.embed(input_ids)
        is_patch = input_ids == self.config.image_patch_id
        n_patch = int(is_patch.sum())
        if n_patch == 0:
            return x
        if image_features is None:
            if pixel_values is None:
                raise ValueError(f"input has {n_patch} <im_patch> tokens but no pixel_values were given")
            image_features = self.encode_images(pixel_values.to(x.dtype))
        feats = image_features.reshape(-1, x.shape[-1])
        if feats.shape[0] != n_patch:
            raise ValueError(f"input has {n_patch} <im_patch> tokens but the images give {feats.shape[0]} features "
                             f"(image count or size does not match the text)")
        x = x.clone()
        x[is_patch] = x[is_patch] + feats.to(x.dtype)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None, cache: KVCache | None = None,
                labels: torch.Tensor | None = None, image_features: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, logits_to_keep: int = 0, fast: bool = False,
                need_logits: bool = True, **_: Any) -> dict[str, Any]:
        """Logits over the `vocab_size` generatable tokens. `labels` (same shape as input_ids, -100 =
        ignore) gives a next-token cross-entropy `loss`. `cache` is filled in place.

        Inference only: `fast=True` takes the LM's fused path (layers.py; same function, fewer ops);
        `need_logits=False` (with `fast`, a cache and no labels) only fills the cache (what the action
        expert reads) and returns logits = hidden_states = None."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = inputs_embeds if inputs_embeds is not None else self.embed_inputs(input_ids, pixel_values, image_features)
        skip = fast and not need_logits and labels is None and cache is not None
        h = self.lm(x, attention_mask, cache, fast=fast, need_output=not skip)
        if h is None:
            return {"logits": None, "hidden_states": None}
        logits = self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)
        out: dict[str, Any] = {"logits": logits, "hidden_states": h}
        if labels is not None:
            shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
            shift_labels = labels[:, 1:].reshape(-1)
            if bool((shift_labels != -100).any()):
                out["loss"] = nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
            else:  # nothing to predict (e.g. continuous-only samples): zero, not NaN
                out["loss"] = shift_logits.sum() * 0.0
        return out

    def new_cache(self) -> KVCache:
        return KVCache(self.config.text_config.num_hidden_layers)

    def step(self, token_ids: list[int] | torch.Tensor, cache: KVCache, *, logit_rows: tuple[int, int] | None = None,
             need_logits: bool = True) -> torch.Tensor | None:
        """Feed tokens (teacher-forced, one pass) after what the cache holds; return the last position's logits [B, V].

        Without autograd this takes the fast path: plain text tokens are embedded with one lookup (no
        host syncs), and `logit_rows=(lo, hi)` computes only lm_head rows lo..hi-1 (-> [B, hi - lo]; the
        depth decode needs only the 128 depth rows). `need_logits=False` only fills the cache (None)."""
        plain = False
        if isinstance(token_ids, torch.Tensor):
            ids = token_ids.to(device=self.device, dtype=torch.long)
        else:  # host ids: check them on the host (no device sync)
            arr = np.asarray(token_ids, dtype=np.int64)
            plain = (not torch.is_grad_enabled() and arr.size > 0 and int(arr.min()) >= 0
                     and int(arr.max()) < self.config.text_config.vocab_size)
            ids = torch.from_numpy(arr).to(self.device)
        if ids.ndim == 1:
            ids = ids[None]
        if not plain:  # tensors, image tokens or autograd: the general path
            out = self.forward(ids, torch.ones_like(ids), cache=cache, logits_to_keep=1)
            logits = out["logits"][:, -1]
            return logits if logit_rows is None else logits[:, logit_rows[0]:logit_rows[1]]
        # `plain`: every id is a generatable token, so embed_inputs would be this lookup (no image rows).
        x = F.embedding(ids, self.lm.embed_tokens.weight)
        h = self.lm(x, None, cache, fast=True, need_output=need_logits)
        if h is None:
            return None
        weight = self.lm_head.weight if logit_rows is None else self.lm_head.weight[logit_rows[0]:logit_rows[1]]
        return F.linear(h[:, -1], weight)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 pixel_values: torch.Tensor | None = None, max_new_tokens: int = 64, **_: Any) -> torch.Tensor:
        """Greedy decoding (free-form answers). Returns [B, T + new] like transformers' generate."""
        cache = self.new_cache()
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.forward(input_ids, attention_mask, pixel_values, cache=cache, logits_to_keep=1)["logits"][:, -1]
        eos = {int(e) for e in ([self.config.eos_token_id] if isinstance(self.config.eos_token_id, int)
                                else self.config.eos_token_id)}
        out = [input_ids]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(int(max_new_tokens)):
            nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.config.pad_token_id), nxt)
            out.append(nxt[:, None])
            done = done | torch.tensor([int(n) in eos for n in nxt.tolist()], device=nxt.device)
            if bool(done.all()):
                break
            logits = self.step(nxt[:, None], cache)
        return torch.cat(out, dim=1)

    def predict_action(self, **kwargs: Any) -> Any:
        """The official action API (keyword-only); see molmoact2.models.nano.inference."""
        from molmoact2.models.nano.inference import predict_action

        return predict_action(self, **kwargs)
