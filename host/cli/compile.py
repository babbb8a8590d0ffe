"""`onda compile` and `onda report`: the engine compiler and its performance report."""

from __future__ import annotations

import sys
from pathlib import Path


def add_commands(sub) -> None:
    from onda.hw.config import DEFAULT_ENGINE

    p = sub.add_parser("compile", help="compile an int8 .tflite model to an engine program (.onda)")
    p.add_argument("model", help="int8 .tflite model")
    p.add_argument("--engine", default=DEFAULT_ENGINE,
                   help=f"engine configuration: icebreaker, ulx3s-85f, large or a .yaml path (default {DEFAULT_ENGINE})")
    p.add_argument("-o", "--output", required=True, help="output .onda container")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("report", help="per-layer cycles, utilization and roofline of a compiled program")
    p.add_argument("model", help=".onda container (or .tflite, compiled for --engine)")
    p.add_argument("--engine", default=None, help=f"engine for a .tflite (default {DEFAULT_ENGINE})")
    p.add_argument("--out-dir", default=None,
                   help="where report.json, roofline.png and utilization.png go (default: MODEL_report/)")
    p.set_defaults(func=cmd_report)


def cmd_compile(args) -> int:
    from onda.hw.config import ConfigError, load_config

    from ..compiler import CompileError, compile_graph
    from ..errors import CommandError
    from ..frontend import FrontendError, read_tflite

    try:
        cfg = load_config(args.engine)
        graph = read_tflite(args.model)
        c = compile_graph(graph, cfg, source=Path(args.model).read_bytes(), progress=not args.quiet)
    except (ConfigError, CompileError, FrontendError) as e:
        raise CommandError(str(e)) from None
    c.write(args.output)
    mm = c.memmap
    n = len(c.program) // 32
    print(f"wrote {args.output}: {len(mm['layers'])} layers, {n} instructions, weights {mm['weights_size'] / 1e6:.2f} MB, "
          f"activations {mm['act_size'] / 1e6:.2f} MB, engine {cfg.name} ({cfg.lanes}x{cfg.width} MACs)",
          file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from ..compiler.report import format_table, report_for
    from ..errors import CommandError
    from ..frontend import FrontendError
    from ..runtime import BackendError
    from ..runtime.emulator import EmulatorBackend

    try:
        model = EmulatorBackend(engine=args.engine).load(args.model)
    except (FrontendError, BackendError, ValueError) as e:
        raise CommandError(str(e)) from None
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.model).with_name(Path(args.model).stem + "_report")
    r = report_for(model, out_dir)
    print(format_table(r))
    print(f"wrote {out_dir}/report.json, roofline.png, utilization.png", file=sys.stderr)
    return 0
