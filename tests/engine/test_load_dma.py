"""LoadDMA: table-driven and random LOADs (sizes, strides, alignments, paddings, pad values)
through the RTL with the memory model (random stalls) and the engine's buffers, compared byte
for byte with the functional emulator executing the same instructions; every refusal; cycles
without stalls next to the cycle model's."""

import random

import pytest
from amaranth.hdl import Signal

from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.engine.errors import EngineError
from onda.hw.isa import Buffer, Opcode
from onda.sim.engine.dma_bench import (LoadBench, assert_cycles, assert_outcome, emulate, flat_memory, machine_buffer,
                                       machine_for, run_dma)

BOARDS = ["icebreaker", "ulx3s-85f"]
ACT_SIZE = 8192
WEIGHTS = 8192
# Ports built only to read their parameters are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def load(**f):
    base = dict(buffer=Buffer.ACT, sram_addr=0, dram_addr=0, y_size=1, x_size=1, dram_stride=0, pad_top=0,
                pad_bottom=0, pad_left=0, pad_right=0, pad_value=0)
    return isa.make(Opcode.LOAD, **(base | f))


def windows(program, margin=24):
    """Each LOAD's destination, ``margin`` bytes either side, per buffer."""
    out = {}
    for ins in program:
        f = ins.fields
        total = (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * (f["pad_left"] + f["x_size"] + f["pad_right"])
        out.setdefault(Buffer(f["buffer"]), []).append((f["sram_addr"] - margin, f["sram_addr"] + min(total, 4096) + margin))
    return out


def check_against_emulator(cfg, program, *, stall, seed, expect_error=None, whole=None, digit_bits=4):
    """Run ``program`` on the RTL and the emulator; compare the buffers whole (``whole``, the
    default on the small iCEBreaker buffers) or around each LOAD's destination."""
    memory, memmap, weights = flat_memory(cfg, ACT_SIZE, WEIGHTS, seed)
    before = bytes(memory)
    machine = machine_for(cfg, memory, memmap, weights)
    done, message = emulate(machine, program)
    if whole is None:
        whole = cfg.act_bytes + cfg.wgt_bytes + cfg.param_bytes <= 16384
    run = run_dma(LoadBench(cfg, digit_bits=digit_bits), cfg, program, memory, stall=stall, seed=seed,
                  windows=None if whole else windows(program))
    assert_outcome(run, done, message, expect_error)
    if expect_error is not None and done == 0:
        assert run.model.transfers == [], "a refused LOAD read memory"
    compared = 0
    for b in (Buffer.ACT, Buffer.WGT, Buffer.PARAM):
        want, got = machine_buffer(machine, b), run.buffers[b]
        addrs = range(len(want)) if whole else sorted(got)
        bad = [a for a in addrs if got[a] != want[a]]
        if bad:
            a = bad[0]
            raise AssertionError(f"{b.name}: {len(bad)} bytes differ, the first at {a}: RTL {got[a]}, emulator {want[a]}")
        compared += len(addrs)
    assert compared > 0
    assert bytes(memory) == before, "a LOAD wrote memory"
    return run


TABLE = [
    # one byte, aligned and not
    dict(x_size=1, dram_addr=0),
    dict(x_size=1, dram_addr=5, sram_addr=3),
    # a row longer than one burst, unaligned at both ends
    dict(x_size=2 * 64 * 2 + 7, dram_addr=3, sram_addr=1),
    # rows with a stride, every offset, padding all round (a convolution's input band)
    dict(y_size=3, x_size=5, dram_stride=9, dram_addr=101, sram_addr=10, pad_top=1, pad_bottom=2, pad_left=1,
         pad_right=3, pad_value=-7),
    # pad rows only (contiguous rows), and stride smaller than the row (rows overlap in memory)
    dict(y_size=4, x_size=6, dram_stride=6, dram_addr=40, pad_top=2, pad_bottom=1, pad_value=5),
    dict(y_size=3, x_size=8, dram_stride=3, dram_addr=11, sram_addr=200),
    dict(y_size=3, x_size=4, dram_stride=0, dram_addr=7, pad_left=2, pad_value=-128),
    # nothing read: zero rows with padding, zero-byte rows with padding, nothing at all
    dict(y_size=0, x_size=5, pad_top=2, pad_bottom=1, pad_left=1, pad_value=3, sram_addr=300),
    dict(y_size=2, x_size=0, pad_left=2, pad_right=1, pad_value=-1, sram_addr=400),
    dict(y_size=0, x_size=0),
    # weights and parameters from the weight image, padding allowed as in the emulator
    dict(buffer=Buffer.WGT, dram_addr="W+3", y_size=2, x_size=13, dram_stride=20, sram_addr=32),
    dict(buffer=Buffer.PARAM, dram_addr="W+0", y_size=1, x_size=36, sram_addr=12),
    dict(buffer=Buffer.WGT, dram_addr="W+1", y_size=2, x_size=3, dram_stride=3, pad_left=1, pad_bottom=1,
         pad_value=9, sram_addr=100),
    dict(buffer=Buffer.PARAM, dram_addr="W+7", y_size=1, x_size=5, pad_right=3, pad_value=-2, sram_addr=1),
    # ACT from the weight image (the emulator broadcasts it)
    dict(dram_addr="W+9", y_size=2, x_size=7, dram_stride=11, sram_addr=500),
]


def resolve(cfg, row):
    """A table row as a LOAD; addresses written "W+k" are k bytes into the weight image."""
    f = dict(row)
    if isinstance(f.get("dram_addr"), str):
        f["dram_addr"] = cfg.mem_size_bytes - WEIGHTS + int(f["dram_addr"][2:])
    return load(**f)


@pytest.mark.parametrize("board", BOARDS)
def test_table_against_emulator(board):
    cfg = load_config(board)
    check_against_emulator(cfg, [resolve(cfg, i) for i in TABLE], stall=0.3, seed=1)


def random_load(cfg, rng):
    buffer = rng.choice([Buffer.ACT, Buffer.ACT, Buffer.WGT, Buffer.PARAM])
    y = rng.choice([0, 1, 1, 2, 3, 5])
    x = rng.choice([0, 1, 2, 3, rng.randint(1, 40), rng.randint(100, 300)])
    stride = rng.choice([x, x + rng.randint(1, 9), rng.randint(0, 50)])
    pads = [rng.choice([0, 0, 1, 2, 3]) for _ in range(4)]
    if rng.random() < 0.3:
        pads = [0, 0, 0, 0]
    extent = (y - 1) * stride + x if y and x else 0
    if buffer == Buffer.ACT and rng.random() < 0.7:
        dram = rng.randrange(0, ACT_SIZE - extent)
    else:
        dram = cfg.mem_size_bytes - WEIGHTS + rng.randrange(0, WEIGHTS - extent)
    size = {Buffer.ACT: cfg.act_bytes, Buffer.WGT: cfg.wgt_bytes, Buffer.PARAM: cfg.param_bytes}[buffer]
    total = (pads[0] + y + pads[1]) * (pads[2] + x + pads[3])
    sram = rng.choice([0, size - total, rng.randrange(0, size - total + 1)])
    return isa.make(Opcode.LOAD, buffer=buffer, sram_addr=sram, dram_addr=dram, y_size=y, x_size=x,
                    dram_stride=stride, pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
                    pad_value=rng.randint(-128, 127))


@pytest.mark.parametrize("board, seed", [("icebreaker", 11), ("icebreaker", 12), ("ulx3s-85f", 13)])
def test_random_loads_against_emulator(board, seed):
    cfg = load_config(board)
    rng = random.Random(seed)
    program = [random_load(cfg, rng) for _ in range(25)]
    check_against_emulator(cfg, program, stall=0.35, seed=seed)


def refusals(cfg):
    top = cfg.mem_size_bytes
    return [
        ("LOAD into OUT", load(buffer=Buffer.OUT, x_size=4), EngineError.BAD_BUFFER),
        ("row past the memory", load(dram_addr=top - 3, x_size=4), EngineError.MEMORY_RANGE),
        ("stride past the memory", load(dram_addr=top - 100, y_size=3, x_size=2, dram_stride=50),
         EngineError.MEMORY_RANGE),
        ("ACT past its end", load(dram_addr=0, x_size=4, sram_addr=cfg.act_bytes - 3), EngineError.BUFFER_RANGE),
        ("padding past ACT's end", load(dram_addr=0, y_size=1, x_size=4, pad_bottom=1, sram_addr=cfg.act_bytes - 7),
         EngineError.BUFFER_RANGE),
        ("WGT past its end", load(buffer=Buffer.WGT, dram_addr=top - 64, y_size=2, x_size=8, dram_stride=8,
                                  sram_addr=cfg.wgt_bytes - 15), EngineError.BUFFER_RANGE),
        ("PARAM past its end", load(buffer=Buffer.PARAM, dram_addr=top - 64, x_size=12,
                                    sram_addr=cfg.param_bytes - 11), EngineError.BUFFER_RANGE),
        ("pad-only past the end", load(y_size=0, x_size=9, pad_top=1, sram_addr=cfg.act_bytes - 8),
         EngineError.BUFFER_RANGE),
        ("sram_addr beyond the buffer", load(y_size=0, x_size=0, sram_addr=cfg.act_bytes + 1),
         EngineError.BUFFER_RANGE),
        ("huge rows wrap nothing", load(dram_addr=0, y_size=65535, x_size=(1 << 24) - 1, dram_stride=(1 << 24) - 1),
         EngineError.MEMORY_RANGE),
        ("huge padding", load(y_size=0, x_size=1000, pad_top=255, pad_bottom=255, pad_left=65535, pad_right=65535),
         EngineError.BUFFER_RANGE),
    ]


REFUSALS = [name for name, _, _ in refusals(load_config("icebreaker"))]


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("case", REFUSALS)
def test_refusal(board, case):
    """Refused after a good LOAD: the error code, no write and no memory read after it, and
    the buffers as the emulator has them (whole on the iCEBreaker, around both LOADs' targets
    on the ULX3S)."""
    cfg = load_config(board)
    name, ins, code = next(r for r in refusals(cfg) if r[0] == case)
    good = load(dram_addr=17, y_size=2, x_size=5, dram_stride=7, pad_left=1, pad_value=4, sram_addr=cfg.act_bytes - 12)
    run = check_against_emulator(cfg, [good, ins], stall=0.2, seed=3, expect_error=code)
    assert len(run.model.transfers) == 2  # the good LOAD's two rows only


def test_emulator_refuses_load_into_out():
    cfg = load_config("icebreaker")
    memory, memmap, weights = flat_memory(cfg, 64, 64, 0)
    done, message = emulate(machine_for(cfg, memory, memmap, weights), [load(buffer=Buffer.OUT, x_size=4)])
    assert done == 0 and "LOAD into OUT" in message


@pytest.mark.parametrize("board, digit_bits", [("icebreaker", 4), ("ulx3s-85f", 4), ("icebreaker", 1)])
def test_cycles_without_stalls(board, digit_bits, capsys):
    """The RTL's cycles (accept .. done) follow load_dma.load_cycles exactly; printed next to
    the cycle model's instruction_cycles."""
    from onda.hw.engine.load_dma import load_cycles
    cfg = load_config(board)
    program = [resolve(cfg, i) for i in TABLE]
    run = check_against_emulator(cfg, program, stall=0.0, seed=2, digit_bits=digit_bits)
    assert_cycles(cfg, program, run, load_cycles, digit_bits=digit_bits, board=board, capsys=capsys)


def test_constructor_rejects_a_port_that_is_not_whole_bytes():
    import dataclasses

    from onda.hw.engine.load_dma import LoadDMA
    cfg = dataclasses.replace(load_config("icebreaker"), mem_port_bits=24)
    with pytest.raises(ValueError, match="LoadDMA: mem_port_bits must be 8 times a power of two, got 24"):
        LoadDMA(cfg)
    with pytest.raises(ValueError, match="LoadDMA: mem_port_bits must be 8 times a power of two, got 12"):
        LoadDMA(dataclasses.replace(cfg, mem_port_bits=12))
    with pytest.raises(ValueError, match="LoadDMA: digit_bits must be 1..8, got 0"):
        LoadDMA(load_config("icebreaker"), digit_bits=0)


@pytest.mark.parametrize("digit_bits", [1, 3, 4])
def test_saturating_product_against_python(digit_bits):
    # The range checks' multiplier: the product when it fits in `width` bits, else `over`.
    from amaranth.hdl import ClockDomain, Module
    from amaranth.sim import Simulator

    from onda.hw.engine.load_dma import SaturatingProduct
    width, mbits = 10, 9
    prod = SaturatingProduct("p", mbits, width, digit_bits)
    a, b = Signal(mbits), Signal(24)
    start = Signal()
    m = Module()
    m.domains.sync = ClockDomain()
    with m.If(start):
        m.d.sync += prod.load(a, b)
    with m.Else():
        m.d.sync += prod.step()
    rng = random.Random(9)
    cases = [(0, 0), (1, 1023), (1, 1024), (511, 2), (3, 341), (3, 342), (256, 4), (0, (1 << 24) - 1)]
    cases += [(rng.randrange(1 << mbits), rng.choice([rng.randrange(1 << 24), rng.randrange(64)])) for _ in range(60)]

    async def bench(ctx):
        for x, y in cases:
            ctx.set(a, x)
            ctx.set(b, y)
            ctx.set(start, 1)
            await ctx.tick()
            ctx.set(start, 0)
            for _ in range(-(-mbits // digit_bits)):
                await ctx.tick()
            over, acc = ctx.get(prod.over), ctx.get(prod.acc)
            assert over == (x * y >= 1 << width), (x, y)
            if not over:
                assert acc == x * y, (x, y)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
