"""The engine as the Verilator harness simulates it: its own power-on reset, every input registered.

Verilator evaluates, on every ``eval()``, all the logic that depends combinationally on a top-level
input. The engine's reset and CSR strobes reach the next-state logic of nearly every register, so
driven from ports they put the whole design into that per-call region. ``SimTop`` moves them
behind registers: the reset comes from a power-on counter and each input port is sampled by a
reset-less register, so the engine sees in cycle *t* what the harness drove in cycle *t - 1*. The
harness (``engine_harness.cpp``) drives each input one cycle ahead, so the engine sees exactly
the memory and register traffic it would see driven directly; only the harness's own clocking
changes, never the engine's cycles.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from onda.hw.config import EngineConfig
from onda.hw.engine.engine import Engine

__all__ = ["SimTop", "POWER_ON_RESET_CYCLES", "power_on_reset"]

POWER_ON_RESET_CYCLES = 4


def power_on_reset(m: Module, clk: Signal) -> None:
    """Domain ``sync`` (the design's) clocked by ``clk`` and held in reset for the first
    ``POWER_ON_RESET_CYCLES`` by a counter in the reset-less domain ``por`` (which also clocks
    the input registers)."""
    m.domains.sync = ClockDomain()
    m.domains.por = ClockDomain(reset_less=True)
    m.d.comb += [ClockSignal("sync").eq(clk), ClockSignal("por").eq(clk)]
    count = Signal(range(POWER_ON_RESET_CYCLES + 1), init=POWER_ON_RESET_CYCLES)
    with m.If(count != 0):
        m.d.por += count.eq(count - 1)
    m.d.comb += ResetSignal("sync").eq(count != 0)


class SimTop(wiring.Component):
    """``Engine(cfg)`` with registered inputs and an internal reset: same ports, one input ``clk``."""

    def __init__(self, cfg: EngineConfig):
        self.engine = Engine(cfg)
        super().__init__({"clk": In(1), **self.engine.signature.members})

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        power_on_reset(m, self.clk)

        m.submodules.engine = engine = self.engine
        outer = {path: (member, value) for path, member, value in self.signature.flatten(self)}
        for path, _, inner in engine.signature.flatten(engine):
            member, port = outer[path]
            if member.flow == In:
                m.d.por += inner.eq(port)
            else:
                m.d.comb += port.eq(inner)
        return m
