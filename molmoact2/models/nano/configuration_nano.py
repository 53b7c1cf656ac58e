"""MolmoAct2-Nano configuration: the real checkpoint's config.json fields, at a size a 2-core CPU runs.

Field names mirror the official `MolmoAct2Config` (checkpoint-layout.md) so one reader handles both:
four sub-configs (`text_config`, `vit_config`, `adapter_config`, `action_expert_config`) plus the
top-level token-id fields, `max_action_dim`, `max_action_horizon`, `flow_matching_num_steps`,
`num_depth_codes`, `enable_depth_reasoning`, `norm_stats_filename`.

The token-id fields are filled from the tokenizer by `NanoConfig.with_token_ids` (factory.py does it
when it builds a checkpoint), never guessed: ids depend on the BPE vocabulary size.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

MODEL_TYPE = "molmoact2_nano"


class NanoTextConfig(PretrainedConfig):
    """Qwen3-style causal LM (RoPE, RMSNorm, QK-norm, GQA, SwiGLU)."""

    model_type = "molmoact2_nano_text"

    def __init__(self, hidden_size: int = 64, intermediate_size: int = 128, num_hidden_layers: int = 2,
                 num_attention_heads: int = 4, num_key_value_heads: int = 2, head_dim: int = 16,
                 vocab_size: int = 0, additional_vocab_size: int = 0, rms_norm_eps: float = 1e-6,
                 rope_theta: float = 10000.0, max_position_embeddings: int = 2048, use_qk_norm: bool = True,
                 qk_norm_type: str = "qwen3", norm_after: bool = False, initializer_range: float = 0.02,
                 **kwargs: Any) -> None:
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.vocab_size = vocab_size  # rows of lm_head: every token the model may GENERATE is below this
        self.additional_vocab_size = additional_vocab_size  # input-only rows (image tokens)
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.max_position_embeddings = max_position_embeddings
        self.use_qk_norm = use_qk_norm
        self.qk_norm_type = qk_norm_type
        self.norm_after = norm_after
        self.initializer_range = initializer_range
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)


class NanoVitConfig(PretrainedConfig):
    """A small pre-LN ViT run on every camera image (SigLIP2 stand-in)."""

    model_type = "molmoact2_nano_vit"

    def __init__(self, image_default_input_size: tuple[int, int] | list[int] = (64, 64), image_patch_size: int = 8,
                 image_num_pos: int | None = None, hidden_size: int = 48, intermediate_size: int = 96,
                 num_hidden_layers: int = 2, num_attention_heads: int = 4, layer_norm_eps: float = 1e-6,
                 **kwargs: Any) -> None:
        size = [int(s) for s in image_default_input_size]
        if size[0] % image_patch_size or size[1] % image_patch_size:
            raise ValueError(f"vit_config: image size {size} must be a multiple of image_patch_size={image_patch_size}")
        n_pos = (size[0] // image_patch_size) * (size[1] // image_patch_size)
        if image_num_pos is not None and image_num_pos != n_pos:
            raise ValueError(f"vit_config: image_num_pos={image_num_pos} but (size/patch)^2 = {n_pos}")
        self.image_default_input_size = size
        self.image_patch_size = image_patch_size
        self.image_num_pos = n_pos
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.layer_norm_eps = layer_norm_eps
        super().__init__(**kwargs)


class NanoAdapterConfig(PretrainedConfig):
    """ViT features of `vit_layers` concatenated -> 2x2 attention pooling -> SwiGLU projector to the LM width."""

    model_type = "molmoact2_nano_adapter"

    def __init__(self, vit_layers: tuple[int, ...] | list[int] = (-1, -2), pooling_size: tuple[int, int] | list[int] = (2, 2),
                 intermediate_size: int = 128, text_hidden_size: int = 64, num_attention_heads: int = 4,
                 **kwargs: Any) -> None:
        self.vit_layers = [int(v) for v in vit_layers]
        self.pooling_size = [int(p) for p in pooling_size]
        self.intermediate_size = intermediate_size
        self.text_hidden_size = text_hidden_size
        self.num_attention_heads = num_attention_heads
        super().__init__(**kwargs)


class NanoActionExpertConfig(PretrainedConfig):
    """The flow-matching DiT (molmoact2.md §6). `num_layers` must equal the LM layer count."""

    model_type = "molmoact2_nano_action_expert"

    def __init__(self, hidden_size: int = 64, num_heads: int = 4, num_layers: int = 2, mlp_ratio: float = 2.0,
                 timestep_embed_dim: int = 256, qk_norm: bool = True, rope: bool = True,
                 context_layer_norm: bool = True, causal_attn: bool = False, max_action_dim: int = 32,
                 max_action_horizon: int = 30, rope_theta: float = 10000.0,
                 relative_dims: tuple[int, ...] | list[int] = (), **kwargs: Any) -> None:
        if causal_attn:
            raise ValueError("action_expert_config: causal_attn must be False (the expert attends bidirectionally "
                             "over the chunk, molmoact2.md §6)")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_layers = num_layers
        self.mlp_ratio = mlp_ratio
        self.timestep_embed_dim = timestep_embed_dim
        self.qk_norm = qk_norm
        self.rope = rope
        self.context_layer_norm = context_layer_norm
        self.causal_attn = causal_attn
        self.max_action_dim = max_action_dim
        self.max_action_horizon = max_action_horizon
        self.rope_theta = rope_theta
        # A workbench extension (relative_actions.py): action dims the expert predicts as a change from the
        # current state, in normalized units. Empty (the default, and the real model): every dim absolute.
        dims = [int(d) for d in relative_dims]
        if len(set(dims)) != len(dims) or any(not 0 <= d < max_action_dim for d in dims):
            raise ValueError(f"action_expert_config: relative_dims must be distinct dims in 0..{max_action_dim - 1}, "
                             f"got {list(relative_dims)}")
        self.relative_dims = sorted(dims)
        super().__init__(**kwargs)


# Top-level token-id fields of the real config.json (checkpoint-layout.md), all filled by `with_token_ids`.
TOKEN_ID_FIELDS = (
    "image_start_token_id", "low_res_image_start_token_id", "image_end_token_id", "image_low_res_id",
    "image_patch_id", "image_col_id", "frame_start_token_id", "frame_end_token_id",
    "action_output_token_id", "action_start_token_id", "action_end_token_id", "action_token_start_id",
    "depth_output_token_id", "depth_start_token_id", "depth_end_token_id", "depth_token_start_id",
    "state_start_token_id", "state_end_token_id", "state_token_start_id",
)
# config field -> the token whose id it holds (indexed families: the id of index 0).
TOKEN_FOR_FIELD = {
    "image_start_token_id": "<im_start>", "low_res_image_start_token_id": "<low_res_im_start>",
    "image_end_token_id": "<im_end>", "image_low_res_id": "<im_low>", "image_patch_id": "<im_patch>",
    "image_col_id": "<im_col>", "frame_start_token_id": "<frame_start>", "frame_end_token_id": "<frame_end>",
    "action_output_token_id": "<action_output>", "action_start_token_id": "<action_start>",
    "action_end_token_id": "<action_end>", "action_token_start_id": "<action_0>",
    "depth_output_token_id": "<depth_output>", "depth_start_token_id": "<depth_start>",
    "depth_end_token_id": "<depth_end>", "depth_token_start_id": "<depth_0>",
    "state_start_token_id": "<state_start>", "state_end_token_id": "<state_end>", "state_token_start_id": "<state_0>",
}


class NanoConfig(PretrainedConfig):
    model_type = MODEL_TYPE
    sub_configs = {"text_config": NanoTextConfig, "vit_config": NanoVitConfig,
                   "adapter_config": NanoAdapterConfig, "action_expert_config": NanoActionExpertConfig}

    def __init__(self, text_config: dict | NanoTextConfig | None = None, vit_config: dict | NanoVitConfig | None = None,
                 adapter_config: dict | NanoAdapterConfig | None = None,
                 action_expert_config: dict | NanoActionExpertConfig | None = None,
                 add_action_expert: bool = True, action_mode: str = "both", state_format: str = "discrete",
                 max_action_dim: int = 32, max_action_horizon: int = 30, n_obs_steps: int = 1,
                 flow_matching_num_steps: int = 10, mask_action_dim_padding: bool = True,
                 enable_depth_reasoning: bool = True, num_depth_codes: int = 100, num_depth_tokens: int = 128,
                 num_action_tokens: int = 2048, num_state_tokens: int = 256, add_setup_tokens: bool = True,
                 add_control_tokens: bool = True, use_frame_special_tokens: bool = False,
                 norm_stats_filename: str = "norm_stats.json", **kwargs: Any) -> None:
        self.text_config = _sub(NanoTextConfig, text_config)
        self.vit_config = _sub(NanoVitConfig, vit_config)
        self.adapter_config = _sub(NanoAdapterConfig, adapter_config)
        self.action_expert_config = _sub(NanoActionExpertConfig, action_expert_config)
        # As in the real config, the expert's action sizes come from the parent.
        self.action_expert_config.max_action_dim = max_action_dim
        self.action_expert_config.max_action_horizon = max_action_horizon
        self.adapter_config.text_hidden_size = self.text_config.hidden_size
        if self.action_expert_config.num_layers != self.text_config.num_hidden_layers:
            raise ValueError(
                f"action_expert_config.num_layers={self.action_expert_config.num_layers} must equal "
                f"text_config.num_hidden_layers={self.text_config.num_hidden_layers}: expert block l reads LM layer l's KV")
        if state_format != "discrete":
            raise ValueError(f"state_format must be 'discrete' (state enters as prompt tokens), got {state_format!r}")
        self.add_action_expert = add_action_expert
        self.action_mode = action_mode
        self.state_format = state_format
        self.max_action_dim = max_action_dim
        self.max_action_horizon = max_action_horizon
        self.n_obs_steps = n_obs_steps
        self.flow_matching_num_steps = flow_matching_num_steps
        self.mask_action_dim_padding = mask_action_dim_padding
        self.enable_depth_reasoning = enable_depth_reasoning
        self.num_depth_codes = num_depth_codes
        self.num_depth_tokens = num_depth_tokens
        self.num_action_tokens = num_action_tokens
        self.num_state_tokens = num_state_tokens
        self.add_setup_tokens = add_setup_tokens
        self.add_control_tokens = add_control_tokens
        self.use_frame_special_tokens = use_frame_special_tokens
        self.norm_stats_filename = norm_stats_filename
        for name in TOKEN_ID_FIELDS:
            setattr(self, name, kwargs.pop(name, None))
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return self.text_config.vocab_size

    def with_token_ids(self, vocab: dict[str, int]) -> "NanoConfig":
        """Fill every token-id field (and vocab sizes) from a tokenizer vocabulary; returns self."""
        missing = [tok for tok in TOKEN_FOR_FIELD.values() if tok not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks MolmoAct2 special tokens: {missing[:8]}")
        for name, tok in TOKEN_FOR_FIELD.items():
            setattr(self, name, int(vocab[tok]))
        image_ids = [vocab[t] for t in ("<|image|>", "<im_patch>", "<im_col>", "<im_start>", "<low_res_im_start>",
                                        "<frame_start>", "<im_end>", "<frame_end>", "<im_low>")]
        first_image = min(image_ids)
        if sorted(image_ids) != list(range(first_image, first_image + len(image_ids))) or first_image != len(vocab) - len(image_ids):
            raise ValueError("image tokens must be the last ids of the vocabulary (they live in the extra embedding rows)")
        self.text_config.vocab_size = first_image
        self.text_config.additional_vocab_size = len(image_ids)
        self.eos_token_id = int(vocab["<|im_end|>"])
        self.pad_token_id = int(vocab["<|endoftext|>"])
        return self


def _sub(cls: type[PretrainedConfig], value: Any) -> PretrainedConfig:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**{k: v for k, v in value.items() if k != "model_type"})
    raise TypeError(f"{cls.__name__}: expected a dict or {cls.__name__}, got {type(value).__name__}")


def register_config() -> None:
    try:
        AutoConfig.register(MODEL_TYPE, NanoConfig)
    except ValueError:  # already registered (module re-import)
        pass
