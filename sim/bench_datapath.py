"""Simulated clock cycles per second of the datapath (ConvTile: MAC array + requantizer) in
Amaranth's simulator, Icarus and Verilator, on the same real ResNet50 3x3 tile workload.

    python -m onda.sim.bench_datapath [--lanes 8 --width 16] [--json out.json]

Each simulator runs the tile's beats with no idle or stall cycles and checks the outputs
against the golden model (so a fast but wrong simulation does not count). Cocotb's figures
include its Python driver and checker (the way the benches run); build times are excluded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from onda.hw.config import DEFAULT_ENGINE

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "hw" / "data" / "resnet50_layers.npz"


def _workload(lanes: int, width: int, pixels: int):
    from onda.sim.cocotb.conv_tile_job import conv_tile_job
    from onda.sim.golden.params import GemmParams
    from onda.sim.ir import Padding

    d = np.load(DATA)
    x_zp, out_zp, act_min, act_max = (int(v) for v in d["tile_zp"])
    p = GemmParams(weights=d["tile_weights"][:lanes], weight_zero_point=0,
                   bias=d["tile_bias"][:lanes].astype(np.int64), in_zero_point=x_zp,
                   multiplier=d["tile_multiplier"][:lanes].astype(np.int64),
                   shift=d["tile_shift"][:lanes].astype(np.int64), out_zero_point=out_zp,
                   act_min=act_min, act_max=act_max)
    x = d["tile_input"][:, :pixels, :pixels, :]
    return conv_tile_job(x, p, lanes, width, padding=Padding.SAME, seed=1, idle=0.0, stall=0.0)


def amaranth_sim(lanes: int, width: int, job: dict, max_beats: int) -> dict:
    from amaranth.sim import Simulator

    from onda.hw.datapath.conv_tile import ConvTile

    dut = ConvTile(lanes, width)
    beats = [int(b, 16) for b in job["beats"][:max_beats]]
    n_out = (sum(1 for b in beats if (b >> (dut.i.payload.shape().size - 1)) & 1)) * lanes
    got, cycles = [], {"n": 0}

    async def bench(ctx):
        for key, v in job["config"].items():
            ctx.set(getattr(dut, key), v)
        for p in job["params"]:
            ctx.set(dut.params.valid, 1)
            ctx.set(dut.params.payload, dut.params.payload.shape().from_bits(int(p, 16)))
            await ctx.tick()
        ctx.set(dut.params.valid, 0)
        ctx.set(dut.o.ready, 1)
        k = 0
        while len(got) < n_out:
            if k < len(beats):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, dut.i.payload.shape().from_bits(beats[k]))
            else:
                ctx.set(dut.i.valid, 0)
            _, _, ready, ovalid, opayload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            cycles["n"] += 1
            if k < len(beats) and ready:
                k += 1
            if ovalid:
                got.append(opayload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    t0 = time.perf_counter()
    sim.run()
    seconds = time.perf_counter() - t0
    assert got == job["expected"][:n_out], "Amaranth simulation disagrees with the golden model"
    return {"cycles": cycles["n"], "seconds": seconds, "outputs": len(got)}


def cocotb_sim(sim: str, lanes: int, width: int, job: dict) -> dict:
    from onda.hw.datapath.conv_tile import ConvTile
    from onda.sim.cocotb.harness import run_bench

    r = run_bench(ConvTile(lanes, width), f"conv_tile_{lanes}x{width}", "onda.sim.cocotb.conv_tile_bench",
                  job, sim=sim, waves=False)
    assert r["mismatches"] == 0
    return r


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=DEFAULT_ENGINE, help="engine configuration for lanes x width")
    ap.add_argument("--lanes", type=int, help="override the configuration's lanes")
    ap.add_argument("--width", type=int, help="override the configuration's width")
    ap.add_argument("--pixels", type=int, default=4, help="tile side (pixels) for the HDL simulators")
    ap.add_argument("--amaranth-beats", type=int, default=288, help="beats for Amaranth's simulator")
    ap.add_argument("--json", type=Path, default=REPO / "build" / "bench_datapath.json")
    args = ap.parse_args(argv)
    from onda.hw.config import load_config

    cfg = load_config(args.config)
    args.lanes, args.width = args.lanes or cfg.lanes, args.width or cfg.width
    job = _workload(args.lanes, args.width, args.pixels)
    rows = {}
    rows["amaranth"] = amaranth_sim(args.lanes, args.width, job, args.amaranth_beats)
    for sim in ("icarus", "verilator"):
        rows[sim] = cocotb_sim(sim, args.lanes, args.width, job)
    print(f"datapath simulation speed: ConvTile {args.lanes}x{args.width} "
          f"({args.lanes * args.width} MACs + requantizer), real ResNet50 3x3 tile")
    print(f"{'simulator':<10} {'cycles':>8} {'seconds':>8} {'cycles/s':>10}")
    for name, r in rows.items():
        r["cycles_per_second"] = r["cycles"] / r["seconds"]
        print(f"{name:<10} {r['cycles']:>8} {r['seconds']:>8.2f} {r['cycles_per_second']:>10.0f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"lanes": args.lanes, "width": args.width, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
