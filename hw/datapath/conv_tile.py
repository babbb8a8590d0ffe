"""A convolution tile: MAC array -> per-channel serializer -> requantizer.

The compute path of one CONV_2D / FULLY_CONNECTED output pixel block: ``lanes`` int32
accumulators at a time, requantized to int8 one channel per cycle.
"""

from amaranth.hdl import Array, Cat, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from onda.hw.isa import Epilogue

from .gemm import MacArray, MacBeatLayout
from .requantize import Requantizer
from .requantize_double import DoubleRequantizer

__all__ = ["ChannelParamLayout", "ConvTile", "TileBeatLayout"]


class ChannelParamLayout(data.StructLayout):
    """A write of one lane's per-channel requantization parameters into one bank.

    Fields: ``lane`` (which of the ``lanes`` parameter registers), ``bank`` (which of the two
    register banks), ``bias`` (int32), ``multiplier`` (FIXED: the Q0.31 multiplier; DOUBLE: the
    scale's low 32 bits), ``shift`` (FIXED: the signed 6-bit exponent), ``scale_hi`` (DOUBLE: the
    scale's high 32 bits; ignored by a tile built without the DOUBLE epilogue).
    """

    def __init__(self, lanes: int):
        super().__init__({
            "lane": unsigned(max(1, (lanes - 1).bit_length())),
            "bias": signed(32),
            "multiplier": signed(32),
            "shift": signed(6),
            "bank": 1,
            "scale_hi": unsigned(32),
        })


class TileBeatLayout(data.StructLayout):
    """One beat of the tile's input: a :class:`~.gemm.MacBeatLayout` beat (``x``, ``w``,
    ``first``, ``last``) and ``bank``, the parameter bank the beat's dot product is requantized
    with (read on its ``last`` beat)."""

    def __init__(self, lanes: int, width: int):
        super().__init__({**{name: f.shape for name, f in MacBeatLayout(lanes, width)}, "bank": 1})


