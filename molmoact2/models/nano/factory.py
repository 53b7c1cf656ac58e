"""Build a Nano model + processor from scratch (random weights) and write a checkpoint directory.

    python -m molmoact2.models.nano.factory --out /tmp/nano_random      # a random tiny checkpoint for tests

Our SO-101 sim norm tag is `so101_sim_molmoact2` (setup "single so101 robotic arm in molmoact2 sim",
control "absolute joint pose", cameras front + wrist): a tag of its own, not the real
`so100_so101_molmoact2`, because the simulator's statistics are not the real robots'. The default
stats are the simulator's unit ranges (molmoact2/sim/units.py: arm joints -100..100, gripper 0..100);
the training run replaces them with statistics of the demos.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

NANO_NORM_TAG = "so101_sim_molmoact2"
NANO_SETUP = "single so101 robotic arm in molmoact2 sim"
NANO_CONTROL = "absolute joint pose"
NANO_CAMERAS = ("front", "wrist")
# Mirrors molmoact2/sim/units.py (FEATURE_NAMES, UNIT_LOW/UNIT_HIGH); models may not import the sim layer.
SO101_NAMES = ("shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos",
               "gripper.pos")
SO101_LOW = [-100.0] * 5 + [0.0]
SO101_HIGH = [100.0] * 6

# Sizes: "tiny" is for tests (a forward pass in milliseconds); "small" is the intended shipped size.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=16),
                 vit=dict(image_default_input_size=[64, 64], image_patch_size=8, hidden_size=48, intermediate_size=96,
                          num_hidden_layers=2, num_attention_heads=4),
                 adapter=dict(vit_layers=[-1, -2], intermediate_size=128, num_attention_heads=4),
                 expert=dict(hidden_size=64, num_heads=4, mlp_ratio=2.0), bpe=384),
    "small": dict(text=dict(hidden_size=256, intermediate_size=768, num_hidden_layers=6, num_attention_heads=8,
                            num_key_value_heads=2, head_dim=32),
                  vit=dict(image_default_input_size=[96, 96], image_patch_size=8, hidden_size=128,
                           intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
                  adapter=dict(vit_layers=[-1, -3], intermediate_size=512, num_attention_heads=4),
                  expert=dict(hidden_size=128, num_heads=4, mlp_ratio=4.0), bpe=1024),
}


def default_norm_stats(horizon: int = 30, n_action_steps: int | None = None) -> dict[str, Any]:
    block = {"min": list(SO101_LOW), "max": list(SO101_HIGH), "names": list(SO101_NAMES)}
    return {"format": "molmoact2_norm_stats.v1", "norm_mode": "min_max", "metadata_by_tag": {NANO_NORM_TAG: {
        "action_stats": dict(block), "state_stats": dict(block), "action_horizon": int(horizon),
        "n_action_steps": int(n_action_steps or horizon), "setup_type": NANO_SETUP, "control_mode": NANO_CONTROL,
        "camera_keys": list(NANO_CAMERAS)}}}


def build_random_nano(size: str = "tiny", *, seed: int = 0, enable_depth_reasoning: bool = True,
                      max_action_horizon: int = 30, norm_stats: dict[str, Any] | None = None,
                      **overrides: Any):
    """(model, processor) with random weights; `overrides` are top-level NanoConfig fields."""
    import torch

    from molmoact2.models.nano.configuration_nano import NanoConfig
    from molmoact2.models.nano.modeling_nano import NanoForConditionalGeneration
    from molmoact2.models.nano.processing_nano import NanoProcessor, build_tokenizer

    if size not in SIZES:
        raise ValueError(f"size: expected one of {sorted(SIZES)}, got {size!r}")
    s = SIZES[size]
    tokenizer = build_tokenizer(s["bpe"])
    vit = dict(s["vit"])
    processor = NanoProcessor(tokenizer, image_size=vit["image_default_input_size"], patch_size=vit["image_patch_size"])
    config = NanoConfig(text_config=s["text"], vit_config=vit, adapter_config=s["adapter"],
                        action_expert_config=dict(s["expert"], num_layers=s["text"]["num_hidden_layers"]),
                        enable_depth_reasoning=enable_depth_reasoning, max_action_horizon=max_action_horizon,
                        **overrides)
    config.with_token_ids(tokenizer.get_vocab())
    torch.manual_seed(seed)
    model = NanoForConditionalGeneration(config).eval()
    model.norm_stats = norm_stats or default_norm_stats(horizon=min(30, max_action_horizon))
    return model, processor


def set_pooling(model, processor, pooling: tuple[int, int] | list[int]) -> None:
    """Pool ViT patches `rows x cols` into each LM image token, in the model and its processor together.

    Why change it: at 96 px the simulator's objects are ~6 px across, so a 2x2 pool (16 px per token) puts a
    whole object inside a fraction of one token; 1x1 gives the language model one token per 8-px patch. The
    adapter's weights do not depend on the pool, so a trained checkpoint can be fine-tuned at another pool."""
    rows, cols = (int(p) for p in pooling)
    size, patch = model.config.vit_config.image_default_input_size, model.config.vit_config.image_patch_size
    grid = (size[0] // patch, size[1] // patch)
    if rows < 1 or cols < 1 or grid[0] % rows or grid[1] % cols:
        raise ValueError(f"pooling: expected rows x cols dividing the {grid[0]}x{grid[1]} patch grid "
                         f"({size[0]}x{size[1]} px, {patch}-px patches), got {rows}x{cols}")
    model.config.adapter_config.pooling_size = [rows, cols]
    processor.pooling_size = [rows, cols]


def save_checkpoint(model, processor, directory: str | os.PathLike, dtype: str | None = None) -> Path:
    """Write the real checkpoint layout: config.json, model.safetensors, norm_stats.json, tokenizer files,
    processor_config.json. `dtype="float16"` halves the file (the shipped asset)."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if dtype is not None and getattr(torch, dtype) != model.dtype:
        import copy

        # Module.to() converts in place: convert a copy, so the caller's model keeps its dtype.
        stats = model.norm_stats
        model = copy.deepcopy(model).to(getattr(torch, dtype))
        model.norm_stats = stats
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def make_random_checkpoint(directory: str | os.PathLike, size: str = "tiny", seed: int = 0, **kw: Any) -> Path:
    model, processor = build_random_nano(size, seed=seed, **kw)
    return save_checkpoint(model, processor, directory)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write a RANDOM-weight MolmoAct2-Nano checkpoint (for tests, not control)")
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="tiny", choices=sorted(SIZES))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(make_random_checkpoint(a.out, a.size, a.seed))


if __name__ == "__main__":
    main()
