"""The vector unit: residual ADD with TFLite's rescaling, max pooling, and the sum/divide pair
behind MEAN and average pooling.

Each block is a stream component; the per-layer parameters are static ports (held constant
while a layer runs), as the compiler derives them with ``onda.sim.golden.params``.

- :class:`ResidualAdd`: TFLite's int8 ADD, one element a cycle (three pipelined
  ``MultiplyByQuantizedMultiplier``\\ s: both inputs, then the sum).
- :class:`MaxPool`: running elementwise max of ``lanes`` int8 over the beats of a window,
  clamped.
- :class:`SumPool`: running int32 sum of ``lanes`` int8 over a window, emitted with the
  window's beat count. Followed by the :class:`~.requantize.Requantizer` it is TFLite's MEAN
  (``QuantizedMeanOrSum``: bias ``-zp * count``, multiplier from
  ``kernels.mean_multiplier``); followed by :class:`DivideRound` it is AVERAGE_POOL_2D.
- :class:`DivideRound`: ``clamp(divide_round_half_away(sum, count))`` for ``lanes`` sums, by a
  sequential divider that only resolves the 9 quotient bits an int8 clamp can see.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .clamp import CLAMP_LATENCY, clamp_stages
from .mbqm import MultiplyByQuantizedMultiplier, mbqm_latency
from .stall import delay, stage

__all__ = ["AddLayout", "ResidualAdd", "PoolBeatLayout", "MaxPool", "SumPool", "SumLayout",
           "DivideRound"]

ADD_LEFT_SHIFT = 20  # TFLite's int8 ADD: both inputs are scaled by 2**20 before rescaling


def _clamp(value, lo, hi):
    """``min(max(value, lo), hi)``, as ``fixedpoint.clamp``."""
    low = Mux(value < lo, lo, value)
    return Mux(low > hi, hi, low)


class AddLayout(data.StructLayout):
    def __init__(self):
        super().__init__({"a": signed(8), "b": signed(8)})


class ResidualAdd(wiring.Component):
    """TFLite's reference int8 ADD (``fixedpoint.add``), one element a cycle; with ``mul``, its MUL.

    ``out = clamp(out_zp + MBQM(MBQM(x, m1, s1) + MBQM((b - zp2) << 20, m2, s2), m_out, s_out),
    act_min, act_max)`` with int32 wrapping sums, where ``x`` is ``(a - zp1) << 20`` (ADD) or, with
    ``mul``, the product ``(a - zp1) * (b - zp2)`` (a 9 x 9-bit multiply). Programmed with ``m1 =
    2**30, s1 = 1`` (``x`` exactly) and ``m2 = 0`` (0), that is TFLite's int8 MUL,
    ``clamp(out_zp + MBQM((a - zp1) * (b - zp2), m_out, s_out))`` (``fixedpoint.mul``).

    Members
    -------
    i : In(stream.Signature(AddLayout()))
        Pairs of int8 inputs.
    o : Out(stream.Signature(signed(8)))
    zp1, zp2, out_zero_point, act_min, act_max : In(signed(8))
    m1, m2, m_out : In(signed(32))
        Q0.31 multipliers from ``fixedpoint.add_params``.
    s1, s2, s_out : In(signed(6))
        Their exponents.
    mul : In(1)
        The first term is the operands' product instead of ``a``'s scaled value.
    """

    @staticmethod
    def latency_for(mul_style: str) -> int:
        """:attr:`latency` of a ResidualAdd of ``mul_style``, without making one."""
        return 1 + 2 * mbqm_latency(mul_style) + 1 + 1 + CLAMP_LATENCY

    def __init__(self, mul_style: str = "dsp"):
        if mul_style == "serial":
            raise ValueError("ResidualAdd: mul_style='serial' needs a phase counter (the pipeline advances "
                             "every cycle); use 'dsp' or 'lut'")
        self.mul_style = mul_style
        self.latency = self.latency_for(mul_style)
        super().__init__({
            "i": In(stream.Signature(AddLayout())),
            "o": Out(stream.Signature(signed(8))),
            "zp1": In(signed(8)), "zp2": In(signed(8)),
            "m1": In(signed(32)), "s1": In(signed(6)),
            "m2": In(signed(32)), "s2": In(signed(6)),
            "m_out": In(signed(32)), "s_out": In(signed(6)),
            "out_zero_point": In(signed(8)), "act_min": In(signed(8)), "act_max": In(signed(8)),
            "mul": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        p = self.i.payload
        # (x - zp) is 9-bit signed; << 20 fits int32 without wrapping.
        da, db = p.a - self.zp1, p.b - self.zp2
        a = stage(m, en, Mux(self.mul, da * db, (da << ADD_LEFT_SHIFT)[:32].as_signed()), signed(32), name="a_shl")
        b = stage(m, en, ((p.b - self.zp2) << ADD_LEFT_SHIFT)[:32].as_signed(), signed(32), name="b_shl")
        m.submodules.mbqm_a = mbqm_a = MultiplyByQuantizedMultiplier(self.mul_style)
        m.submodules.mbqm_b = mbqm_b = MultiplyByQuantizedMultiplier(self.mul_style)
        m.submodules.mbqm_out = mbqm_out = MultiplyByQuantizedMultiplier(self.mul_style)
        m.d.comb += [mbqm_a.en.eq(en), mbqm_a.x.eq(a), mbqm_a.multiplier.eq(self.m1), mbqm_a.shift.eq(self.s1),
                     mbqm_b.en.eq(en), mbqm_b.x.eq(b), mbqm_b.multiplier.eq(self.m2), mbqm_b.shift.eq(self.s2)]
        raw = stage(m, en, (mbqm_a.o + mbqm_b.o)[:32].as_signed(), signed(32), name="raw")
        m.d.comb += [mbqm_out.en.eq(en), mbqm_out.x.eq(raw), mbqm_out.multiplier.eq(self.m_out),
                     mbqm_out.shift.eq(self.s_out)]
        biased = stage(m, en, mbqm_out.o + self.out_zero_point, signed(34), name="zp_add")
        out = clamp_stages(m, en, biased, self.act_min, self.act_max)
        m.d.comb += [self.o.payload.eq(out),
                     self.o.valid.eq(delay(m, en, self.i.valid, self.latency, name="valid", reset_less=False))]
        return m


class PoolBeatLayout(data.StructLayout):
    """``lanes`` int8 (one tap of a pooling window, for ``lanes`` channels), with the window's
    ``first`` and ``last`` flags."""

    def __init__(self, lanes: int):
        super().__init__({"x": data.ArrayLayout(signed(8), lanes), "first": 1, "last": 1})


class MaxPool(wiring.Component):
    """Elementwise max over the taps of a window (``first`` .. ``last``), clamped to
    ``[act_min, act_max]``: TFLite's ``reference_integer_ops::MaxPool`` (padding taps are not
    sent). One tap a cycle; one output vector per window.

    Members
    -------
    i : In(stream.Signature(PoolBeatLayout(lanes)))
    o : Out(stream.Signature(ArrayLayout(signed(8), lanes)))
    act_min, act_max : In(signed(8))
    """

    def __init__(self, lanes: int = 8):
        self.lanes = lanes
        super().__init__({
            "i": In(stream.Signature(PoolBeatLayout(lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(8), lanes))),
            "act_min": In(signed(8)), "act_max": In(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        p = self.i.payload
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid & p.last)
        for l in range(self.lanes):
            run = Signal(signed(8), name=f"max{l}")
            x = p.x[l]
            new = Mux(p.first | (x > run), x, run)
            with m.If(en & self.i.valid):
                m.d.sync += run.eq(new)
                with m.If(p.last):
                    m.d.sync += self.o.payload[l].eq(_clamp(new, self.act_min, self.act_max))
        return m


class SumLayout(data.StructLayout):
    """``lanes`` int32 window sums and the window's tap count."""

    def __init__(self, lanes: int, count_width: int = 16):
        super().__init__({"sum": data.ArrayLayout(signed(32), lanes), "count": unsigned(count_width)})


