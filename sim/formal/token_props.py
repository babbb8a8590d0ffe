"""The dependency-token counters, proved with SymbiYosys: a count never wraps, and a push onto a
full queue always raises the overflow error (it is never lost silently).

The harness drives every queue's ``push``/``pop`` from free inputs and assumes what the issue logic
guarantees (``hw/engine/issue.py``): a pop only from a non-empty queue. Against an unbounded shadow
count it asserts, for each queue of ``isa.QUEUES``:

- ``count <= depth`` always;
- a push onto a full queue (without a pop in the same cycle) raises ``overflow`` that cycle;
- until the first overflow, ``count`` equals the shadow count (pushes minus pops).

Proved by k-induction (``prove`` mode), the same flow (``sby.prove``) as ``stream_props``. Run as
``python -m onda.sim.formal.token_props`` (part of ``make formal``).
"""

from __future__ import annotations

import sys

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from onda.hw.isa import QUEUES

from .sby import print_row, prove

DEPTH = 3  # small, so the proof sees full queues within the induction depth
PROOF_DEPTH = 8


class TokenHarness(wiring.Component):
    """Free ``push_<q>``/``pop_<q>`` inputs into ``dut`` (a ``TokenQueues``), with the properties above."""

    def __init__(self, dut):
        self.dut = dut
        super().__init__({**{f"push_{q}": In(1) for q in QUEUES}, **{f"pop_{q}": In(1) for q in QUEUES}})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        m.submodules.dut = dut = self.dut
        seen = Signal()  # an overflow has happened
        over_now = Signal()
        for q in QUEUES:
            push, pop = getattr(self, f"push_{q}"), getattr(self, f"pop_{q}")
            count = getattr(dut, f"count_{q}")
            m.d.comb += [getattr(dut, f"push_{q}").eq(push), getattr(dut, f"pop_{q}").eq(pop)]
            m.d.comb += Assume(~pop | (count != 0))
            shadow = Signal(range(2 * DEPTH + 4), name=f"shadow_{q}")
            m.d.sync += shadow.eq(shadow + push - pop)
            full_push = Signal(name=f"full_push_{q}")
            m.d.comb += full_push.eq(push & ~pop & (count == DEPTH))
            with m.If(full_push):
                m.d.comb += [over_now.eq(1), Assert(dut.overflow)]
            m.d.comb += Assert(count <= DEPTH)
            with m.If(~seen):
                m.d.comb += Assert(count == shadow)
        with m.If(over_now):
            m.d.sync += seen.eq(1)
        return m


def prove_tokens(dut_factory=None, name: str = "token_queues") -> tuple[bool, float, str]:
    from onda.hw.engine.tokens import TokenQueues

    factory = dut_factory or (lambda: TokenQueues(DEPTH))
    return prove(name, lambda: TokenHarness(factory()), PROOF_DEPTH)


def main() -> int:
    ok, seconds, tail = prove_tokens()
    what = "count never wraps; a full push raises overflow (proof)"
    print_row("token_queues", what, ok, seconds, "token_queues", tail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
