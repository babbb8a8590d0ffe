"""SymbiYosys proof of the token counters (``onda.sim.formal.token_props``), and a broken counter the
same harness must refute (so the proof is not vacuous)."""

from amaranth.hdl import Module

from onda.hw.engine.tokens import TokenQueues
from onda.hw.isa import QUEUES
from onda.sim.formal.token_props import DEPTH, prove_tokens


class WrapsSilently(TokenQueues):
    """Broken on purpose: a push onto a full queue wraps the count and raises nothing."""

    def elaborate(self, platform):
        m = Module()
        for q in QUEUES:
            push, pop, count = getattr(self, f"push_{q}"), getattr(self, f"pop_{q}"), getattr(self, f"count_{q}")
            m.d.sync += count.eq(count + push - pop)
        return m


def test_token_counters_proved():
    ok, seconds, tail = prove_tokens()
    assert ok, f"token counter proof failed\n{tail}"


def test_broken_counter_refuted():
    ok, seconds, tail = prove_tokens(lambda: WrapsSilently(DEPTH), name="token_queues_broken")
    assert not ok, "the harness accepted a counter that loses pushes"
