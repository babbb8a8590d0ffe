"""Fetch, decode and dispatch in Amaranth sim: a random program read through the memory model (with
random stalls) arrives in the three module queues in program order with its indices, and every
kind of bad instruction stops fetch with its code and index."""

import random
import warnings

import pytest
from amaranth.sim import Simulator

from onda.hw import isa
from onda.hw.engine.errors import EngineError
from onda.hw.engine.fetch import Fetch
from onda.hw.isa import Module, Opcode
from onda.sim.engine.memory_model import MemoryModel

warnings.filterwarnings("ignore", category=DeprecationWarning)


def random_program(rng: random.Random, n: int) -> list[isa.Instruction]:
    prog = []
    for _ in range(n - 1):
        op = rng.choice([Opcode.NOP, Opcode.LOAD, Opcode.STORE, Opcode.GEMM, Opcode.VEC])
        fields = {}
        for name, bits, signed in isa.LAYOUTS[op]:
            lo, hi = isa.field_range(op, name)
            fields[name] = rng.randint(lo, hi)
        if op == Opcode.NOP:
            fields["module"] = rng.choice(list(Module))
        ins = isa.make(op, **fields)
        mod = ins.module
        for flag, q in zip(isa.TOKEN_FIELDS, isa.TOKEN_QUEUES[mod]):
            setattr(ins, flag, q is not None and rng.random() < 0.5)
        prog.append(ins)
    prog.append(isa.make(Opcode.FINISH))
    return prog


def run_fetch(raw: bytes, count: int, P: int, stall: float, seed: int, cycles: int = 4000):
    dut = Fetch(P, queue_depth=4, prefetch=4)
    memory = bytearray(64) + bytearray(raw) + bytearray(64)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    MemoryModel(dut.mem, memory, latency=3, stall=stall, seed=seed).add_to(sim)
    got = {m: [] for m in Module}
    rng = random.Random(seed + 1)
    result = {}

    async def bench(ctx):
        ctx.set(dut.addr, 64)
        ctx.set(dut.count, count)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ports = {Module.LOAD: dut.load, Module.COMPUTE: dut.compute, Module.STORE: dut.store}
        quiet = 0
        for _ in range(cycles):
            readies = {m: rng.random() > stall for m in Module}
            for m, p in ports.items():
                ctx.set(p.ready, readies[m])
            for m, p in ports.items():
                if ctx.get(p.valid) and readies[m]:
                    e = ctx.get(p.payload)
                    got[m].append((int(e.index), int(e.ins.as_value().value if hasattr(e.ins, "as_value") else 0)))
            await ctx.tick()
            if ctx.get(dut.error) != EngineError.NONE:
                break
            quiet = quiet + 1 if ctx.get(dut.finished) and not any(ctx.get(p.valid) for p in ports.values()) else 0
            if quiet == 4:
                break
        result.update(error=ctx.get(dut.error), index=ctx.get(dut.error_index), finished=ctx.get(dut.finished),
                      fetched=ctx.get(dut.fetched))

    sim.add_testbench(bench)
    sim.run()
    return got, result


def _word(ins: isa.Instruction) -> int:
    return int.from_bytes(isa.encode(ins), "little")


@pytest.mark.parametrize("P,stall,seed", [(2, 0.0, 0), (2, 0.3, 1), (4, 0.2, 2), (1, 0.0, 3)])
def test_dispatch_in_program_order(P, stall, seed):
    prog = random_program(random.Random(seed), 23)
    got, res = run_fetch(isa.encode_program(prog), len(prog), P, stall, seed)
    assert res["error"] == EngineError.NONE and res["finished"]
    for mod in Module:
        want = [(i, _word(ins)) for i, ins in enumerate(prog) if ins.module == mod]
        assert got[mod] == want, mod.name
    assert res["fetched"] == len(prog)


def _raw_with(prog, index, mutate):
    raw = bytearray(isa.encode_program(prog))
    word = int.from_bytes(raw[32 * index:32 * index + 32], "little")
    raw[32 * index:32 * index + 32] = mutate(word).to_bytes(32, "little")
    return bytes(raw)


BAD = [
    ("illegal opcode", lambda w: (w & ~0xF) | 0xB, EngineError.ILLEGAL_OPCODE),
    ("reserved bit", lambda w: w | 1 << 250, EngineError.RESERVED_BITS),
    ("NOP of module 3", lambda w: (w & ~0xFFF) | (3 << 8), EngineError.RESERVED_BITS),
    ("LOAD pops prev", lambda w: (w & ~0xFF) | Opcode.LOAD | 1 << 4, EngineError.BAD_TOKEN),
    ("STORE pushes next", lambda w: (w & ~0xFF) | Opcode.STORE | 1 << 7, EngineError.BAD_TOKEN),
]


@pytest.mark.parametrize("what,mutate,code", BAD, ids=[b[0] for b in BAD])
def test_bad_instruction_stops_fetch(what, mutate, code):
    prog = [isa.make(Opcode.NOP, module=Module.LOAD) for _ in range(6)] + [isa.make(Opcode.FINISH)]
    got, res = run_fetch(_raw_with(prog, 4, mutate), len(prog), 2, 0.0, 0)
    assert res["error"] == code and res["index"] == 4
    assert [i for i, _ in got[Module.LOAD]] == [0, 1, 2, 3]  # nothing at or after the bad one


def test_program_without_finish():
    prog = [isa.make(Opcode.NOP, module=Module.STORE) for _ in range(5)]
    got, res = run_fetch(isa.encode_program(prog), len(prog), 2, 0.0, 0)
    assert res["error"] == EngineError.NO_FINISH and res["index"] == 5
    assert res["fetched"] == 5  # every instruction was dispatched before the error


def test_nothing_after_finish_is_dispatched():
    prog = [isa.make(Opcode.NOP, module=Module.LOAD), isa.make(Opcode.FINISH)] + \
           [isa.make(Opcode.NOP, module=Module.LOAD) for _ in range(6)]
    got, res = run_fetch(isa.encode_program(prog), len(prog), 2, 0.0, 0)
    assert res["error"] == EngineError.NONE and res["finished"]
    assert [i for i, _ in got[Module.LOAD]] == [0] and [i for i, _ in got[Module.COMPUTE]] == [1]


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="port_bytes must divide 32"):
        Fetch(3)
    with pytest.raises(ValueError, match="at least 2"):
        Fetch(2, queue_depth=1)
