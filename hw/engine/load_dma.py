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

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from onda.hw import isa
from onda.hw.engine import range_check
from onda.hw.engine.buffers import ByteWriteSignature, act_banks, addr_bits
from onda.hw.engine.dma import DMA
from onda.hw.engine.dma_rows import RowBursts, RowCursor, row_beats
from onda.hw.engine.errors import EngineError
from onda.hw.engine.range_check import DIGIT_BITS, SaturatingProduct, digit_product

# DIGIT_BITS, SaturatingProduct and digit_product live in range_check (the store DMA's check uses
# them too); they are named here as well, where the LOAD's check first had them.
__all__ = ["CHECK_CYCLES", "DIGIT_BITS", "LoadDMA", "SaturatingProduct", "check_cycles", "digit_product",
           "fill_cycles", "load_cycles"]

_Y_BITS = isa.field_range(isa.Opcode.LOAD, "y_size")[1].bit_length()  # 16
_R_BITS = _Y_BITS + 1  # pad_top + y_size + pad_bottom < 2**17


def check_cycles(digit_bits: int = DIGIT_BITS) -> int:
    """Cycles between taking a LOAD and starting it: one per ``digit_bits`` of ``R`` (17 bits),
    then one to compare."""
    return range_check.check_cycles(_R_BITS, digit_bits)


CHECK_CYCLES = check_cycles()


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
    F = fill_cycles(cfg, f)
    if not (y and x):
        return 2 + check_cycles(digit_bits) + F
    N = row_beats(P, f["dram_addr"], f["dram_stride"], x, y)
    return 2 + check_cycles(digit_bits) + max(L + 1, F) + N


def fill_cycles(cfg, f: dict) -> int:
    """``F`` of :func:`load_cycles`: the cycles of a LOAD's padding fill, before it takes read data."""
    y, x = f["y_size"], f["x_size"]
    pt, pb, pl, pr = f["pad_top"], f["pad_bottom"], f["pad_left"], f["pad_right"]
    W = pl + x + pr
    port = act_banks(cfg) if f["buffer"] == isa.Buffer.ACT else cfg.mem_port_bits // 8
    if not (pt or pb or pl or pr):
        runs = []
    elif y == 0:
        runs = [(pt + pb) * W]
    elif pl == pr == 0:
        runs = [pt * W, pb * W]
    else:
        runs = [pt * W + pl] + [pl + pr] * (y - 1) + [pr + pb * W]
    return sum(max(1, _ceil(r, port)) for r in runs)


class LoadDMA(DMA):
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
    cmd, done, error, mem
        As every :class:`~onda.hw.engine.dma.DMA`'s; ``cmd`` of LOADs, ``done`` once the
        instruction's every buffer write has been performed, ``error`` ``BAD_BUFFER``,
        ``MEMORY_RANGE`` or ``BUFFER_RANGE``, ``mem`` reads only (``wdata`` is never valid).
    act_w : Out(ByteWriteSignature(act_banks(cfg), addr_bits(cfg.act_bytes)))
    wgt_w : Out(ByteWriteSignature(P, addr_bits(cfg.wgt_bytes)))
    param_w : Out(ByteWriteSignature(P, addr_bits(cfg.param_bytes)))
    """

    opcode = isa.Opcode.LOAD
    multiplier_bits = _R_BITS

    def buffer_ports(self):
        cfg, P = self.cfg, self.P
        self.B = act_banks(cfg)
        return {
            "act_w": Out(ByteWriteSignature(self.B, addr_bits(cfg.act_bytes))),
            "wgt_w": Out(ByteWriteSignature(P, addr_bits(cfg.wgt_bytes))),
            "param_w": Out(ByteWriteSignature(P, addr_bits(cfg.param_bytes))),
        }

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
        ab = kb + 1
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

        # -- read commands: every row's bursts, in the background once started ----------------
        m.submodules.bursts = bursts = RowBursts(P, cfg.mem_size_bytes, write=False)
        m.d.comb += [bursts.addr.eq(f.dram_addr), bursts.stride.eq(f.dram_stride), bursts.length.eq(f.x_size),
                     bursts.rows.eq(f.y_size)]
        wiring.connect(m, bursts.cmd, wiring.flipped(self.mem.cmd))

        # -- data consumer state: where the next read beat's row bytes go ----------------------
        walk = RowCursor(P, ab, cfg.mem_size_bytes)
        m.d.comb += walk.comb(f.y_size)
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
                    m.d.comb += bursts.go.eq(reads)
                    m.d.sync += [
                        end.eq(f.sram_addr + total), seg_k.eq(0), cur.eq(f.sram_addr),
                        dk.eq(f.sram_addr + top + f.pad_left),
                        *walk.start(f.dram_addr, f.sram_addr + top + f.pad_left, f.x_size),
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
                m.d.comb += shifted.eq(Mux(walk.first, beat >> (walk.off * 8) if lp else beat, beat))
                m.d.comb += [w_en.eq(rdata.valid), w_addr.eq(walk.addr), w_data.eq(shifted)]
                for i in range(P):
                    m.d.comb += w_mask[i].eq(i < walk.nbytes)
                with m.If(rdata.valid):
                    walk.step(m, length=f.x_size, stride=f.dram_stride, pitch=W)
                    with m.If(walk.last):
                        m.next = "DONE"
            self.end_states(m)
        return m
