"""MemoryArbiter and the memory model: three clients' random bursts under random stalls, every
read beat checked against the memory's contents and every write against a bytearray model;
round-robin order; the model's latency and its errors; constructor messages."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from onda.hw.config import load_config
from onda.hw.engine.memory_port import MAX_BURST, MemoryArbiter, MemoryPortSignature
from onda.sim.engine.memory_model import MemoryModel, MemoryModelError
from onda.sim.rtl.streams import stream_get, stream_put

# Ports built only to hand the memory model an interface are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


class Port(wiring.Component):
    """Just a client memory port, driven by the testbench itself."""

    def __init__(self, P):
        super().__init__({"mem": Out(MemoryPortSignature(P))})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        return m


def run_clients(P, n, commands, *, stall, seed, size=4096):
    """``commands[i]``: client i's list of (addr, beats, write) bursts. Reads are of the lower
    half (never written); client i writes only its own slice of the upper half."""
    rng = random.Random(seed)
    arb = MemoryArbiter(n, P)
    memory = bytearray(rng.randrange(256) for _ in range(size))
    expect = bytearray(memory)
    initial = bytes(memory)
    model = MemoryModel(arb.mem, memory, latency=3, stall=stall, seed=seed)
    sim = Simulator(arb)
    sim.add_clock(1e-8)
    model.add_to(sim)
    got = {i: [] for i in range(n)}
    wbeats = {i: [] for i in range(n)}
    for i in range(n):
        for addr, beats, write in commands[i]:
            if write:
                for k in range(beats):
                    data, mask = [rng.randrange(256) for _ in range(P)], rng.getrandbits(P)
                    wbeats[i].append(dict(data=data, mask=mask))
                    for j in range(P):
                        if mask >> j & 1:
                            expect[addr + k * P + j] = data[j]

    def client(i):
        c = arb.clients[i]
        reads = sum(b for _, b, w in commands[i] if not w)

        async def cmd(ctx):
            await stream_put(ctx, c.cmd, [dict(addr=a, beats=b, write=w) for a, b, w in commands[i]],
                             rng=random.Random(seed * 10 + i), idle=stall)

        async def wdata(ctx):
            await stream_put(ctx, c.wdata, wbeats[i], rng=random.Random(seed * 20 + i), idle=stall)

        async def rdata(ctx):
            got[i] = await stream_get(ctx, c.rdata, reads, rng=random.Random(seed * 30 + i), stall=stall)

        return cmd, wdata, rdata

    for i in range(n):
        for bench in client(i):
            sim.add_testbench(bench)

    async def wait_idle(ctx):
        await ctx.tick().repeat(5)
        while model.busy or len(model.transfers) < sum(len(c) for c in commands):
            await ctx.tick()

    sim.add_testbench(wait_idle)
    sim.run()
    for i in range(n):
        want = []
        for addr, beats, write in commands[i]:
            if not write:
                want += [list(initial[addr + k * P:addr + k * P + P]) for k in range(beats)]
        assert [[int(b) for b in beat] for beat in got[i]] == want, f"client {i} read data"
    assert memory == expect
    return model


def random_commands(rng, P, n, count, size=4096):
    half = size // 2
    cmds = []
    for i in range(n):
        lo, hi = half + i * (half // n), half + (i + 1) * (half // n)
        mine = []
        for _ in range(count):
            beats = rng.randint(1, 12)
            if rng.random() < 0.5:
                addr = rng.randrange(0, half - beats * P) // P * P
                mine.append((addr, beats, False))
            else:
                addr = rng.randrange(lo, hi - beats * P) // P * P
                mine.append((addr, beats, True))
        cmds.append(mine)
    return cmds


@pytest.mark.parametrize("P, stall, seed", [(2, 0.0, 1), (2, 0.3, 2), (4, 0.4, 3), (8, 0.2, 4)])
def test_three_clients_random_bursts(P, stall, seed):
    rng = random.Random(seed)
    model = run_clients(P, 3, random_commands(rng, P, 3, 10), stall=stall, seed=seed)
    assert len(model.transfers) == 30 and not model.busy


def test_single_client_burst_of_max_length():
    model = run_clients(2, 1, [[(0, MAX_BURST, False), (2048, MAX_BURST, True), (6, 1, False)]], stall=0.2, seed=7)
    assert [t.beats for t in model.transfers] == [MAX_BURST, MAX_BURST, 1]


def test_round_robin_when_all_clients_wait():
    # Every client keeps a read command valid all the time: grants go 0, 1, 2, 0, 1, 2, ...
    n, P = 3, 2
    cmds = [[(i * 64 + k * 2, 1, False) for k in range(6)] for i in range(n)]
    model = run_clients(P, n, cmds, stall=0.0, seed=0)
    assert [t.addr // 64 for t in model.transfers] == [0, 1, 2] * 6


def test_model_timing_latency_and_back_to_back_beats():
    # A 4-beat read taken in cycle c has its first beat in c + latency, then one a cycle; a
    # second command taken meanwhile follows with no gap.
    dut = Port(2)
    memory = bytearray(range(64))
    model = MemoryModel(dut.mem, memory, latency=5)
    seen = []

    async def bench(ctx):
        ctx.set(dut.mem.rdata.ready, 1)
        ctx.set(dut.mem.cmd.valid, 1)
        ctx.set(dut.mem.cmd.payload, dict(addr=8, beats=4, write=0))
        await ctx.tick().until(dut.mem.cmd.ready)
        ctx.set(dut.mem.cmd.payload, dict(addr=32, beats=2, write=0))
        await ctx.tick().until(dut.mem.cmd.ready)
        ctx.set(dut.mem.cmd.valid, 0)
        for _ in range(12):
            _, _, v, d = await ctx.tick().sample(dut.mem.rdata.valid, dut.mem.rdata.payload)
            seen.append([int(b) for b in d] if v else None)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    model.add_to(sim)
    sim.add_testbench(bench)
    sim.run()
    first, second = model.transfers
    assert (first.accepted, second.accepted) == (0, 1)
    assert first.start == 5 and first.done == 8 and second.start == 9 and second.done == 10
    assert model.last_done == 10
    # The bench's sampled cycles are 2..13.
    assert seen == [None] * 3 + [[8, 9], [10, 11], [12, 13], [14, 15], [32, 33], [34, 35]] + [None] * 3


def test_model_takes_latency_from_config():
    for board in ("icebreaker", "ulx3s-85f"):
        cfg = load_config(board)
        model = MemoryModel.from_config(cfg, Port(cfg.mem_port_bits // 8).mem, bytearray(16))
        assert model.latency == cfg.mem_latency_cycles and model.P == cfg.mem_port_bits // 8
    with pytest.raises(ValueError, match="the port carries 4 bytes a beat, configuration 'icebreaker' has 2"):
        MemoryModel.from_config(load_config("icebreaker"), Port(4).mem, bytearray(16))


@pytest.mark.parametrize("cmd, message", [
    (dict(addr=3, beats=1, write=0), r"cycle \d+: read of 1 beats at 0x3: address is not a multiple of the 2-byte beat"),
    (dict(addr=60, beats=4, write=1), r"write of 4 beats at 0x3c: \[0x3c, 0x44\) is outside the memory \[0, 0x40\)"),
    (dict(addr=0, beats=0, write=0), rf"a burst is 1..{MAX_BURST} beats"),
    (dict(addr=0, beats=MAX_BURST + 1, write=0), rf"a burst is 1..{MAX_BURST} beats"),
])
def test_model_refuses_bad_commands(cmd, message):
    dut = Port(2)
    model = MemoryModel(dut.mem, bytearray(64), latency=2)

    async def bench(ctx):
        ctx.set(dut.mem.cmd.valid, 1)
        ctx.set(dut.mem.cmd.payload, cmd)
        for _ in range(3):
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    model.add_to(sim)
    sim.add_testbench(bench)
    with pytest.raises(MemoryModelError, match=message):
        sim.run()


def test_constructors_reject_bad_parameters():
    with pytest.raises(ValueError, match=r"P \(bytes per beat\) must be a power of two >= 1, got 3"):
        MemoryPortSignature(3)
    with pytest.raises(ValueError, match=r"n \(client ports\) must be >= 1, got 0"):
        MemoryArbiter(0, 2)
    with pytest.raises(ValueError, match=r"depth \(outstanding commands\) must be >= 1, got 0"):
        MemoryArbiter(2, 2, depth=0)
    port = Port(2).mem
    with pytest.raises(ValueError, match="latency must be an integer >= 1 cycle, got 0"):
        MemoryModel(port, bytearray(4), latency=0)
    with pytest.raises(ValueError, match=r"stall must be a probability in \[0, 1\), got 1.0"):
        MemoryModel(port, bytearray(4), stall=1.0)
    with pytest.raises(ValueError, match="queue must be >= 1 command, got 0"):
        MemoryModel(port, bytearray(4), queue=0)
    with pytest.raises(TypeError, match="memory must be a bytearray, got bytes"):
        MemoryModel(port, bytes(4))


def test_load_and_store_dmas_share_the_port():
    """Random LOADs and STOREs at once, both DMAs through the arbiter onto one memory model with
    stalls; LOADs read [0, 4096) and the weight image, STOREs write [4096, 8192) from OUT, so the
    emulator (loads, then stores) is the oracle for the buffers and the memory."""
    import numpy as np

    from onda.hw import isa
    from onda.hw.isa import Buffer, Opcode
    from onda.sim.engine.dma_bench import SharedPortBench, emulate, flat_memory, machine_buffer, machine_for

    cfg = load_config("icebreaker")
    rng = random.Random(5)
    memory, memmap, weights = flat_memory(cfg, 8192, 4096, 5)
    wbase = memmap["weights_base"]
    loads, stores = [], []
    for _ in range(12):
        y, x = rng.randint(1, 4), rng.randint(1, 70)
        stride = x + rng.randint(0, 5)
        buffer = rng.choice([Buffer.ACT, Buffer.WGT, Buffer.PARAM])
        dram = rng.randrange(0, 4096 - y * stride) if buffer == Buffer.ACT else wbase + rng.randrange(0, 2048)
        pads = [rng.randint(0, 2) for _ in range(4)]
        total = (pads[0] + y + pads[1]) * (pads[2] + x + pads[3])
        size = {Buffer.ACT: 2048, Buffer.WGT: cfg.wgt_bytes, Buffer.PARAM: cfg.param_bytes}[buffer]
        loads.append(isa.make(Opcode.LOAD, buffer=buffer, sram_addr=rng.randrange(0, size - total), dram_addr=dram,
                              y_size=y, x_size=x, dram_stride=stride, pad_top=pads[0], pad_bottom=pads[1],
                              pad_left=pads[2], pad_right=pads[3], pad_value=rng.randint(-128, 127)))
    for _ in range(12):
        y, x = rng.randint(1, 4), rng.randint(1, 70)
        stride = x + rng.randint(0, 5)
        stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=rng.randrange(0, 1024 - y * x),
                               dram_addr=4096 + rng.randrange(0, 4096 - y * stride), y_size=y, x_size=x,
                               dram_stride=stride))
    out = np.random.default_rng(6).integers(0, 256, 1024, dtype=np.uint8).tobytes()
    machine = machine_for(cfg, memory, memmap, weights)
    machine.out[0, :1024] = np.frombuffer(out, dtype=np.int8)
    assert emulate(machine, loads + stores) == (24, "")

    bench = SharedPortBench(cfg)
    model = MemoryModel.from_config(cfg, bench.mem, memory, stall=0.3, seed=5)
    sim = Simulator(bench)
    sim.add_clock(1e-8)
    model.add_to(sim)
    finished = []

    def driver(dma, program, seed):
        async def bench_(ctx):
            r = random.Random(seed)
            for ins in program:
                await stream_put(ctx, dma.cmd, [dict(ins.fields, buffer=Buffer(ins.fields["buffer"]))], rng=r, idle=0.3)
                await ctx.tick().until(dma.done | (dma.error != 0))
                assert ctx.get(dma.error) == 0
            finished.append(dma)
        return bench_

    async def preload(ctx):
        bench.buffers[Buffer.OUT].sim_poke(ctx, 0, out)

    sim.add_testbench(preload)
    sim.add_testbench(driver(bench.load, loads, 1))
    sim.add_testbench(driver(bench.store, stores, 2))
    result = {}

    async def snapshot(ctx):
        await ctx.tick().until(bench.load.error == 0)  # let the drivers start
        while len(finished) < 2:
            await ctx.tick()
        for b in (Buffer.ACT, Buffer.WGT, Buffer.PARAM):
            result[b] = bench.buffers[b].sim_peek(ctx, 0, bench.buffers[b].size)

    sim.add_testbench(snapshot)
    sim.run()
    for b in (Buffer.ACT, Buffer.WGT, Buffer.PARAM):
        assert result[b] == machine_buffer(machine, b), b.name
    assert bytes(memory[:8192]) == machine.act_mem[0].view(np.uint8).tobytes()
    reads = [t.accepted for t in model.transfers if not t.write]
    writes = [t.accepted for t in model.transfers if t.write]
    assert len(reads) >= 12 and len(writes) >= 12
    assert min(writes) < max(reads) and min(reads) < max(writes), "the two DMAs never overlapped"


@pytest.mark.parametrize("what", ["cmd", "wdata"])
@pytest.mark.parametrize("fault", ["drop", "change"])
def test_model_checks_the_stream_rules(what, fault):
    dut = Port(2)
    model = MemoryModel(dut.mem, bytearray(64), latency=1, stall=0.9, seed=1)

    async def bench(ctx):
        stream = getattr(dut.mem, what)
        if what == "wdata":
            ctx.set(dut.mem.cmd.payload, dict(addr=0, beats=4, write=1))
            ctx.set(dut.mem.cmd.valid, 1)
            await ctx.tick().until(dut.mem.cmd.ready)
            ctx.set(dut.mem.cmd.valid, 0)
            ctx.set(stream.payload, dict(data=[1, 2], mask=3))
        else:
            ctx.set(stream.payload, dict(addr=0, beats=1, write=0))
        ctx.set(stream.valid, 1)
        while ctx.get(stream.ready):  # wait for a stall, then break the rule during it
            await ctx.tick()
        await ctx.tick()
        if fault == "drop":
            ctx.set(stream.valid, 0)
        else:
            ctx.set(stream.payload, dict(data=[3, 2], mask=3) if what == "wdata" else dict(addr=2, beats=1, write=0))
        for _ in range(40):
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    model.add_to(sim)
    sim.add_testbench(bench)
    message = "valid dropped before the transfer" if fault == "drop" else "payload changed while waiting"
    with pytest.raises(MemoryModelError, match=rf"{what}\.{message}"):
        sim.run()
