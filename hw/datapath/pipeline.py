"""Building blocks shared by the datapath's pipelines: enabled registers and TFLite's
fixed-point multiply (``MultiplyByQuantizedMultiplier``) as a pipelined circuit.

Every pipelined block in ``onda.hw.datapath`` stalls as a whole: one enable signal
(``en = ~o.valid | o.ready``) clocks every stage, so the output payload is held while the
consumer is not ready and the input is accepted exactly when the pipeline advances.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal, signed, unsigned

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# Pipeline depth of ``mbqm``: left shift, partial products, middle sum, 64-bit sum,
# rounding high half, right-shift split, rounding add.
MBQM_LATENCY = 7


def stage(m, en, value, shape=None, name=None, init=0):
    """A register loaded with ``value`` whenever ``en`` is asserted; returns the register."""
    reg = Signal(shape if shape is not None else value.shape(), name=name, init=init)
    with m.If(en):
        m.d.sync += reg.eq(value)
    return reg


def delay(m, en, value, n, name="dly"):
    """``value`` delayed by ``n`` enabled stages."""
    for k in range(n):
        value = stage(m, en, value, name=f"{name}_{k}")
    return value


def mbqm(m, en, x, multiplier, shift, name="mbqm"):
    """TFLite's ``MultiplyByQuantizedMultiplier(x, multiplier, shift)`` as a pipeline of
    ``MBQM_LATENCY`` enabled stages; returns the int32 result register.

    ``x`` and ``multiplier`` are int32, ``shift`` a signed exponent in [-31, 30]:
    ``x`` is shifted left by ``max(shift, 0)`` (wrapping to int32), multiplied by the Q0.31
    ``multiplier`` with gemmlowp's saturating rounding doubling high multiply, then divided
    by ``2**max(-shift, 0)`` rounding half away from zero. The rounding high multiply is
    ``(a*b + 2**30) >> 31`` (arithmetic shift): with C's truncating division the two nudges of
    gemmlowp reduce to this one expression, bit for bit, for every product of int32 operands;
    ``INT32_MIN * INT32_MIN`` saturates to ``INT32_MAX``.

    The 32x32 product is split into four 17x17 partial products (one MULT18X18D each on
    ECP5), registered, then summed in two stages, so no stage has more than one 64-bit carry
    chain.
    """
    # S1: wrapping left shift, right exponent, saturation flag.
    left = Mux(shift[-1], 0, shift.as_unsigned()[:5])
    right_v = Mux(shift[-1], (-shift)[:6], 0)
    a = stage(m, en, (x << left)[:32].as_signed(), signed(32), name=f"{name}_a")
    b = stage(m, en, multiplier, signed(32), name=f"{name}_b")
    right = stage(m, en, right_v, unsigned(6), name=f"{name}_right")
    # S2: partial products. al, bl unsigned 16-bit halves; ah, bh signed high halves.
    al, ah = a.as_unsigned()[:16], a[16:].as_signed()
    bl, bh = b.as_unsigned()[:16], b[16:].as_signed()
    sat_v = (a == INT32_MIN) & (b == INT32_MIN)
    p_ll = stage(m, en, al * bl, unsigned(32), name=f"{name}_pll")
    p_lh = stage(m, en, al * bh, signed(33), name=f"{name}_plh")
    p_hl = stage(m, en, ah * bl, signed(33), name=f"{name}_phl")
    p_hh = stage(m, en, ah * bh, signed(32), name=f"{name}_phh")
    sat = stage(m, en, sat_v, name=f"{name}_sat1")
    right = stage(m, en, right, name=f"{name}_right1")
    # S3: middle sum; p_hh and p_ll do not overlap: concatenate them.
    mid = stage(m, en, p_lh + p_hl, signed(34), name=f"{name}_mid")
    outer = stage(m, en, Cat(p_ll, p_hh).as_signed(), signed(64), name=f"{name}_outer")
    sat = stage(m, en, sat, name=f"{name}_sat2")
    right = stage(m, en, right, name=f"{name}_right2")
    # S4: the 64-bit product plus the rounding nudge (a*b + 2^30 cannot overflow 64 bits).
    prod = stage(m, en, outer + (mid << 16) + (1 << 30), signed(64), name=f"{name}_prod")
    sat = stage(m, en, sat, name=f"{name}_sat3")
    right = stage(m, en, right, name=f"{name}_right3")
    # S5: high half (saturated), then RoundingDivideByPOT split: quotient and round-up bit.
    high = Mux(sat, INT32_MAX, prod[31:63].as_signed())
    high_r = stage(m, en, high, signed(32), name=f"{name}_high")
    right = stage(m, en, right, name=f"{name}_right4")
    # S6: arithmetic right shift, remainder and threshold.
    mask = (Const(1, unsigned(33)) << right) - 1
    rem = high_r.as_unsigned() & mask[:32]
    threshold = (mask[:32] >> 1) + high_r[-1]
    quot = stage(m, en, high_r >> right, signed(32), name=f"{name}_quot")
    up = stage(m, en, rem > threshold, name=f"{name}_up")
    # S7: rounding add (cannot overflow: quot <= INT32_MAX >> right, up only when right > 0).
    return stage(m, en, quot + up, signed(32), name=f"{name}_out")
