"""Give a Nano checkpoint a freshly initialised action expert of another size; every other weight is kept.

    .venv/bin/python scripts/new_expert.py --from /tmp/tt3 --hidden-size 256 --num-heads 8 --out /tmp/xp256_init

Why: fine-tunes of the shipped expert (hidden 128, six blocks) trade one task for another without raising the mean,
and pick_place underfits its own demos. A wider expert is one way to ask whether capacity is what is missing. The
expert cannot be widened in place (its LayerNorms average over the hidden width, so zero-padding changes every
output), so it starts from random weights and `train nano --init-from OUT --expert-only` trains it on the frozen
ViT and language model. Passing the current sizes gives the control: the same fresh start at the shipped width.

The output is a complete fp32 checkpoint directory (config, weights, norm stats, tokenizer, processor) plus
`new_expert.json` naming the source, its weights' sha256, the seed and the expert's sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path


def build(src: str, out: str, *, hidden_size: int, num_heads: int, mlp_ratio: float, seed: int,
          relative_dims: tuple[int, ...] = ()) -> dict:
    import torch

    from molmoact2.models.nano.configuration_nano import NanoConfig
    from molmoact2.models.nano.factory import save_checkpoint
    from molmoact2.models.nano.modeling_nano import NanoForConditionalGeneration
    from molmoact2.training.nano_trainer import _init_weights_dir, load_weights

    if hidden_size % num_heads:
        raise ValueError(f"--hidden-size {hidden_size} must be a multiple of --num-heads {num_heads}")
    model, processor = load_weights(src)
    cfg = model.config.to_dict()
    cfg["action_expert_config"] = dict(cfg["action_expert_config"], hidden_size=hidden_size, num_heads=num_heads,
                                       mlp_ratio=mlp_ratio, relative_dims=list(relative_dims))
    config = NanoConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "transformers_version")})
    torch.manual_seed(seed)
    fresh = NanoForConditionalGeneration(config).to(torch.float32).eval()
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith("action_expert.")}
    missing, unexpected = fresh.load_state_dict(kept, strict=False)
    # Only the expert may be new; anything else missing would silently leave random weights in the LM or ViT.
    stray = [k for k in missing if not k.startswith("action_expert.")] + list(unexpected)
    if stray:
        raise ValueError(f"{src}: weights outside the action expert do not fit the new model, e.g. {stray[0]!r}")
    fresh.norm_stats = model.norm_stats
    save_checkpoint(fresh, processor, out)
    weights = _init_weights_dir(src) / "model.safetensors"
    info = {"source": str(src), "source_weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
            "seed": seed, "action_expert": {"hidden_size": hidden_size, "num_heads": num_heads,
                                            "mlp_ratio": mlp_ratio, "relative_dims": list(relative_dims)},
            "expert_parameters": sum(p.numel() for n, p in fresh.named_parameters() if n.startswith("action_expert.")),
            "previous_expert_parameters": sum(p.numel() for n, p in model.named_parameters()
                                              if n.startswith("action_expert."))}
    (Path(out) / "new_expert.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="src", required=True, help="a Nano checkpoint or training directory")
    p.add_argument("--out", required=True, help="the new checkpoint directory")
    p.add_argument("--hidden-size", type=int, required=True, help="the expert's width (shipped: 128)")
    p.add_argument("--num-heads", type=int, default=4, help="attention heads per block (shipped: 4)")
    p.add_argument("--mlp-ratio", type=float, default=4.0, help="MLP width over hidden size (shipped: 4.0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the expert's random initialisation")
    p.add_argument("--relative-dims", default="", metavar="0,1,2,3,4",
                   help="action dims the new expert plans as a change from the state (default: none, absolute)")
    a = p.parse_args(argv)
    try:
        rel = tuple(int(d) for d in a.relative_dims.split(",") if d.strip())
    except ValueError:
        p.error(f"--relative-dims: expected comma-separated dim indices like 0,1,2,3,4, got {a.relative_dims!r}")
    info = build(a.src, a.out, hidden_size=a.hidden_size, num_heads=a.num_heads, mlp_ratio=a.mlp_ratio, seed=a.seed,
                 relative_dims=rel)
    print(f"{a.out}: action expert {info['action_expert']}, {info['expert_parameters']:,} parameters "
          f"(was {info['previous_expert_parameters']:,}); every other weight from {a.src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
