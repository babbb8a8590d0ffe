"""cocotb bench of ``ConvTile`` (MAC array + requantizer) on exported Verilog.

The job (``$ONDA_JOB``, written by :mod:`onda.sim.cocotb.conv_tile_job`) carries the packed
parameter writes and MAC beats and the golden model's expected int8 outputs; this bench drives
them with random idle and stall cycles and compares every output, in order, bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from onda.sim.cocotb.streams import get, put, reset, set_signed


@cocotb.test()
async def conv_tile_matches_golden(dut):
    with open(os.environ["ONDA_JOB"]) as f:
        job = json.load(f)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.params__valid.value = 0
    for key, value in job["config"].items():
        set_signed(getattr(dut, key), value)
    await reset(dut)
    for p in job["params"]:
        dut.params__valid.value = 1
        dut.params__payload.value = int(p, 16)
        await RisingEdge(dut.clk)
    dut.params__valid.value = 0

    rng = random.Random(job["seed"])
    beats = [int(b, 16) for b in job["beats"]]
    expected = job["expected"]
    t0, wall0 = cocotb.utils.get_sim_time("ns"), time.perf_counter()
    producer = cocotb.start_soon(put(dut, "i", beats, rng=rng, idle=job["idle"]))
    got = await get(dut, "o", len(expected), rng=random.Random(job["seed"] + 1), stall=job["stall"])
    await producer
    cycles = int((cocotb.utils.get_sim_time("ns") - t0) // 10)
    wall = time.perf_counter() - wall0
    bad = [(n, g, e) for n, (g, e) in enumerate(zip(got, expected)) if g != e]
    with open(os.environ["ONDA_RESULT"], "w") as f:
        json.dump({"cycles": cycles, "seconds": wall, "outputs": len(got), "mismatches": len(bad)}, f)
    assert not bad, f"{len(bad)} of {len(expected)} outputs differ (index, got, expected): {bad[:8]}"