class ConvTile(wiring.Component):
    """:class:`MacArray` followed by the requantizer, with two banks of ``lanes`` parameter registers.

    Each ``last`` beat of the MAC array yields ``lanes`` accumulators; the serializer hands
    them to the requantizer in lane order (lane 0 first) together with that lane's parameters
    from the bank the vector's ``last`` beat named, so ``o`` carries ``lanes`` int8 outputs per
    dot product. The serializer takes a new accumulator vector the cycle after its last lane
    leaves, so the MAC array never stalls while the dot products are more than
    ``lanes * cycles_per_result`` beats long (the requantizer's rate: 1, or ``SERIAL_PHASES`` with
    ``mul_style="serial"``).

    Parameter handshake: a bank is *in use* from the cycle a ``last`` beat naming it is accepted
    on ``i`` until that vector's last lane has entered the requantizer; ``params.ready`` is low
    while the written lane of the bank is in use (a lane the serializer has already sent from the
    bank's last vector in flight is free again). So a sequencer loads the next lane group's parameters into
    the other bank while the current group computes, and waits only when that bank's previous
    vectors are still on their way (a write can never change a vector's parameters).

    Parameters
    ----------
    lanes, width, acc_width : int
        As :class:`MacArray`.
    mul_style : "dsp" | "lut" | "serial"
        As :class:`Requantizer`.
    lut_lanes : int
        As :class:`MacArray`.
    double : bool
        Also build the DOUBLE epilogue (:class:`~.requantize_double.DoubleRequantizer`, same rate
        and latency), chosen per instruction by the ``epilogue`` port.
    restartable : bool
        Add the ``restart`` port: a serial requantizer's free-running phase (it takes a lane
        only every ``SERIAL_PHASES`` cycles) restarts, so an instruction's timing does not depend
        on the cycle it began in.

    Members
    -------
    i : In(stream.Signature(TileBeatLayout(lanes, width)))
    o : Out(stream.Signature(signed(8)))
    params : In(stream.Signature(ChannelParamLayout(lanes)))
        Writes one lane of one parameter bank; ready unless that bank is in use.
    x_zp, out_zero_point, act_min, act_max : In(signed(8))
        The layer's static parameters.
    epilogue : In(Epilogue)
        (``double`` only) FIXED or DOUBLE; static while vectors are in flight.
    restart : In(1)
        (``restartable`` only) resets the requantizers (phase and valid bits); to be asserted only
        while the tile is empty (between instructions).
    acc_in, acc_out : In(1)
        (``accumulate`` only) static per instruction. ``acc_in``: each lane's sum starts from
        ``acc_word`` instead of its bias. ``acc_out``: the serializer sends one lane a cycle to
        ``raw`` (the int32 sum, wrapping) instead of into the requantizer, and ``o`` stays idle.
    acc_word : In(signed(32))
        (``accumulate`` only) the partial sum of the lane the serializer sends this cycle: the
        sequencer reads the accumulator buffer one word ahead, at the ``lane_take``-th word.
    lane_take : Out(1)
        (``accumulate`` only) the serializer sends a lane this cycle (to the requantizer or ``raw``).
    raw : Out(stream.Signature(signed(32)))
        (``accumulate`` only) the sums of ``acc_out``, in lane order, a register one cycle after
        ``lane_take``; always accepted (``ready`` is ignored).
    """

    def __init__(self, lanes: int = 8, width: int = 16, acc_width: int = 32, mul_style: str = "dsp",
                 lut_lanes: int = 0, double: bool = False, restartable: bool = False, accumulate: bool = False):
        self.lanes, self.width, self.acc_width, self.double = lanes, width, acc_width, bool(double)
        self.restartable = bool(restartable)
        self.accumulate = bool(accumulate)
        self.mac = MacArray(lanes, width, acc_width, lut_lanes)
        self.requant = Requantizer(mul_style)
        self.requant_double = DoubleRequantizer(mul_style) if double else None
        # Vectors between ``i`` and the serializer: the MAC array's pipeline and output register,
        # plus one being accepted.
        self.max_inflight = self.mac.latency + 3
        members = {
            "i": In(stream.Signature(TileBeatLayout(lanes, width))),
            "o": Out(stream.Signature(signed(8))),
            "params": In(stream.Signature(ChannelParamLayout(lanes))),
            "x_zp": In(signed(8)),
            "out_zero_point": In(signed(8)),
            "act_min": In(signed(8)),
            "act_max": In(signed(8)),
        }
        if double:
            members["epilogue"] = In(Epilogue)
        if restartable:
            members["restart"] = In(1)
        if accumulate:
            members.update({"acc_in": In(1), "acc_out": In(1), "acc_word": In(signed(32)), "lane_take": Out(1),
                            "raw": Out(stream.Signature(signed(32)))})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = self.mac
        rq = self.requant
        wrap = (lambda u: ResetInserter(self.restart)(u)) if self.restartable else (lambda u: u)
        m.submodules.requant = wrap(rq)
        m.d.comb += [mac.i.valid.eq(self.i.valid), self.i.ready.eq(mac.i.ready)]
        for f in ("x", "w", "first", "last"):
            m.d.comb += getattr(mac.i.payload, f).eq(getattr(self.i.payload, f))
        units = [rq] + ([self.requant_double] if self.double else [])
        if self.double:
            m.submodules.requant_double = wrap(self.requant_double)
        m.d.comb += mac.x_zp.eq(self.x_zp)
        for u in units:
            m.d.comb += [u.out_zero_point.eq(self.out_zero_point), u.act_min.eq(self.act_min),
                         u.act_max.eq(self.act_max)]

        def regs(name, shape):
            return [Array(Signal(shape, name=f"{name}{b}_{l}", reset_less=True) for l in range(self.lanes))
                    for b in range(2)]
        bias, mult, shift = regs("bias", signed(32)), regs("mult", signed(32)), regs("shift", signed(6))
        scale_hi = regs("scale_hi", unsigned(32)) if self.double else None

        # Bank bookkeeping: the bank of every vector between `i` and the serializer, in order.
        m.submodules.banks = banks = SyncFIFOBuffered(width=1, depth=self.max_inflight)
        inflight = [Signal(range(self.max_inflight + 2), name=f"inflight{b}") for b in range(2)]
        enter = Signal()  # a `last` beat accepted: its vector now holds its bank
        leave = Signal()  # the serializer's last lane entered the requantizer: its bank is released
        lane = Signal(range(self.lanes))  # the serializer's lane
        busy = Signal()  # the serializer holds a vector
        held_bank = Signal()  # ... and its bank
        m.d.comb += [enter.eq(self.i.valid & self.i.ready & self.i.payload.last),
                     banks.w_en.eq(enter), banks.w_data.eq(self.i.payload.bank)]
        for b in range(2):
            inc = enter & (self.i.payload.bank == b)
            dec = leave & (held_bank == b)
            m.d.sync += inflight[b].eq(inflight[b] + inc - dec)

        p = self.params.payload
        # A lane's registers are free when no vector naming the bank is in flight, or when the one
        # left is being serialized and has already sent that lane (the requantizer holds what it
        # took): the next group's parameters follow the serializer lane by lane. A `last` beat
        # naming the bank in this very cycle makes it in use already.
        n_bank = Mux(p.bank, inflight[1], inflight[0])
        lane_passed = (n_bank == 1) & busy & (held_bank == p.bank) & (p.lane < lane)
        m.d.comb += self.params.ready.eq(((n_bank == 0) | lane_passed)
                                         & ~(enter & (self.i.payload.bank == p.bank)))
        with m.If(self.params.valid & self.params.ready):
            for b in range(2):
                with m.If(p.bank == b):
                    m.d.sync += [bias[b][p.lane].eq(p.bias), mult[b][p.lane].eq(p.multiplier),
                                 shift[b][p.lane].eq(p.shift)]
                    if self.double:
                        m.d.sync += scale_hi[b][p.lane].eq(p.scale_hi)

        # Serializer: a held accumulator vector and the lane being sent.
        accs = Array(Signal(signed(self.acc_width), name=f"held{l}", reset_less=True) for l in range(self.lanes))
        take = Signal()  # the current requantizer takes the lane offered
        use_double = Signal()
        if self.double:
            m.d.comb += use_double.eq(self.epilogue == Epilogue.DOUBLE)
        # The MAC array's ready is a register (~busy), not `~busy | leave`: its enable fans out to
        # every MAC pipeline register, so it must not wait on the requantizer's handshake. Cost:
        # one idle cycle between vectors, hidden whenever a dot product has more than `lanes`
        # beats (K > lanes * width).
        sel_bias = Mux(held_bank, bias[1][lane], bias[0][lane])
        sel_mult = Mux(held_bank, mult[1][lane], mult[0][lane])
        to_raw = Signal()  # acc_out: lanes go to `raw`, one a cycle
        if self.accumulate:
            sel_bias = Mux(self.acc_in, self.acc_word, sel_bias)
            m.d.comb += [to_raw.eq(self.acc_out), self.lane_take.eq(take)]
            m.d.sync += [self.raw.valid.eq(take & to_raw), self.raw.payload.eq(accs[lane] + sel_bias)]
        m.d.comb += [take.eq(busy & (to_raw | Mux(use_double, units[-1].i.ready, rq.i.ready))),
                     leave.eq(take & (lane == self.lanes - 1)),
                     mac.o.ready.eq(~busy),
                     rq.i.valid.eq(busy & ~use_double & ~to_raw),
                     rq.i.payload.acc.eq(accs[lane]),
                     rq.i.payload.bias.eq(sel_bias),
                     rq.i.payload.multiplier.eq(sel_mult),
                     rq.i.payload.shift.eq(Mux(held_bank, shift[1][lane], shift[0][lane]))]
        if self.double:
            dq = self.requant_double
            m.d.comb += [dq.i.valid.eq(busy & use_double & ~to_raw),
                         dq.i.payload.acc.eq(accs[lane]),
                         dq.i.payload.bias.eq(sel_bias),
                         dq.i.payload.scale.eq(Cat(sel_mult, Mux(held_bank, scale_hi[1][lane], scale_hi[0][lane])))]
            # Both pipelines are empty whenever the epilogue changes (an instruction's outputs have
            # all left before the next begins): the output is the selected unit's.
            m.d.comb += [self.o.valid.eq(Mux(use_double, dq.o.valid, rq.o.valid)),
                         self.o.payload.eq(Mux(use_double, dq.o.payload, rq.o.payload)),
                         rq.o.ready.eq(self.o.ready & ~use_double), dq.o.ready.eq(self.o.ready & use_double)]
        else:
            wiring.connect(m, rq.o, wiring.flipped(self.o))
        with m.If(take):
            m.d.sync += lane.eq(lane + 1)
            with m.If(leave):
                m.d.sync += [lane.eq(0), busy.eq(0)]
        m.d.comb += banks.r_en.eq(mac.o.valid & mac.o.ready)
        with m.If(mac.o.valid & mac.o.ready):
            m.d.sync += [accs[l].eq(mac.o.payload[l]) for l in range(self.lanes)]
            m.d.sync += [busy.eq(1), lane.eq(0), held_bank.eq(banks.r_data)]
        return m
