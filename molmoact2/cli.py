"""The `molmoact2` command line: one subcommand per module in `molmoact2/commands/`.

Each command module defines `register(subparsers)`; heavy imports stay inside the handlers so
`molmoact2 --help` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import molmoact2

# Order = order in `--help`. A feature adds its module here.
COMMAND_MODULES = [
    "molmoact2.commands.app",
    "molmoact2.commands.fast",
    "molmoact2.commands.serve",
    "molmoact2.commands.depth",
    "molmoact2.commands.rrd",
    "molmoact2.commands.sim",
    "molmoact2.commands.train",
    "molmoact2.commands.eval",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="molmoact2",
        description="MolmoAct2 Workbench: explore, teach and debug MolmoAct2-style models (offline, CPU-first).",
    )
    parser.add_argument("--version", action="version", version=f"molmoact2 {molmoact2.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # the exact command, for records that keep their provenance (training_args.json)
    args.command_line = ["molmoact2", *(sys.argv[1:] if argv is None else argv)]
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