class SumPool(wiring.Component):
    """Elementwise int32 sum over the taps of a window, emitted with the number of taps.

    Members
    -------
    i : In(stream.Signature(PoolBeatLayout(lanes)))
    o : Out(stream.Signature(SumLayout(lanes)))
    """

    def __init__(self, lanes: int = 8, count_width: int = 16):
        self.lanes, self.count_width = lanes, count_width
        super().__init__({
            "i": In(stream.Signature(PoolBeatLayout(lanes))),
            "o": Out(stream.Signature(SumLayout(lanes, count_width))),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        p = self.i.payload
        count = Signal(self.count_width)
        with m.If(en):
            m.d.sync += self.o.valid.eq(self.i.valid & p.last)
        with m.If(en & self.i.valid):
            new_count = Mux(p.first, 1, count + 1)
            m.d.sync += count.eq(new_count)
            with m.If(p.last):
                m.d.sync += self.o.payload.count.eq(new_count)
            for l in range(self.lanes):
                acc = Signal(signed(32), name=f"sum{l}")
                new = (p.x[l] + Mux(p.first, 0, acc))[:32].as_signed()
                m.d.sync += acc.eq(new)
                with m.If(p.last):
                    m.d.sync += self.o.payload.sum[l].eq(new)
        return m


class DivideRound(wiring.Component):
    """``clamp(divide_round_half_away(sum, count), act_min, act_max)`` for ``lanes`` sums.

    TFLite's average-pooling division: ``num = sum > 0 ? sum + count/2 : sum - count/2``, then C's
    truncating ``num / count``. Only quotients in [-128, 127] survive the clamp, so the divider
    first checks ``|num| >= 256 * count`` (saturate) and otherwise finds the 8 quotient bits of
    ``|num| / count`` by restoring division, one bit a cycle for all lanes at once: 10 cycles a
    vector. ``count`` must be at least 1.

    Members
    -------
    i : In(stream.Signature(SumLayout(lanes)))
    o : Out(stream.Signature(ArrayLayout(signed(8), lanes)))
    act_min, act_max : In(signed(8))
    """

    def __init__(self, lanes: int = 8, count_width: int = 16):
        self.lanes, self.count_width = lanes, count_width
        super().__init__({
            "i": In(stream.Signature(SumLayout(lanes, count_width))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(8), lanes))),
            "act_min": In(signed(8)), "act_max": In(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        cw = self.count_width
        count = Signal(cw)
        step = Signal(range(10))
        busy = Signal()
        m.d.comb += self.i.ready.eq(~busy & ~self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [busy.eq(1), step.eq(0), count.eq(self.i.payload.count)]
        work = Signal()  # dividing; never while a result waits (keeps the output stable)
        m.d.comb += work.eq(busy & ~self.o.valid)
        with m.If(work):
            m.d.sync += step.eq(step + 1)
            with m.If(step >= 8):
                m.d.sync += [busy.eq(0), self.o.valid.eq(1)]
        for l in range(self.lanes):
            s = self.i.payload.sum[l]
            half = self.i.payload.count >> 1
            num = Mux(s > 0, s + half, s - half)               # 34-bit signed
            mag = Signal(33, name=f"mag{l}")                   # |num|, the running remainder
            neg = Signal(name=f"neg{l}")
            sat = Signal(name=f"sat{l}")
            q = Signal(8, name=f"q{l}")
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [mag.eq(Mux(num < 0, -num, num)), neg.eq(num < 0), q.eq(0)]
            with m.If(work):
                with m.If(step == 0):
                    m.d.sync += sat.eq(mag >= (count << 8))
                with m.Elif(step <= 8):
                    bit = (8 - step).as_unsigned()[:4]      # quotient bit 7 .. 0
                    trial = count << bit
                    with m.If(mag >= trial):
                        m.d.sync += [mag.eq(mag - trial), q.eq(q | (Const(1, 8) << bit))]
                with m.If(step >= 8):
                    # Resolve with this cycle's quotient bit 0 (its register update lands only
                    # next cycle).
                    qf = q | (mag >= count)
                    value = Mux(sat, Mux(neg, -256, 256), Mux(neg, -qf, qf))
                    m.d.sync += self.o.payload[l].eq(_clamp(value, self.act_min, self.act_max)[:8].as_signed())
        return m
