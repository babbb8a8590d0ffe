"""The vector unit's sequencer: executes one ``VEC`` instruction over the ACT, PARAM and OUT buffers.

A ``VEC`` takes ``src`` ``[in_rows, in_cols, channels]`` from ACT and writes its result densely at
``dst_addr`` in OUT (``hw/ISA.md``; the oracle is ``Machine.vec`` of the functional emulator). The
arithmetic is the datapath's (``onda.hw.datapath``), bit-exact with the golden model:

* COPY, SPACE_TO_DEPTH: bytes move unchanged, ``vector_lanes`` a cycle, as contiguous *segments*
  (the whole tensor; or, for SPACE_TO_DEPTH, ``2 * channels`` bytes of one input row per segment,
  since ``dst[r, c, dy*2C : dy*2C + 2C] = src[2r + dy, 2c : 2c + 2, :]``).
* ADD: ``add_lanes`` (default ``vector_lanes``) :class:`~onda.hw.datapath.vector.ResidualAdd`
  lanes, both operands read in the same cycle through ``r_vec_a`` and ``r_vec_b``; the record's nine
  words are their static ports. With fewer lanes than ``vector_lanes`` a beat is taken in chunks.
* MUL: the same lanes in their ``mul`` mode (:func:`mul_ports`): TFLite's int8 MUL, both operands
  read as for ADD.
* REQUANT: the same ResidualAdd lanes programmed as ``clamp(out_zp + MBQM(x - in_zp, M0, shift),
  act_min, act_max)`` (:func:`requant_as_add`; the instruction's act range, so a standalone RELU is one): the first input's scaling ``MBQM((x - zp) << 20, 2**30, -19)`` is exactly
  ``x - zp`` and the second input is zero.
* MAX_POOL, AVG_POOL, MEAN: a window walk. For each output pixel, each group of ``vector_lanes``
  channels, each in-bounds tap of the window, one read of the group's bytes at that tap
  (taps outside the band are not read: max never sees them, the average does not count them). A
  window with no tap in the band is one phantom tap (-128 for max, 0 for the average: the emulator's
  ``clamp(-32768)`` and ``0 / 0`` results). MAX_POOL feeds :class:`MaxPool`, AVG_POOL
  :class:`SumPool` -> :class:`DivideRound`, MEAN (the window being the whole band, one output pixel)
  :class:`SumPool` -> one :class:`Requantizer`, lane by lane, with bias ``-in_zp * count`` and the
  multiplier ``kernels.mean_multiplier`` folds ``1 / count`` into (:class:`MeanMultiplier`, a
  sequential divider that runs while the first channel group is summed).

Order of work: the command is latched; three cycles compute the extents and refuse the instruction
(``error``) before anything is read or written; the PARAM record is read a word a cycle; then beats
are issued (a read of ACT, its bytes a cycle later into a small FIFO, then the function's unit); the
results are written at consecutive OUT addresses (every function's output is dense and in walk
order), each with a byte mask for the channel tail. ``done`` pulses the cycle after the last write.
The timing, cycle for cycle without stalls, is :func:`vec_cycles` (the tests hold the RTL to it).

Refusals (``error``, sticky; nothing read or written; at most ``CHECK_CYCLES + 1`` cycles), in this
priority, as ``Machine.vec`` refuses them: unknown func (BAD_FIELD); ``src`` extent (BUFFER_RANGE);
SPACE_TO_DEPTH not ``[2R, 2C] -> [R, C]`` (BAD_FIELD); ADD's or MUL's ``src2`` or the record's extent
(BUFFER_RANGE); a pool's zero kernel or stride, MEAN over zero pixels, an output size other than
the function's (BAD_FIELD); the ``dst`` extent (BUFFER_RANGE). A zero-size result writes nothing.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.datapath.requantize import Requantizer, mul_style_for
from onda.hw.extents import extents
from onda.hw.datapath.vector import DivideRound, MaxPool, ResidualAdd, SumPool
from onda.hw.isa import Opcode, VecFunc

from .buffers import ByteReadSignature, ByteWriteSignature, addr_bits
from .errors import EngineError

__all__ = ["VecUnit", "MeanMultiplier", "add_ports", "mul_ports", "record_fields", "requant_as_add", "vec_cycles", "vec_cycles_bounds", "CHECK_CYCLES",
           "BEAT_FIFO_DEPTH"]

CHECK_CYCLES = 3       # extents: products, sizes, comparisons
BEAT_FIFO_DEPTH = 4    # read data waiting for its unit (credit: issued + buffered <= depth)
TAG_FIFO_DEPTH = 32    # output byte counts waiting for their unit's result (> ResidualAdd latency)


def record_fields(record: str, words) -> dict:
    """A PARAM record's words (Python ints or signals, in order) by their names in
    ``isa.PARAM_RECORDS``: what the compiler wrote is what the unit reads."""
    return dict(zip(isa.PARAM_RECORDS[record], words))


def add_ports(rec: dict, act_min, act_max) -> dict:
    """ADD's record (``record_fields("add", ...)``) as a :class:`ResidualAdd`'s static ports:
    TFLite's int8 ADD, ``clamp(out_zp + MBQM(MBQM((a - zp1) << 20, m1, s1) + MBQM((b - zp2) << 20, m2,
    s2), m_out, s_out), act_min, act_max)``."""
    ports = {name: rec[name] for name in ("zp1", "zp2", "m1", "s1", "m2", "s2", "m_out", "s_out")}
    return {**ports, "out_zero_point": rec["out_zp"], "act_min": act_min, "act_max": act_max}


def mul_ports(rec: dict, act_min, act_max) -> dict:
    """MUL's record (``record_fields("mul", ...)``) as a :class:`ResidualAdd`'s static ports in
    ``mul`` mode: ``MBQM(x, 2**30, 1)`` is ``x`` exactly (``x << 1`` times one half, no rounding),
    ``m2 = 0`` makes the second term 0, so the result is ``clamp(out_zp + MBQM((a - zp1) * (b - zp2),
    M0, shift))``: ``fixedpoint.mul``."""
    return {"zp1": rec["zp1"], "zp2": rec["zp2"], "m1": 1 << 30, "s1": 1, "m2": 0, "s2": 0,
            "m_out": rec["multiplier"], "s_out": rec["shift"], "out_zero_point": rec["out_zp"],
            "act_min": act_min, "act_max": act_max}


def requant_as_add(in_zp, multiplier, shift, out_zp, act_min=-128, act_max=127) -> dict:
    """REQUANT's record as a :class:`ResidualAdd`'s static ports (second operand zero).

    ResidualAdd computes ``clamp(ozp + MBQM(MBQM((a - zp1) << 20, m1, s1) + MBQM((b - zp2) << 20,
    m2, s2), m_out, s_out))``. With ``m1 = 2**30, s1 = -19``: ``((a - zp1) << 20) * 2**30 / 2**31``
    is ``(a - zp1) << 19`` exactly (no rounding), and the divide by ``2**19`` is exact too, so the
    first term is ``a - zp1``; ``b = zp2 = m2 = 0`` makes the second 0. The result is
    ``clamp(out_zp + MBQM(a - in_zp, M0, shift), act_min, act_max)``: ``kernels.requantize_tensor``.
    Works on Python ints and on Amaranth values alike.
    """
    return {"zp1": in_zp, "zp2": 0, "m1": 1 << 30, "s1": -19, "m2": 0, "s2": 0,
            "m_out": multiplier, "s_out": shift, "out_zero_point": out_zp, "act_min": act_min, "act_max": act_max}


class MeanMultiplier(wiring.Component):
    """``kernels.mean_multiplier(multiplier, shift, count)`` in hardware: TFLite's
    QuantizedMeanOrSum folding of ``1 / count`` into the Q0.31 multiplier.

    ``s = min(floor(log2(count)), 32, 31 + shift)``; result ``((multiplier << s) // count,
    shift - s)`` (Python's floor division). A restoring divider, one quotient bit a cycle: the
    quotient is below ``2**32`` (``count >= 2**s``), so 32 cycles after ``start``.

    Members
    -------
    start : In(1)
        Latch the operands and begin (a pulse).
    multiplier, shift : In(signed(32))
        The record's ``M0`` and exponent.
    count : In(unsigned(count_bits))
        Pixels averaged (>= 1).
    ready : Out(1)
        The results are valid (from 32 cycles after ``start`` until the next ``start``).
    out_multiplier : Out(signed(32))
    out_shift : Out(signed(6))
    """

    def __init__(self, count_bits: int = 24):
        if not isinstance(count_bits, int) or not 1 <= count_bits <= 32:
            raise ValueError(f"MeanMultiplier: count_bits must be 1..32, got {count_bits!r}")
        self.count_bits = count_bits
        super().__init__({
            "start": In(1),
            "multiplier": In(signed(32)), "shift": In(signed(32)), "count": In(unsigned(count_bits)),
            "ready": Out(1),
            "out_multiplier": Out(signed(32)), "out_shift": Out(signed(6)),
        })

    def elaborate(self, platform):
        m = Module()
        cb = self.count_bits
        log2 = Signal(range(cb), name="log2")
        for i in range(cb):
            with m.If(self.count[i]):
                m.d.comb += log2.eq(i)
        lim = Signal(signed(34))
        m.d.comb += lim.eq(31 + self.shift)
        s = Signal(signed(34))
        m.d.comb += s.eq(Mux(lim < log2, Mux(lim < 0, 0, lim), log2))   # log2 <= 31 < 32
        mag = Signal(32)
        m.d.comb += mag.eq(Mux(self.multiplier < 0, -self.multiplier, self.multiplier))
        neg = Signal()
        count = Signal(cb)
        rem = Signal(cb + 33)
        q = Signal(32)
        step = Signal(range(33))
        busy = Signal()
        with m.If(self.start):
            # floor division of a negative numerator: -ceil(|n| / count).
            num = (mag << s[:6]) + Mux(self.multiplier < 0, self.count - 1, 0)
            m.d.sync += [rem.eq(num), q.eq(0), step.eq(0), busy.eq(1), neg.eq(self.multiplier < 0),
                         count.eq(self.count), self.ready.eq(0),
                         self.out_shift.eq((self.shift - s)[:6])]
        with m.Elif(busy):
            bit = (31 - step)[:5]
            trial = (count << bit)
            with m.If(rem >= trial):
                m.d.sync += [rem.eq(rem - trial), q.eq(q | (Const(1, 32) << bit))]
            m.d.sync += step.eq(step + 1)
            with m.If(step == 31):
                m.d.sync += [busy.eq(0), self.ready.eq(1)]
        m.d.comb += self.out_multiplier.eq(Mux(neg, -q, q)[:32].as_signed())
        return m


class VecUnit(wiring.Component):
    """The ``VEC`` sequencer (``engine_contract.md``): one instruction at a time, bit-exact with
    ``Machine.vec``.

    Parameters
    ----------
    cfg : EngineConfig
        ``vector_lanes`` (bytes a beat), the ACT / PARAM / OUT sizes (range checks, port widths)
        and the requantizer style (``mul_style_for(cfg)``: MEAN's requantizer; ADD's lanes use DSP
        multipliers where the requantizer does, LUT ones otherwise).
    add_lanes : int, optional
        ResidualAdd lanes for ADD and REQUANT (each three 32x32 fixed-point multiplies: 12
        MULT18X18D), a divisor of ``vector_lanes`` (default: all of them, one beat a cycle). With
        fewer, each beat takes ``ceil(n / add_lanes)`` cycles (``n`` its bytes).

    Members
    -------
    cmd : In(stream.Signature(isa.field_layout(Opcode.VEC)))
        Taken when idle and no error.
    done : Out(1)
        One-cycle pulse: every OUT write of the instruction has been performed.
    error : Out(EngineError)
        ``BUFFER_RANGE`` / ``BAD_FIELD``; sticky; set before any write.
    r_vec_a, r_vec_b : Out(ByteReadSignature(vector_lanes, addr_bits(act_bytes)))
        ACT reads (latency 1): ``src`` (every function) and ``src2`` (ADD), in the same cycle.
    r_vec : Out(ByteReadSignature(4, addr_bits(param_bytes)))
        PARAM reads: the record, one int32 word a cycle.
    w_vec : Out(ByteWriteSignature(vector_lanes, addr_bits(out_bytes)))
        OUT writes, consecutive addresses from ``dst_addr``, ``mask`` the tail.
    """

    def __init__(self, cfg, add_lanes: int | None = None):
        vl = getattr(cfg, "vector_lanes", None)
        if not isinstance(vl, int) or vl < 1:
            raise ValueError(f"VecUnit: cfg.vector_lanes must be a positive int, got {vl!r}")
        if add_lanes is None:
            add_lanes = cfg.adders
        if not isinstance(add_lanes, int) or add_lanes < 1 or vl % add_lanes:
            raise ValueError(f"VecUnit: add_lanes must be a positive divisor of vector_lanes ({vl}), "
                             f"got {add_lanes!r}")
        self.add_lanes = add_lanes
        for name in ("act_bytes", "param_bytes", "out_bytes"):
            v = getattr(cfg, name, None)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"VecUnit: cfg.{name} must be a positive int, got {v!r}")
        self.cfg = cfg
        self.lanes = vl
        self.rq_style = mul_style_for(cfg)
        self.add_style = "dsp" if self.rq_style == "dsp" else "lut"
        super().__init__({
            "cmd": In(stream.Signature(isa.field_layout(Opcode.VEC))),
            "done": Out(1),
            "error": Out(EngineError),
            "r_vec_a": Out(ByteReadSignature(vl, addr_bits(cfg.act_bytes))),
            "r_vec_b": Out(ByteReadSignature(vl, addr_bits(cfg.act_bytes))),
            "r_vec": Out(ByteReadSignature(4, addr_bits(cfg.param_bytes))),
            "w_vec": Out(ByteWriteSignature(vl, addr_bits(cfg.out_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, VL = self.cfg, self.lanes
        nb = range(VL + 1)

        # ---- the instruction ------------------------------------------------------------------
        f = Signal(isa.field_layout(Opcode.VEC), name="f")
        fn = f.func
        is_copy = fn == VecFunc.COPY
        is_s2d = fn == VecFunc.SPACE_TO_DEPTH
        is_add = fn == VecFunc.ADD
        is_mul = fn == VecFunc.MUL
        is_pair = is_add | is_mul  # two operands, src and src2
        is_req = fn == VecFunc.REQUANT
        is_max = fn == VecFunc.MAX_POOL
        is_avg = fn == VecFunc.AVG_POOL
        is_mean = fn == VecFunc.MEAN
        move_mode = is_copy | is_s2d            # bytes straight to OUT
        is_lane = is_pair | is_req  # the ResidualAdd lanes
        seg_mode = move_mode | is_lane  # segment walk; else window walk
        C = f.channels

        # ---- extents (CHECK) ------------------------------------------------------------------
        pin = Signal(24)          # in_rows * in_cols
        pout = Signal(24)         # out_rows * out_cols
        icC = Signal(28)          # in_cols * channels: one input row
        in_size = Signal(40)
        out_size = Signal(42)     # what the emulator writes (4C channels for SPACE_TO_DEPTH)
        # window walk geometry (MEAN: the whole band, one output pixel)
        kh, kw = Signal(12), Signal(12)
        sh, sw = Signal(4), Signal(4)
        pt, pl = Signal(4), Signal(4)
        orow, ocol = Signal(12), Signal(12)
        sh_icC = Signal(32)
        sw_C = Signal(20)
        pt_icC = Signal(32)
        pl_C = Signal(20)
        chk = Signal(range(CHECK_CYCLES))

        # ---- record ---------------------------------------------------------------------------
        words = [Signal(signed(32), name=f"word{i}") for i in range(isa.ADD_PARAM_WORDS)]
        add_rec = record_fields("add", words)  # the record's words by their ISA names
        rescale_rec = record_fields("rescale", words)
        nwords = Mux(is_add, isa.ADD_PARAM_WORDS, Mux(is_mul, isa.MUL_PARAM_WORDS,
                                                       Mux(is_req | is_mean, isa.RESCALE_PARAM_WORDS, 0)))
        pk = Signal(range(isa.ADD_PARAM_WORDS + 2))

        error = Signal(EngineError)
        m.d.comb += self.error.eq(error)
        done = Signal()
        m.d.comb += self.done.eq(done)
        m.d.sync += done.eq(0)

        # ---- issue: FIFO of read beats ----------------------------------------------------------
        BeatLayout = data.StructLayout({
            "a": data.ArrayLayout(unsigned(8), VL), "b": data.ArrayLayout(unsigned(8), VL),
            "first": 1, "last": 1, "phantom": 1, "n": unsigned(nb.stop.bit_length()),
        })
        MetaLayout = data.StructLayout({"first": 1, "last": 1, "phantom": 1, "n": unsigned(nb.stop.bit_length())})
        m.submodules.beats = beats = SyncFIFO(width=BeatLayout.size, depth=BEAT_FIFO_DEPTH)
        m.submodules.tags = tags = SyncFIFO(width=len(Signal(nb)), depth=TAG_FIFO_DEPTH)
        issue = Signal()          # a beat is issued this cycle
        meta = Signal(MetaLayout)  # its flags and byte count
        addr_a = Signal(len(self.r_vec_a.addr))
        addr_b = Signal(len(self.r_vec_b.addr))
        inflight = Signal()
        meta_q = Signal(MetaLayout)
        m.d.sync += [inflight.eq(issue), meta_q.eq(meta)]
        can_issue = Signal()
        m.d.comb += can_issue.eq(beats.level + inflight < BEAT_FIFO_DEPTH)
        m.d.comb += [
            self.r_vec_a.addr.eq(addr_a), self.r_vec_a.en.eq(issue & ~meta.phantom),
            self.r_vec_b.addr.eq(addr_b), self.r_vec_b.en.eq(issue & is_pair),
        ]
        w_beat = Signal(BeatLayout)
        m.d.comb += [w_beat.a.eq(self.r_vec_a.data), w_beat.b.eq(self.r_vec_b.data),
                     w_beat.first.eq(meta_q.first), w_beat.last.eq(meta_q.last),
                     w_beat.phantom.eq(meta_q.phantom), w_beat.n.eq(meta_q.n),
                     beats.w_data.eq(w_beat), beats.w_en.eq(inflight)]

        # ---- segment walker (COPY, SPACE_TO_DEPTH, ADD, REQUANT) --------------------------------
        seg_len = Signal(40)                    # bytes per segment
        off = Signal(40)                        # offset within the segment
        row_base = Signal(40)                   # src + 2r * icC
        col_off = Signal(32)                    # c * 2C
        dy = Signal()
        sr, sc = Signal(12), Signal(12)
        seg_src = Signal(41)
        m.d.comb += seg_src.eq(row_base + col_off + Mux(dy, icC, 0))
        seg_rem = Signal(40)
        m.d.comb += seg_rem.eq(seg_len - off)
        seg_n = Signal(nb)
        m.d.comb += seg_n.eq(Mux(seg_rem < VL, seg_rem, VL))
        seg_end = seg_rem <= VL

        # ---- window walker (MAX_POOL, AVG_POOL, MEAN) -------------------------------------------
        oy, ox = Signal(12), Signal(12)
        by, bx = Signal(signed(20)), Signal(signed(20))     # oy*sh - pt, ox*sw - pl
        rowp = Signal(signed(44))                            # src + by * icC
        colp = Signal(signed(36))                            # bx * C
        goff = Signal(17)                                    # channel group offset g * VL
        di, dj = Signal(12), Signal(12)
        roff = Signal(40)                                    # di * icC
        coff = Signal(28)                                    # dj * C
        y0 = Signal(signed(20))
        y1 = Signal(signed(20))
        x0 = Signal(signed(20))
        x1 = Signal(signed(20))
        m.d.comb += [
            y0.eq(Mux(by < 0, 0, by)), y1.eq(Mux(by + kh > f.in_rows, f.in_rows, by + kh)),
            x0.eq(Mux(bx < 0, 0, bx)), x1.eq(Mux(bx + kw > f.in_cols, f.in_cols, bx + kw)),
        ]
        empty = (y1 <= y0) | (x1 <= x0)
        hcnt = Signal(signed(20))
        wcnt = Signal(signed(20))
        m.d.comb += [hcnt.eq(y1 - y0), wcnt.eq(x1 - x0)]
        win_start = Signal(signed(46))
        m.d.comb += win_start.eq(Mux(by < 0, f.src_addr, rowp) + Mux(bx < 0, 0, colp) + goff)
        tap_addr = Signal(signed(48))
        m.d.comb += tap_addr.eq(win_start + roff + coff)
        last_col = dj == (wcnt - 1)[:12]
        last_row = di == (hcnt - 1)[:12]
        g_rem = Signal(signed(18))
        m.d.comb += g_rem.eq(C - goff)
        win_n = Signal(nb)
        m.d.comb += win_n.eq(Mux(g_rem < VL, g_rem, VL))

        m.d.comb += [
            addr_a.eq(Mux(seg_mode, seg_src + off, tap_addr)),
            addr_b.eq(f.src2_addr + off),
        ]
        with m.If(seg_mode):
            m.d.comb += [meta.first.eq(1), meta.last.eq(1), meta.phantom.eq(0), meta.n.eq(seg_n)]
        with m.Else():
            m.d.comb += [meta.first.eq(empty | ((di == 0) & (dj == 0))),
                         meta.last.eq(empty | (last_col & last_row)),
                         meta.phantom.eq(empty), meta.n.eq(win_n)]

        # ---- MEAN's multiplier ------------------------------------------------------------------
        m.submodules.mean_mul = mm = MeanMultiplier(24)
        m.d.comb += [mm.multiplier.eq(rescale_rec["multiplier"]), mm.shift.eq(rescale_rec["shift"]), mm.count.eq(pin)]
        mean_bias = Signal(signed(32))

        # ---- sequencer ----------------------------------------------------------------------------
        pending = Signal(range(TAG_FIFO_DEPTH * VL + VL + 2))  # results accepted by a unit, not yet written
        enter_run = Signal()   # pulse: the walk begins (MEAN starts its divider)
        m.d.sync += enter_run.eq(0)
        m.d.comb += self.cmd.ready.eq(0)
        with m.FSM(name="vec"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(error == EngineError.NONE)
                with m.If(self.cmd.valid & (error == EngineError.NONE)):
                    m.d.sync += [f.eq(self.cmd.payload), chk.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += chk.eq(chk + 1)
                with m.If(chk == 0):
                    m.d.sync += [pin.eq(f.in_rows * f.in_cols), pout.eq(f.out_rows * f.out_cols),
                                 icC.eq(f.in_cols * C)]
                    with m.If(is_mean):
                        m.d.sync += [kh.eq(f.in_rows), kw.eq(f.in_cols), sh.eq(1), sw.eq(1), pt.eq(0),
                                     pl.eq(0), orow.eq(1), ocol.eq(1)]
                    with m.Else():
                        m.d.sync += [kh.eq(f.kh), kw.eq(f.kw), sh.eq(f.stride_h), sw.eq(f.stride_w),
                                     pt.eq(f.pad_top), pl.eq(f.pad_left), orow.eq(f.out_rows),
                                     ocol.eq(f.out_cols)]
                with m.If(chk == 1):
                    m.d.sync += [in_size.eq(pin * C), out_size.eq(Mux(is_s2d, pout * C * 4, pout * C)),
                                 sh_icC.eq(sh * icC), sw_C.eq(sw * C), pt_icC.eq(pt * icC), pl_C.eq(pl * C),
                                 seg_len.eq(Mux(is_s2d, C * 2, pin * C))]
                with m.If(chk == CHECK_CYCLES - 1):
                    act, prm, out = cfg.act_bytes, cfg.param_bytes, cfg.out_bytes
                    bad_func = fn > max(VecFunc)
                    src_oob = f.src_addr + in_size > act
                    s2d_bad = is_s2d & (f.in_rows[0] | f.in_cols[0] | (f.out_rows * 2 != f.in_rows)
                                        | (f.out_cols * 2 != f.in_cols))
                    src2_oob = is_pair & (f.src2_addr + in_size > act)
                    param_oob = (f.param_addr + nwords * 4 > prm) & (nwords != 0)
                    pool_bad = (is_max | is_avg) & ((f.kh == 0) | (f.kw == 0) | (f.stride_h == 0)
                                                     | (f.stride_w == 0))
                    mean_bad = is_mean & (pin == 0)
                    shape_bad = (((is_copy | is_lane) & (in_size != out_size))
                                 | (is_mean & (C != 0) & (pout != 1)))
                    dst_oob = f.dst_addr + out_size > out
                    with m.If(bad_func):
                        m.d.sync += error.eq(EngineError.BAD_FIELD)
                        m.next = "IDLE"
                    with m.Elif(src_oob):
                        m.d.sync += error.eq(EngineError.BUFFER_RANGE)
                        m.next = "IDLE"
                    with m.Elif(s2d_bad):
                        m.d.sync += error.eq(EngineError.BAD_FIELD)
                        m.next = "IDLE"
                    with m.Elif(src2_oob | param_oob):
                        m.d.sync += error.eq(EngineError.BUFFER_RANGE)
                        m.next = "IDLE"
                    with m.Elif(pool_bad | mean_bad | shape_bad):
                        m.d.sync += error.eq(EngineError.BAD_FIELD)
                        m.next = "IDLE"
                    with m.Elif(dst_oob):
                        m.d.sync += error.eq(EngineError.BUFFER_RANGE)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += pk.eq(0)
                        m.next = "PARAM"
            with m.State("PARAM"):
                m.d.comb += [self.r_vec.addr.eq(f.param_addr + pk * 4), self.r_vec.en.eq(pk < nwords)]
                m.d.sync += pk.eq(pk + 1)
                word = Cat(*[self.r_vec.data[i] for i in range(4)]).as_signed()
                for i, w in enumerate(words):
                    with m.If(pk == i + 1):
                        m.d.sync += w.eq(word)
                with m.If(pk >= nwords):
                    # walkers' initial state
                    m.d.sync += [off.eq(0), row_base.eq(f.src_addr), col_off.eq(0), dy.eq(0), sr.eq(0), sc.eq(0),
                                 oy.eq(0), ox.eq(0), by.eq(-pt), bx.eq(-pl), rowp.eq(f.src_addr - pt_icC),
                                 colp.eq(-pl_C), goff.eq(0), di.eq(0), dj.eq(0), roff.eq(0), coff.eq(0)]
                    m.d.sync += enter_run.eq(1)
                    with m.If(out_size == 0):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += issue.eq(can_issue)
                with m.If(can_issue):
                    with m.If(seg_mode):
                        m.d.sync += off.eq(off + VL)
                        with m.If(seg_end):
                            m.d.sync += off.eq(0)
                            with m.If(~is_s2d):
                                m.next = "DRAIN"
                            with m.Elif(~dy):
                                m.d.sync += dy.eq(1)
                            with m.Else():
                                m.d.sync += [dy.eq(0), sc.eq(sc + 1), col_off.eq(col_off + C * 2)]
                                with m.If(sc == f.out_cols - 1):
                                    m.d.sync += [sc.eq(0), col_off.eq(0), sr.eq(sr + 1),
                                                 row_base.eq(row_base + icC * 2)]
                                    with m.If(sr == f.out_rows - 1):
                                        m.next = "DRAIN"
                    with m.Else():
                        with m.If(~meta.last):
                            with m.If(last_col):
                                m.d.sync += [dj.eq(0), coff.eq(0), di.eq(di + 1), roff.eq(roff + icC)]
                            with m.Else():
                                m.d.sync += [dj.eq(dj + 1), coff.eq(coff + C)]
                        with m.Else():
                            m.d.sync += [di.eq(0), dj.eq(0), roff.eq(0), coff.eq(0)]
                            with m.If(goff + VL < C):
                                m.d.sync += goff.eq(goff + VL)
                            with m.Else():
                                m.d.sync += [goff.eq(0), ox.eq(ox + 1), bx.eq(bx + sw), colp.eq(colp + sw_C)]
                                with m.If(ox == ocol - 1):
                                    m.d.sync += [ox.eq(0), bx.eq(-pl), colp.eq(-pl_C), oy.eq(oy + 1),
                                                 by.eq(by + sh), rowp.eq(rowp + sh_icC)]
                                    with m.If(oy == orow - 1):
                                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If((beats.level == 0) & ~inflight & (pending == 0)):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"

        # MEAN setup, the first cycle of RUN (the record is in): bias and the divider.
        start_mean = Signal()
        m.d.comb += start_mean.eq(is_mean & enter_run)
        with m.If(start_mean):
            m.d.sync += mean_bias.eq((-(rescale_rec["in_zp"] * pin))[:32])
        m.d.comb += mm.start.eq(start_mean)

        # ---- units ------------------------------------------------------------------------------
        beat = data.View(BeatLayout, beats.r_data)
        a_val = [Mux(beat.phantom, Mux(is_max, 0x80, 0), beat.a[l])[:8].as_signed() for l in range(VL)]
        a_s = [Signal(signed(8), name=f"a{l}") for l in range(VL)]
        m.d.comb += [a_s[l].eq(a_val[l]) for l in range(VL)]

        AL = self.add_lanes
        K = VL // AL
        adds = []
        for l in range(AL):
            ra = ResidualAdd(self.add_style)
            m.submodules[f"add{l}"] = ra
            adds.append(ra)
        m.submodules.maxpool = mp = MaxPool(VL)
        m.submodules.sumpool = sp = SumPool(VL)
        m.submodules.divide = dv = DivideRound(VL)
        m.submodules.requant = rq = Requantizer(self.rq_style)

        # static ports
        rp = requant_as_add(*(rescale_rec[n] for n in ("in_zp", "multiplier", "shift", "out_zp")), f.act_min, f.act_max)
        ap = add_ports(add_rec, f.act_min, f.act_max)
        mp_ = mul_ports(record_fields("mul", words), f.act_min, f.act_max)
        for ra in adds:
            for port, v in ap.items():
                sig = getattr(ra, port)
                m.d.comb += sig.eq(Mux(is_add, v, Mux(is_mul, mp_[port], rp[port]))[:len(sig)])
            m.d.comb += ra.mul.eq(is_mul)
        m.d.comb += [mp.act_min.eq(f.act_min), mp.act_max.eq(f.act_max),
                     dv.act_min.eq(f.act_min), dv.act_max.eq(f.act_max),
                     rq.out_zero_point.eq(rescale_rec["out_zp"][:8]), rq.act_min.eq(-128), rq.act_max.eq(127)]

        unit_ready = Signal()
        m.d.comb += unit_ready.eq(Mux(move_mode, 1, Mux(is_lane, adds[0].i.ready,
                                                       Mux(is_max, mp.i.ready, sp.i.ready))))
        needs_tag = beat.last & ~move_mode
        go = Signal()
        accept = Signal()
        # ADD / REQUANT: a beat goes through the add_lanes ResidualAdds in chunks of add_lanes bytes,
        # one chunk a cycle; each chunk is an output (its byte count a tag).
        chunk = Signal(range(K))
        chunk_n = Signal(nb)
        m.d.comb += chunk_n.eq(Mux(beat.n > chunk * AL + AL, AL, beat.n - chunk * AL))
        last_chunk = Signal()
        m.d.comb += last_chunk.eq(~is_lane | (beat.n <= chunk * AL + AL))
        with m.If(accept & is_lane):
            m.d.sync += chunk.eq(Mux(last_chunk, 0, chunk + 1))
        m.d.comb += [go.eq(beats.r_rdy & (~needs_tag | tags.w_rdy)),
                     accept.eq(go & unit_ready),
                     beats.r_en.eq(accept & last_chunk),
                     tags.w_en.eq(accept & needs_tag), tags.w_data.eq(Mux(is_lane, chunk_n, beat.n))]
        for l, ra in enumerate(adds):
            a_l = Array([a_s[k * AL + l] for k in range(K)])[chunk] if K > 1 else a_s[l]
            b_l = Array([beat.b[k * AL + l] for k in range(K)])[chunk] if K > 1 else beat.b[l]
            m.d.comb += [ra.i.valid.eq(go & is_lane), ra.i.payload.a.eq(a_l),
                         ra.i.payload.b.eq(Mux(is_pair, b_l, 0)), ra.o.ready.eq(1)]
        for dst in (mp.i, sp.i):
            m.d.comb += [dst.payload.first.eq(beat.first), dst.payload.last.eq(beat.last)]
            m.d.comb += [dst.payload.x[l].eq(a_s[l]) for l in range(VL)]
        m.d.comb += [mp.i.valid.eq(go & is_max), sp.i.valid.eq(go & (is_avg | is_mean)), mp.o.ready.eq(1),
                     dv.o.ready.eq(1), rq.o.ready.eq(1)]
        # AVG_POOL: sums -> divider
        m.d.comb += [dv.i.payload.eq(sp.o.payload), dv.i.valid.eq(sp.o.valid & is_avg)]
        # MEAN: sums -> serializer -> one requantizer, lane by lane
        ser_busy = Signal()
        ser_n = Signal(nb)
        ser_i = Signal(range(VL))
        ser_sums = [Signal(signed(32), name=f"ser_sum{l}") for l in range(VL)]
        latch = Signal()
        m.d.comb += latch.eq(is_mean & ~ser_busy & sp.o.valid & tags.r_rdy & mm.ready)
        m.d.comb += sp.o.ready.eq(Mux(is_avg, dv.i.ready, latch))
        with m.If(latch):
            m.d.sync += [ser_busy.eq(1), ser_n.eq(tags.r_data), ser_i.eq(0)]
            m.d.sync += [s.eq(sp.o.payload.sum[l]) for l, s in enumerate(ser_sums)]
        m.d.comb += [rq.i.valid.eq(ser_busy), rq.i.payload.acc.eq(Array(ser_sums)[ser_i]),
                     rq.i.payload.bias.eq(mean_bias), rq.i.payload.multiplier.eq(mm.out_multiplier),
                     rq.i.payload.shift.eq(mm.out_shift)]
        with m.If(ser_busy & rq.i.ready):
            m.d.sync += ser_i.eq(ser_i + 1)
            with m.If(ser_i == ser_n - 1):
                m.d.sync += ser_busy.eq(0)

        # ---- writer -----------------------------------------------------------------------------
        wen = Signal()
        wdata = Signal(data.ArrayLayout(unsigned(8), VL))
        wn = Signal(nb)
        pop_tag = Signal()
        with m.If(move_mode):
            m.d.comb += [wen.eq(accept), wdata.eq(beat.a), wn.eq(beat.n)]
        with m.Elif(is_lane):
            m.d.comb += [wen.eq(adds[0].o.valid), wn.eq(tags.r_data), pop_tag.eq(wen)]
            m.d.comb += [wdata[l].eq(ra.o.payload) for l, ra in enumerate(adds)]
        with m.Elif(is_max):
            m.d.comb += [wen.eq(mp.o.valid), wn.eq(tags.r_data), pop_tag.eq(wen), wdata.eq(mp.o.payload)]
        with m.Elif(is_avg):
            m.d.comb += [wen.eq(dv.o.valid), wn.eq(tags.r_data), pop_tag.eq(wen), wdata.eq(dv.o.payload)]
        with m.Else():  # MEAN
            m.d.comb += [wen.eq(rq.o.valid), wn.eq(1), wdata[0].eq(rq.o.payload)]
        m.d.comb += tags.r_en.eq(pop_tag | latch)
        dst_ptr = Signal(len(self.w_vec.addr) + 1)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += dst_ptr.eq(self.cmd.payload.dst_addr)
        with m.Elif(wen):
            m.d.sync += dst_ptr.eq(dst_ptr + wn)
        m.d.comb += [self.w_vec.en.eq(wen), self.w_vec.addr.eq(dst_ptr), self.w_vec.data.eq(wdata),
                     self.w_vec.mask.eq(Cat(*[wn > l for l in range(VL)]))]
        inc = Mux(tags.w_en, Mux(is_mean, tags.w_data, 1), 0)
        dec = Mux(wen & ~move_mode, 1, 0)
        m.d.sync += pending.eq(pending + inc - dec)
        return m


DIVIDE_CYCLES = 11  # DivideRound: one vector every 11 cycles (accept, 9 steps, result)
MEAN_DIVIDE_CYCLES = 32  # MeanMultiplier


def _window_taps(f: dict, lanes: int) -> "np.ndarray":
    """Beats of each (output pixel, channel group) window of a pool walk, in walk order: its
    in-bounds taps, or 1 (the phantom tap) if none."""
    import numpy as np

    def extent(n_out, stride, pad, k, n_in):
        b = np.arange(n_out) * stride - pad
        return np.clip(np.minimum(b + k, n_in) - np.maximum(b, 0), 0, None)

    h = extent(f["out_rows"], f["stride_h"], f["pad_top"], f["kh"], f["in_rows"])
    w = extent(f["out_cols"], f["stride_w"], f["pad_left"], f["kw"], f["in_cols"])
    taps = np.maximum(np.outer(h, w).reshape(-1), 1)
    groups = -(-f["channels"] // lanes)
    return np.repeat(taps, groups)


def vec_cycles(cfg, f: dict, add_lanes: int | None = None) -> int | None:
    """Cycles :class:`VecUnit` takes for a valid ``VEC`` with fields ``f``, from the command's
    transfer to ``done``, with the one-a-cycle requantizer (``mul_style_for(cfg) == "dsp"``); None
    for MEAN with the serial requantizer (its phase makes it vary by up to 6 cycles; see
    :func:`vec_cycles_bounds`). What the RTL does, measured in simulation
    (``tests/engine/test_vec_unit.py`` holds every random instruction to it):

    * ``R = 5 + words`` (accept, 3 CHECK cycles, the record a word a cycle: 0, 4 or 9 words),
      then one beat a cycle, then the unit's latency and 3 cycles (FIFO, write, ``done``); with
      nothing to write (a zero extent), ``R + 1``;
    * COPY: ``R + ceil(N / VL) + 3``; SPACE_TO_DEPTH: ``R + 2 * out_pixels * ceil(2C / VL) + 3``;
    * ADD, REQUANT: ``R + chunks + 3 + ResidualAdd.latency`` (27 with DSPs, 25 with LUTs),
      ``chunks = ceil(N / VL)`` with ``add_lanes = VL``, else ``sum(ceil(n_b / add_lanes))`` over the beats;
    * MAX_POOL: ``R + sum(t) + 4``, ``t`` the beats of each (pixel, group) window (in-bounds taps);
    * AVG_POOL: ``R + 3 + t[0] + sum(max(t[w], 11) for w >= 1) + 11`` (the divider's 11 cycles);
    * MEAN: groups latched by the serializer at ``L[0] = max(R + P + 2, R + 33)`` (the sum of P
      pixels, or the 32-cycle divider), ``L[g+1] = max(L[g] + P, L[g] + n[g] + 1)`` (n lanes a
      group), done at ``L[-1] + n[-1] + 2 + Requantizer.latency``.
    A refused instruction raises ``error`` after 4 cycles.
    """
    import math

    vl = cfg.vector_lanes
    func = VecFunc(f["func"])
    style = mul_style_for(cfg)
    add_latency = ResidualAdd.latency_for("dsp" if style == "dsp" else "lut")
    ext = extents(Opcode.VEC, f, cfg.lanes, cfg.width)
    r = 5 + (ext["param"].size // 4 if "param" in ext else 0)  # the record's words
    c = f["channels"]
    n = ext["src"].size
    if ext["dst"].size == 0:  # nothing to write: straight to done
        return r + 1
    if func == VecFunc.COPY:
        return r + math.ceil(n / vl) + 3
    if func == VecFunc.SPACE_TO_DEPTH:
        return r + 2 * f["out_rows"] * f["out_cols"] * math.ceil(2 * c / vl) + 3
    if func in (VecFunc.ADD, VecFunc.MUL, VecFunc.REQUANT):
        al = cfg.adders if add_lanes is None else add_lanes
        beats = math.ceil(n / vl)
        chunks = (beats - 1) * (vl // al) + math.ceil((n - (beats - 1) * vl) / al)
        return r + chunks + 3 + add_latency
    if func == VecFunc.MAX_POOL:
        return r + int(_window_taps(f, vl).sum()) + 4
    if func == VecFunc.AVG_POOL:
        t = _window_taps(f, vl)
        return r + 3 + int(t[0]) + int((t[1:].clip(DIVIDE_CYCLES)).sum()) + DIVIDE_CYCLES
    if func == VecFunc.MEAN:
        if style != "dsp":
            return None
        p = f["in_rows"] * f["in_cols"]
        lanes = [min(vl, c - g) for g in range(0, c, vl)]
        latch = max(r + p + 2, r + MEAN_DIVIDE_CYCLES + 1)
        for g in range(1, len(lanes)):
            latch = max(latch + p, latch + lanes[g - 1] + 1)
        return latch + lanes[-1] + 2 + Requantizer.latency_for(style)
    raise ValueError(f"vec_cycles: unknown func {func!r}")


def vec_cycles_bounds(cfg, f: dict, add_lanes: int | None = None) -> tuple[int, int]:
    """``(lo, hi)`` cycles of a valid ``VEC``: ``vec_cycles`` twice where it is exact; for MEAN
    with the serial requantizer (one accumulator every ``SERIAL_PHASES`` = 7 cycles at a free-running
    phase) the recurrence of :func:`vec_cycles` with 7 cycles a lane,
    ``L[g+1] = max(L[g] + P, L[g] + 7 n[g] + 1)``, done near ``L[-1] + 7 n[-1] + 93``, within 7 either way."""
    exact = vec_cycles(cfg, f, add_lanes)
    if exact is not None:
        return exact, exact
    vl, c = cfg.vector_lanes, f["channels"]
    r = 5 + isa.RESCALE_PARAM_WORDS
    p = f["in_rows"] * f["in_cols"]
    lanes = [min(vl, c - g) for g in range(0, c, vl)]
    latch = max(r + p + 2, r + MEAN_DIVIDE_CYCLES + 1)
    for g in range(1, len(lanes)):
        latch = max(latch + p, latch + 7 * lanes[g - 1] + 1)
    mid = latch + 7 * lanes[-1] + 93
    return mid - 7, mid + 7
