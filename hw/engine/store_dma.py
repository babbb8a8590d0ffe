"""The store DMA: executes STORE, OUT or ACT -> memory.

``Machine.store`` (``onda.sim.emulator.functional``) is the semantics: the ``y_size * x_size``
bytes at ``sram_addr`` (dense rows of ``x_size``) go to ``y_size`` rows at ``dram_addr``,
``dram_stride`` apart.

How it runs, one instruction at a time:

1. **Check** (``check_cycles(digit_bits)`` cycles, 5 by default): a shift-add multiplier
   (``digit_bits`` a cycle) forms ``y_size*x_size`` and
   ``(y_size - 1)*dram_stride``, then the refusals in the emulator's order: a buffer other than
   OUT or ACT (``BAD_BUFFER``), a read past the buffer (``BUFFER_RANGE``), a write past
   ``cfg.mem_size_bytes`` (``MEMORY_RANGE``; checked whenever ``y_size`` is nonzero, as the
   emulator does). A refused instruction issues no memory command.
2. **Write commands** (in the background from then on): each row as bursts of the whole P-byte
   beats covering it, at most ``MAX_BURST`` beats each, one command a cycle.
3. **Data**: the buffer's ``store`` port reads P bytes a cycle (the first beat of a row at the
   row's start, shifted up by the row's offset within its beat; then every P bytes), into a
   ``wdata`` register; bytes outside the row are masked off. The read port's output holds while
   ``wdata`` is stalled, so one beat a cycle is sustained.

``done`` pulses the cycle after the memory took the last write beat.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from onda.hw import isa
from onda.hw.engine import range_check
from onda.hw.engine.buffers import ByteReadSignature, addr_bits
from onda.hw.engine.dma import DMA
from onda.hw.engine.dma_rows import RowBursts, RowCursor, row_beats
from onda.hw.engine.errors import EngineError
from onda.hw.engine.range_check import DIGIT_BITS, SaturatingProduct

__all__ = ["CHECK_CYCLES", "StoreDMA", "check_cycles", "store_cycles"]

_Y_BITS = isa.field_range(isa.Opcode.STORE, "y_size")[1].bit_length()  # 16


def check_cycles(digit_bits: int = DIGIT_BITS) -> int:
    """Cycles between taking a STORE and starting it: one per ``digit_bits`` of ``y_size`` (16
    bits), then one to compare."""
    return range_check.check_cycles(_Y_BITS, digit_bits)


CHECK_CYCLES = check_cycles()


def store_cycles(cfg, f: dict, latency: int | None = None, digit_bits: int = DIGIT_BITS) -> int:
    """Cycles the RTL takes for a STORE with fields ``f`` and no stalls, from the cycle its
    command transfers to its ``done`` pulse, both included, with the memory taking a command's
    first write beat ``latency`` cycles after the command (default ``cfg.mem_latency_cycles``;
    add 1 for the arbiter's register), one beat a cycle:

    ``2 + check_cycles(digit_bits) + (latency + 1 + N if y_size and x_size else 0)``,
    ``N = sum over rows j of ceil((addr_j % P + x_size) / P)`` (``addr_j = dram_addr + j*dram_stride``).
    """
    P = cfg.mem_port_bits // 8
    L = cfg.mem_latency_cycles if latency is None else latency
    y, x = f["y_size"], f["x_size"]
    if not (y and x):
        return 2 + check_cycles(digit_bits)
    N = row_beats(P, f["dram_addr"], f["dram_stride"], x, y)
    return 2 + check_cycles(digit_bits) + L + 1 + N


class StoreDMA(DMA):
    """Executes STORE instructions (``hw/ISA.md``) from OUT or ACT over a memory port.

    Parameters
    ----------
    cfg : EngineConfig
        ``mem_port_bits`` (P = bytes per beat), ``mem_size_bytes``, the OUT and ACT sizes.
    digit_bits : int
        Multiplier bits per cycle of the range check (1..8): fewer adders or fewer cycles.

    Members
    -------
    cmd, done, error, mem
        As every :class:`~onda.hw.engine.dma.DMA`'s; ``cmd`` of STOREs, ``done`` once the memory
        has taken every write beat of the instruction, ``error`` ``BAD_BUFFER``, ``BUFFER_RANGE``
        or ``MEMORY_RANGE``, ``mem`` writes only (``rdata.ready`` is low).
    act_r : Out(ByteReadSignature(P, addr_bits(cfg.act_bytes)))
        To ACT's ``r_store``; ``en`` only while a STORE from ACT runs.
    out_r : Out(ByteReadSignature(P, addr_bits(cfg.out_bytes)))
        To OUT's ``r_store``.
    """

    opcode = isa.Opcode.STORE
    multiplier_bits = _Y_BITS

    def buffer_ports(self):
        cfg, P = self.cfg, self.P
        return {
            "act_r": Out(ByteReadSignature(P, addr_bits(cfg.act_bytes))),
            "out_r": Out(ByteReadSignature(P, addr_bits(cfg.out_bytes))),
        }

    def elaborate(self, platform):
        m = Module()
        cfg, P = self.cfg, self.P
        lp = (P - 1).bit_length()
        f = Signal(isa.field_layout(isa.Opcode.STORE))
        Buffer = isa.Buffer

        kb = max(cfg.act_bytes, cfg.out_bytes).bit_length() + 1
        km = cfg.mem_size_bytes.bit_length() + 1
        ab = kb + 1
        size = Signal(kb)
        m.d.comb += size.eq(Mux(f.buffer == Buffer.ACT, cfg.act_bytes, cfg.out_bytes))

        # -- shift-add multiplier: y*x and (y-1)*stride, saturating past the buffer / memory ---
        p_total = SaturatingProduct("total", _Y_BITS, kb, self.digit_bits)
        p_span = SaturatingProduct("span", _Y_BITS, km, self.digit_bits)
        total, span = p_total.acc, p_span.acc
        count = Signal(range(self.check_cycles + 1))

        # -- write commands: every row's bursts, in the background once started ---------------
        m.submodules.bursts = bursts = RowBursts(P, cfg.mem_size_bytes, write=True)
        m.d.comb += [bursts.addr.eq(f.dram_addr), bursts.stride.eq(f.dram_stride), bursts.length.eq(f.x_size),
                     bursts.rows.eq(f.y_size)]
        wiring.connect(m, bursts.cmd, wiring.flipped(self.mem.cmd))

        # -- data: read stage (buffer port) and the wdata register ----------------------------
        busy = Signal()  # beats remain to be read
        walk = RowCursor(P, ab, cfg.mem_size_bytes)  # the beat the read stage reads next
        m.d.comb += walk.comb(f.y_size)
        # the beat whose bytes the read port shows now
        q_shift = Signal(max(1, lp))
        q_n = Signal(range(P + 1))
        q_last = Signal()
        wdata = self.mem.wdata
        advance = Signal()
        m.d.comb += advance.eq(~wdata.valid | wdata.ready)
        read = Signal()
        m.d.comb += read.eq(advance & busy)
        for port, which in ((self.act_r, Buffer.ACT), (self.out_r, Buffer.OUT)):
            m.d.comb += [port.addr.eq(walk.addr), port.en.eq(read & (f.buffer == which))]
        rd = Signal(8 * P)
        m.d.comb += rd.eq(Mux(f.buffer == Buffer.ACT, self.act_r.data.as_value(), self.out_r.data.as_value()))
        m.d.comb += wdata.payload.data.eq((rd << (q_shift * 8))[:8 * P] if lp else rd)
        for i in range(P):
            m.d.comb += wdata.payload.mask[i].eq((i >= q_shift) & (i < q_shift + q_n))

        with m.If(advance):
            m.d.sync += [wdata.valid.eq(busy), q_shift.eq(Mux(walk.first, walk.off, 0)), q_n.eq(walk.nbytes),
                         q_last.eq(walk.last)]
        with m.If(read):
            walk.step(m, length=f.x_size, stride=f.dram_stride, pitch=f.x_size)
            with m.If(walk.last):
                m.d.sync += busy.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(self.error == EngineError.NONE)
                with m.If(self.cmd.valid & (self.error == EngineError.NONE)):
                    p = self.cmd.payload
                    m.d.sync += [f.eq(p), *p_total.load(p.y_size, p.x_size),
                                 *p_span.load(Mux(p.y_size == 0, 0, p.y_size - 1), p.dram_stride), count.eq(0)]
                    m.next = "MULTIPLY"
            with m.State("MULTIPLY"):
                m.d.sync += [count.eq(count + 1), *p_total.step(), *p_span.step()]
                with m.If(count == self.check_cycles - 2):
                    m.next = "CHECK"
            with m.State("CHECK"):
                moves = (f.y_size != 0) & (f.x_size != 0)
                with m.If((f.buffer != Buffer.OUT) & (f.buffer != Buffer.ACT)):
                    m.d.sync += self.error.eq(EngineError.BAD_BUFFER)
                    m.next = "ERROR"
                with m.Elif(p_total.over | (f.sram_addr + total > size)):
                    m.d.sync += self.error.eq(EngineError.BUFFER_RANGE)
                    m.next = "ERROR"
                with m.Elif((f.y_size != 0) & (p_span.over | (f.dram_addr + span + f.x_size > cfg.mem_size_bytes))):
                    m.d.sync += self.error.eq(EngineError.MEMORY_RANGE)
                    m.next = "ERROR"
                with m.Elif(moves):
                    m.d.comb += bursts.go.eq(1)
                    m.d.sync += [busy.eq(1), *walk.start(f.dram_addr, f.sram_addr, f.x_size)]
                    m.next = "RUN"
                with m.Else():
                    m.next = "DONE"
            with m.State("RUN"):
                with m.If(wdata.valid & wdata.ready & q_last):
                    m.next = "DONE"
            self.end_states(m)
        return m
