"""The DOUBLE epilogue in integer hardware: LiteRT's reference FULLY_CONNECTED requantizer,
``clamp(out_zp + std::round(double(bias + acc) * scale), act_min, act_max)``, bit for bit as an
IEEE-754 double FPU computes it, without a floating-point unit.

How the double arithmetic is reproduced exactly (``v = bias + acc``, ``scale`` given by its 64 bits):

1. ``double(v)`` is exact (``|v| < 2**33 < 2**53``; the sum is formed in 33 bits, as the
   emulator's int64 sum, so it cannot wrap).
2. ``scale = M * 2**(e - 1075)`` with the 53-bit significand ``M = 2**52 | fraction`` (normal
   numbers). The exact product is ``P * 2**(e - 1075)`` with the 86-bit integer ``P = |v| * M``.
3. The FPU rounds the product to 53 significant bits, to nearest, ties to even: with ``n`` the bit
   length of ``P`` and ``d = max(0, n - 53)``, ``R = round_ne(P / 2**d) * 2**d``.
4. ``std::round`` rounds half away from zero: ``|q| = floor(R * 2**(e - 1075) + 1/2)``, i.e.
   ``(R + 2**(t - 1)) >> t`` with ``t = 1075 - e``; the sign is ``sign(v) xor sign(scale)``.
   ``|q|`` is saturated at 511 (any larger value clamps the same).
5. ``+ out_zp``, clamp to ``[act_min, act_max]`` (``fixedpoint.clamp``).

Scales that are not finite, positive normal doubles: a negative scale is exact (the sign is
applied); zero and subnormal scales give ``q = 0`` (exact: ``|v| * scale < 2**-988`` rounds to
0); an infinite scale gives ``q = 0`` for ``v == 0`` (IEEE: NaN, which has no int8 value; this
unit defines it as 0) and saturates otherwise (exact: ``round(+-inf)`` clamps to the bound); a
NaN scale is treated as infinite (defined behaviour; the compiler never emits one). A product
that overflows the double range saturates, as ``+-inf`` clamps.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .clamp import CLAMP_LATENCY, clamp_stages
from .mbqm import SERIAL_PHASES, mbqm_latency
from .stall import delay, rated_advance, rated_output, stage

__all__ = ["DoubleRequantLayout", "DoubleRequantizer"]

SAT = 511  # |q| beyond this clamps like any larger value (|out_zp| <= 128, int8 bounds)
P_BITS = 86  # |v| < 2**33 times a 53-bit significand
OWN_LATENCY = 10 + CLAMP_LATENCY  # registers of the arithmetic below, input register to clamp output


def fixed_latency(mul_style: str) -> int:
    """:attr:`~.requantize.Requantizer.latency` of the FIXED requantizer of ``mul_style`` (input and
    bias registers, ``mbqm``, zero-point add, clamp), which this unit matches."""
    return 2 + mbqm_latency(mul_style) + 1 + CLAMP_LATENCY


class DoubleRequantLayout(data.StructLayout):
    """One accumulator with its output channel's DOUBLE-epilogue parameters.

    Fields
    ------
    acc : signed(32)
        ``sum(x * w)`` from the MAC array (int32).
    bias : signed(32)
        The channel's int32 bias (``bias'``, the input zero point folded in).
    scale : unsigned(64)
        The channel's effective scale, the IEEE-754 double's 64 bits (PARAM's ``scale_hi:scale_lo``).
    """

    def __init__(self):
        super().__init__({"acc": signed(32), "bias": signed(32), "scale": unsigned(64)})


class DoubleRequantizer(wiring.Component):
    """``clamp(out_zp + round_half_away(double(bias + acc) * scale), act_min, act_max)``, exactly
    as IEEE double arithmetic and ``std::round`` compute it (module docstring: how, and what
    non-normal scales give).

    Bit-exact with ``fixedpoint.clamp(fixedpoint.scale_round_double(bias + acc, scale) + out_zp,
    act_min, act_max)``, the emulator's ``Epilogue.DOUBLE``. It has the rate and latency of the
    FIXED :class:`~.requantize.Requantizer` of the same ``mul_style``, so a GEMM's cycle count
    does not depend on its epilogue: one result a cycle (``"dsp"``, ``"lut"``), or one every
    ``SERIAL_PHASES`` cycles (``"serial"``: the stages advance only when the FIXED requantizer's
    would, the arithmetic is not shared).

    Parameters
    ----------
    mul_style : "dsp" | "lut" | "serial"
        The FIXED requantizer this unit stands beside (sets :attr:`latency` and
        :attr:`cycles_per_result`).

    Members
    -------
    i : In(stream.Signature(DoubleRequantLayout()))
    o : Out(stream.Signature(signed(8)))
        The int8 outputs, in input order.
    out_zero_point, act_min, act_max : In(signed(8))
        Static while a layer runs.

    Handshake as :class:`~.requantize.Requantizer`: stages advance on ``~o.valid | o.ready``
    (gated to one advance every ``SERIAL_PHASES`` cycles for ``"serial"``), ``i.ready`` is that
    condition, ``o.valid`` is a register. :attr:`latency` counts advances.
    """

    def __init__(self, mul_style: str = "dsp"):
        if mul_style not in ("dsp", "lut", "serial"):
            raise ValueError(f"DoubleRequantizer: mul_style must be 'dsp', 'lut' or 'serial', got {mul_style!r}")
        self.mul_style = mul_style
        fixed = fixed_latency(mul_style)
        if fixed < OWN_LATENCY:
            raise ValueError(f"DoubleRequantizer: the FIXED requantizer ({mul_style}) has latency {fixed}, "
                             f"below this unit's {OWN_LATENCY} stages")
        self.latency = fixed
        self.cycles_per_result = SERIAL_PHASES if mul_style == "serial" else 1
        super().__init__({
            "i": In(stream.Signature(DoubleRequantLayout())),
            "o": Out(stream.Signature(signed(8))),
            "out_zero_point": In(signed(8)),
            "act_min": In(signed(8)),
            "act_max": In(signed(8)),
        })

    def elaborate(self, platform):
        m = Module()
        en, _ = rated_advance(m, self.o, self.i, self.cycles_per_result)

        # S0: the input registered.
        p = self.i.payload
        acc = stage(m, en, p.acc, name="in_acc")
        bias = stage(m, en, p.bias, name="in_bias")
        scale = stage(m, en, p.scale, name="in_scale")
        # S1: v = bias + acc exactly (33 bits), its magnitude; decode the double.
        v = Signal(signed(34))
        m.d.comb += v.eq(acc + bias)
        frac, expo, s_sign = scale[:52], scale[52:63], scale[63]
        mag = stage(m, en, Mux(v < 0, -v, v)[:33], unsigned(33), name="mag")
        neg = stage(m, en, (v < 0) ^ s_sign, name="neg")
        signif = stage(m, en, Const(1 << 52, 53) | frac, unsigned(53), name="signif")
        zero = stage(m, en, (expo == 0) | (v == 0), name="zero")  # zero/subnormal scale or v: q = 0
        # t = 1075 - e: the right shift from P's units to integers.
        t = stage(m, en, Const(1075, signed(13)) - expo, signed(13), name="t")
        ctl = [zero, neg, t]

        def carry(values, tag):
            return [stage(m, en, c, name=f"{tag}_{k}") for k, c in enumerate(values)]

        # S2, S3: the exact product P = |v| * M (operand and product registers: a DSP block's).
        mag_r = stage(m, en, mag, name="mag_r")
        sig_r = stage(m, en, signif, name="sig_r")
        ctl = carry(ctl, "c2")
        prod = stage(m, en, mag_r * sig_r, unsigned(P_BITS), name="prod")
        ctl = carry(ctl, "c3")
        # S4: d = max(0, bitlength(P) - 53): the bits the FPU's 53-bit rounding drops.
        length = Signal(range(P_BITS + 1))
        for k in range(P_BITS):
            with m.If(prod[k]):
                m.d.comb += length.eq(k + 1)
        d = stage(m, en, Mux(length > 53, length - 53, 0), unsigned(6), name="d")
        prod4 = stage(m, en, prod, name="prod4")
        ctl = carry(ctl, "c4")
        # S5: round to nearest, ties to even, at bit d (d = 0: exact, nothing dropped).
        one_d = Signal(unsigned(P_BITS + 1))
        m.d.comb += one_d.eq(Const(1, unsigned(P_BITS + 1)) << d)
        low = Signal(unsigned(P_BITS))
        m.d.comb += low.eq(prod4 & (one_d - 1))
        half = Signal(unsigned(P_BITS))
        m.d.comb += half.eq(one_d >> 1)
        keep_odd = (prod4 & one_d[:P_BITS]).any()
        up = stage(m, en, (d != 0) & ((low > half) | ((low == half) & keep_odd)), name="rne_up")
        trunc = stage(m, en, prod4 & ~(one_d - 1)[:P_BITS], unsigned(P_BITS), name="rne_trunc")
        one_d5 = stage(m, en, one_d, name="one_d5")
        ctl = carry(ctl, "c5")
        # S6: R = the product as the double holds it (at most 2**86).
        rounded = stage(m, en, trunc + Mux(up, one_d5, 0), unsigned(P_BITS + 1), name="rounded")
        ctl = carry(ctl, "c6")
        zero, neg, t = ctl
        # S7: |q| = (R + 2**(t-1)) >> t for 1 <= t <= 88; t <= 0 with R != 0: saturate; t > 88: 0.
        tt = Signal(unsigned(7))
        tm1 = Signal(unsigned(7))
        m.d.comb += [tt.eq(Mux(t > 88, 88, Mux(t < 1, 1, t))[:7]), tm1.eq(tt - 1)]
        shifted = stage(m, en, (rounded + (Const(1, unsigned(P_BITS + 2)) << tm1)) >> tt,
                        unsigned(P_BITS + 2), name="shifted")
        small = stage(m, en, t > 88, name="small")
        big = stage(m, en, t < 1, name="big")
        ctl = carry([zero, neg], "c7")
        zero, neg = ctl
        # S8: saturate and sign.
        qmag = Signal(unsigned(10))
        m.d.comb += qmag.eq(Mux(zero | small, 0, Mux(big | (shifted > SAT), SAT, shifted[:10])))
        q = stage(m, en, Mux(neg, -qmag, qmag), signed(11), name="q")
        # Pad to the FIXED requantizer's latency, then S9: + out_zp, and the clamp.
        q = delay(m, en, q, self.latency - OWN_LATENCY, name="pad")
        biased = stage(m, en, q + self.out_zero_point, signed(12), name="zp_add")
        out = clamp_stages(m, en, biased, self.act_min, self.act_max)

        rated_output(m, en, self.i, self.o, out, self.latency)
        return m
