"""The GEMM sequencer: executes one ``GEMM`` instruction, an implicit-GEMM convolution tile, on the
datapath's :class:`~onda.hw.datapath.conv_tile.ConvTile`.

It walks the implicit GEMM of ``hw/ISA.md`` (the oracle is ``Machine.gemm`` of the functional
emulator): for each lane group ``g``, each output pixel ``(r, c)`` (row-major), each kernel row
``i``, each contiguous segment of the input band (the kernel row's ``kw * C`` bytes, or each tap's
``C`` bytes when ``dilation_w > 1``), ``ceil(len / width)`` MAC beats: ``width`` activation bytes
from ACT and the matching ``lanes * width`` weight bytes from WGT (lane-interleaved, one aligned
access; a dot product's beats are consecutive there, each segment padded to whole beats).
The last beat of a segment has its activation bytes past the segment's end zeroed (the ISA folds
``-x_zp * sum(w)`` into the bias, so the MAC array runs with ``x_zp = 0``). The ConvTile's
outputs, ``lanes`` per pixel in lane order, go to OUT one byte a cycle at
``out_addr + pixel * out_channels + g * lanes + lane`` (lanes past ``out_channels`` dropped).

Parameters: the ``lanes`` PARAM records of group ``g`` are read (one a cycle, contiguous from
group to group) into the ConvTile's parameter bank ``g % 2`` as soon as group ``g - 2``'s last
beat is in the tile; the ConvTile holds a lane's write back while that bank's previous vector
still has to send the lane, and the walk waits at a group's first beat only until that group's
parameters are in.

Timing (measured, ``tests/engine/test_gemm_unit.py``): one MAC beat a cycle, a dot product no
faster than the requantizer drains a vector (``d = EngineConfig.drain_cycles``). With
``N = pixels * groups`` dot products of ``beats = kh * ceil(kw * C / width)`` beats
(``kh * kw * ceil(C / width)`` when ``dilation_w > 1``), command taken to ``done``::

    (N - 1) * max(beats, d) + beats + FILL

``FILL`` = 64 on the ULX3S build (16 x 8, DSP requantizer) and 133 .. 139 on the iCEBreaker's
(4 x 2, serial requantizer: it takes a lane every 7 cycles on a grid from the instruction's
start, so the end rounds up to that grid). The last dot product's drain is in the fill, so this
is ``gemm_cycles`` minus ``max(0, d - beats)`` plus FILL. A GEMM with no pixel or channel takes
5 cycles. Exception: a single-pixel tile of three or more lane groups with dot products of about
``d`` beats can wait for the third group's parameters (bank 0 is free only once the first group
has left the serializer, and the walk starts a group only when its parameters are in): at most
9 cycles once per instruction on the ULX3S build (beats 16..22), 8 on the iCEBreaker's (beats
27..33), measured.

Passes over K (``hw/ISA.md``): the accumulator buffer is one int32 word per lane and pixel, in
the order the serializer sends lanes, so it is read one word ahead of the serializer (the word
it sends next: its sum starts there with ``acc_in``) and written from the serializer's ``raw``
output with ``acc_out``. Then no requantizer paces the serializer: it sends a lane a cycle, a
dot product is no faster than ``lanes + 1`` cycles, and the fill is ``acc_fill_cycles``
(23 on the iCEBreaker's build, 48 on the ULX3S's); the same once-per-instruction wait for a
third group's parameters applies (at most 8 cycles measured on both builds).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.datapath.conv_tile import ConvTile
from onda.hw.datapath.gemm import mac_array_latency
from onda.hw.datapath.mbqm import SERIAL_PHASES
from onda.hw.datapath.requantize import mul_style_for
from onda.hw.isa import Epilogue, Opcode

from .buffers import ByteReadSignature, ByteWriteSignature, addr_bits
from .errors import EngineError

__all__ = ["GemmUnit", "PARAM_RECORD_BYTES", "dot_product_beats", "dot_product_interval", "gemm_fill_cycles",
           "gemm_unit_cycles"]

PARAM_RECORD_BYTES = isa.GEMM_PARAM_WORDS * 4  # one channel's (bias, word1, word2)
SETUP_CYCLES = 4  # cmd taken -> fields latched, three levels of extent products, range check


EMPTY_CYCLES = 5  # a GEMM with no pixel or no channel: setup and range check, then done


def gemm_fill_cycles(cfg) -> int:
    """``FILL`` of the timing above, the least it is: setup, the first group's parameters, the
    ACT/WGT read, the MAC array, the serializer (a lane a cycle, or one every ``SERIAL_PHASES`` = 7
    with the serial requantizer), the requantizer, the OUT write, done. Measured on the two builds
    (``tests/engine/test_gemm_unit.py``): 64 with DSPs and 16 lanes, 133 serial with 4 lanes."""
    if mul_style_for(cfg) == "dsp":
        return 48 + cfg.lanes
    return 105 + SERIAL_PHASES * cfg.lanes


def acc_fill_cycles(cfg) -> int:
    """``FILL`` of a GEMM with ``acc_out`` (no requantizer): setup, the first group's parameters
    (a record a cycle), the MAC array, the serializer sending a lane a cycle into ACC, done.
    Measured: 23 on the iCEBreaker's build, 48 on the ULX3S's."""
    return 8 + 2 * cfg.lanes + mac_array_latency(cfg.width)


def dot_product_beats(cfg, kh: int, kw: int, channels: int, dilation_w: int = 1) -> int:
    """MAC beats of one dot product (one output pixel, one lane group): ``kh`` kernel rows of
    ``ceil(kw * channels / width)`` beats (a row's taps are contiguous in the band), or of ``kw *
    ceil(channels / width)`` when ``dilation_w > 1`` (each tap its own segment)."""
    w = cfg.width
    per_row = -(-kw * channels // w) if dilation_w == 1 else kw * -(-channels // w)
    return kh * per_row


def dot_product_interval(cfg, beats: int) -> int:
    """Cycles from one dot product of ``beats`` beats to the next once the pipeline is full:
    one beat a cycle, no faster than the requantizer drains a vector (``cfg.drain_cycles``)."""
    return max(beats, cfg.drain_cycles)


def gemm_unit_cycles(cfg, f: dict) -> int:
    """Cycles from the cycle a ``GEMM`` with fields ``f`` is taken to its ``done``:
    ``(N - 1) * max(beats, d) + beats + FILL``, with the serial requantizer rounded up to its
    grid of ``SERIAL_PHASES`` cycles from the instruction's start; 5 for an empty one. With
    ``acc_out``: ``(N - 1) * max(beats, lanes + 1) + beats + acc_fill_cycles``."""
    n = f["out_rows"] * f["out_cols"] * isa.weight_groups(f["out_channels"], cfg.lanes)
    if n == 0:
        return EMPTY_CYCLES
    beats = dot_product_beats(cfg, f["kh"], f["kw"], f["channels"], f["dilation_w"])
    if f.get("acc_out"):
        return (n - 1) * max(beats, cfg.lanes + 1) + beats + acc_fill_cycles(cfg)
    took = (n - 1) * dot_product_interval(cfg, beats) + beats + gemm_fill_cycles(cfg)
    if mul_style_for(cfg) != "dsp":
        took += -took % SERIAL_PHASES
    return took


class GemmUnit(wiring.Component):
    """Sequencer of ``GEMM`` instructions around a :class:`ConvTile` (both epilogues).

    Parameters
    ----------
    cfg : EngineConfig
        ``lanes`` (a power of two), ``width``, the buffer sizes and the requantizer
        (``requantize.mul_style_for(cfg)``).

    Members
    -------
    cmd : In(stream.Signature(isa.field_layout(Opcode.GEMM)))
        One instruction, taken when idle.
    done : Out(1)
        One-cycle pulse the cycle after the instruction's last OUT write was performed.
    error : Out(EngineError)
        Nonzero: the instruction was refused (``BAD_FIELD``: a zero kernel, stride or dilation,
        an output tile reading beyond the band, ``wgt_addr`` not a multiple of ``lanes * width``, an
        unknown epilogue; ``BUFFER_RANGE``: an ACT / WGT / PARAM / OUT extent outside its
        buffer; the first failing check in ``Machine.gemm``'s order). Sticky; no more commands.
    act_r : Out(ByteReadSignature(width, addr_bits(act_bytes)))
        To ACT's ``r_gemm``: one beat's activations.
    wgt_r : Out(ByteReadSignature(lanes * width, addr_bits(wgt_bytes)))
        To WGT's ``r_gemm``: one beat's weights of the lane group.
    param_r : Out(ByteReadSignature(12, addr_bits(param_bytes)))
        To PARAM's ``r_gemm``: one channel's record (``isa.record_layout("gemm_fixed"/"gemm_double")``).
    out_w : Out(ByteWriteSignature(1, addr_bits(out_bytes)))
        To OUT's ``w_gemm``: one output byte a cycle.

    Latency: the module docstring's formula. The fill is :data:`SETUP_CYCLES`, the first group's
    ``lanes`` parameter records, the ACT/WGT read, the MAC array, the serializer, the
    requantizer's latency and the OUT write, then ``done``.
    """

    def __init__(self, cfg):
        lanes, width = cfg.lanes, cfg.width
        if lanes < 1 or lanes & (lanes - 1):
            raise ValueError(f"GemmUnit: lanes must be a power of two (WGT beats are lane-interleaved), got {lanes}")
        if width < 1 or width & (width - 1):
            raise ValueError(f"GemmUnit: width must be a power of two, got {width}")
        self.cfg = cfg
        self.lanes, self.width = lanes, width
        self.mul_style = mul_style_for(cfg)
        self.acc_words = cfg.acc_bytes // 4  # the accumulator buffer, one int32 word per lane and pixel
        self.tile = ConvTile(lanes, width, mul_style=self.mul_style, double=True, restartable=True,
                             accumulate=self.acc_words > 0, lut_lanes=cfg.lut_mac_lanes)
        super().__init__({
            "cmd": In(stream.Signature(isa.field_layout(Opcode.GEMM))),
            "done": Out(1),
            "error": Out(EngineError),
            "act_r": Out(ByteReadSignature(width, addr_bits(cfg.act_bytes))),
            "wgt_r": Out(ByteReadSignature(lanes * width, addr_bits(cfg.wgt_bytes))),
            "param_r": Out(ByteReadSignature(PARAM_RECORD_BYTES, addr_bits(cfg.param_bytes))),
            "out_w": Out(ByteWriteSignature(1, addr_bits(cfg.out_bytes))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lanes, width = self.cfg, self.lanes, self.width
        lg_lanes, lg_width = (lanes - 1).bit_length(), (width - 1).bit_length()
        m.submodules.tile = tile = self.tile
        A = 34  # internal address / extent width (every field sum below fits)

        f = Signal(isa.field_layout(Opcode.GEMM))  # the instruction being executed
        error = Signal(EngineError)
        m.d.comb += self.error.eq(error)

        # -- setup: extents and walk steps from the fields, three levels of products ------------------
        ekh, ekw = Signal(signed(10)), Signal(signed(10))
        irc, pix, cin_row = Signal(24), Signal(24), Signal(28)
        seg_len, segs, tap_step, pix_step = Signal(20), Signal(4), Signal(20), Signal(20)
        groups, param_ext, band_r, band_c = Signal(17), Signal(A), Signal(16), Signal(16)
        k_len, act_ext, row_step, prow_step, out_ext = Signal(30), Signal(A + 6), Signal(A), Signal(A), Signal(A + 6)
        need_r, need_c = Signal(signed(20)), Signal(signed(20))
        wgt_ext, group_wstep = Signal(A + 20), Signal(A)
        rsegs = Signal(8)  # segments of a dot product: kh, or kh * kw when dilation_w > 1
        bad_kernel = Signal()
        gp, acc_ext, acc_total = Signal(A + 6), Signal(A + 10), Signal(A + 10)  # ACC: groups * pixels vectors
        uses_acc = Signal()

        # -- walk state ---------------------------------------------------------------------------------
        g, r, c, i, t = Signal(17), Signal(12), Signal(12), Signal(4), Signal(4)
        rem = Signal(20)
        act_pixrow, act_pix, act_row, act_seg, act_cur = (Signal(A, name=n) for n in
                                                          ("act_pixrow", "act_pix", "act_row", "act_seg", "act_cur"))
        wgt_group, wgt_cur = Signal(A), Signal(A)
        pix_first, grp_first, gen_active = Signal(), Signal(), Signal()
        loaded = Signal(2)  # a bank holds the parameters of the group the walk is about to start
        ended = Signal(17)  # groups whose last beat the tile has taken

        # -- beat stage B: the ACT/WGT data of the beat read last cycle -------------------------------
        b_valid, b_first, b_last, b_bank, b_glast = Signal(), Signal(), Signal(), Signal(), Signal()
        b_count = Signal(range(width + 1))

        # -- parameter loader ---------------------------------------------------------------------------
        lg = Signal(17)  # the group whose records are being read
        ll = Signal(range(lanes))
        l_active = Signal()
        p_addr = Signal(A)
        pv, p_lane, p_bank, p_last = Signal(), Signal(range(lanes)), Signal(), Signal()

        # -- outputs ------------------------------------------------------------------------------------
        o_lane = Signal(range(lanes))
        o_pix, o_g = Signal(24), Signal(17)
        o_base, o_gbase = Signal(A), Signal(A)
        o_ch = Signal(18)  # channel of the output arriving: o_g * lanes + o_lane
        o_chbase = Signal(18)
        w_en, w_addr, w_data = Signal(), Signal(A), Signal(8)
        last_write = Signal()  # the instruction's last output is being written

        running = Signal()
        a_sent, a_written = Signal(A + 10), Signal(A + 10)  # ACC words read (sent by the serializer), written
        acc_last = Signal()  # acc_out: the instruction's last ACC write is being performed
        m.d.comb += [tile.x_zp.eq(0), tile.out_zero_point.eq(f.out_zp), tile.act_min.eq(f.act_min),
                     tile.act_max.eq(f.act_max), tile.epilogue.eq(f.epilogue)]

        with m.FSM(name="gemm"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += f.eq(self.cmd.payload)
                    m.next = "SETUP1"
            with m.State("SETUP1"):
                m.d.sync += [
                    bad_kernel.eq((f.kh == 0) | (f.kw == 0) | (f.stride_h == 0) | (f.stride_w == 0)
                                  | (f.dilation_h == 0) | (f.dilation_w == 0)),
                    ekh.eq(f.kh * f.dilation_h - f.dilation_h + 1), ekw.eq(f.kw * f.dilation_w - f.dilation_w + 1),
                    irc.eq(f.in_rows * f.in_cols), pix.eq(f.out_rows * f.out_cols),
                    cin_row.eq(f.in_cols * f.channels),
                    seg_len.eq(Mux(f.dilation_w == 1, f.kw * f.channels, f.channels)),
                    segs.eq(Mux(f.dilation_w == 1, 1, f.kw)), rsegs.eq(Mux(f.dilation_w == 1, f.kh, f.kh * f.kw)),
                    tap_step.eq(f.dilation_w * f.channels), pix_step.eq(f.stride_w * f.channels),
                    groups.eq((f.out_channels + (lanes - 1)) >> lg_lanes),
                    param_ext.eq(f.param_addr + f.out_channels * PARAM_RECORD_BYTES),
                    band_r.eq(f.out_rows * f.stride_h), band_c.eq(f.out_cols * f.stride_w),
                ]
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += [
                    # K' (WGT's layout, hw/ISA.md): each segment padded to whole beats
                    k_len.eq(rsegs * (((seg_len + (width - 1)) >> lg_width) << lg_width)),
                    act_ext.eq(f.act_addr + irc * f.channels),
                    row_step.eq(f.dilation_h * cin_row), prow_step.eq(f.stride_h * cin_row),
                    out_ext.eq(f.out_addr + pix * f.out_channels),
                    need_r.eq(band_r - f.stride_h + ekh), need_c.eq(band_c - f.stride_w + ekw),
                    gp.eq(groups * pix), uses_acc.eq(f.acc_in | f.acc_out),
                ]
                m.next = "SETUP3"
            with m.State("SETUP3"):
                m.d.sync += [wgt_ext.eq(f.wgt_addr + ((groups * k_len) << lg_lanes)),
                             group_wstep.eq(k_len << lg_lanes),
                             acc_ext.eq(f.acc_addr + (gp << (lg_lanes + 2))), acc_total.eq(gp << lg_lanes)]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += tile.restart.eq(1)  # the tile is empty: every instruction starts at phase 0
                # Machine.gemm's checks, in its order: the first failing one names the error.
                code = Signal(EngineError)
                with m.If(bad_kernel):
                    m.d.comb += code.eq(EngineError.BAD_FIELD)
                with m.Elif((need_r > f.in_rows) | (need_c > f.in_cols)):
                    m.d.comb += code.eq(EngineError.BAD_FIELD)
                with m.Elif(act_ext > cfg.act_bytes):
                    m.d.comb += code.eq(EngineError.BUFFER_RANGE)
                with m.Elif(f.wgt_addr[:lg_lanes + lg_width] != 0 if lg_lanes + lg_width else 0):
                    m.d.comb += code.eq(EngineError.BAD_FIELD)
                with m.Elif(wgt_ext > cfg.wgt_bytes):
                    m.d.comb += code.eq(EngineError.BUFFER_RANGE)
                with m.Elif(param_ext > cfg.param_bytes):
                    m.d.comb += code.eq(EngineError.BUFFER_RANGE)
                with m.Elif((f.epilogue != Epilogue.FIXED) & (f.epilogue != Epilogue.DOUBLE)):
                    m.d.comb += code.eq(EngineError.BAD_FIELD)
                with m.Elif(~f.acc_out & (out_ext > cfg.out_bytes)):
                    m.d.comb += code.eq(EngineError.BUFFER_RANGE)
                with m.Elif(uses_acc & (f.acc_addr[:lg_lanes + 2] != 0)):
                    m.d.comb += code.eq(EngineError.BAD_FIELD)
                with m.Elif(uses_acc & (acc_ext > cfg.acc_bytes)):
                    m.d.comb += code.eq(EngineError.BUFFER_RANGE)
                with m.If(code != EngineError.NONE):
                    m.d.sync += error.eq(code)
                    m.next = "ERROR"
                with m.Elif((pix == 0) | (groups == 0)):
                    m.next = "FINISH"  # nothing to compute or write
                with m.Else():
                    m.d.sync += [
                        g.eq(0), r.eq(0), c.eq(0), i.eq(0), t.eq(0), rem.eq(seg_len),
                        act_pixrow.eq(f.act_addr), act_pix.eq(f.act_addr), act_row.eq(f.act_addr),
                        act_seg.eq(f.act_addr), act_cur.eq(f.act_addr),
                        wgt_group.eq(f.wgt_addr), wgt_cur.eq(f.wgt_addr),
                        pix_first.eq(1), grp_first.eq(1), gen_active.eq(1), loaded.eq(0), ended.eq(0),
                        lg.eq(0), ll.eq(0), p_addr.eq(f.param_addr),
                        o_lane.eq(0), o_pix.eq(0), o_g.eq(0), o_base.eq(f.out_addr), o_gbase.eq(f.out_addr),
                        o_chbase.eq(0), a_sent.eq(0), a_written.eq(0),
                    ]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(last_write | acc_last):  # the last OUT (ACC) write is performed at the end of this cycle
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
            with m.State("ERROR"):
                pass

        # -- the walk: one beat request a cycle -----------------------------------------------------------
        adv = Signal()  # stage B can take a new beat
        can_issue = Signal()
        issue = Signal()
        m.d.comb += [
            adv.eq(~b_valid | tile.i.ready),
            can_issue.eq(running & gen_active & (~grp_first | loaded.bit_select(g[0], 1))),
            issue.eq(adv & can_issue),
            self.act_r.addr.eq(act_cur), self.act_r.en.eq(issue),
            self.wgt_r.addr.eq(wgt_cur), self.wgt_r.en.eq(issue),
        ]
        seg_end = rem <= width
        row_end = seg_end & (t == segs - 1)
        pix_end = row_end & (i == f.kh - 1)
        with m.If(adv):
            m.d.sync += b_valid.eq(issue)
        with m.If(issue):
            m.d.sync += [b_first.eq(pix_first), b_last.eq(pix_end), b_bank.eq(g[0]),
                         b_glast.eq(pix_end & (c == f.out_cols - 1) & (r == f.out_rows - 1)),
                         b_count.eq(Mux(rem < width, rem, width)), pix_first.eq(0), grp_first.eq(0)]
            with m.If(grp_first):
                m.d.sync += loaded.bit_select(g[0], 1).eq(0)
            # A dot product's beats are consecutive in WGT (segments padded to whole beats).
            with m.If(~pix_end):
                m.d.sync += wgt_cur.eq(wgt_cur + width * lanes)
            with m.If(~seg_end):
                m.d.sync += [rem.eq(rem - width), act_cur.eq(act_cur + width)]
            with m.Elif(~row_end):  # next tap of the kernel row (dilation_w > 1)
                a = act_seg + tap_step
                m.d.sync += [t.eq(t + 1), rem.eq(seg_len), act_seg.eq(a), act_cur.eq(a)]
            with m.Elif(~pix_end):  # next kernel row
                a = act_row + row_step
                m.d.sync += [i.eq(i + 1), t.eq(0), rem.eq(seg_len), act_row.eq(a), act_seg.eq(a), act_cur.eq(a)]
            with m.Else():  # next pixel
                m.d.sync += [i.eq(0), t.eq(0), rem.eq(seg_len), pix_first.eq(1)]
                nxt = Signal(A)
                with m.If(c != f.out_cols - 1):
                    m.d.comb += nxt.eq(act_pix + pix_step)
                    m.d.sync += [c.eq(c + 1), wgt_cur.eq(wgt_group)]
                with m.Elif(r != f.out_rows - 1):
                    m.d.comb += nxt.eq(act_pixrow + prow_step)
                    m.d.sync += [c.eq(0), r.eq(r + 1), act_pixrow.eq(nxt), wgt_cur.eq(wgt_group)]
                with m.Else():  # next lane group
                    wg = wgt_group + group_wstep
                    m.d.comb += nxt.eq(f.act_addr)
                    m.d.sync += [c.eq(0), r.eq(0), g.eq(g + 1), act_pixrow.eq(f.act_addr), wgt_group.eq(wg),
                                 wgt_cur.eq(wg), grp_first.eq(1)]
                    with m.If(g == groups - 1):
                        m.d.sync += gen_active.eq(0)
                m.d.sync += [act_pix.eq(nxt), act_row.eq(nxt), act_seg.eq(nxt), act_cur.eq(nxt)]

        # Stage B -> the tile: activations masked past the segment's end, weights de-interleaved.
        beat = tile.i.payload
        m.d.comb += [tile.i.valid.eq(b_valid), beat.first.eq(b_first), beat.last.eq(b_last), beat.bank.eq(b_bank)]
        for k in range(width):
            m.d.comb += beat.x[k].eq(Mux(k < b_count, self.act_r.data[k], 0))
            for lane in range(lanes):
                m.d.comb += beat.w[lane][k].eq(self.wgt_r.data[k * lanes + lane])
        with m.If(tile.i.valid & tile.i.ready & b_glast):
            m.d.sync += ended.eq(ended + 1)

        # -- parameter loader: group lg's records into bank lg % 2 ---------------------------------------
        p_adv = Signal()
        p_issue = Signal()
        # Group lg's bank was last used by group lg - 2: once that group's last beat is in the tile
        # (the tile then knows every vector that still needs the bank, and the walk has consumed
        # the bank's earlier load), its records may go in, lane by lane as the tile frees them.
        # Records are contiguous in PARAM, so the reads run on from group to group without a gap.
        m.d.comb += [l_active.eq(running & (lg < groups) & (ended + 1 >= lg)),
                     p_adv.eq(~pv | tile.params.ready), p_issue.eq(l_active & p_adv),
                     self.param_r.addr.eq(p_addr), self.param_r.en.eq(p_issue)]
        with m.If(p_adv):
            m.d.sync += pv.eq(p_issue)
        with m.If(p_issue):
            m.d.sync += [p_lane.eq(ll), p_bank.eq(lg[0]), p_last.eq(ll == lanes - 1), ll.eq(ll + 1),
                         p_addr.eq(p_addr + PARAM_RECORD_BYTES)]
            with m.If(ll == lanes - 1):
                m.d.sync += [ll.eq(0), lg.eq(lg + 1)]
        rec = self.param_r.data
        word = [Cat(*(rec[4 * w + b] for b in range(4))) for w in range(3)]
        pp = tile.params.payload
        m.d.comb += [tile.params.valid.eq(pv), pp.lane.eq(p_lane), pp.bank.eq(p_bank),
                     pp.bias.eq(word[0]), pp.multiplier.eq(word[1]), pp.shift.eq(word[2][:6]),
                     pp.scale_hi.eq(word[2])]
        with m.If(tile.params.valid & tile.params.ready & p_last):
            m.d.sync += loaded.bit_select(p_bank, 1).eq(1)

        # -- outputs: lane order, lanes past out_channels dropped, one byte a cycle into OUT --------------
        m.d.comb += [tile.o.ready.eq(1), o_ch.eq(o_chbase + o_lane),
                     self.out_w.en.eq(w_en), self.out_w.addr.eq(w_addr), self.out_w.data[0].eq(w_data),
                     self.out_w.mask.eq(1)]
        m.d.sync += [w_en.eq(0), last_write.eq(0)]
        with m.If(tile.o.valid):
            m.d.sync += [w_en.eq(o_ch < f.out_channels), w_addr.eq(o_base + o_lane), w_data.eq(tile.o.payload),
                         o_lane.eq(o_lane + 1)]
            with m.If(o_lane == lanes - 1):
                m.d.sync += o_lane.eq(0)
                with m.If(o_pix != pix - 1):
                    m.d.sync += [o_pix.eq(o_pix + 1), o_base.eq(o_base + f.out_channels)]
                with m.Else():
                    m.d.sync += [o_pix.eq(0), o_g.eq(o_g + 1), o_gbase.eq(o_gbase + lanes), o_base.eq(o_gbase + lanes),
                                 o_chbase.eq(o_chbase + lanes)]
                    with m.If(o_g == groups - 1):
                        m.d.sync += last_write.eq(1)

        # -- the accumulator buffer: [groups, pixels, lanes] int32 words from acc_addr, in the order
        # the serializer sends lanes; read one word ahead (the word it sends next), written from `raw`.
        if self.acc_words:
            m.submodules.acc = acc = memory.Memory(shape=signed(32), depth=self.acc_words, init=[])
            rd, wr = acc.read_port(domain="sync"), acc.write_port()
            base = f.acc_addr >> 2
            m.d.comb += [rd.addr.eq(base + a_sent + tile.lane_take), tile.acc_word.eq(rd.data),
                         tile.acc_in.eq(f.acc_in), tile.acc_out.eq(f.acc_out), tile.raw.ready.eq(1),
                         wr.addr.eq(base + a_written), wr.data.eq(tile.raw.payload), wr.en.eq(tile.raw.valid),
                         acc_last.eq(tile.raw.valid & (a_written == acc_total - 1))]
            with m.If(tile.lane_take):
                m.d.sync += a_sent.eq(a_sent + 1)
            with m.If(tile.raw.valid):
                m.d.sync += a_written.eq(a_written + 1)
        return m
