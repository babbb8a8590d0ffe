"""What every board top holds between its clock and its memory: the engine, the UART, the host
link's gateware end, and the arbiter that lets the link and the engine share one memory port.

::

    uart rx pin -> UartRx -> LinkEndpoint -> csr -> Engine
    uart tx pin <- UartTx <-      |  mem               | mem
                                  +-> MemoryArbiter <--+
                                          | mem -> the board's memory (SDRAM controller, SPRAM)

The link answers BUSY to memory traffic while the engine runs (``hw/boards/LINK.md``), so the
arbiter only ever serves one of them at a time in practice; it keeps the two ports honest anyway.
A board top adds its PLL, its memory and its pins; the Verilator board simulation
(``onda.sim.verilator.board_top``) puts the same core on the same memories.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from onda.hw.config import EngineConfig
from onda.hw.engine.engine import Engine
from onda.hw.engine.memory_port import MemoryArbiter, MemoryPortSignature

from .link import LinkEndpoint
from .link_protocol import GAP_BITS
from .uart import UartRx, UartTx

__all__ = ["BoardCore", "GATEWARE_VERSION"]

# What IDENTIFY reports: bumped when the board tops' behaviour changes (2: WGT layout; 3: the link
# gives a begun frame up after GAP_BITS of silence).
GATEWARE_VERSION = 3


class BoardCore(wiring.Component):
    """Engine + link + UART for engine configuration ``cfg``, the UART at ``divisor`` clocks a bit.

    Members
    -------
    rx : In(1), tx : Out(1)
        The UART pins (idle high), 8N1.
    mem : Out(MemoryPortSignature(mem_port_bits // 8))
        The board's memory, shared by the link (host reads and writes) and the engine.
    running, done, failed : Out(1)
        The engine's state (LEDs).
    framing_errors : Out(16)
        Bytes the UART received with a bad stop bit or could not hand on.
    """

    def __init__(self, cfg: EngineConfig, divisor: int):
        self.cfg, self.divisor = cfg, divisor
        self.P = cfg.mem_port_bits // 8
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "mem": Out(MemoryPortSignature(self.P)),
            "running": Out(1), "done": Out(1), "failed": Out(1),
            "framing_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.engine = engine = Engine(cfg)
        m.submodules.link = link = LinkEndpoint(cfg.name, bytes.fromhex(cfg.fingerprint), GATEWARE_VERSION,
                                                cfg.mem_size_bytes, self.P, gap=GAP_BITS * self.divisor)
        m.submodules.uart_rx = urx = UartRx(self.divisor)
        m.submodules.uart_tx = utx = UartTx(self.divisor)
        m.submodules.arbiter = arbiter = MemoryArbiter(2, self.P)

        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), self.framing_errors.eq(urx.framing_errors)]
        wiring.connect(m, urx.data, link.rx)
        wiring.connect(m, link.tx, utx.data)
        wiring.connect(m, link.csr, engine.csr)
        wiring.connect(m, link.mem, arbiter.clients[0])
        wiring.connect(m, engine.mem, arbiter.clients[1])
        wiring.connect(m, arbiter.mem, wiring.flipped(self.mem))
        running = Signal()
        m.d.comb += [running.eq(engine.running), link.running.eq(running), self.running.eq(running),
                     self.done.eq(engine.done), self.failed.eq(engine.failed)]
        return m
