"""`make bench`: the board pieces measured in this run.

1. The ULX3S SDRAM controller (``hw/boards/sdram.py``) against the cycle-level chip model
   (``sim/board/sdram_model.py``): beats per cycle of long sequential rows and of random 8-beat
   bursts, at 50 and 100 MHz (peak = one 16-bit word a clock).
2. The host link (``host/runtime/link.py``) to a simulated board (the engine RTL behind the
   protocol's reference device, on loopback TCP): WRITE_MEM and READ_MEM throughput with a
   window of 8 frames and with one, and with a faulty cable (1% of chunks dropped, corrupted,
   duplicated) beside a clean one, the retransmissions it cost. On a real board the UART's
   baud rate bounds it (3 Mbaud: about 290 KB/s of payload); this measures the protocol's own cost.
3. The same link to each board top's own gateware in Verilator (``GatewareBoardSim``: the UART
   at ``SIM_DIVISOR`` clocks a bit, the link's gateware end, SPRAM or the SDRAM controller), clean
   and through the faulty cable: the payload moved per clock of the simulation, as a fraction of
   what the line itself carries (one byte per ten bit times), and what that fraction is on a
   real board's 3 Mbaud line. The simulation's own speed (clocks a second) is the wall time's cost.
4. ResNet50 (seeded random weights) compiled for the ULX3S: one image's engine time (the cycle
   model at the configuration's clock and memory numbers) beside the link's time to send its
   input and read its output at 3 Mbaud (bytes on the cable as the host frames them), one after
   the other and overlapped (the next image's input sent while the engine runs).

    python -m onda.host.bench.board [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from onda.hw.boards.sdram_chips import MT48LC16M16A2_6A
from onda.hw.config import load_config
from onda.sim.board.board_sim import BoardSim
from onda.sim.board.gateware_sim import GatewareBoardSim
from onda.sim.board.link_shim import LinkShim
from onda.sim.board.sdram_bench import measure_efficiency
from onda.sim.emulator.model import tensor_span

from ..runtime.link import Link, wire_bytes

BAUD = 3_000_000  # the ULX3S's FT231X at its highest rate; 8N1: ten bits a byte


def sdram_table(quick: bool) -> list[str]:
    chip = MT48LC16M16A2_6A
    rows = [f"SDRAM controller, {chip.name} (efficiency: beats per cycle, 1.000 = peak)",
            f"{'clock':>8} {'seq read':>9} {'seq write':>10} {'rand 8-beat':>12} {'read latency':>13}"]
    for mhz in (50.0, 100.0):
        t0 = time.perf_counter()
        r = measure_efficiency(chip, mhz, size=16 * 1024 if quick else 64 * 1024, random_bursts=64 if quick else 256)
        rows.append(f"{mhz:>5.0f} MHz {r['sequential_read']:>9.3f} {r['sequential_write']:>10.3f} "
                    f"{r['random_8beat_mixed']:>12.3f} {r['read_latency_cycles']:>10} cyc"
                    f"   ({time.perf_counter() - t0:.0f} s of simulation)")
    return rows


def _throughput(url: str, window: int, nbytes: int, timeout: float = 0.2) -> tuple[float, float, dict]:
    data = os.urandom(nbytes)
    with Link(url, window=window, timeout=timeout, retries=50) as link:
        t0 = time.perf_counter()
        link.write_memory(0, data)
        t1 = time.perf_counter()
        back = link.read_memory(0, nbytes)
        t2 = time.perf_counter()
        assert back == data, "the link returned other bytes than it wrote"
        return nbytes / (t1 - t0), nbytes / (t2 - t1), dict(link.stats)


def link_table(quick: bool) -> list[str]:
    cfg = load_config("icebreaker")
    sim = BoardSim(cfg)
    sim.start()
    shim = LinkShim("127.0.0.1", sim.port, drop=0.05, corrupt=0.05, duplicate=0.05, seed=3)
    n = 32 * 1024 if quick else 96 * 1024
    rows = [f"host link to a simulated {cfg.name} board over loopback TCP ({n // 1024} KiB each way, read back equal)",
            f"{'link':<34} {'write KB/s':>11} {'read KB/s':>10} {'frames':>7} {'resent':>7} {'timeouts':>9}"]
    try:
        base = None
        for label, url, window in (("window 8", sim.url, 8), ("window 1", sim.url, 1),
                                   ("window 8, 5% faults each kind", shim.url, 8)):
            w, r, st = _throughput(url, window, n)
            base = base or w
            rows.append(f"{label:<34} {w / 1e3:>11.0f} {r / 1e3:>10.0f} {st['frames']:>7} {st['resent']:>7} "
                        f"{st['timeouts']:>9}   (write {w / base:.2f}x window 8)")
        rows.append(f"faults the shim injected (per forwarded chunk): {shim.faults}")
    finally:
        shim.close()
        sim.stop()
    return rows


def gateware_table(quick: bool) -> list[str]:
    from onda.sim.verilator.board_top import SIM_DIVISOR

    n = 4 * 1024 if quick else 16 * 1024
    rows = [f"host link to each board top's gateware in Verilator (UART {SIM_DIVISOR} clocks a bit; {n // 1024} KiB "
            f"each way, read back equal; line = one byte per {10 * SIM_DIVISOR} clocks)",
            f"{'board, link':<40} {'write':>7} {'read':>7} {'frames':>7} {'resent':>7} {'clocks/s':>9} "
            f"{'at 3 Mbaud':>11}",
            f"{'':<40} {'(of the line)':>15}"]
    for name in ("icebreaker", "ulx3s-85f"):
        sim = GatewareBoardSim(load_config(name))
        sim.start()
        shim = LinkShim("127.0.0.1", sim.port, drop=0.02, corrupt=0.02, duplicate=0.02, seed=5)
        try:
            for label, url in (("window 8", sim.url), ("window 8, 2% faults each kind", shim.url)):
                data = os.urandom(n)
                # A generous timeout: the simulated line's wall-clock speed depends on the machine's load.
                with Link(url, window=8, timeout=4 * sim.frame_seconds, retries=50) as link:
                    fractions = []
                    for move in ("write", "read"):
                        c0, t0 = sim.board.cycles, time.perf_counter()
                        if move == "write":
                            link.write_memory(0, data)
                        else:
                            assert link.read_memory(0, n) == data, "the gateware returned other bytes than written"
                        clocks, secs = sim.board.cycles - c0, time.perf_counter() - t0
                        fractions.append(n * 10 * SIM_DIVISOR / clocks)
                    st = dict(link.stats)
                rows.append(f"{name + ', ' + label:<40} {fractions[0]:>7.2f} {fractions[1]:>7.2f} {st['frames']:>7} "
                            f"{st['resent']:>7} {clocks / secs:>9.0f} {min(fractions) * BAUD / 10 / 1e3:>7.0f} KB/s")
        finally:
            shim.close()
            sim.stop()
    return rows


def resnet50_table(engine: str = "ulx3s-85f") -> list[str]:
    from ..compiler import compile_tflite
    from ..compiler.report import build_report
    from ..runtime.emulator import EmulatedModel
    from .numeric import resnet50_model

    cfg = load_config(engine)
    model = EmulatedModel(compile_tflite(resnet50_model(), cfg), engine)
    r = build_report(model.memmap, cfg, model.cycle_trace())
    n_in = sum(int(np.prod(model.tensors[t]["shape"][1:])) for t in model.memmap["inputs"])
    n_out = sum(tensor_span(model.tensors[t]) for t in model.memmap["outputs"])  # what BoardBackend reads
    to_board, from_board = (a + b for a, b in zip(wire_bytes(n_in, True), wire_bytes(n_out, False)))
    link_s = max(to_board, from_board) * 10 / BAUD
    engine_s = r.total_cycles / (cfg.clock_mhz * 1e6)
    return [f"ResNet50 on {engine}: one image, {cfg.clock_mhz:g} MHz, memory {cfg.mem_bytes_per_cycle:g} B/cycle, "
            f"{cfg.mem_latency_cycles} cycles latency",
            f"{'engine':>10} {'link in+out':>12} {'serial':>10} {'overlapped':>11} {'img/s serial':>13} "
            f"{'img/s overlapped':>17}",
            f"{engine_s * 1e3:>7.1f} ms {link_s * 1e3:>9.1f} ms {(engine_s + link_s) * 1e3:>7.1f} ms "
            f"{max(engine_s, link_s) * 1e3:>8.1f} ms {1 / (engine_s + link_s):>13.3f} {1 / max(engine_s, link_s):>17.3f}",
            f"(input {n_in} B, output {n_out} B: {to_board} B to the board, {from_board} B back at {BAUD / 1e6:g} Mbaud)"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    a = ap.parse_args(argv)
    for line in (sdram_table(a.quick) + [""] + link_table(a.quick) + [""] + gateware_table(a.quick) + [""]
                 + resnet50_table()):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
