"""What the load and the store DMA share as components: their outside and their constructor.

Each DMA (``load_dma.LoadDMA``, ``store_dma.StoreDMA``) executes one instruction of its opcode
at a time, taken from a ``cmd`` stream, over a memory port of P bytes a beat: it range-checks the
instruction (``range_check``), moves its rows (``dma_rows``), pulses ``done``, or refuses it with
a sticky ``error``. :class:`DMA` holds the members and parameter checks that makes common, so a
DMA states only its buffer ports and its own timing.
"""

from __future__ import annotations

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.engine import range_check
from onda.hw.engine.errors import EngineError
from onda.hw.engine.memory_port import MemoryPortSignature

__all__ = ["DMA", "port_bytes"]


def port_bytes(name: str, cfg) -> int:
    """P, the memory port's bytes a beat, from ``cfg.mem_port_bits``.

    Raises
    ------
    ValueError
        ``"{name}: mem_port_bits must be 8 times a power of two, got …"``: the DMAs split rows
        into beats by masking and shifting the low ``log2(P)`` address bits.
    """
    P = cfg.mem_port_bits // 8
    if P < 1 or P & (P - 1) or P * 8 != cfg.mem_port_bits:
        raise ValueError(f"{name}: mem_port_bits must be 8 times a power of two, got {cfg.mem_port_bits}")
    return P


class DMA(wiring.Component):
    """A DMA's outside: the members every DMA has, ahead of its buffer ports.

    A subclass sets ``opcode`` (the instruction it executes) and ``multiplier_bits`` (the widest
    multiplier of its range check, which sets ``check_cycles``), and defines
    :meth:`buffer_ports`. Errors name the subclass (``"LoadDMA: …"``).

    Parameters
    ----------
    cfg : EngineConfig
        ``mem_port_bits`` (P = bytes per beat, 8 times a power of two), and what the subclass reads.
    digit_bits : int
        Multiplier bits per cycle of the range check (1..8): fewer adders or fewer cycles.

    Members
    -------
    cmd : In(stream.Signature(isa.field_layout(opcode)))
        Taken when idle (``ready`` is high exactly then, and never after an error).
    done : Out(1)
        One-cycle pulse: the instruction is over (each DMA says at which point).
    error : Out(EngineError)
        Sticky: the first refusal's code; no command is taken after it.
    mem : Out(MemoryPortSignature(P))
    """

    opcode: isa.Opcode
    multiplier_bits: int

    def __init__(self, cfg, digit_bits: int = range_check.DIGIT_BITS):
        name = type(self).__name__
        self.cfg, self.P = cfg, port_bytes(name, cfg)
        self.digit_bits = range_check.check_digit_bits(name, digit_bits)
        self.check_cycles = range_check.check_cycles(self.multiplier_bits, digit_bits)
        super().__init__({
            "cmd": In(stream.Signature(isa.field_layout(self.opcode))),
            "done": Out(1),
            "error": Out(EngineError),
            "mem": Out(MemoryPortSignature(self.P)),
            **self.buffer_ports(),
        })

    def buffer_ports(self) -> dict:
        """The subclass's members beyond the four above (``self.cfg`` and ``self.P`` are set)."""
        raise NotImplementedError

    def end_states(self, m):
        """The last two states of the DMA's FSM (call within its ``with m.FSM()``): ``DONE``
        pulses ``done`` for its one cycle and goes back to ``IDLE``; ``ERROR`` (entered with
        ``error`` set) is never left, so a refused instruction is the last one taken."""
        with m.State("DONE"):
            m.d.comb += self.done.eq(1)
            m.next = "IDLE"
        with m.State("ERROR"):
            pass
