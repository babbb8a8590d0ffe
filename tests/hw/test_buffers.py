"""Stream buffers: streamed reads return what was written, in order, under stalls; the double
buffer reads the front bank while writes fill the back one."""

import random

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.lib import data
from amaranth.sim import Simulator

from onda.hw.datapath.buffers import DoubleBuffer, StreamBuffer
from onda.sim.rtl.streams import stream_get, stream_put

SHAPE = data.ArrayLayout(signed(8), 4)


def test_stream_buffer_reads_back_writes_under_stalls():
    depth = 32
    rng = np.random.default_rng(0)
    words = rng.integers(-128, 128, (depth, 4))
    addrs = [int(a) for a in rng.integers(0, depth, 100)]
    dut = StreamBuffer(SHAPE, depth)
    got = []

    async def writer_then_reader(ctx):
        await stream_put(ctx, dut.w, [dict(addr=a, data=[int(v) for v in w]) for a, w in enumerate(words)])
        await stream_put(ctx, dut.raddr, addrs, rng=random.Random(1), idle=0.3)

    async def consumer(ctx):
        out = await stream_get(ctx, dut.rdata, len(addrs), rng=random.Random(2), stall=0.4)
        got.extend([[int(v) for v in o] for o in out])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(writer_then_reader)
    sim.add_testbench(consumer)
    sim.run()
    assert got == [[int(v) for v in words[a]] for a in addrs]


def test_double_buffer_swaps_banks():
    depth = 8
    dut = DoubleBuffer(signed(16), depth)
    got = []

    async def bench(ctx):
        # Fill the back bank (bank 1 while bank 0 is in front), swap, read it; then fill the
        # other bank while reading, swap again.
        await stream_put(ctx, dut.w, [dict(addr=a, data=100 + a) for a in range(depth)])
        ctx.set(dut.swap, 1)
        await ctx.tick()
        ctx.set(dut.swap, 0)
        assert ctx.get(dut.front) == 1
        ctx.set(dut.rdata.ready, 1)
        for a in range(depth):
            ctx.set(dut.raddr.valid, 1)
            ctx.set(dut.raddr.payload, a)
            ctx.set(dut.w.valid, 1)
            ctx.set(dut.w.payload, dict(addr=a, data=-a))  # the back bank, unseen by reads
            _, _, v, d = await ctx.tick().sample(dut.rdata.valid, dut.rdata.payload)
            if v:
                got.append(d)
        ctx.set(dut.raddr.valid, 0)
        ctx.set(dut.w.valid, 0)
        _, _, v, d = await ctx.tick().sample(dut.rdata.valid, dut.rdata.payload)
        got.append(d)
        ctx.set(dut.swap, 1)
        await ctx.tick()
        ctx.set(dut.swap, 0)
        for a in range(depth):
            ctx.set(dut.raddr.valid, 1)
            ctx.set(dut.raddr.payload, a)
            _, _, v, d = await ctx.tick().sample(dut.rdata.valid, dut.rdata.payload)
            if v:
                got.append(d)
        ctx.set(dut.raddr.valid, 0)
        _, _, v, d = await ctx.tick().sample(dut.rdata.valid, dut.rdata.payload)
        got.append(d)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [100 + a for a in range(depth)] + [-a for a in range(depth)]


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_buffer_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth must be a power of two"):
        StreamBuffer(SHAPE, 12)
