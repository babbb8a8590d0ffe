"""ConvTile's two parameter banks: a write to a lane of a bank waits while a vector that names
the bank is in flight and has not yet sent that lane to the requantizer (worst moment: the cycle
its `last` beat enters), a write to the other bank goes straight in, and every vector is
requantized with the parameters its bank held when it was sent; outputs against the golden
``fixedpoint.requantize``, with stalls on the output."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from onda.hw.datapath.conv_tile import ConvTile
from onda.sim.golden import fixedpoint as fp
from onda.sim.rtl.streams import stream_get

LANES, WIDTH = 4, 2


def lane_params(rng, lanes):
    mult, shift = fp.quantize_multiplier_array(np.exp(rng.uniform(np.log(1e-3), np.log(5e-2), lanes)))
    return {"bias": rng.integers(-2000, 2000, lanes), "multiplier": mult, "shift": shift}


def golden(x, w, prm):
    acc = np.einsum("kt,klt->l", np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64)) + prm["bias"]
    return fp.requantize(acc, prm["multiplier"], prm["shift"], 0, -128, 127).tolist()


@pytest.mark.parametrize("mul_style,beats,delay", [("dsp", 1, 0), ("dsp", 3, 0), ("dsp", 3, 5), ("serial", 2, 0),
                                                   ("serial", 5, 11)])
def test_parameter_write_waits_for_its_bank(mul_style, beats, delay):
    rng = np.random.default_rng(beats * 10 + delay)
    dut = ConvTile(LANES, WIDTH, mul_style=mul_style)
    banks = [lane_params(rng, LANES), lane_params(rng, LANES)]
    new0 = lane_params(rng, LANES)
    # vectors: bank 0, bank 1, then bank 0 again after its parameters were rewritten
    vecs = [(rng.integers(-128, 128, (beats, WIDTH)), rng.integers(-128, 128, (beats, LANES, WIDTH)), b)
            for b in (0, 1, 0, 1)]
    log = {}

    async def write(ctx, bank, prm, lane, note=None):
        ctx.set(dut.params.valid, 1)
        ctx.set(dut.params.payload, {"lane": lane, "bank": bank, "bias": int(prm["bias"][lane]),
                                     "multiplier": int(prm["multiplier"][lane]), "shift": int(prm["shift"][lane])})
        waited = 0
        while True:
            _, _, ready = await ctx.tick().sample(dut.params.ready)
            if ready:
                break
            waited += 1
        ctx.set(dut.params.valid, 0)
        if note:
            log.setdefault(note, []).append(waited)

    async def producer(ctx):
        ctx.set(dut.act_min, -128)
        ctx.set(dut.act_max, 127)
        for b in (0, 1):
            for lane in range(LANES):
                await write(ctx, b, banks[b], lane)
        for n, (x, w, b) in enumerate(vecs[:2]):
            for k in range(beats):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"x": x[k].tolist(), "w": w[k].tolist(), "first": k == 0,
                                        "last": k == beats - 1, "bank": b})
                if n == 0 and k == beats - 1 and delay == 0:
                    # worst moment: a write to bank 0 in the very cycle its vector's last beat enters
                    ctx.set(dut.params.valid, 1)
                    ctx.set(dut.params.payload, {"lane": 0, "bank": 0, "bias": int(new0["bias"][0]),
                                                 "multiplier": int(new0["multiplier"][0]),
                                                 "shift": int(new0["shift"][0])})
                    _, _, ready, pready = await ctx.tick().sample(dut.i.ready, dut.params.ready)
                    assert ready and not pready, "the write must wait for the vector entering now"
                    ctx.set(dut.params.valid, 0)
                    continue
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(delay):
            await ctx.tick()
        # rewrite bank 0 while its vector is in flight (must wait), bank 1 is still in use too
        for lane in range(LANES):
            await write(ctx, 0, new0, lane, note="bank0")
        for x, w, b in vecs[2:3]:
            for k in range(beats):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"x": x[k].tolist(), "w": w[k].tolist(), "first": k == 0,
                                        "last": k == beats - 1, "bank": b})
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    got = []

    async def consumer(ctx):
        got.extend(await stream_get(ctx, dut.o, 3 * LANES, rng=random.Random(delay), stall=0.3))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    want = golden(vecs[0][0], vecs[0][1], banks[0]) + golden(vecs[1][0], vecs[1][1], banks[1]) \
        + golden(vecs[2][0], vecs[2][1], new0)
    assert got == want
    if delay == 0:  # written right behind the vectors: lane 0 waits for bank 0's vector to be sent
        assert log["bank0"][0] > 0, f"a write went into a bank in use: {log['bank0']}"


def test_other_bank_is_free():
    """While bank 0's vector is in flight, bank 1 takes writes at once."""
    dut = ConvTile(LANES, WIDTH)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"x": [1, 2], "w": [[1, 1]] * LANES, "first": 1, "last": 1, "bank": 0})
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for bank in (1, 0):
            ctx.set(dut.params.payload, {"lane": 0, "bank": bank})
            seen.append(ctx.get(dut.params.ready))
        ctx.set(dut.o.ready, 1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1, 0]
