"""A convolution tile: MAC array -> per-channel serializer -> requantizer.

The compute path of one CONV_2D / FULLY_CONNECTED output pixel block: ``lanes`` int32
accumulators at a time, requantized to int8 one channel per cycle.
"""

from amaranth.hdl import Array, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .gemm import MacArray, MacBeatLayout
from .requantize import Requantizer

__all__ = ["ChannelParamLayout", "ConvTile"]


class ChannelParamLayout(data.StructLayout):
    """A write of one lane's per-channel requantization parameters.

    Fields: ``lane`` (which of the ``lanes`` parameter registers), ``bias`` (int32),
    ``multiplier`` (Q0.31, int32), ``shift`` (signed 6-bit exponent).
    """

    def __init__(self, lanes: int):
        super().__init__({
            "lane": unsigned(max(1, (lanes - 1).bit_length())),
            "bias": signed(32),
            "multiplier": signed(32),
            "shift": signed(6),
        })


class ConvTile(wiring.Component):
    """:class:`MacArray` followed by :class:`Requantizer`, with ``lanes`` parameter registers.

    Each ``last`` beat of the MAC array yields ``lanes`` accumulators; the serializer hands
    them to the requantizer in lane order (lane 0 first) together with that lane's bias,
    multiplier and shift, so ``o`` carries ``lanes`` int8 outputs per dot product. The
    serializer takes a new accumulator vector the cycle after its last lane leaves, so the MAC
    array never stalls while the dot products are more than ``lanes * cycles_per_result``
    beats long (the requantizer's rate: 1, or ``SERIAL_PHASES`` with ``mul_style="serial"``).

    Parameters
    ----------
    lanes, width, acc_width : int
        As :class:`MacArray`.
    mul_style : "dsp" | "lut" | "serial"
        As :class:`Requantizer`.
    lut_lanes : int
        As :class:`MacArray`.

    Members
    -------
    i : In(stream.Signature(MacBeatLayout(lanes, width)))
    o : Out(stream.Signature(signed(8)))
    params : In(stream.Signature(ChannelParamLayout(lanes)))
        Writes the per-lane parameter registers (always ready; to be done between dot
        products).
    x_zp, out_zero_point, act_min, act_max : In(signed(8))
        The layer's static parameters.
    """

    def __init__(self, lanes: int = 8, width: int = 16, acc_width: int = 32, mul_style: str = "dsp",
                 lut_lanes: int = 0):
        self.lanes, self.width, self.acc_width = lanes, width, acc_width
        self.mac = MacArray(lanes, width, acc_width, lut_lanes)
        self.requant = Requantizer(mul_style)
        super().__init__({
            "i": In(stream.Signature(MacBeatLayout(lanes, width))),
            "o": Out(stream.Signature(signed(8))),
            "params": In(stream.Signature(ChannelParamLayout(lanes))),
            "x_zp": In(signed(8)),
            "out_zero_point": In(signed(8)),
            "act_min": In(signed(8)),
            "act_max": In(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = self.mac
        m.submodules.requant = rq = self.requant
        wiring.connect(m, wiring.flipped(self.i), mac.i)
        wiring.connect(m, rq.o, wiring.flipped(self.o))
        m.d.comb += [mac.x_zp.eq(self.x_zp), rq.out_zero_point.eq(self.out_zero_point),
                     rq.act_min.eq(self.act_min), rq.act_max.eq(self.act_max)]

        bias = Array(Signal(signed(32), name=f"bias{l}", reset_less=True) for l in range(self.lanes))
        mult = Array(Signal(signed(32), name=f"mult{l}", reset_less=True) for l in range(self.lanes))
        shift = Array(Signal(signed(6), name=f"shift{l}", reset_less=True) for l in range(self.lanes))
        m.d.comb += self.params.ready.eq(1)
        with m.If(self.params.valid):
            p = self.params.payload
            m.d.sync += [bias[p.lane].eq(p.bias), mult[p.lane].eq(p.multiplier),
                         shift[p.lane].eq(p.shift)]

        # Serializer: a held accumulator vector and the lane being sent.
        accs = Array(Signal(signed(self.acc_width), name=f"held{l}", reset_less=True) for l in range(self.lanes))
        lane = Signal(range(self.lanes))
        busy = Signal()
        done = Signal()  # the last lane leaves this cycle
        # The MAC array's ready is a register (~busy), not `~busy | done`: its enable fans out to
        # every MAC pipeline register, so it must not wait on the requantizer's handshake. Cost:
        # one idle cycle between vectors, hidden whenever a dot product has more than `lanes`
        # beats (K > lanes * width).
        m.d.comb += [done.eq(busy & rq.i.ready & (lane == self.lanes - 1)),
                     mac.o.ready.eq(~busy),
                     rq.i.valid.eq(busy),
                     rq.i.payload.acc.eq(accs[lane]),
                     rq.i.payload.bias.eq(bias[lane]),
                     rq.i.payload.multiplier.eq(mult[lane]),
                     rq.i.payload.shift.eq(shift[lane])]
        with m.If(busy & rq.i.ready):
            m.d.sync += lane.eq(lane + 1)
            with m.If(done):
                m.d.sync += [lane.eq(0), busy.eq(0)]
        with m.If(mac.o.valid & mac.o.ready):
            m.d.sync += [accs[l].eq(mac.o.payload[l]) for l in range(self.lanes)]
            m.d.sync += [busy.eq(1), lane.eq(0)]
        return m
