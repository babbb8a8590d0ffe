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

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.engine.buffers import ByteReadSignature, addr_bits
from onda.hw.engine.errors import EngineError
from onda.hw.engine.load_dma import DIGIT_BITS, SaturatingProduct
from onda.hw.engine.memory_port import MAX_BURST, MemoryPortSignature

__all__ = ["CHECK_CYCLES", "StoreDMA", "check_cycles", "store_cycles"]

_Y_BITS = isa.field_range(isa.Opcode.STORE, "y_size")[1].bit_length()  # 16


def check_cycles(digit_bits: int = DIGIT_BITS) -> int:
    """Cycles between taking a STORE and starting it: one per ``digit_bits`` of ``y_size`` (16
    bits), then one to compare."""
    return -(-_Y_BITS // digit_bits) + 1


CHECK_CYCLES = check_cycles()


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


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
    N = sum(_ceil((f["dram_addr"] + j * f["dram_stride"]) % P + x, P) for j in range(y))
    return 2 + check_cycles(digit_bits) + L + 1 + N


class StoreDMA(wiring.Component):
    """Executes STORE instructions (``hw/ISA.md``) from OUT or ACT over a memory port.

    Parameters
    ----------
    cfg : EngineConfig
        ``mem_port_bits`` (P = bytes per beat), ``mem_size_bytes``, the OUT and ACT sizes.
    digit_bits : int
        Multiplier bits per cycle of the range check (1..8): fewer adders or fewer cycles.

    Members
    -------
    cmd : In(stream.Signature(isa.field_layout(Opcode.STORE)))
        Taken when idle (``ready`` is high exactly then, and never after an error).
    done : Out(1)
        One-cycle pulse: the memory has taken every write beat of the instruction.
    error : Out(EngineError)
        Sticky: ``BAD_BUFFER``, ``BUFFER_RANGE`` or ``MEMORY_RANGE``.
    mem : Out(MemoryPortSignature(P))
        Writes only (``rdata.ready`` is low).
    act_r : Out(ByteReadSignature(P, addr_bits(cfg.act_bytes)))
        To ACT's ``r_store``; ``en`` only while a STORE from ACT runs.
    out_r : Out(ByteReadSignature(P, addr_bits(cfg.out_bytes)))
        To OUT's ``r_store``.
    """

    def __init__(self, cfg, digit_bits: int = DIGIT_BITS):
        P = cfg.mem_port_bits // 8
        if P < 1 or P & (P - 1) or P * 8 != cfg.mem_port_bits:
            raise ValueError(f"StoreDMA: mem_port_bits must be 8 times a power of two, got {cfg.mem_port_bits}")
        if not isinstance(digit_bits, int) or not 1 <= digit_bits <= 8:
            raise ValueError(f"StoreDMA: digit_bits must be 1..8, got {digit_bits!r}")
        self.cfg, self.P, self.digit_bits = cfg, P, digit_bits
        self.check_cycles = check_cycles(digit_bits)
        super().__init__({
            "cmd": In(stream.Signature(isa.field_layout(isa.Opcode.STORE))),
            "done": Out(1),
            "error": Out(EngineError),
            "mem": Out(MemoryPortSignature(P)),
            "act_r": Out(ByteReadSignature(P, addr_bits(cfg.act_bytes))),
            "out_r": Out(ByteReadSignature(P, addr_bits(cfg.out_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, P = self.cfg, self.P
        lp = (P - 1).bit_length()
        f = Signal(isa.field_layout(isa.Opcode.STORE))
        Buffer = isa.Buffer

        kb = max(cfg.act_bytes, cfg.out_bytes).bit_length() + 1
        km = cfg.mem_size_bytes.bit_length() + 1
        ab, am = kb + 1, km + 1
        size = Signal(kb)
        m.d.comb += size.eq(Mux(f.buffer == Buffer.ACT, cfg.act_bytes, cfg.out_bytes))

        # -- shift-add multiplier: y*x and (y-1)*stride, saturating past the buffer / memory ---
        p_total = SaturatingProduct("total", _Y_BITS, kb, self.digit_bits)
        p_span = SaturatingProduct("span", _Y_BITS, km, self.digit_bits)
        total, span = p_total.acc, p_span.acc
        count = Signal(range(self.check_cycles + 1))

        # -- write command issuer -------------------------------------------------------------
        iss_go, iss_busy = Signal(), Signal()
        iss_row = Signal(_Y_BITS)
        iss_addr, iss_beat = Signal(am), Signal(am)
        iss_left = Signal(km)
        row_beats = lambda a: (a[:lp] + f.x_size + (P - 1)) >> lp if lp else f.x_size  # noqa: E731
        cmd = self.mem.cmd
        burst = Signal(16)
        m.d.comb += burst.eq(Mux(iss_left > MAX_BURST, MAX_BURST, iss_left))
        with m.If(cmd.ready):
            m.d.sync += cmd.valid.eq(0)
        with m.If(iss_go):
            m.d.sync += [iss_busy.eq(1), iss_row.eq(0), iss_addr.eq(f.dram_addr),
                         iss_beat.eq(f.dram_addr & ~Const(P - 1, 32)), iss_left.eq(row_beats(f.dram_addr))]
        with m.Elif(iss_busy & (~cmd.valid | cmd.ready)):
            m.d.sync += [cmd.valid.eq(1), cmd.payload.addr.eq(iss_beat), cmd.payload.beats.eq(burst),
                         cmd.payload.write.eq(1)]
            with m.If(iss_left == burst):
                nxt = iss_addr + f.dram_stride
                m.d.sync += [iss_row.eq(iss_row + 1), iss_addr.eq(nxt),
                             iss_beat.eq(nxt & ~Const(P - 1, am)), iss_left.eq(row_beats(nxt))]
                with m.If(iss_row + 1 == f.y_size):
                    m.d.sync += iss_busy.eq(0)
            with m.Else():
                m.d.sync += [iss_beat.eq(iss_beat + burst * P), iss_left.eq(iss_left - burst)]

        # -- data: read stage (buffer port) and the wdata register ----------------------------
        busy = Signal()  # beats remain to be read
        d_row = Signal(_Y_BITS)
        d_first = Signal()
        d_off = Signal(max(1, lp))
        d_addr = Signal(ab)  # buffer address of the next read
        d_row_start = Signal(ab)
        d_left = Signal(km)
        d_mem = Signal(am)
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
            m.d.comb += [port.addr.eq(d_addr), port.en.eq(read & (f.buffer == which))]
        rd = Signal(8 * P)
        m.d.comb += rd.eq(Mux(f.buffer == Buffer.ACT, self.act_r.data.as_value(), self.out_r.data.as_value()))
        m.d.comb += wdata.payload.data.eq((rd << (q_shift * 8))[:8 * P] if lp else rd)
        for i in range(P):
            m.d.comb += wdata.payload.mask[i].eq((i >= q_shift) & (i < q_shift + q_n))

        avail = Signal(range(P + 1))
        nbytes = Signal(range(P + 1))
        m.d.comb += [avail.eq(Mux(d_first, P - d_off, P) if lp else P),
                     nbytes.eq(Mux(d_left < avail, d_left, avail))]
        row_end = Signal()
        m.d.comb += row_end.eq(d_left == nbytes)
        with m.If(advance):
            m.d.sync += [wdata.valid.eq(busy), q_shift.eq(Mux(d_first, d_off, 0)), q_n.eq(nbytes),
                         q_last.eq(row_end & (d_row + 1 == f.y_size))]
        with m.If(read):
            with m.If(row_end):
                nxt = d_mem + f.dram_stride
                m.d.sync += [d_row.eq(d_row + 1), d_first.eq(1), d_left.eq(f.x_size), d_mem.eq(nxt),
                             d_off.eq(nxt[:lp] if lp else 0),
                             d_addr.eq(d_row_start + f.x_size), d_row_start.eq(d_row_start + f.x_size)]
                with m.If(d_row + 1 == f.y_size):
                    m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [d_first.eq(0), d_left.eq(d_left - nbytes), d_addr.eq(d_addr + nbytes)]

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
                    m.d.comb += iss_go.eq(1)
                    m.d.sync += [busy.eq(1), d_row.eq(0), d_first.eq(1), d_left.eq(f.x_size), d_mem.eq(f.dram_addr),
                                 d_off.eq(f.dram_addr[:lp] if lp else 0), d_addr.eq(f.sram_addr),
                                 d_row_start.eq(f.sram_addr)]
                    m.next = "RUN"
                with m.Else():
                    m.next = "DONE"
            with m.State("RUN"):
                with m.If(wdata.valid & wdata.ready & q_last):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
            with m.State("ERROR"):
                pass
        return m
