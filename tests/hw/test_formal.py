"""SymbiYosys proofs of the datapath blocks' stream handshakes (``onda.sim.formal``), and two
deliberately broken blocks the same harness must refute (so the proofs are not vacuous)."""

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from onda.sim.formal.stream_props import StreamHarness, blocks, prove

BLOCKS = {name: (factory, depth) for name, factory, depth in blocks()}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_stream_handshake_proved(name):
    factory, depth = BLOCKS[name]
    ok, seconds, tail = prove(f"{name}-handshake", lambda: factory("handshake"), depth)
    assert ok, f"{name}: proof failed\n{tail}"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_no_output_without_input_bmc(name):
    factory, depth = BLOCKS[name]
    ok, seconds, tail = prove(f"{name}-causality", lambda: factory("causality"), depth + 6, mode="bmc")
    assert ok, f"{name}: bounded check failed\n{tail}"


class DropsWhenStalled(wiring.Component):
    """Broken on purpose: its output register follows the input even while stalled."""

    i: In(stream.Signature(signed(8)))
    o: Out(stream.Signature(signed(8)))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


class SpeaksFirst(wiring.Component):
    """Broken on purpose: valid out of reset, before any input."""

    i: In(stream.Signature(signed(8)))
    o: Out(stream.Signature(signed(8)))

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        v = Signal(init=1)
        with m.If(en):
            m.d.sync += [v.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        m.d.comb += self.o.valid.eq(v)
        return m


@pytest.mark.parametrize("broken,check,mode", [(DropsWhenStalled, "handshake", "prove"),
                                               (SpeaksFirst, "causality", "bmc")])
def test_broken_blocks_are_refuted(broken, check, mode):
    ok, _, tail = prove(f"broken_{broken.__name__}", lambda: StreamHarness(broken(), check=check), 4,
                        mode=mode)
    assert not ok and "FAIL" in tail, tail
