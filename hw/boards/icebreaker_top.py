"""The iCEBreaker (iCE40UP5K) board top: the 12 MHz oscillator's pad through the PLL to the
engine's clock, the four SPRAM blocks as the engine's memory, the host link on the FT2232H's
channel B UART, the green LED while the engine runs and the red one when it stopped on an error.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from onda.hw.config import EngineConfig

from .board_core import BoardCore
from .pll import ice40_pll, ice40_pll_instance
from .spram import SpramMemory
from .uart import uart_divisor

__all__ = ["BAUD", "IcebreakerTop"]

BAUD = 3_000_000  # the FT2232H's channel B at 3 Mbaud
OSC_MHZ = 12.0


class IcebreakerTop(Elaboratable):
    """The whole engine of configuration ``cfg`` (``icebreaker``) at ``cfg.clock_mhz``."""

    def __init__(self, cfg: EngineConfig, baud: int = BAUD):
        self.cfg, self.baud = cfg, baud
        self.pll = ice40_pll(OSC_MHZ, cfg.clock_mhz)
        self.divisor = uart_divisor(self.pll.fout_mhz, baud)

    def elaborate(self, platform):
        m = Module()
        # SB_PLL40_PAD takes the oscillator's pad itself: the pin is requested raw.
        ice40_pll_instance(m, self.pll, platform.request("clk12", 0, dir="-").io, platform=platform)
        m.submodules.core = core = BoardCore(self.cfg, self.divisor)
        m.submodules.memory = mem = SpramMemory(use_spram=True)
        wiring.connect(m, core.mem, mem.port)
        uart = platform.request("uart", 0)
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx),
                     platform.request("led_g", 0).o.eq(core.running | core.done),
                     platform.request("led_r", 0).o.eq(core.failed | (core.framing_errors != 0))]
        return m
