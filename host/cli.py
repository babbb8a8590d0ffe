"""The `onda` command line. Each feature module adds its own subcommands (``add_commands``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import CommandError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Modules that contribute subcommands, in the order `onda --help` lists them.
COMMAND_MODULES = [
    "onda.host.commands_numeric",
    "onda.host.commands_service",
    "onda.host.commands_compile",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onda", description="int8 CNN inference on open FPGAs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        print(f"onda {args.command}: error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
