"""The ULX3S (ECP5-85F) board top: the 25 MHz oscillator through the PLL to the engine's clock,
the SDRAM controller on the board's 32 MB chip, the host link on the FT231X's UART, LEDs.

LEDs: 0 PLL locked, 1 SDRAM initialised, 2 engine running, 3 done, 4 stopped on an error,
5 a UART framing error seen, 6 the rx line active (low), 7 off.

The SDRAM's clock is the engine clock inverted (a DDR output register driving 0 then 1), so the
chip samples commands and write data in the middle of the cycle the controller drives them.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Elaboratable, Module
from amaranth.lib import wiring

from onda.hw.config import EngineConfig

from .board_core import BoardCore
from .pll import ecp5_pll, ecp5_pll_instance
from .sdram import SdramController
from .sdram_chips import MT48LC16M16A2_6A
from .uart import uart_divisor

__all__ = ["BAUD", "Ulx3sTop"]

BAUD = 3_000_000  # the FT231X's fastest rate
OSC_MHZ = 25.0


class Ulx3sTop(Elaboratable):
    """The whole engine of configuration ``cfg`` (``ulx3s-85f``) at ``cfg.clock_mhz``."""

    chip = MT48LC16M16A2_6A  # the slowest of the chips ULX3S boards ship: its timings serve them all

    def __init__(self, cfg: EngineConfig, baud: int = BAUD):
        self.cfg, self.baud = cfg, baud
        self.pll = ecp5_pll(OSC_MHZ, cfg.clock_mhz)
        self.divisor = uart_divisor(self.pll.fout_mhz, baud)

    def elaborate(self, platform):
        m = Module()
        locked = ecp5_pll_instance(m, self.pll, platform.request("clk25", 0).i, platform=platform)

        m.submodules.core = core = BoardCore(self.cfg, self.divisor)
        m.submodules.sdram = ctrl = SdramController(self.chip, self.pll.fout_mhz)
        wiring.connect(m, core.mem, ctrl.port)

        # The pins: the resource's command pins are active high (PinsN), the controller's active low.
        sdram = platform.request("sdram", 0, xdr={"clk": 2})
        p = ctrl.pins
        m.d.comb += [
            sdram.clk.o_clk.eq(ClockSignal("sync")), sdram.clk.o0.eq(0), sdram.clk.o1.eq(1),
            sdram.clk_en.o.eq(p.cke), sdram.cs.o.eq(~p.cs_n), sdram.ras.o.eq(~p.ras_n),
            sdram.cas.o.eq(~p.cas_n), sdram.we.o.eq(~p.we_n), sdram.ba.o.eq(p.ba), sdram.a.o.eq(p.a),
            sdram.dqm.o.eq(p.dqm), sdram.dq.o.eq(p.dq_o), sdram.dq.oe.eq(p.dq_oe), p.dq_i.eq(sdram.dq.i),
        ]

        uart = platform.request("uart", 0)
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx),
                     platform.request("uart_tx_enable", 0).o.eq(1)]

        seen_error = core.framing_errors != 0
        for i, lit in enumerate((locked, ctrl.ready, core.running, core.done, core.failed, seen_error, ~core.rx, 0)):
            m.d.comb += platform.request("led", i).o.eq(lit)
        return m
