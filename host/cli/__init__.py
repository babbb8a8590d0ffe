"""The `onda` command line. Each feature module adds its own subcommands (``add_commands``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from onda.hw.config import DEFAULT_ENGINE

from ..errors import CommandError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Modules that contribute subcommands, in the order `onda --help` lists them.
COMMAND_MODULES = [
    "onda.host.cli.numeric",
    "onda.host.cli.service",
    "onda.host.cli.compile",
    "onda.host.cli.board",
    "onda.host.cli.cluster",
]


ENVIRONMENT = """\
environment variables:
  ONDA_ENGINE          engine a .tflite is compiled for by the emulator and rtl backends (default {engine})
  ONDA_KERNELS=numpy   golden model and emulator on pure NumPy + float BLAS (no numba loops, no native GEMM)
  ONDA_CACHE           where C++ built on first use is cached: Verilator models, the int8 GEMM
                       (default ~/.cache/onda)
  CXX                  the C++ compiler for those builds (default g++)
  ONDA_RTL_SIM         rtl backend's simulator: verilator (default where it builds) or amaranth
  ONDA_RTL_MAX_CYCLES  rtl backend's cycle limit per run (default 20x the cycle model's count)
  ONDA_WORKSPACE       the local workspace of models and services (default ~/.onda/workspace)
  ONDA_DEMO_WEIGHTS    make demo's ResNet50 weights: auto (ImageNet if Keras has them), imagenet, random
  ONDA_DEVICES         on a Ray device node: its boards' URLs, comma-separated (/dev/ttyUSB0,/dev/ttyUSB1),
                       one claimed by each board actor placed there (onda serve --cluster)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onda", description="int8 CNN inference on open FPGAs", epilog=ENVIRONMENT.format(engine=DEFAULT_ENGINE),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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


