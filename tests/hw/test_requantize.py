"""Requantizer against fixedpoint.requantize: random and edge inputs, stalls on both sides."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from onda.hw.datapath.mbqm import MultiplyByQuantizedMultiplier, mbqm_latency
from onda.hw.datapath.stall import delay

from onda.hw.datapath.requantize import Requantizer
from onda.sim.golden import fixedpoint as fp
from onda.sim.rtl.streams import stream_get, stream_put

I32 = (fp.INT32_MIN, fp.INT32_MAX)


def edge_cases(rng: np.random.Generator, n: int):
    """Accumulators, biases, multipliers and shifts that hit saturation and rounding ties.

    Most results land inside int8 (accumulators scaled to the shift), so the clamp does not
    hide the arithmetic; a share are full-range int32 to exercise the clamp and saturation.
    """
    shift = rng.integers(-20, 2, n)
    acc = np.array([int(rng.integers(-2**(9 - s), 2**(9 - s))) for s in shift], dtype=np.int64)
    bias = rng.integers(-2**(6 - shift), 2**(6 - shift))
    mult = rng.integers(2**30, 2**31, n)
    picks = rng.integers(0, 7, n)
    for i, kind in enumerate(picks):
        if kind == 0:  # INT32 extremes, the saturating product
            acc[i], bias[i] = rng.choice([fp.INT32_MIN, fp.INT32_MAX, 0, -1, 1]), 0
            mult[i] = rng.choice([2**30, 2**31 - 1, 0])
        elif kind == 1:  # exact ties of the rounding right shift: acc*M0 lands on k + 1/2
            s = int(rng.integers(1, 12))
            mult[i], shift[i] = 2**30, -s  # M0 = 1/2: high = acc/2 exactly
            acc[i], bias[i] = int(rng.integers(-100, 100)) * 2 * 2**s + 2**s, 0
            acc[i] *= rng.choice([-1, 1])
        elif kind == 2:  # ties of the high multiply itself: acc*M0 = (k + 1/2) * 2^31
            mult[i], shift[i] = 2**30, 0
            acc[i], bias[i] = int(rng.integers(-100, 100)) * 2 + 1, 0
        elif kind == 3:  # large left shifts that wrap int32
            shift[i] = int(rng.integers(20, 31))
        elif kind == 4:  # full-range int32: the clamp and the bias wrap
            acc[i], bias[i] = rng.integers(-2**31, 2**31, 2)
            shift[i] = int(rng.integers(-31, 31))
    return acc, bias, mult, shift


def run_requantizer(items, out_zp, act_min, act_max, seed, idle=0.3, stall=0.3, mul_style="dsp"):
    dut = Requantizer(mul_style)
    rng = random.Random(seed)
    got = []

    async def producer(ctx):
        ctx.set(dut.out_zero_point, out_zp)
        ctx.set(dut.act_min, act_min)
        ctx.set(dut.act_max, act_max)
        await stream_put(ctx, dut.i, items, rng=rng, idle=idle)

    async def consumer(ctx):
        got.extend(await stream_get(ctx, dut.o, len(items), rng=random.Random(seed + 1), stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(got, dtype=np.int64)


@pytest.mark.parametrize("seed,mul_style", [(1, "dsp"), (2, "dsp"), (3, "lut"), (4, "serial")])
def test_requantizer_matches_golden(seed, mul_style):
    rng = np.random.default_rng(seed)
    n = 300
    acc, bias, mult, shift = edge_cases(rng, n)
    out_zp = int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))
    act_min, act_max = (-128, 127) if seed != 2 else (out_zp, 127)  # no activation / ReLU
    items = [dict(acc=int(a), bias=int(b), multiplier=int(mu), shift=int(s))
             for a, b, mu, s in zip(acc, bias, mult, shift)]
    got = run_requantizer(items, out_zp, act_min, act_max, seed, mul_style=mul_style)
    want = fp.requantize(fp.wrap_int32(acc + bias), mult, shift, out_zp, act_min, act_max)
    mismatch = np.nonzero(got != want)[0]
    assert mismatch.size == 0, [(items[i], int(got[i]), int(want[i])) for i in mismatch[:5]]


@pytest.mark.parametrize("mul_style", ["dsp", "serial"])
def test_requantizer_throughput(mul_style):
    """Without stalls, results leave every ``cycles_per_result`` cycles (1 on DSPs), the first
    one ``latency`` advances after the first input."""
    dut = Requantizer(mul_style)
    n = 40
    items = [dict(acc=i * 1000, bias=0, multiplier=2**30, shift=-3) for i in range(n)]
    cycles = {}

    async def producer(ctx):
        ctx.set(dut.act_min, -128)
        ctx.set(dut.act_max, 127)
        await stream_put(ctx, dut.i, items)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        count = t = 0
        cycles["at"] = []
        while count < n:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            t += 1
            count += valid
            if valid:
                cycles["at"].append(t)
        cycles["t"] = t

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    step = dut.cycles_per_result
    assert np.all(np.diff(cycles["at"]) == step)
    if step == 1:
        assert cycles["t"] == n + dut.latency
    else:  # the first input waits for the phase counter's advance: at most one period
        assert dut.latency * step <= cycles["at"][0] <= (dut.latency + 1) * step


class MBQMHarness(wiring.Component):
    """``MultiplyByQuantizedMultiplier`` alone, so its full int32 result is visible (the requantizer's clamp
    hides most of it)."""

    def __init__(self, mul_style):
        self.mul_style = mul_style
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"x": signed(32), "multiplier": signed(32),
                                                        "shift": signed(6)}))),
            "o": Out(stream.Signature(signed(32))),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        p = self.i.payload
        m.submodules.mbqm = mbqm = MultiplyByQuantizedMultiplier(self.mul_style)
        m.d.comb += [mbqm.en.eq(en), mbqm.x.eq(p.x), mbqm.multiplier.eq(p.multiplier), mbqm.shift.eq(p.shift),
                     self.o.payload.eq(mbqm.o),
                     self.o.valid.eq(delay(m, en, self.i.valid, mbqm_latency(self.mul_style)))]
        return m


@pytest.mark.parametrize("mul_style", ["dsp", "lut"])
def test_mbqm_matches_golden(mul_style):
    rng = np.random.default_rng(7)
    n = 400
    x = rng.integers(-2**31, 2**31, n)
    mult = rng.integers(-2**31, 2**31, n)
    shift = rng.integers(-31, 31, n)
    x[:8] = [fp.INT32_MIN, fp.INT32_MIN, fp.INT32_MAX, -1, 1, 2**15, -2**15, 3]
    mult[:8] = [fp.INT32_MIN, 2**30, fp.INT32_MIN, 2**30, 2**30, 2**15, 2**15, 2**30]
    shift[:8] = [0, 0, 0, -1, -1, 0, 0, -1]
    dut = MBQMHarness(mul_style)
    items = [dict(x=int(a), multiplier=int(b), shift=int(c)) for a, b, c in zip(x, mult, shift)]
    got = []

    async def producer(ctx):
        await stream_put(ctx, dut.i, items, rng=random.Random(3), idle=0.2)

    async def consumer(ctx):
        got.extend(await stream_get(ctx, dut.o, n, rng=random.Random(4), stall=0.2))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    want = fp.multiply_by_quantized_multiplier(x, mult, shift)
    got = np.array(got, dtype=np.int64)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, [(items[i], int(got[i]), int(want[i])) for i in bad[:5]]
