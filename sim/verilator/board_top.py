"""A board top as the Verilator board simulation runs it: the boards' own core (engine, UART, host
link, arbiter: ``onda.hw.boards.board_core``) on the board's memory, a power-on reset, the UART
at ``SIM_DIVISOR`` clocks a bit, no PLL.

The memory is the board's: for SPRAM (iCEBreaker) the ``SpramMemory`` of the board top in its
simulation form (the same words, latency and FIFO); for SDR SDRAM (ULX3S) the same
``SdramController`` as the board top, whose pins are this top's ``sdram_*`` ports, served in C++
by the chip model (``sdram_chip.h``, the twin of ``onda.sim.board.sdram_model``). The harness
(``board_harness.cpp``) drives ``rx`` and reads ``tx`` a bit at a time, as the FTDI would.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring

from onda.hw.boards.board_core import BoardCore
from onda.hw.boards.sdram import SdramController
from onda.hw.boards.sdram_chips import MT48LC16M16A2_6A
from onda.hw.boards.spram import SpramMemory
from onda.hw.config import EngineConfig

from .sim_top import POWER_ON_RESET_CYCLES, power_on_reset

__all__ = ["BoardSimTop", "POWER_ON_RESET_CYCLES", "SDRAM_CHIP", "SIM_DIVISOR", "memory_kind"]

SIM_DIVISOR = 4  # UART clocks a bit in simulation (a board runs 8 at 24 MHz, 10 at 30 MHz: 3 Mbaud)
SDRAM_CHIP = MT48LC16M16A2_6A  # as the ULX3S top
_SDRAM_PINS = ("cke", "cs_n", "ras_n", "cas_n", "we_n", "ba", "a", "dqm", "dq_o", "dq_oe")


def memory_kind(cfg: EngineConfig) -> str:
    """``"spram"`` or ``"sdram"``: which memory the board of ``cfg`` has (its ``memory.kind``)."""
    kind = cfg.mem_kind.lower()
    if "spram" in kind:
        return "spram"
    if "sdram" in kind:
        return "sdram"
    raise ValueError(f"engine config {cfg.name!r}: no board memory for memory.kind {cfg.mem_kind!r} "
                     f"(the board simulation knows SPRAM and SDR SDRAM)")


class BoardSimTop(Elaboratable):
    """Ports: ``clk``, ``rx`` in, ``tx``, ``running``, ``done``, ``failed``, ``framing_errors`` out;
    with SDRAM also ``sdram_<pin>`` out (the controller's pins), ``sdram_dq_i`` in and
    ``sdram_ready`` out."""

    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        self.kind = memory_kind(cfg)
        self.clk, self.rx = Signal(name="clk"), Signal(init=1, name="rx")
        self.tx = Signal(init=1, name="tx")
        self.running, self.done, self.failed = Signal(name="running"), Signal(name="done"), Signal(name="failed")
        self.framing_errors = Signal(16, name="framing_errors")
        self.sdram = {}
        if self.kind == "sdram":
            proto = SdramController(SDRAM_CHIP, cfg.clock_mhz).pins.signature.members
            self.sdram = {n: Signal(proto[n].shape, name=f"sdram_{n}") for n in _SDRAM_PINS + ("dq_i",)}
            self.sdram_ready = Signal(name="sdram_ready")

    def ports(self) -> list[Signal]:
        extra = list(self.sdram.values()) + ([self.sdram_ready] if self.sdram else [])
        return [self.clk, self.rx, self.tx, self.running, self.done, self.failed, self.framing_errors, *extra]

    def elaborate(self, platform):
        m = Module()
        power_on_reset(m, self.clk)

        m.submodules.core = core = BoardCore(self.cfg, SIM_DIVISOR)
        m.d.comb += [core.rx.eq(self.rx), self.tx.eq(core.tx), self.running.eq(core.running),
                     self.done.eq(core.done), self.failed.eq(core.failed),
                     self.framing_errors.eq(core.framing_errors)]
        if self.kind == "spram":
            m.submodules.memory = mem = SpramMemory(use_spram=False)
            wiring.connect(m, core.mem, mem.port)
        else:
            m.submodules.sdram = ctrl = SdramController(SDRAM_CHIP, self.cfg.clock_mhz)
            wiring.connect(m, core.mem, ctrl.port)
            for n in _SDRAM_PINS:
                m.d.comb += self.sdram[n].eq(getattr(ctrl.pins, n))
            m.d.comb += [ctrl.pins.dq_i.eq(self.sdram["dq_i"]), self.sdram_ready.eq(ctrl.ready)]
        return m
