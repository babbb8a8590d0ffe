"""TFLite's fixed-point multiply (``MultiplyByQuantizedMultiplier``) as a pipelined circuit, with
the three ways it forms its partial products (``MUL_STYLES``: DSP blocks, LUT trees, one shared LUT
multiplier). Its stages advance on the enable of the block that holds it (see :mod:`.stall`).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dsp import dsp_multiply
from .stall import delay, stage

__all__ = ["MUL_STYLES", "MultiplyByQuantizedMultiplier", "SERIAL_MUL_LATENCY", "SERIAL_PHASES", "mbqm_latency"]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

MUL_STYLES = ("dsp", "lut", "serial")

# mul_style="serial": one 16x16 LUT multiplier (registered operands, two registered halves),
# issued one partial product a cycle; the four products are ready SERIAL_PHASES cycles after
# the operands.
SERIAL_MUL_LATENCY = 3
SERIAL_PHASES = 4 + SERIAL_MUL_LATENCY


def mbqm_latency(mul_style: str = "dsp") -> int:
    """Pipeline depth of :class:`MultiplyByQuantizedMultiplier`: left shift (two stages), partial
    products (3 stages on DSPs, 2 in LUTs, 1 serial), middle sum, two 32-bit halves of the 64-bit
    sum, right shift and remainder, compare, rounding add: at most one carry chain per stage."""
    return 8 + _product_stages(mul_style)


def _product_stages(mul_style: str) -> int:
    if mul_style not in MUL_STYLES:
        raise ValueError(f"mul_style must be one of {MUL_STYLES}, got {mul_style!r}")
    return {"dsp": 3, "lut": 2, "serial": 1}[mul_style]


def product16(m, en, x, y, mul_style: str, name: str, platform=None):
    """Registered unsigned 16x16 product; ``_product_stages(mul_style)`` stages.

    "dsp": one multiplier block (MULT18X18D / SB_MAC16) with its operand and product
    registers (:func:`~.dsp.dsp_multiply`), then a fabric register. "lut": a shift-and-add tree
    of the 16 partial rows, registered every two adder levels, for devices whose DSPs are all
    taken by the MAC array (iCE40UP5K has 8).
    """
    if mul_style == "dsp":
        return stage(m, en, dsp_multiply(m, en, x, y, platform, name), unsigned(32), name=f"{name}_f")
    rows = [Mux(y[i], x << i, 0) for i in range(16)]
    level = 0
    while len(rows) > 1:
        level += 1
        rows = [rows[k] + rows[k + 1] for k in range(0, len(rows), 2)]
        if level % 2 == 0:
            rows = [stage(m, en, r, unsigned(32), name=f"{name}_l{level}_{k}") for k, r in enumerate(rows)]
    return rows[0]


def serial_products(m, en, pairs, phase, name: str):
    """The four unsigned 16x16 products of ``pairs`` from one shared LUT multiplier, for a
    pipeline that advances (``en``) only when ``phase == SERIAL_PHASES - 1``.

    Between two advances the operands are stable; the multiplier takes pair ``i`` in phase
    ``i`` and returns its product ``SERIAL_MUL_LATENCY`` cycles later, into a holding register
    (the last one is taken straight from the multiplier). Returns the four product registers,
    loaded on ``en`` like any :func:`stage`. A quarter of the LUTs of four multipliers, for
    ``1 / SERIAL_PHASES`` of the throughput: where the MACs feeding it need no more (iCE40UP5K).
    """
    sel = Signal(2, name=f"{name}_sel")
    m.d.comb += sel.eq(Mux(phase < 4, phase[:2], 3))
    x = Signal(unsigned(16), name=f"{name}_x", reset_less=True)
    y = Signal(unsigned(16), name=f"{name}_y", reset_less=True)
    m.d.sync += [x.eq(Array(a for a, _ in pairs)[sel]), y.eq(Array(b for _, b in pairs)[sel])]
    rows = [Mux(y[i], x << i, 0) for i in range(16)]
    level = 0
    while len(rows) > 1:  # 16 -> 8 -> 4 (registered) -> 2 -> 1 (registered)
        level += 1
        rows = [rows[k] + rows[k + 1] for k in range(0, len(rows), 2)]
        if level % 2 == 0:
            regs = [Signal(unsigned(32), name=f"{name}_l{level}_{k}", reset_less=True)
                    for k in range(len(rows))]
            m.d.sync += [r.eq(v) for r, v in zip(regs, rows)]
            rows = regs
    product = rows[0]
    held = []
    for i in range(3):  # pair i's product is in `product` during phase i + SERIAL_MUL_LATENCY
        h = Signal(unsigned(32), name=f"{name}_held{i}", reset_less=True)
        with m.If(phase == i + SERIAL_MUL_LATENCY):
            m.d.sync += h.eq(product)
        held.append(h)
    return [stage(m, en, v, unsigned(32), name=f"{name}_p{i}") for i, v in enumerate(held + [product])]


class MultiplyByQuantizedMultiplier(wiring.Component):
    """TFLite's ``MultiplyByQuantizedMultiplier(x, multiplier, shift)`` as a pipeline of
    :attr:`latency` (``mbqm_latency(mul_style)``) stages, each loaded when ``en`` is high.

    ``x`` and ``multiplier`` are int32, ``shift`` a signed exponent in [-31, 30]:
    ``x`` is shifted left by ``max(shift, 0)`` (wrapping to int32), multiplied by the Q0.31
    ``multiplier`` with gemmlowp's saturating rounding doubling high multiply, then divided
    by ``2**max(-shift, 0)`` rounding half away from zero. The rounding high multiply is
    ``(a*b + 2**30) >> 31`` (arithmetic shift): with C's truncating division the two nudges of
    gemmlowp reduce to this one expression, bit for bit, for every product of int32 operands
    (so its ties go up, e.g. ``-2**30 -> 0``); ``INT32_MIN * INT32_MIN`` saturates to ``INT32_MAX``.

    The signed 32x32 product is four unsigned 16x16 partial products (one MULT18X18D or
    SB_MAC16 each) with a sign correction ``-2**32 * (a<0 ? b : 0 + b<0 ? a : 0)`` (mod 2**64),
    registered, then summed as two 32-bit halves in successive stages; no stage has more than
    one carry chain (of at most 34 bits).

    It has no handshake of its own: it is a slice of the pipeline of the block that holds it
    (the requantizer, ADD), which drives ``en`` with its own enable (:mod:`.stall`) and delays
    its valid bit by :attr:`latency` advances.

    Parameters
    ----------
    mul_style : "dsp" | "lut" | "serial"
        Where the four 16x16 partial products are formed: four DSP blocks or four LUT trees
        (:func:`product16`; on ECP5 the DSP blocks are MULT18X18D instances with their own
        registers, ``dsp.dsp_multiply``), or one LUT multiplier shared over ``SERIAL_PHASES``
        cycles (:func:`serial_products`).

    Members
    -------
    en : In(1)
        The holding pipeline's enable: every stage loads while it is high.
    x : In(signed(32))
        The int32 operand.
    multiplier : In(signed(32))
        The Q0.31 multiplier.
    shift : In(signed(6))
        The power-of-two exponent, in [-31, 30].
    phase : In(range(SERIAL_PHASES))
        Only with ``mul_style="serial"``: the holding pipeline's free-running phase
        (:func:`~.stall.rated_advance`), whose ``en`` is high only in phase ``SERIAL_PHASES - 1``.
    o : Out(signed(32))
        The int32 result, a register: :attr:`latency` advances after its operands.
    """

    def __init__(self, mul_style: str = "dsp"):
        self.mul_style = mul_style
        self.latency = mbqm_latency(mul_style)
        members = {
            "en": In(1),
            "x": In(signed(32)),
            "multiplier": In(signed(32)),
            "shift": In(signed(6)),
            "o": Out(signed(32)),
        }
        if mul_style == "serial":
            members["phase"] = In(range(SERIAL_PHASES))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        en, x, multiplier, shift = self.en, self.x, self.multiplier, self.shift
        mul_style = self.mul_style
        # S1, S1b: wrapping left shift, by the exponent's low three bits then by its high two
        # (wrapping to 32 bits after each step is the same as after both); right exponent.
        left = Mux(shift[-1], 0, shift.as_unsigned()[:5])
        right_v = Mux(shift[-1], (-shift)[:6], 0)
        a1 = stage(m, en, (x << left[:3])[:32], unsigned(32), name="a1")
        left_hi = stage(m, en, left[3:], unsigned(2), name="lefthi")
        b = delay(m, en, multiplier, 2, name="b")
        right = delay(m, en, right_v, 2, name="right")
        a = stage(m, en, (a1 << Cat(Const(0, 3), left_hi))[:32].as_signed(), signed(32), name="a")
        # S2: partial products of the unsigned halves; the sign correction; saturation flag.
        au, bu = a.as_unsigned(), b.as_unsigned()
        al, ah, bl, bh = au[:16], au[16:], bu[:16], bu[16:]
        n = _product_stages(mul_style)
        if mul_style == "serial":
            p_ll, p_lh, p_hl, p_hh = serial_products(m, en, [(al, bl), (al, bh), (ah, bl), (ah, bh)],
                                                     self.phase, "ser")
        else:
            p_ll = product16(m, en, al, bl, mul_style, "pll", platform)
            p_lh = product16(m, en, al, bh, mul_style, "plh", platform)
            p_hl = product16(m, en, ah, bl, mul_style, "phl", platform)
            p_hh = product16(m, en, ah, bh, mul_style, "phh", platform)
        corr_v = Mux(a[-1], bu, 0) + Mux(b[-1], au, 0)
        corr = delay(m, en, corr_v[:32], n, name="corr")
        sat = delay(m, en, (a == INT32_MIN) & (b == INT32_MIN), n, name="sat1")
        right = delay(m, en, right, n, name="rightp")
        # S3: middle sum; the outer partial products do not overlap, so the low word takes the
        # rounding nudge 2**30 and the high word the sign correction (everything modulo 2**64).
        mid = stage(m, en, p_lh + p_hl, unsigned(33), name="mid")
        outer_lo = stage(m, en, p_ll + (1 << 30), unsigned(33), name="outlo")
        outer_hi = stage(m, en, (p_hh - corr)[:32], unsigned(32), name="outhi")
        sat = stage(m, en, sat, name="sat2")
        right = stage(m, en, right, name="right2")
        # S4: the two halves of outer + (mid << 16), side by side; the low one keeps its carry (0..2).
        mid_s = Cat(Const(0, 16), mid)  # 49 bits
        lo = stage(m, en, outer_lo + mid_s[:32], unsigned(34), name="lo")
        hi_part = stage(m, en, (outer_hi + mid_s[32:])[:32], unsigned(32), name="hipart")
        sat = stage(m, en, sat, name="sat3")
        right = stage(m, en, right, name="right3")
        # S5: high half with the carry; bits 31..62 of the product are the rounded high word. The
        # rounding divide's mask and thresholds depend only on the exponent: decoded here, without
        # carry chains (mask = ~(-1 << right); threshold (mask >> 1) + 1 = 1 << (right - 1)).
        hi = (hi_part + lo[32:])[:32]
        high = Mux(sat, INT32_MAX, Cat(lo[31], hi[:31]).as_signed())
        high_r = stage(m, en, high, signed(32), name="high")
        # (The shifts by right[:5] stay within 64 bits, which a cycle-based simulator computes
        # natively; right >= 32 is decoded apart. A 6-bit shift of a 32-bit constant would be 95 bits.)
        ones_lo = Mux(right[5], 0, (Const(0xFFFFFFFF, 32) << right[:5])[:32])  # (-1 << right) mod 2**32
        one_sh = Mux(right[5], Mux(right[:5] == 0, Const(1 << 32, 33), 0), Const(1, 33) << right[:5])  # 2**right, 33 bits
        mask = stage(m, en, ~ones_lo, unsigned(32), name="mask")
        thr0 = stage(m, en, (~ones_lo)[1:32], unsigned(31), name="thr0")
        thr1 = stage(m, en, Mux(right == 0, 1, one_sh[1:33]), unsigned(32), name="thr1")
        right = stage(m, en, right, name="right4")
        # S6: arithmetic right shift by the exponent's low three bits, remainder, and the threshold
        # chosen by the sign (RoundingDivideByPOT: round up when remainder > (mask >> 1) + (x < 0)).
        quot = stage(m, en, high_r >> right[:3], signed(32), name="quot")
        rem = stage(m, en, high_r.as_unsigned() & mask, unsigned(32), name="rem")
        thr = stage(m, en, Mux(high_r[-1], thr1, thr0), unsigned(32), name="thr")
        right_hi = stage(m, en, right[3:], unsigned(3), name="righthi")
        # S7: the comparison; the shift by the exponent's high bits (arithmetic shifts compose).
        up = stage(m, en, rem > thr, name="up")
        quot = stage(m, en, quot >> Cat(Const(0, 3), right_hi), signed(32), name="quot2")
        # S8: rounding add (cannot overflow: quot <= INT32_MAX >> right, up only when right > 0).
        m.d.comb += self.o.eq(stage(m, en, quot + up, signed(32), name="out"))
        return m
