"""`onda board sim`, `onda board program`: boards, simulated and real."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BITSTREAMS = Path(__file__).resolve().parents[2] / "bitstreams"
BOARDS = ("ulx3s-85f", "icebreaker")


def add_commands(sub) -> None:
    p = sub.add_parser("board", help="boards: a simulated one on a TCP socket, or program a real one")
    bsub = p.add_subparsers(dest="board_command", metavar="SUBCOMMAND", required=True)
    s = bsub.add_parser("sim", help="serve a simulated board on 127.0.0.1 and print its socket:// device URL: the "
                                    "board top's gateware (engine, UART, host link, memory) in Verilator, or with "
                                    "--reference the engine RTL behind the link's Python reference device (faster)")
    s.add_argument("--board", choices=BOARDS, default="icebreaker")
    s.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    s.add_argument("--reference", action="store_true",
                   help="the engine RTL behind the protocol's reference device instead of the board top "
                        "(faster: the line is not simulated bit by bit)")
    s.set_defaults(func=cmd_sim)
    g = bsub.add_parser("program", help="load the board's bitstream with openFPGALoader (ULX3S) or iceprog "
                                        "(iCEBreaker)")
    g.add_argument("--board", choices=BOARDS, required=True)
    g.add_argument("--bitstream", help="default: bitstreams/<board>/engine.bit (.bin) of this checkout")
    g.set_defaults(func=cmd_program)


def cmd_sim(args) -> int:
    from onda.hw.config import load_config
    from onda.sim.verilator.build import BuildError

    from ..errors import CommandError

    cfg = load_config(args.board)
    try:
        if args.reference:
            from onda.sim.board.board_sim import BoardSim

            sim, what = BoardSim(cfg, args.port, quiet=False), "engine RTL; link: the protocol's reference device"
        else:
            from onda.sim.board.gateware_sim import GatewareBoardSim

            sim, what = GatewareBoardSim(cfg, args.port, quiet=False), "board top gateware in Verilator"
    except BuildError as e:
        raise CommandError(f"no simulated {args.board} board: {e}") from None
    print(f"simulated {args.board} board at {sim.url}  ({what})", flush=True)
    try:
        sim.serve()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_program(args) -> int:
    from ..errors import CommandError

    folder = BITSTREAMS / args.board
    path = Path(args.bitstream) if args.bitstream else folder / ("engine.bit" if args.board == "ulx3s-85f" else "engine.bin")
    if not path.is_file():
        raise CommandError(f"no whole-engine bitstream {path} (the committed ones are datapath probes); "
                           f"give --bitstream")
    tool = ["openFPGALoader", "--board", "ulx3s", str(path)] if args.board == "ulx3s-85f" else ["iceprog", str(path)]
    if shutil.which(tool[0]) is None:
        raise CommandError(f"{tool[0]} is not installed (Debian: apt-get install "
                           f"{'openfpgaloader' if tool[0] == 'openFPGALoader' else 'fpga-icestorm'})")
    r = subprocess.run(tool, capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise CommandError(f"no {args.board} board programmed: {tool[0]} says: {msg[-1] if msg else r.returncode}")
    print(f"programmed {args.board} with {path}", file=sys.stderr)
    return 0
