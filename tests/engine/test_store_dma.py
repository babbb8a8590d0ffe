"""StoreDMA: table-driven and random STOREs (sizes, strides, alignments) from OUT and ACT through
the RTL with the memory model (random stalls), compared byte for byte with the functional
emulator's memory after the same instructions; every refusal; cycles without stalls next to
the cycle model's."""

import random

import numpy as np
import pytest

from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.engine.errors import EngineError
from onda.hw.isa import Buffer, Opcode
from onda.sim.engine.dma_bench import (StoreBench, assert_cycles, assert_outcome, emulate, flat_memory, machine_for,
                                       run_dma)

BOARDS = ["icebreaker", "ulx3s-85f"]
ACT_SIZE = 8192
LOW, HIGH = 1536, 512  # random bytes at the start and the end of ACT and OUT
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def store(**f):
    base = dict(buffer=Buffer.OUT, sram_addr=0, dram_addr=0, y_size=1, x_size=1, dram_stride=0)
    return isa.make(Opcode.STORE, **(base | f))


def check_against_emulator(cfg, program, *, stall, seed, expect_error=None, digit_bits=4):
    memory, memmap, weights = flat_memory(cfg, ACT_SIZE, 64, seed)
    machine = machine_for(cfg, memory, memmap, weights)
    rng = np.random.default_rng(seed + 100)
    preload = {}
    for b, size in ((Buffer.ACT, cfg.act_bytes), (Buffer.OUT, cfg.out_bytes)):
        pieces = [(0, rng.integers(0, 256, LOW, dtype=np.uint8).tobytes()),
                  (size - HIGH, rng.integers(0, 256, HIGH, dtype=np.uint8).tobytes())]
        preload[b] = pieces
        target = machine.act[0] if b == Buffer.ACT else machine.out[0]
        for addr, data in pieces:
            target[addr:addr + len(data)] = np.frombuffer(data, dtype=np.int8)
    before = bytes(memory)
    done, message = emulate(machine, program)
    run = run_dma(StoreBench(cfg, digit_bits=digit_bits), cfg, program, memory, stall=stall, seed=seed, preload=preload, windows={})
    assert_outcome(run, done, message, expect_error)
    want = machine.act_mem[0].view(np.uint8).tobytes()
    got = bytes(memory[:ACT_SIZE])
    if got != want:
        bad = [i for i in range(ACT_SIZE) if got[i] != want[i]]
        raise AssertionError(f"memory: {len(bad)} bytes differ, the first at {bad[0]}: RTL {got[bad[0]]}, "
                             f"emulator {want[bad[0]]}")
    assert bytes(memory[ACT_SIZE:]) == before[ACT_SIZE:], "a STORE wrote outside the activation region"
    return run


TABLE = [
    dict(x_size=1, dram_addr=0),
    dict(x_size=1, dram_addr=7, sram_addr=3),
    dict(x_size=2, dram_addr=1, sram_addr=0),
    # a row longer than one burst, unaligned at both ends, from either buffer
    dict(x_size=2 * 64 * 2 + 9, dram_addr=1001, sram_addr=5),
    dict(buffer=Buffer.ACT, x_size=300, dram_addr=2000, sram_addr=100),
    # strided rows of every offset (a channel slice of an NHWC tensor)
    dict(y_size=5, x_size=3, dram_stride=7, dram_addr=3001, sram_addr=1),
    dict(buffer=Buffer.ACT, y_size=4, x_size=6, dram_stride=6, dram_addr=4000, sram_addr=1000),
    dict(y_size=3, x_size=5, dram_stride=2, dram_addr=4101),  # rows overlap: later rows win
    dict(y_size=2, x_size=4, dram_stride=0, dram_addr=4201, sram_addr=20),
    # nothing moved
    dict(y_size=0, x_size=5, dram_addr=11),
    dict(y_size=3, x_size=0, dram_addr=11, dram_stride=4),
    # the buffers' last bytes, and the last bytes of the activation region
    dict(x_size=40, sram_addr="END-40", dram_addr=ACT_SIZE - 40),
    dict(buffer=Buffer.ACT, y_size=2, x_size=9, sram_addr="END-18", dram_addr=ACT_SIZE - 19, dram_stride=10),
]


def resolve(cfg, row):
    """A table row as a STORE; "END-k" is k bytes before the end of the buffer."""
    f = dict(row)
    if isinstance(f.get("sram_addr"), str):
        size = cfg.act_bytes if f.get("buffer") == Buffer.ACT else cfg.out_bytes
        f["sram_addr"] = size - int(f["sram_addr"][4:])
    return store(**f)


def table(cfg):
    return [resolve(cfg, i) for i in TABLE]


@pytest.mark.parametrize("board", BOARDS)
def test_table_against_emulator(board):
    cfg = load_config(board)
    check_against_emulator(cfg, table(cfg), stall=0.3, seed=1)


