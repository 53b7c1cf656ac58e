"""`molmoact2 fast fit | encode | decode | inspect`: the OpenFAST action tokenizer on the command line.

Inputs: a `.npy` ([T, D] trajectory or [N, T, D] chunks), a `.csv` (rows = steps, optional header
and `episode_index` column) or a LeRobot v3.0 dataset directory (its `action` feature, cut into
1-second chunks at the fps in meta/info.json). Actions are given in their own units and normalized
with the 1-99 % stats stored beside the tokenizer (`normalization.json`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

DEFAULT_TOKENIZER = Path(__file__).resolve().parents[2] / "assets" / "openfast_so101_sim"
EXIT_DECODE_FAILED = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fast", help="OpenFAST action tokenizer: fit | encode | decode | inspect",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="fast_command", metavar="SUBCOMMAND")
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])

    f = sub.add_parser("fit", help="fit a tokenizer (BPE over DCT integers) on action data and save it")
    _add_input(f)
    f.add_argument("--out", required=True, help="directory to write processor_config.json, tokenizer.json, …")
    f.add_argument("--scale", type=float, default=10.0, help="DCT scale before rounding (default 10)")
    f.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (default 1024)")
    f.add_argument("--stride", type=int, default=1, help="steps between training windows (default 1 = sliding)")
    f.set_defaults(handler=run_fit)

    e = sub.add_parser("encode", help="action chunks -> OpenFAST ids (JSON)")
    _add_input(e)
    _add_tokenizer(e)
    e.add_argument("--out", help="write the ids as JSON here (default: print a summary and the first chunk)")
    e.set_defaults(handler=run_encode)

    d = sub.add_parser("decode", help="OpenFAST ids -> actions; prints diagnostics instead of zeros on failure")
    d.add_argument("ids", help="a JSON file written by `fast encode`, a JSON list of id lists, or inline ids '12,7,99'")
    _add_tokenizer(d)
    d.add_argument("--time-horizon", type=int, help="T (default: the tokenizer's processor_config.json)")
    d.add_argument("--action-dim", type=int, help="D (default: the tokenizer's processor_config.json)")
    d.add_argument("--on-error", choices=["raise", "zeros", "relaxed"], default="raise",
                   help="raise (default): report and exit 3; zeros/relaxed: reference fallbacks, flagged")
    d.add_argument("--no-unnormalize", action="store_true", help="print normalized actions, not the data's units")
    d.add_argument("--out", help="save the decoded [B, T, D] actions as .npy")
    d.set_defaults(handler=run_decode)

    i = sub.add_parser("inspect", help="every stage of one chunk: DCT, integers, characters, BPE pieces, error")
    _add_input(i)
    _add_tokenizer(i)
    i.add_argument("--episode", type=int, default=0, help="episode index within the input (default 0)")
    i.add_argument("--start", type=int, default=0, help="first step of the chunk within the episode (default 0)")
    i.add_argument("--corrupt", help="decode-failure lab: 'drop:3', 'insert:3:517' or 'edit:3:517' on the ids")
    i.set_defaults(handler=run_inspect)


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help=".npy, .csv or LeRobot dataset directory")
    p.add_argument("--feature", default="action", help="LeRobot feature to read (default: action)")
    p.add_argument("--horizon", type=int, help="chunk length in steps (default: 1 s at the dataset fps, or the "
                                               "tokenizer's time_horizon)")
    p.add_argument("--fps", type=float, help="steps per second for .npy/.csv input (chunk = 1 s)")
    p.add_argument("--no-normalize", action="store_true",
                   help="the input is already normalized to [-1, 1]; skip the 1-99 %% normalization")


def _add_tokenizer(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER),
                   help=f"tokenizer directory (default: the shipped {DEFAULT_TOKENIZER.name})")


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _horizon(args, source, tokenizer_horizon: int | None = None) -> int:
    if args.horizon:
        return args.horizon
    if source.prechunked:
        return int(source.episodes[0].shape[0])
    if tokenizer_horizon:
        return tokenizer_horizon
    fps = args.fps or source.fps
    if not fps:
        raise ValueError("cannot tell the chunk length: pass --horizon STEPS or --fps (a chunk is 1 s); "
                         ".npy/.csv files carry no fps")
    return int(round(fps))


def _load_tokenizer(path: str):
    from molmoact2.openfast import OpenFastProcessor
    from molmoact2.openfast.normalize import QuantileNormalizer

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"tokenizer directory {root} does not exist (build one with `molmoact2 fast fit`)")
    return OpenFastProcessor.load(root), QuantileNormalizer.load(root)


def _normalized_episodes(args, source, normalizer):
    import numpy as np

    if args.no_normalize:
        return [np.asarray(e, dtype=np.float64) for e in source.episodes]
    if normalizer is None:
        raise ValueError("this tokenizer directory has no normalization.json; pass --no-normalize if the input is "
                         "already in [-1, 1]")
    if normalizer.action_dim != source.action_dim:
        raise ValueError(f"the input has {source.action_dim} action dims, the tokenizer's stats have "
                         f"{normalizer.action_dim}")
    return [normalizer.normalize(e) for e in source.episodes]


# ---------------------------------------------------------------------- fit
def run_fit(args) -> int:
    from molmoact2.openfast.sources import load_actions
    from molmoact2.openfast.training import fit_on_episodes, save_outcome

    try:
        source = load_actions(args.input, args.feature)
        horizon = _horizon(args, source)
        outcome = fit_on_episodes(source.episodes, horizon, scale=_num(args.scale), vocab_size=args.vocab_size,
                                  stride=args.stride, names=source.names, normalize=not args.no_normalize)
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    command = _fit_command(args)
    save_outcome(outcome, args.out, source=source.description, command=command)
    s = outcome.stats
    print(f"fitted on {source.description}: {s.num_chunks} chunks of {horizon} steps x {source.action_dim} dims")
    print(f"  {outcome.processor}")
    print(f"  tokens per chunk: mean {s.tokens_mean:.1f}, p99 {s.tokens_p99:.0f}, max {s.tokens_max} "
          f"(binning: {s.binning_tokens}; {s.compression_vs_binning:.1f}x fewer)")
    print(f"  round-trip error: mean {s.mean_rel_error_pct:.3f} % of joint range, max {s.max_rel_error_pct:.2f} %")
    print(f"wrote {args.out}")
    return 0


def _fit_command(args) -> str:
    """The command line that reproduces this fit, recorded in openfast_fit.json."""
    parts = ["molmoact2", "fast", "fit", args.input, "--out", args.out, "--scale", str(_num(args.scale)),
             "--vocab-size", str(args.vocab_size), "--stride", str(args.stride)]
    for flag, value in (("--horizon", args.horizon), ("--fps", args.fps)):
        if value:
            parts += [flag, str(value)]
    if args.feature != "action":
        parts += ["--feature", args.feature]
    if args.no_normalize:
        parts.append("--no-normalize")
    return " ".join(shlex.quote(str(p)) for p in parts)


def _num(x: float):
    return int(x) if float(x).is_integer() else float(x)


# ---------------------------------------------------------------------- encode
def run_encode(args) -> int:
    import numpy as np

    from molmoact2.openfast.sources import load_actions

    try:
        proc, normalizer = _load_tokenizer(args.tokenizer)
        source = load_actions(args.input, args.feature)
        horizon = _horizon(args, source, proc.config.time_horizon)
        episodes = _normalized_episodes(args, source, normalizer)
        records = []
        for ep_i, ep in enumerate(episodes):
            starts = list(range(0, ep.shape[0] - horizon + 1, horizon))
            if not starts:
                continue
            ids = proc.encode(np.stack([ep[s:s + horizon] for s in starts]))
            records += [{"episode": ep_i, "start": s, "ids": i} for s, i in zip(starts, ids)]
        if not records:
            raise ValueError(f"no episode is at least {horizon} steps long")
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    out = {"tokenizer": str(args.tokenizer), "time_horizon": horizon, "action_dim": source.action_dim,
           "normalized": not args.no_normalize, "source": source.description, "chunks": records}
    lengths = [len(r["ids"]) for r in records]
    print(f"{source.description}: {len(records)} chunks of {horizon} steps x {source.action_dim} dims -> "
          f"{sum(lengths)} ids (mean {np.mean(lengths):.1f} per chunk, max {max(lengths)}; "
          f"256-bin binning would use {horizon * source.action_dim})")
    if args.out:
        Path(args.out).write_text(json.dumps(out) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(f"chunk 0 ids: {records[0]['ids']}")
    return 0


# ---------------------------------------------------------------------- decode
def _read_ids(spec: str):
    path = Path(spec)
    meta = {}
    if path.is_file():
        obj = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(obj, dict):
            meta = obj
            obj = [c["ids"] for c in obj.get("chunks", [])]
        return obj, meta
    try:
        return [[int(x) for x in spec.replace(" ", "").split(",") if x]], meta
    except ValueError:
        raise ValueError(f"ids: expected a JSON file or comma-separated integers, got {spec!r}") from None


def run_decode(args) -> int:
    import numpy as np

    from molmoact2.openfast import DecodeError

    try:
        proc, normalizer = _load_tokenizer(args.tokenizer)
        ids, meta = _read_ids(args.ids)
        t = args.time_horizon or meta.get("time_horizon")
        d = args.action_dim or meta.get("action_dim")
        result = proc.decode(ids, t, d, on_error=args.on_error)
    except DecodeError as e:
        print(str(e), file=sys.stderr)
        print("no actions produced (the reference decoder would have returned zeros here; see "
              "--on-error zeros to reproduce that, flagged)", file=sys.stderr)
        return EXIT_DECODE_FAILED
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    actions = result if isinstance(result, np.ndarray) else result.actions
    if not isinstance(result, np.ndarray) and result.flagged:
        print(f"WARNING: sequences {result.failed} FAILED to decode; their actions are the on_error="
              f"{args.on_error!r} fallback, not a real decode", file=sys.stderr)
        for dg in result.diagnostics:
            if not dg.ok:
                print(dg.summary(), file=sys.stderr)
    unnorm = normalizer is not None and not args.no_unnormalize and meta.get("normalized", True) is not False
    shown = normalizer.unnormalize(actions) if unnorm else actions
    units = "data units (un-normalized)" if unnorm else "normalized units"
    print(f"decoded {actions.shape[0]} chunk(s) -> [B, T, D] = {list(actions.shape)} in {units}")
    np.set_printoptions(precision=3, suppress=True, linewidth=140)
    print(f"chunk 0, first 3 steps:\n{shown[0][:3]}")
    if args.out:
        np.save(args.out, shown)
        print(f"wrote {args.out}")
    return 0


# ---------------------------------------------------------------------- inspect
def run_inspect(args) -> int:
    import numpy as np

    from molmoact2.openfast.inspect import coefficient_label, inspect_chunk
    from molmoact2.openfast.lab import apply_edit, failure_report, parse_edit
    from molmoact2.openfast.sources import load_actions

    try:
        proc, normalizer = _load_tokenizer(args.tokenizer)
        source = load_actions(args.input, args.feature)
        horizon = _horizon(args, source, proc.config.time_horizon)
        if not 0 <= args.episode < len(source.episodes):
            raise ValueError(f"--episode must be in [0, {len(source.episodes) - 1}], got {args.episode}")
        ep = source.episodes[args.episode]
        if not 0 <= args.start <= ep.shape[0] - horizon:
            raise ValueError(f"--start must be in [0, {ep.shape[0] - horizon}] for a {horizon}-step chunk of "
                             f"episode {args.episode} ({ep.shape[0]} steps), got {args.start}")
        chunk = ep[args.start:args.start + horizon]
        use_norm = None if args.no_normalize else normalizer
        if use_norm is None and not args.no_normalize:
            raise ValueError("this tokenizer directory has no normalization.json; pass --no-normalize if the input "
                             "is already in [-1, 1]")
        insp = inspect_chunk(proc, chunk, use_norm, names=source.names)
        edit = parse_edit(args.corrupt) if args.corrupt else None
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    np.set_printoptions(precision=3, suppress=True, linewidth=140)
    t, d = insp.actions.shape
    print(f"== chunk: episode {args.episode}, steps {args.start}..{args.start + t - 1} of {source.description}")
    print(f"   tokenizer {args.tokenizer}: scale={proc.scale}, min_token={proc.min_token}, vocab={proc.vocab.size}")
    print("1. normalized actions [T, D] (first 3 steps):\n", insp.actions[:3])
    print("2. DCT-II ortho over time, first 4 frequencies:\n", insp.dct[:4])
    print(f"3. x scale ({proc.scale}) and round -> integers, first 4 frequencies "
          f"({insp.zero_fraction * 100:.0f} % of all {t * d} are 0):\n", insp.integers[:4])
    print(f"4. minus min_token ({proc.min_token}), chr(): {len(insp.text)} characters: {insp.text_escaped(24)}")
    print(f"5. BPE -> {insp.num_tokens} ids: {insp.ids}")
    for pc in insp.pieces:
        span = f"{coefficient_label(pc.coef_start, d)}..{coefficient_label(pc.coef_end - 1, d)}"
        print(f"     id {pc.token_id:5d}  covers coefficients [{pc.coef_start:3d}, {pc.coef_end:3d}) {span}"
              + ("  (splits a 2-byte character)" if pc.splits_coefficient else ""))
    print("6. decoded vs original, per joint:")
    for j in insp.per_joint:
        raw = "" if j.mean_abs_raw is None else f"   mean {j.mean_abs_raw:.3f} / max {j.max_abs_raw:.3f} data units"
        print(f"     {j.name:>20s}: mean {j.mean_rel_pct:.3f} % / max {j.max_rel_pct:.3f} % of range{raw}")
    print("7. size:")
    for row in insp.comparison:
        print(f"     {row['representation']:>26s}: {row['tokens']:4d} tokens, {row['bits']:5d} bits, "
              f"mean error {row['mean_rel_error_pct']:.3f} % of range, {row['tokens_vs_openfast']:.1f}x OpenFAST's tokens")
    if edit:
        op, pos, new = edit
        try:
            bad = apply_edit(insp.ids, op, pos, new)
        except ValueError as e:
            return _fail(str(e))
        rep = failure_report(proc, bad, insp.actions, use_norm)
        units = "data units" if use_norm is not None else "normalized units"
        print(f"8. decode-failure lab: {args.corrupt} -> {len(bad)} ids")
        print("   our decode:", rep.error_text.replace("\n", "\n   "))
        names = [j.name for j in insp.per_joint]
        print(f"   per joint, max |command - true chunk| over the chunk ({units}):")
        print(f"     {'joint':>20s} {'true step 0':>12s} {'zeros cmd':>10s} {'zeros dev':>10s} {'relaxed dev':>12s}"
              f" {'partial dev':>12s}")
        dz, dr, dp = rep.max_deviation("zeros"), rep.max_deviation("relaxed"), rep.max_deviation("partial")
        for k, name in enumerate(names):
            partial = "—" if np.isnan(dp[k]) else f"{dp[k]:.2f}"
            print(f"     {name:>20s} {rep.truth[0, k]:12.2f} {rep.zeros_units[0, k]:10.2f} {dz[k]:10.2f} {dr[k]:12.2f}"
                  f" {partial:>12s}")
        print("   (zeros = the reference's silent fallback: the midpoint of each joint's range, held for the chunk)")
    return 0
