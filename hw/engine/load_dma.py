"""The load DMA: executes LOAD, memory -> ACT / WGT / PARAM with the padding fill.

``Machine.load`` (``onda.sim.emulator.functional``) is the semantics: ``y_size`` rows of ``x_size``
bytes at ``dram_addr``, ``dram_stride`` apart, stored densely at ``sram_addr`` as ``R = pad_top +
y_size + pad_bottom`` rows of ``W = pad_left + x_size + pad_right`` bytes, every byte outside the
data rows ``pad_value``.

How it runs, one instruction at a time:

1. **Check** (``check_cycles(digit_bits)`` cycles, 6 by default): a shift-add multiplier
   (``digit_bits`` a cycle) forms ``R*W``, ``pad_top*W``,
   ``pad_bottom*W`` and ``(y_size - 1)*dram_stride`` (no DSP block needed: the iCE40 build has
   none to spare), then the refusals, in this order: a LOAD into OUT (``BAD_BUFFER``), a read past
   ``cfg.mem_size_bytes`` (``MEMORY_RANGE``; only if ``y_size`` and ``x_size`` are nonzero), a
   fill past the buffer (``BUFFER_RANGE``). A refused instruction writes nothing and issues no
   memory command; ``error`` stays set and no further command is taken.
2. **Read commands** (in the background from then on): each row as bursts of whole P-byte
   beats covering it (the beat holding its first byte to the one holding its last), at most
   ``MAX_BURST`` beats each, one command a cycle while the memory takes them.
3. **Fill**: the padding, as ``y_size + 1`` runs of consecutive bytes (before the first data
   row, between rows, after the last; just two runs when ``pad_left = pad_right = 0``, none with
   no padding at all), each written a port width a cycle (ACT: its bank count; WGT, PARAM: P),
   one cycle per empty run. The fill overlaps the memory's latency.
4. **Data**: each read beat is written the cycle it arrives (the first beat of a row shifted
   down by the row's offset within its beat; bytes outside the row masked off).

``done`` pulses the cycle after the last write.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.engine.buffers import ByteWriteSignature, act_banks, addr_bits
from onda.hw.engine.errors import EngineError
from onda.hw.engine.memory_port import MAX_BURST, MemoryPortSignature

__all__ = ["CHECK_CYCLES", "DIGIT_BITS", "LoadDMA", "SaturatingProduct", "check_cycles", "digit_product",
           "load_cycles"]

_Y_BITS = isa.field_range(isa.Opcode.LOAD, "y_size")[1].bit_length()  # 16
_R_BITS = _Y_BITS + 1  # pad_top + y_size + pad_bottom < 2**17
DIGIT_BITS = 4
"""Multiplier bits the range check's shift-add multiplier takes a cycle by default (four shifted
adds a product; ``digit_bits=1`` takes a quarter of the adders and 12 more cycles a LOAD)."""


def check_cycles(digit_bits: int = DIGIT_BITS) -> int:
    """Cycles between taking a LOAD and starting it: one per ``digit_bits`` of ``R`` (17 bits),
    then one to compare."""
    return -(-_R_BITS // digit_bits) + 1


CHECK_CYCLES = check_cycles()


def digit_product(digit, value):
    """``digit * value`` for a small unsigned ``digit`` as a sum of shifted copies of ``value``
    (plain adders: no DSP block)."""
    total = 0
    for i in range(len(digit)):
        total = total + Mux(digit[i], value << i, 0)
    return total


class SaturatingProduct:
    """``multiplier * multiplicand`` by shift-add, ``digit_bits`` of the multiplier a cycle, in
    ``width`` bits: ``acc`` is the product if ``over`` is low, and ``over`` is set iff the
    product is ``>= 2**width``. A range check only needs to know a product exceeds a buffer or
    the memory, so the adders are as wide as the limit, not as the fields.

    ``load(multiplier, multiplicand)`` and ``step()`` return the statements for ``m.d.sync``.
    """

    def __init__(self, name: str, multiplier_bits: int, width: int, digit_bits: int = DIGIT_BITS):
        self.width, self.digit_bits = width, digit_bits
        self.mult = Signal(multiplier_bits, name=f"{name}_mult")
        self.mcand = Signal(width, name=f"{name}_mcand")
        self.big = Signal(name=f"{name}_big")  # the shifted multiplicand is >= 2**width
        self.acc = Signal(width, name=f"{name}_acc")
        self.over = Signal(name=f"{name}_over")

    def load(self, multiplier, multiplicand):
        return [self.mult.eq(multiplier), self.mcand.eq(multiplicand), self.big.eq((multiplicand >> self.width) != 0),
                self.acc.eq(0), self.over.eq(0)]

    def step(self):
        D, k = self.digit_bits, self.width
        digit = self.mult[:D]
        total = self.acc + digit_product(digit, self.mcand)
        return [
            self.mult.eq(self.mult >> D),
            self.mcand.eq(self.mcand << D),
            self.big.eq(self.big | ((self.mcand >> (k - D)) != 0)),
            self.acc.eq(total),
            self.over.eq(self.over | (self.big & (digit != 0)) | ((total >> k) != 0)),
        ]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def load_cycles(cfg, f: dict, latency: int | None = None, digit_bits: int = DIGIT_BITS) -> int:
    """Cycles the RTL takes for a LOAD with fields ``f`` and no stalls, from the cycle its
    command transfers to its ``done`` pulse, both included, with the memory answering a read
    ``latency`` cycles after taking it (default ``cfg.mem_latency_cycles``; add 1 for the
    arbiter's register) and sending one beat a cycle:

    ``2 + check_cycles(digit_bits) + (max(latency + 1, F) + N if y_size and x_size else F)``

    ``N = sum over rows j of ceil((addr_j % P + x_size) / P)`` beats (``addr_j = dram_addr +
    j*dram_stride``); ``F`` the fill: 0 without padding, else the sum over its runs of
    ``max(1, ceil(run / port))`` (``port``: ACT's bank count, else P) with runs
    ``[R*W]`` if ``y_size == 0``, ``[pad_top*W, pad_bottom*W]`` if ``pad_left = pad_right = 0``,
    else ``[pad_top*W + pad_left] + [pad_left + pad_right] * (y_size - 1) + [pad_right + pad_bottom*W]``.
    """
    P = cfg.mem_port_bits // 8
    L = cfg.mem_latency_cycles if latency is None else latency
    y, x = f["y_size"], f["x_size"]
    pt, pb, pl, pr = f["pad_top"], f["pad_bottom"], f["pad_left"], f["pad_right"]
    W = pl + x + pr
    port = act_banks(cfg) if f["buffer"] == isa.Buffer.ACT else P
    if not (pt or pb or pl or pr):
        runs = []
    elif y == 0:
        runs = [(pt + pb) * W]
    elif pl == pr == 0:
        runs = [pt * W, pb * W]
    else:
        runs = [pt * W + pl] + [pl + pr] * (y - 1) + [pr + pb * W]
    F = sum(max(1, _ceil(r, port)) for r in runs)
    if not (y and x):
        return 2 + check_cycles(digit_bits) + F
    N = sum(_ceil((f["dram_addr"] + j * f["dram_stride"]) % P + x, P) for j in range(y))
    return 2 + check_cycles(digit_bits) + max(L + 1, F) + N


class LoadDMA(wiring.Component):
    """Executes LOAD instructions (``hw/ISA.md``) over a memory port into the three buffers.

    Each buffer has its own write port, driven only while a LOAD into it runs (``en`` low
    otherwise), so each connects straight to that buffer's ``w_load``.

    Parameters
    ----------
    cfg : EngineConfig
        ``mem_port_bits`` (P = bytes per beat), ``mem_size_bytes``, the buffer sizes, and ACT's
        bank count (:func:`~onda.hw.engine.buffers.act_banks`), which is its write port's width.
    digit_bits : int
        Multiplier bits per cycle of the range check (1..8): fewer adders or fewer cycles.

    Members
    -------
    cmd : In(stream.Signature(isa.field_layout(Opcode.LOAD)))
        Taken when idle (``ready`` is high exactly then, and never after an error).
    done : Out(1)
        One-cycle pulse: the instruction's every buffer write has been performed.
    error : Out(EngineError)
        Sticky: ``BAD_BUFFER``, ``MEMORY_RANGE`` or ``BUFFER_RANGE``.
    mem : Out(MemoryPortSignature(P))
        Reads only (``wdata`` is never valid).
    act_w : Out(ByteWriteSignature(act_banks(cfg), addr_bits(cfg.act_bytes)))
    wgt_w : Out(ByteWriteSignature(P, addr_bits(cfg.wgt_bytes)))
    param_w : Out(ByteWriteSignature(P, addr_bits(cfg.param_bytes)))
    """

    def __init__(self, cfg, digit_bits: int = DIGIT_BITS):
        P = cfg.mem_port_bits // 8
        if P < 1 or P & (P - 1) or P * 8 != cfg.mem_port_bits:
            raise ValueError(f"LoadDMA: mem_port_bits must be 8 times a power of two, got {cfg.mem_port_bits}")
        if not isinstance(digit_bits, int) or not 1 <= digit_bits <= 8:
            raise ValueError(f"LoadDMA: digit_bits must be 1..8, got {digit_bits!r}")
        self.cfg, self.P, self.B, self.digit_bits = cfg, P, act_banks(cfg), digit_bits
        self.check_cycles = check_cycles(digit_bits)
        super().__init__({
            "cmd": In(stream.Signature(isa.field_layout(isa.Opcode.LOAD))),
            "done": Out(1),
            "error": Out(EngineError),
            "mem": Out(MemoryPortSignature(P)),
            "act_w": Out(ByteWriteSignature(self.B, addr_bits(cfg.act_bytes))),
            "wgt_w": Out(ByteWriteSignature(P, addr_bits(cfg.wgt_bytes))),
            "param_w": Out(ByteWriteSignature(P, addr_bits(cfg.param_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, P, B = self.cfg, self.P, self.B
        lp = (P - 1).bit_length()
        f = Signal(isa.field_layout(isa.Opcode.LOAD))
        Buffer = isa.Buffer

        # -- the instruction's geometry --------------------------------------------------------
        W = Signal(26)  # pad_left + x + pad_right
        R = Signal(_R_BITS)  # pad_top + y + pad_bottom
        m.d.comb += [W.eq(f.pad_left + f.x_size + f.pad_right), R.eq(f.pad_top + f.y_size + f.pad_bottom)]
        # Widths: products up to the largest buffer / the memory (saturating beyond), buffer
        # and memory addresses as wide as their (checked) range.
        kb = max(cfg.act_bytes, cfg.wgt_bytes, cfg.param_bytes).bit_length() + 1
        km = cfg.mem_size_bytes.bit_length() + 1
        ab, am = kb + 1, km + 1
        size = Signal(kb)
        m.d.comb += size.eq(Mux(f.buffer == Buffer.ACT, cfg.act_bytes,
                                Mux(f.buffer == Buffer.WGT, cfg.wgt_bytes, cfg.param_bytes)))
        step = Signal(range(B + 1))  # bytes the buffer's write port takes a cycle
        m.d.comb += step.eq(Mux(f.buffer == Buffer.ACT, B, P))

        # -- shift-add multiplier: R*W, pad_top*W, pad_bottom*W, (y-1)*stride --------------------
        d = self.digit_bits
        p_total = SaturatingProduct("total", _R_BITS, kb, d)  # R*W
        p_top = SaturatingProduct("top", 8, kb, d)  # pad_top*W (<= R*W when that fits)
        p_bottom = SaturatingProduct("bottom", 8, kb, d)
        p_span = SaturatingProduct("span", _Y_BITS, km, d)  # (y - 1)*stride
        products = (p_total, p_top, p_bottom, p_span)
        total, top, bottom, span = p_total.acc, p_top.acc, p_bottom.acc, p_span.acc
        count = Signal(range(self.check_cycles + 1))

        # -- fill and data bookkeeping ---------------------------------------------------------
        end = Signal(ab)  # sram_addr + R*W (checked <= buffer size)
        seg_k = Signal(_Y_BITS + 1)  # fill run k = 0 .. y
        cur = Signal(ab)  # next byte of the current run
        dk = Signal(ab)  # start of data row k (the run's end while k < y)
        seg_end = Signal(ab)
        m.d.comb += seg_end.eq(Mux(seg_k < f.y_size, dk, end))

        # write bus (B bytes), routed to the selected buffer's port
        w_addr, w_mask, w_en = Signal(ab), Signal(B), Signal()
        w_data = Signal(data.ArrayLayout(unsigned(8), B))
        for port, which, n in ((self.act_w, Buffer.ACT, B), (self.wgt_w, Buffer.WGT, P),
                               (self.param_w, Buffer.PARAM, P)):
            m.d.comb += [port.addr.eq(w_addr), port.data.eq(w_data.as_value()[:8 * n]), port.mask.eq(w_mask[:n]),
                         port.en.eq(w_en & (f.buffer == which))]

        # -- read command issuer ---------------------------------------------------------------
        iss_go = Signal()  # pulse: start issuing the instruction's commands
        iss_busy = Signal()
        iss_row = Signal(_Y_BITS)
        iss_addr = Signal(am)  # row start in memory
        iss_beat = Signal(am)  # next beat's address
        iss_left = Signal(km)  # beats left in the row
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
                         cmd.payload.write.eq(0)]
            with m.If(iss_left == burst):  # the row's last burst
                nxt = iss_addr + f.dram_stride
                m.d.sync += [iss_row.eq(iss_row + 1), iss_addr.eq(nxt),
                             iss_beat.eq(nxt & ~Const(P - 1, am)), iss_left.eq(row_beats(nxt))]
                with m.If(iss_row + 1 == f.y_size):
                    m.d.sync += iss_busy.eq(0)
            with m.Else():
                m.d.sync += [iss_beat.eq(iss_beat + burst * P), iss_left.eq(iss_left - burst)]

        # -- data consumer state ---------------------------------------------------------------
        d_row = Signal(_Y_BITS)
        d_off = Signal(max(1, lp))  # the row's first byte within its beat
        d_first = Signal()  # next beat is the row's first
        d_addr = Signal(ab)  # where the next beat's byte 0 goes (first beat: the row start)
        d_row_start = Signal(ab)
        d_left = Signal(km)  # row bytes not yet written
        d_mem = Signal(am)  # the row's memory address (for the next row's offset)
        rdata = self.mem.rdata

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(self.error == EngineError.NONE)
                with m.If(self.cmd.valid & (self.error == EngineError.NONE)):
                    m.d.sync += f.eq(self.cmd.payload)
                    m.next = "MULTIPLY"
                    p = self.cmd.payload
                    width = p.pad_left + p.x_size + p.pad_right
                    m.d.sync += [
                        *p_total.load(p.pad_top + p.y_size + p.pad_bottom, width),
                        *p_top.load(p.pad_top, width), *p_bottom.load(p.pad_bottom, width),
                        *p_span.load(Mux(p.y_size == 0, 0, p.y_size - 1), p.dram_stride),
                        count.eq(0),
                    ]
            with m.State("MULTIPLY"):
                m.d.sync += [count.eq(count + 1), *(s for p in products for s in p.step())]
                with m.If(count == self.check_cycles - 2):
                    m.next = "CHECK"
            with m.State("CHECK"):
                reads = (f.y_size != 0) & (f.x_size != 0)
                pads = (f.pad_top | f.pad_bottom | f.pad_left | f.pad_right) != 0
                with m.If(f.buffer == Buffer.OUT):
                    m.d.sync += self.error.eq(EngineError.BAD_BUFFER)
                    m.next = "ERROR"
                with m.Elif(reads & (p_span.over | (f.dram_addr + span + f.x_size > cfg.mem_size_bytes))):
                    m.d.sync += self.error.eq(EngineError.MEMORY_RANGE)
                    m.next = "ERROR"
                with m.Elif(p_total.over | (f.sram_addr + total > size)):
                    m.d.sync += self.error.eq(EngineError.BUFFER_RANGE)
                    m.next = "ERROR"
                with m.Else():
                    m.d.comb += iss_go.eq(reads)
                    m.d.sync += [
                        end.eq(f.sram_addr + total), seg_k.eq(0), cur.eq(f.sram_addr),
                        dk.eq(f.sram_addr + top + f.pad_left),
                        d_row.eq(0), d_first.eq(1), d_left.eq(f.x_size), d_mem.eq(f.dram_addr),
                        d_off.eq(f.dram_addr[:lp] if lp else 0),
                        d_addr.eq(f.sram_addr + top + f.pad_left), d_row_start.eq(f.sram_addr + top + f.pad_left),
                    ]
                    with m.If(pads):
                        m.next = "FILL"
                    with m.Elif(reads):
                        m.next = "DATA"
                    with m.Else():
                        m.next = "DONE"
            with m.State("FILL"):
                left = Signal(ab)
                m.d.comb += left.eq(seg_end - cur)
                m.d.comb += [w_en.eq(left != 0), w_addr.eq(cur),
                             w_data.eq(f.pad_value.as_unsigned().replicate(B))]
                for i in range(B):
                    m.d.comb += w_mask[i].eq((i < left) & (i < step))
                with m.If(left > step):
                    m.d.sync += cur.eq(cur + step)
                with m.Else():  # the run is done (or was empty): the next one
                    m.d.sync += seg_k.eq(seg_k + 1)
                    with m.If(seg_k == f.y_size):  # the last run: the data next
                        with m.If((f.y_size != 0) & (f.x_size != 0)):
                            m.next = "DATA"
                        with m.Else():
                            m.next = "DONE"
                    with m.Elif((f.pad_left == 0) & (f.pad_right == 0)):
                        # Rows are contiguous: the only other run is after the last one.
                        m.d.sync += [seg_k.eq(f.y_size), cur.eq(end - bottom)]
                    with m.Else():
                        m.d.sync += [cur.eq(dk + f.x_size), dk.eq(dk + W)]
            with m.State("DATA"):
                m.d.comb += rdata.ready.eq(1)
                beat = rdata.payload.as_value()
                shifted = Signal(8 * P)
                m.d.comb += shifted.eq(Mux(d_first, beat >> (d_off * 8) if lp else beat, beat))
                nbytes = Signal(range(P + 1))  # bytes of the row in this beat
                avail = Signal(range(P + 1))
                m.d.comb += avail.eq(Mux(d_first, P - d_off, P) if lp else P)
                m.d.comb += nbytes.eq(Mux(d_left < avail, d_left, avail))
                m.d.comb += [w_en.eq(rdata.valid), w_addr.eq(d_addr), w_data.eq(shifted)]
                for i in range(P):
                    m.d.comb += w_mask[i].eq(i < nbytes)
                with m.If(rdata.valid):
                    with m.If(d_left == nbytes):  # the row's last beat
                        nxt = d_mem + f.dram_stride
                        m.d.sync += [d_row.eq(d_row + 1), d_first.eq(1), d_left.eq(f.x_size), d_mem.eq(nxt),
                                     d_off.eq(nxt[:lp] if lp else 0),
                                     d_addr.eq(d_row_start + W), d_row_start.eq(d_row_start + W)]
                        with m.If(d_row + 1 == f.y_size):
                            m.next = "DONE"
                    with m.Else():
                        m.d.sync += [d_first.eq(0), d_left.eq(d_left - nbytes), d_addr.eq(d_addr + nbytes)]
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
            with m.State("ERROR"):
                pass
        return m
