"""Blend two Nano checkpoints of one architecture: new = (1 - alpha) * A + alpha * B, per tensor, a few seconds.

    .venv/bin/python scripts/blend_weights.py --a /tmp/prev_nano/assets/nano --b assets/nano --alpha 0.5 --out /tmp/blend5

Why: a fine-tune can trade one skill for another (the expert re-fit of 2026-12-06 put objects in the bin 6 -> 23%
of the time and touched 79 -> 72%). When B was fine-tuned from A, the straight line between their weights often
keeps most of both (weight-space ensembling, "WiSE-FT"); alpha picks the point on it. The output is a complete
checkpoint directory: B's files (config, tokenizer, norm stats) with the blended weights, saved in B's dtypes,
and a `blend.json` naming both inputs (their sha256) and alpha, so the evaluation records trace it back.

`--soup A B C ...` instead averages any number of checkpoints uniformly (a "model soup": several fine-tunes of
one parent, each level with it on a different task, may average to one that keeps more of each); the output takes
the first directory's other files, and `blend.json` lists every input with its sha256.

    .venv/bin/python scripts/blend_weights.py --soup /tmp/tt3 /tmp/cpk /tmp/mis --out /tmp/soup3   # Nano since 2026-12-07

`--extrapolate` allows alpha above 1, past B on the line from A (B + (alpha - 1) * (B - A)): when B is a soup of A
and its re-fits, alpha 1.5 is the mean of the re-fits without A (up to B's stored rounding), alpha 2 goes on beyond.

    .venv/bin/python scripts/blend_weights.py --a /tmp/tt3_nano/assets/nano --b assets/nano --alpha 1.5 \
        --extrapolate --out /tmp/xsoup15

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


def check_same_layout(ref: dict, other: dict, ref_name: str, other_name: str) -> None:
    """Stop unless both hold the same tensor names, each with the same shape and dtype (one architecture)."""
    if set(ref) != set(other):
        only = sorted(set(ref) ^ set(other))
        raise ValueError(f"{other_name} holds different tensors from {ref_name}, e.g. {only[0]!r}: "
                         "expected one architecture")
    for name, t in other.items():
        if t.shape != ref[name].shape or t.dtype != ref[name].dtype:
            raise ValueError(f"{name}: {ref_name} is {tuple(ref[name].shape)} {ref[name].dtype}, {other_name} is "
                             f"{tuple(t.shape)} {t.dtype}; expected the same shape and dtype")


def blend(a: dict, b: dict, alpha: float) -> tuple[dict, list[str]]:
    """(1 - alpha) * a + alpha * b for each tensor that differs, in float32, cast back to b's dtype."""
    check_same_layout(a, b, "A", "B")
    out, changed = {}, []
    for name, tb in b.items():
        ta = a[name]
        if bool((ta == tb).all()):
            out[name] = tb
            continue
        mixed = (1.0 - alpha) * ta.float() + alpha * tb.float()
        out[name] = mixed.to(tb.dtype)
        changed.append(name)
    return out, changed


def soup(members: list[dict]) -> tuple[dict, list[str]]:
    """The uniform mean of several checkpoints' tensors (float32 sum, cast back to the first one's dtype); a tensor
    equal in all of them is kept as it is."""
    if len(members) < 2:
        raise ValueError(f"a soup needs at least two checkpoints, got {len(members)}")
    first = members[0]
    for i, other in enumerate(members[1:], start=2):
        check_same_layout(first, other, "checkpoint 1", f"checkpoint {i}")
    out, changed = {}, []
    for name, t0 in first.items():
        if all(bool((m[name] == t0).all()) for m in members[1:]):
            out[name] = t0
            continue
        total = sum(m[name].float() for m in members)
        out[name] = (total / len(members)).to(t0.dtype)
        changed.append(name)
    return out, changed


def write(out: Path, files_from: Path, tensors: dict, record: dict) -> None:
    """`files_from`'s checkpoint directory (config, tokenizer, norm stats; not its weights or resume state) with
    `tensors` as its weights and `record` as `blend.json`."""
    from safetensors.torch import save_file

    shutil.copytree(files_from, out, ignore=shutil.ignore_patterns(WEIGHTS, "train_state"))
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / "blend.json").write_text(json.dumps(record, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", type=Path, help="checkpoint directory at alpha = 0")
    ap.add_argument("--b", type=Path, help="checkpoint directory at alpha = 1 (its other files are kept)")
    ap.add_argument("--alpha", type=float, help="weight of B, in [0, 1] (up to 3 with --extrapolate)")
    ap.add_argument("--extrapolate", action="store_true",
                    help="allow alpha above 1: a point past B on the line from A (why: see the docstring)")
    ap.add_argument("--soup", nargs="+", type=Path, metavar="DIR",
                    help="instead of --a/--b/--alpha: average these checkpoints uniformly (the first's files are kept)")
    ap.add_argument("--out", required=True, type=Path, help="new checkpoint directory (must not exist)")
    args = ap.parse_args(argv)
    pair = (args.a, args.b, args.alpha)
    if args.soup is not None:
        if any(x is not None for x in pair) or args.extrapolate:
            ap.error("--soup replaces --a/--b/--alpha/--extrapolate; expected one or the other")
        if len(args.soup) < 2:
            ap.error(f"--soup: expected at least two checkpoint directories, got {len(args.soup)}")
        inputs = [(f"--soup #{i + 1}", d) for i, d in enumerate(args.soup)]
    else:
        if any(x is None for x in pair):
            ap.error("expected --a, --b and --alpha (or --soup DIR DIR ...)")
        # Past 3 the step beyond B exceeds twice the whole A->B distance: no longer near the fine-tunes' basin.
        top = 3.0 if args.extrapolate else 1.0
        if not 0.0 <= args.alpha <= top:
            more = "" if args.extrapolate else " (above 1 only with --extrapolate)"
            ap.error(f"--alpha: expected a weight in [0, {top:g}]{more}, got {args.alpha}")
        inputs = [("--a", args.a), ("--b", args.b)]
    for flag, d in inputs:
        if not (d / WEIGHTS).is_file():
            ap.error(f"{flag}: expected a checkpoint directory holding {WEIGHTS}, got {d}")
    if args.out.exists():
        ap.error(f"--out: {args.out} exists; expected a new directory")

    from safetensors.torch import load_file

    if args.soup is not None:
        mixed, changed = soup([load_file(d / WEIGHTS) for d in args.soup])
        record = {"soup": [{"path": str(d), "sha256": sha256(d / WEIGHTS)} for d in args.soup]}
        how = f"averaged over {len(args.soup)} checkpoints"
    else:
        mixed, changed = blend(load_file(args.a / WEIGHTS), load_file(args.b / WEIGHTS), args.alpha)
        record = {"a": str(args.a), "a_sha256": sha256(args.a / WEIGHTS), "b": str(args.b),
                  "b_sha256": sha256(args.b / WEIGHTS), "alpha": args.alpha, "extrapolate": args.extrapolate}
        how = f"blended at alpha {args.alpha}"
    write(args.out, args.soup[0] if args.soup is not None else args.b, mixed, dict(record, blended_tensors=len(changed)))
    groups = sorted({".".join(n.split(".")[:2]) for n in changed})
    print(f"{args.out}: {len(changed)} of {len(mixed)} tensors {how} ({', '.join(groups)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
