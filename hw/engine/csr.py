"""The control and status registers (``registers.REGISTERS``) on a minimal word bus.

The bus is what every host front end drives: the simulation harnesses directly, a board's UART
link through its bridge. Reads are combinational (``r_data`` shows the register at ``addr``);
writes take effect at the clock edge. Only ``CTRL``, ``PROG_ADDR`` and ``PROG_COUNT`` are
writable; writes elsewhere are ignored.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .registers import REGISTERS, address_of

__all__ = ["CsrBusSignature", "CsrFile"]

ADDR_BITS = 6


class CsrBusSignature(wiring.Signature):
    """The register bus seen from the host: ``addr`` (word address), ``w_en``/``w_data``, ``r_data``."""

    def __init__(self):
        super().__init__({"addr": Out(ADDR_BITS), "w_en": Out(1), "w_data": Out(32), "r_data": In(32)})


class CsrFile(wiring.Component):
    """The register file between the host bus and the engine.

    Members
    -------
    bus : In(CsrBusSignature())
    start : Out(1)
        One-cycle pulse: 1 written to ``CTRL``.
    prog_addr, prog_count : Out(32)
        As last written.
    <NAME> : In(32), for every read-only register of ``REGISTERS`` except CYCLES_HI
        The value the engine shows (``status``, ``error``, ``cycles`` (64 bits), counters).
    """

    def __init__(self):
        members = {"bus": In(CsrBusSignature()), "start": Out(1), "prog_addr": Out(32), "prog_count": Out(32),
                   "cycles": In(64)}
        for r in REGISTERS:
            if not r.writable and r.name not in ("CYCLES_LO", "CYCLES_HI"):
                members[r.name.lower()] = In(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        cycles_hi = Signal(32)  # latched by a read of CYCLES_LO, so the two halves agree
        with m.Switch(bus.addr):
            for r in REGISTERS:
                with m.Case(r.address):
                    if r.name == "PROG_ADDR":
                        m.d.comb += bus.r_data.eq(self.prog_addr)
                    elif r.name == "PROG_COUNT":
                        m.d.comb += bus.r_data.eq(self.prog_count)
                    elif r.name == "CTRL":
                        m.d.comb += bus.r_data.eq(0)
                    elif r.name == "CYCLES_LO":
                        m.d.comb += bus.r_data.eq(self.cycles[:32])
                        m.d.sync += cycles_hi.eq(self.cycles[32:])
                    elif r.name == "CYCLES_HI":
                        m.d.comb += bus.r_data.eq(cycles_hi)
                    else:
                        m.d.comb += bus.r_data.eq(getattr(self, r.name.lower()))
        with m.If(bus.w_en):
            with m.Switch(bus.addr):
                with m.Case(address_of("CTRL")):
                    m.d.comb += self.start.eq(bus.w_data[0])
                with m.Case(address_of("PROG_ADDR")):
                    m.d.sync += self.prog_addr.eq(bus.w_data)
                with m.Case(address_of("PROG_COUNT")):
                    m.d.sync += self.prog_count.eq(bus.w_data)
        return m
