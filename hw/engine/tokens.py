"""The four dependency-token queues of the ISA (``isa.QUEUES``: l2c, c2l, c2s, s2c) as counters.

A token carries no data, so a queue is its occupancy: ``push`` adds one, ``pop`` takes one. The
issue logic pops only from a non-empty queue (it waits otherwise), so the error a counter can see
by itself is overflow: a push onto a full queue (``depth`` tokens outstanding) raises ``overflow``
and leaves the count unchanged. ``clear`` empties every queue (a new run).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from onda.hw.isa import QUEUES

__all__ = ["TokenQueues"]


class TokenQueues(wiring.Component):
    """Token counters, one per queue of ``isa.QUEUES``.

    Parameters
    ----------
    depth : int
        The most tokens a queue holds; a push beyond it is an overflow.

    Members
    -------
    push_<q>, pop_<q> : In(1)
        One token pushed / popped this cycle (both at once leave the count as it is).
    count_<q> : Out(range(depth + 1))
        Tokens in queue ``q``.
    overflow : Out(1)
        A push onto a full queue this cycle (combinational; the push is dropped).
    clear : In(1)
        Empty every queue.
    """

    def __init__(self, depth: int = 255):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"TokenQueues: depth must be a positive integer, got {depth!r}")
        self.depth = depth
        members = {"overflow": Out(1), "clear": In(1)}
        for q in QUEUES:
            members |= {f"push_{q}": In(1), f"pop_{q}": In(1), f"count_{q}": Out(range(depth + 1))}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        overflows = []
        for q in QUEUES:
            push, pop, count = getattr(self, f"push_{q}"), getattr(self, f"pop_{q}"), getattr(self, f"count_{q}")
            full = Signal(name=f"full_{q}")
            m.d.comb += full.eq(count == self.depth)
            over = Signal(name=f"over_{q}")
            m.d.comb += over.eq(push & ~pop & full)
            overflows.append(over)
            with m.If(self.clear):
                m.d.sync += count.eq(0)
            with m.Elif(push & ~pop & ~full):
                m.d.sync += count.eq(count + 1)
            with m.Elif(pop & ~push & (count != 0)):
                m.d.sync += count.eq(count - 1)
        m.d.comb += self.overflow.eq(Cat(*overflows).any())
        return m
