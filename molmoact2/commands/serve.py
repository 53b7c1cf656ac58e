"""`molmoact2 serve`: put any model spec behind the official `/act` HTTP protocol."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over the official MolmoAct2 /act protocol (DROID, YAM or SO-101 schema)",
        description="Official /act clients work against this server unchanged; it adds optional fields "
        "(depth_bins, depth_update_mask, timings_ms) that they ignore.",
    )
    p.add_argument("--policy", default="nano",
                   help="model spec: nano | nano-fast | nano:DIR | checkpoint dir | http(s)://host:port")
    p.add_argument("--schema", choices=["droid", "yam", "so101"], required=True, help="request schema to speak")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=None, help="port (default: 8000 droid, 8202 yam, 8101 so101)")
    p.add_argument("--norm-tag", default=None, help="norm tag of a checkpoint (default: the schema's)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a checkpoint directory's own Python code to run (required for real checkpoints)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--depth-reasoning", action="store_true", help="MolmoThink depth reasoning (Think checkpoints)")
    p.add_argument("--compiled", action="store_true",
                   help="Nano only: vision, prefill and flow expert through torch.compile (needs g++; the first "
                        "request per prompt-length bucket compiles for 20-30 s, later ones are faster)")
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest accepted request body")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from molmoact2.models.act_protocol import get_schema
    from molmoact2.models.registry import load_policy, refuse_for_actions, spec_kind
    from molmoact2.serve.app import check_policy_matches_schema, serve

    schema = get_schema(args.schema)
    opts: dict = {}
    kind = spec_kind(args.policy)
    if kind == "checkpoint":
        opts = dict(norm_tag=args.norm_tag or schema.norm_tag, trust_remote_code=args.trust_remote_code,
                    device=args.device, dtype=args.dtype, depth_reasoning=args.depth_reasoning)
    elif kind == "nano":  # Nano has its own sim norm tag; take the schema's only when asked explicitly
        opts = dict(depth_reasoning=args.depth_reasoning)
        if args.norm_tag:
            opts["norm_tag"] = args.norm_tag
        if args.dtype != "auto":
            opts["dtype"] = args.dtype
        if args.compiled:
            opts["compiled"] = True
    if args.compiled and kind != "nano":
        print("molmoact2 serve: --compiled is a Nano option (torch.compile of our own model's stages); a checkpoint "
              "runs its own code and an /act server its own model", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: the server has no authentication; anyone who can reach this port "
              f"can drive the policy", file=sys.stderr)
    try:
        refuse_for_actions(args.policy)
        policy = load_policy(args.policy, **opts)
        check_policy_matches_schema(policy, schema)  # e.g. a 6-D policy behind the 8-D droid schema
    except (ValueError, FileNotFoundError, NotImplementedError, TypeError) as exc:
        print(f"molmoact2 serve: {exc}", file=sys.stderr)
        return 2
    port = args.port or schema.default_port
    print(f"serving {getattr(policy, 'name', args.policy)} with the {schema.name} schema on "
          f"http://{args.host}:{port}/act", flush=True)
    serve(policy, schema, host=args.host, port=port, max_body_bytes=int(args.max_body_mb * 2**20))
    return 0
