"""Issue logic and token counters in Amaranth sim: instructions start only when the tokens they pop
are there, pushes land when the sequencer says done, NOPs take one cycle, a sequencer's refusal
stops the module with its code, and a full token queue reports overflow."""

import random
import warnings

import pytest
from amaranth.hdl import Module as HdlModule
from amaranth.sim import Simulator

from onda.hw import isa
from onda.hw.engine.errors import EngineError
from onda.hw.engine.fetch import QueueEntryLayout
from onda.hw.engine.issue import IssueUnit
from onda.hw.engine.tokens import TokenQueues
from onda.hw.isa import Module, Opcode

warnings.filterwarnings("ignore", category=DeprecationWarning)


class Bench:
    """A compute IssueUnit on TokenQueues, with a GEMM/VEC sequencer stand-in whose latency is random."""

    def __init__(self, depth=255):
        self.top = HdlModule()
        self.unit = IssueUnit(Module.COMPUTE, token_depth=depth)
        self.tokens = TokenQueues(depth)
        self.top.submodules.unit, self.top.submodules.tokens = self.unit, self.tokens
        u, t = self.unit, self.tokens
        self.top.d.comb += [t.pop_l2c.eq(u.pop_prev), t.pop_s2c.eq(u.pop_next), t.push_c2l.eq(u.push_prev),
                            t.push_c2s.eq(u.push_next), u.count_prev.eq(t.count_l2c), u.count_next.eq(t.count_s2c)]


def entry(ins, index):
    return QueueEntryLayout().from_bits(int.from_bytes(isa.encode(ins), "little") | index << isa.INSTRUCTION_BITS)


def run(program, gifts, latency_seed=0, refuse_at=None, cycles=600):
    """``gifts``: cycle -> (queue, n) tokens pushed from outside (the load / store modules)."""
    b = Bench()
    u, t = b.unit, b.tokens
    rng = random.Random(latency_seed)
    log = []  # (cycle, event, index)

    async def feed(ctx):
        for i, ins in enumerate(program):
            ctx.set(u.i.payload, entry(ins, i))
            ctx.set(u.i.valid, 1)
            while True:  # (no `until` in a background bench: the sim may end while it waits)
                _, _, taken = await ctx.tick().sample(u.i.ready)
                if taken:
                    break
        ctx.set(u.i.valid, 0)

    async def sequencer(ctx):
        for cyc in range(cycles):
            for name in ("gemm", "vec"):
                ctx.set(getattr(u, f"cmd_{name}").ready, 1)
            taken = ctx.get(u.cmd_gemm.valid) or ctx.get(u.cmd_vec.valid)
            index = ctx.get(u.i.payload.index)
            await ctx.tick()
            if taken:
                for name in ("gemm", "vec"):
                    ctx.set(getattr(u, f"cmd_{name}").ready, 0)
                for _ in range(rng.randint(0, 4)):
                    await ctx.tick()
                if refuse_at == index:
                    ctx.set(u.error_gemm, EngineError.BUFFER_RANGE)
                    ctx.set(u.error_vec, EngineError.BUFFER_RANGE)
                    await ctx.tick()
                    return
                ctx.set(u.done_gemm, 1)
                ctx.set(u.done_vec, 1)
                await ctx.tick()
                ctx.set(u.done_gemm, 0)
                ctx.set(u.done_vec, 0)

    async def watch(ctx):
        for cyc in range(cycles):
            for q, n in [gifts.get(cyc, (None, 0))]:
                if q:
                    ctx.set(getattr(t, f"push_{q}"), 1)
            if ctx.get(u.pop_prev):
                log.append((cyc, "pop_l2c", ctx.get(u.i.payload.index)))
            if ctx.get(u.pop_next):
                log.append((cyc, "pop_s2c", ctx.get(u.i.payload.index)))
            if ctx.get(u.push_next):
                log.append((cyc, "push_c2s", ctx.get(u.retire_index)))
            if ctx.get(u.retire):
                log.append((cyc, "retire", ctx.get(u.retire_index)))
            await ctx.tick()
            for q in ("l2c", "s2c"):
                ctx.set(getattr(t, f"push_{q}"), 0)
        log.append(("end", ctx.get(u.error), ctx.get(u.index), ctx.get(t.count_c2s), ctx.get(t.count_c2l)))

    sim = Simulator(b.top)
    sim.add_clock(1e-6)
    sim.add_testbench(feed, background=True)
    sim.add_testbench(sequencer, background=True)
    sim.add_testbench(watch)
    sim.run()
    return log


PROGRAM = [
    isa.make(Opcode.GEMM, pop_prev=True),
    isa.make(Opcode.VEC, push_next=True),
    isa.make(Opcode.NOP, module=Module.COMPUTE, push_prev=True, push_next=True),
    isa.make(Opcode.GEMM, pop_prev=True, pop_next=True, push_next=True),
    isa.make(Opcode.NOP, module=Module.COMPUTE, pop_next=True, push_prev=True),
]


@pytest.mark.parametrize("seed", range(4))
def test_pops_wait_for_tokens_and_pushes_follow_done(seed):
    gifts = {40: ("l2c", 1), 90: ("l2c", 1), 130: ("s2c", 1), 200: ("s2c", 1)}
    log = run(PROGRAM, gifts, seed)
    events = [e for e in log if e[0] != "end"]
    pops = [(e[1], e[2]) for e in events if e[1].startswith("pop")]
    assert pops == [("pop_l2c", 0), ("pop_l2c", 3), ("pop_s2c", 3), ("pop_s2c", 4)]
    when = {(e[1], e[2]): e[0] for e in events}
    # No pop before its token was pushed (tokens count from the cycle after the push).
    assert when[("pop_l2c", 0)] > 40 and when[("pop_l2c", 3)] > 90
    assert when[("pop_s2c", 3)] > 130 and when[("pop_s2c", 4)] > 200
    retired = [e[2] for e in events if e[1] == "retire"]
    assert retired == [0, 1, 2, 3, 4]
    # Each push of c2s comes with the retirement of its instruction, in order.
    assert [e[2] for e in events if e[1] == "push_c2s"] == [1, 2, 3]
    end = log[-1]
    assert end[1] == EngineError.NONE and end[3] == 3 and end[4] == 2


def test_refusal_stops_the_module():
    log = run(PROGRAM, {10: ("l2c", 1), 20: ("l2c", 1), 30: ("s2c", 2)}, 0, refuse_at=1)
    end = log[-1]
    assert end[1] == EngineError.BUFFER_RANGE and end[2] == 1
    assert [e[2] for e in log if e[0] != "end" and e[1] == "retire"] == [0]


def test_token_overflow():
    t = TokenQueues(depth=2)
    seen = []

    async def bench(ctx):
        for _ in range(3):
            ctx.set(t.push_c2s, 1)
            seen.append(ctx.get(t.overflow))
            await ctx.tick()
        ctx.set(t.push_c2s, 0)
        seen.append(ctx.get(t.count_c2s))

    sim = Simulator(t)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 0, 1, 2]


def test_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        TokenQueues(0)