def random_store(cfg, rng):
    buffer = rng.choice([Buffer.OUT, Buffer.ACT])
    size = cfg.act_bytes if buffer == Buffer.ACT else cfg.out_bytes
    y = rng.choice([0, 1, 1, 2, 3, 5])
    x = rng.choice([0, 1, 2, 3, rng.randint(1, 40), rng.randint(100, 260)])
    stride = rng.choice([x, x + rng.randint(1, 9), rng.randint(0, 50)])
    extent = (y - 1) * stride + x if y else 0
    dram = rng.randrange(0, ACT_SIZE - max(extent, 0) + 1)
    n = y * x
    sram = rng.choice([rng.randrange(0, LOW - n + 1), size - n, rng.randrange(size - HIGH, size - n + 1)]) \
        if n <= HIGH else rng.randrange(0, LOW - n + 1)
    return isa.make(Opcode.STORE, buffer=buffer, sram_addr=sram, dram_addr=dram, y_size=y, x_size=x,
                    dram_stride=stride)


@pytest.mark.parametrize("board, seed", [("icebreaker", 21), ("icebreaker", 22), ("ulx3s-85f", 23)])
def test_random_stores_against_emulator(board, seed):
    cfg = load_config(board)
    rng = random.Random(seed)
    check_against_emulator(cfg, [random_store(cfg, rng) for _ in range(25)], stall=0.35, seed=seed)


def refusals(cfg):
    top = cfg.mem_size_bytes
    return [
        ("STORE from WGT", store(buffer=Buffer.WGT, x_size=4), EngineError.BAD_BUFFER),
        ("STORE from PARAM", store(buffer=Buffer.PARAM, x_size=4), EngineError.BAD_BUFFER),
        ("OUT past its end", store(x_size=8, sram_addr=cfg.out_bytes - 7), EngineError.BUFFER_RANGE),
        ("ACT past its end", store(buffer=Buffer.ACT, y_size=3, x_size=8, dram_stride=8, sram_addr=cfg.act_bytes - 23),
         EngineError.BUFFER_RANGE),
        ("row past the memory", store(x_size=4, dram_addr=top - 3), EngineError.MEMORY_RANGE),
        ("stride past the memory", store(y_size=3, x_size=2, dram_stride=1 << 23, dram_addr=top - (1 << 24)),
         EngineError.MEMORY_RANGE),
        ("empty rows past the memory", store(y_size=2, x_size=0, dram_stride=100, dram_addr=top - 50),
         EngineError.MEMORY_RANGE),
        ("huge", store(y_size=65535, x_size=(1 << 24) - 1, dram_stride=(1 << 24) - 1), EngineError.BUFFER_RANGE),
    ]


REFUSALS = [name for name, _, _ in refusals(load_config("icebreaker"))]


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("case", REFUSALS)
def test_refusal(board, case):
    """Refused after a good STORE: the error code, no memory command after the good one's, and
    memory as the emulator has it."""
    cfg = load_config(board)
    name, ins, code = next(r for r in refusals(cfg) if r[0] == case)
    good = store(y_size=2, x_size=5, dram_stride=7, dram_addr=33, sram_addr=3)
    run = check_against_emulator(cfg, [good, ins], stall=0.2, seed=3, expect_error=code)
    assert len(run.model.transfers) == 2  # the good STORE's two rows only


def test_emulator_order_of_refusals():
    # A STORE both past OUT and past the memory is BUFFER_RANGE in the RTL; the emulator checks
    # the buffer first too.
    cfg = load_config("icebreaker")
    memory, memmap, weights = flat_memory(cfg, 64, 64, 0)
    done, message = emulate(machine_for(cfg, memory, memmap, weights),
                            [store(x_size=8, sram_addr=cfg.out_bytes - 7, dram_addr=cfg.mem_size_bytes - 3)])
    assert done == 0 and "buffer access" in message


@pytest.mark.parametrize("board, digit_bits", [("icebreaker", 4), ("ulx3s-85f", 4), ("icebreaker", 1)])
def test_cycles_without_stalls(board, digit_bits, capsys):
    """The RTL's cycles (accept .. done) follow store_dma.store_cycles exactly; printed next to
    the cycle model's instruction_cycles."""
    from onda.hw.engine.store_dma import store_cycles
    cfg = load_config(board)
    program = table(cfg)
    run = check_against_emulator(cfg, program, stall=0.0, seed=2, digit_bits=digit_bits)
    assert_cycles(cfg, program, run, store_cycles, digit_bits=digit_bits, board=board, capsys=capsys)


def test_constructor_rejects_a_port_that_is_not_whole_bytes():
    import dataclasses

    from onda.hw.engine.store_dma import StoreDMA
    with pytest.raises(ValueError, match="StoreDMA: mem_port_bits must be 8 times a power of two, got 48"):
        StoreDMA(dataclasses.replace(load_config("ulx3s-85f"), mem_port_bits=48))
    with pytest.raises(ValueError, match="StoreDMA: digit_bits must be 1..8, got 9"):
        StoreDMA(load_config("ulx3s-85f"), digit_bits=9)
