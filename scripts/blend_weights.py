"""Blend two Nano checkpoints of one architecture: new = (1 - alpha) * A + alpha * B, per tensor, a few seconds.

    .venv/bin/python scripts/blend_weights.py --a /tmp/prev_nano/assets/nano --b assets/nano --alpha 0.5 --out /tmp/blend5

Why: a fine-tune can trade one skill for another (the expert re-fit of 2026-12-06 put objects in the bin 6 -> 23%
of the time and touched 79 -> 72%). When B was fine-tuned from A, the straight line between their weights often
keeps most of both (weight-space ensembling, "WiSE-FT"); alpha picks the point on it. The output is a complete
checkpoint directory: B's files (config, tokenizer, norm stats) with the blended weights, saved in B's dtypes,
and a `blend.json` naming both inputs (their sha256) and alpha, so the evaluation records trace it back.

Only tensors that differ are blended; every name, shape and dtype must match, else it stops and names the first
mismatch (blending unrelated checkpoints is meaningless).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

WEIGHTS = "model.safetensors"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blend(a: dict, b: dict, alpha: float) -> tuple[dict, list[str]]:
    """(1 - alpha) * a + alpha * b for each tensor that differs, in float32, cast back to b's dtype."""
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise ValueError(f"the checkpoints hold different tensors, e.g. {only[0]!r}: expected one architecture")
    out, changed = {}, []
    for name, tb in b.items():
        ta = a[name]
        if ta.shape != tb.shape or ta.dtype != tb.dtype:
            raise ValueError(f"{name}: A is {tuple(ta.shape)} {ta.dtype}, B is {tuple(tb.shape)} {tb.dtype}; "
                             "expected the same shape and dtype")
        if bool((ta == tb).all()):
            out[name] = tb
            continue
        mixed = (1.0 - alpha) * ta.float() + alpha * tb.float()
        out[name] = mixed.to(tb.dtype)
        changed.append(name)
    return out, changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, type=Path, help="checkpoint directory at alpha = 0")
    ap.add_argument("--b", required=True, type=Path, help="checkpoint directory at alpha = 1 (its other files are kept)")
    ap.add_argument("--alpha", required=True, type=float, help="weight of B, in [0, 1]")
    ap.add_argument("--out", required=True, type=Path, help="new checkpoint directory (must not exist)")
    args = ap.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        ap.error(f"--alpha: expected a weight in [0, 1], got {args.alpha}")
    for flag, d in (("--a", args.a), ("--b", args.b)):
        if not (d / WEIGHTS).is_file():
            ap.error(f"{flag}: expected a checkpoint directory holding {WEIGHTS}, got {d}")
    if args.out.exists():
        ap.error(f"--out: {args.out} exists; expected a new directory")

    from safetensors.torch import load_file, save_file

    mixed, changed = blend(load_file(args.a / WEIGHTS), load_file(args.b / WEIGHTS), args.alpha)
    shutil.copytree(args.b, args.out, ignore=shutil.ignore_patterns(WEIGHTS, "train_state"))
    save_file(mixed, str(args.out / WEIGHTS), metadata={"format": "pt"})
    record = {"a": str(args.a), "a_sha256": sha256(args.a / WEIGHTS), "b": str(args.b),
              "b_sha256": sha256(args.b / WEIGHTS), "alpha": args.alpha, "blended_tensors": len(changed)}
    (args.out / "blend.json").write_text(json.dumps(record, indent=1) + "\n")
    groups = sorted({".".join(n.split(".")[:2]) for n in changed})
    print(f"{args.out}: blended {len(changed)} of {len(mixed)} tensors at alpha {args.alpha} ({', '.join(groups)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
