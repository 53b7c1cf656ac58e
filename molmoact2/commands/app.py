"""`molmoact2 app`: start the Gradio workbench."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("app", help="start the Gradio workbench (http://127.0.0.1:7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--policy", default="nano", help="model spec: nano | checkpoint dir | http(s)://host:port")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from app.main import launch

    launch(host=args.host, port=args.port, policy=args.policy)
    return 0
