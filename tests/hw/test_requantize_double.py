"""DoubleRequantizer against the golden DOUBLE epilogue (``fixedpoint.scale_round_double`` + out_zp,
clamp): random layer-like pairs and constructed worst cases of the double multiply's rounding,
with stalls on both sides."""

import random
import struct
from fractions import Fraction

import numpy as np
import pytest
from amaranth.sim import Simulator

from onda.hw.datapath.requantize import Requantizer
from onda.hw.datapath.requantize_double import DoubleRequantizer
from onda.sim.golden import fixedpoint as fp
from onda.sim.rtl.streams import stream_get, stream_put


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def expected(v, scale_bits, out_zp, lo, hi):
    """The emulator's Epilogue.DOUBLE on v = bias + acc (int64, exact) and the scale's bits."""
    scale = np.asarray(scale_bits, dtype=np.uint64).view(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        q = fp.scale_round_double(np.asarray(v, dtype=np.int64), scale)
    return fp.clamp(q + out_zp, lo, hi)


def random_pairs(rng: np.random.Generator, n: int):
    """Layer-like: scales log-uniform in [2^-30, 1], accumulators sized so most results land in
    int8 (a share anywhere in int32, to hit the clamp)."""
    scale = np.exp2(rng.uniform(-30, 0, n))
    target = rng.uniform(-300, 300, n)
    acc = np.clip(np.round(target / scale), fp.INT32_MIN, fp.INT32_MAX).astype(np.int64)
    wide = rng.random(n) < 0.2
    acc[wide] = rng.integers(fp.INT32_MIN, fp.INT32_MAX, int(wide.sum()), endpoint=True)
    bias = rng.integers(-2**20, 2**20, n)
    acc = np.clip(acc - bias, fp.INT32_MIN, fp.INT32_MAX)
    return [(int(a), int(b), bits(float(s))) for a, b, s in zip(acc, bias, scale)]


def exact_ties(rng: np.random.Generator, n: int):
    """acc * scale exactly k + 1/2 (scale = odd * 2^-p, acc = odd * 2^(p-1)), and one ulp either side."""
    out = []
    for _ in range(n):
        p = int(rng.integers(1, 31))
        b = int(rng.integers(0, min(2**p, 600))) | 1  # scale = b / 2^p <= 1
        amax = max(1, 600 // b)  # keep the result a * b / 2 near the int8 range
        a = int(rng.integers(-amax, amax + 1)) | 1
        acc = a * 2**(p - 1)
        if not fp.INT32_MIN <= acc <= fp.INT32_MAX:
            continue
        s = b / 2**p
        assert Fraction(acc) * Fraction(s) == Fraction(a * b, 2)
        for sc in (s, np.nextafter(s, np.inf), np.nextafter(s, 0.0)):
            out.append((acc, 0, bits(float(sc))))
    return out


def rounding_made_ties(rng: np.random.Generator, want: int):
    """Pairs where the exact product is NOT k + 1/2 but the FPU's 53-bit rounding makes it so
    (found with exact Fraction arithmetic against float64), so round-half-away then goes up."""
    out = []
    while len(out) < want:
        acc = int(rng.integers(2**24, 2**31)) * int(rng.choice([-1, 1]))
        k = int(rng.integers(-120, 120))
        tie = k + 0.5
        s0 = tie / acc
        if s0 <= 0:
            s0, acc = -s0, -acc
        s = s0
        for _ in range(20):
            if float(acc) * s == tie and Fraction(acc) * Fraction(s) != Fraction(tie):
                out.append((acc, 0, bits(s)))
                break
            s = np.nextafter(s, np.inf) if rng.random() < 0.5 else np.nextafter(s, 0.0)
    return out


def edge_pairs():
    ones = [bits(1.0), bits(2.0**-30), bits(np.nextafter(1.0, 0.0)), bits(np.nextafter(2.0**-30, 1.0))]
    out = [(a, 0, s) for a in (fp.INT32_MIN, fp.INT32_MAX, 0, 1, -1) for s in ones]
    # The 33-bit sum: bias + acc beyond int32 (the emulator's int64 sum does not wrap).
    out += [(fp.INT32_MAX, fp.INT32_MAX, bits(2.0**-25)), (fp.INT32_MIN, fp.INT32_MIN, bits(2.0**-26)),
            (fp.INT32_MIN, fp.INT32_MIN, bits(1.0))]
    # 0.49999999999999994 (the double below 1/2): std::round gives 0, floor(x + 0.5) would give 1.
    out += [(1, 0, bits(0.49999999999999994)), (-1, 0, bits(0.49999999999999994)),
            (3, 0, bits(0.49999999999999994 / 3 * 3)), (2, 0, bits(0.24999999999999997))]
    # Scales that are not positive normals: negative (exact), zero, subnormal, huge (saturate).
    out += [(1000, 0, bits(-0.01)), (-1000, 7, bits(-0.0625)), (123, 0, bits(0.0)), (-5, 0, bits(-0.0)),
            (fp.INT32_MAX, 0, bits(5e-324)), (fp.INT32_MIN, 0, bits(2.2250738585072014e-308)),
            (1, 0, bits(2.0**52)), (-1, 0, bits(2.0**40)), (fp.INT32_MIN, 0, bits(2.0**29)),
            (2**20, 0, bits(2.0**-20 * 100.5)), (-2**20, 0, bits(2.0**-20 * 100.5))]
    return out


def run(items, out_zp, lo, hi, mul_style, seed, idle=0.3, stall=0.3):
    dut = DoubleRequantizer(mul_style)
    got = []

    async def producer(ctx):
        ctx.set(dut.out_zero_point, out_zp)
        ctx.set(dut.act_min, lo)
        ctx.set(dut.act_max, hi)
        await stream_put(ctx, dut.i, [{"acc": a, "bias": b, "scale": s} for a, b, s in items],
                         rng=random.Random(seed), idle=idle)

    async def consumer(ctx):
        got.extend(await stream_get(ctx, dut.o, len(items), rng=random.Random(seed + 1), stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(got, dtype=np.int64)


def check(items, out_zp, lo, hi, mul_style, seed, **kw):
    got = run(items, out_zp, lo, hi, mul_style, seed, **kw)
    v = np.array([a + b for a, b, _ in items], dtype=np.int64)
    want = expected(v, [s for _, _, s in items], out_zp, lo, hi)
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, [(items[i], float(np.uint64(items[i][2]).view(np.float64)), int(got[i]), int(want[i]))
                           for i in bad[:8]]


@pytest.mark.parametrize("seed,mul_style", [(1, "dsp"), (2, "dsp"), (3, "serial")])
def test_random_layer_like(seed, mul_style):
    rng = np.random.default_rng(seed)
    items = random_pairs(rng, 300 if mul_style == "dsp" else 120)
    check(items, int(rng.integers(-128, 128)), -128, 127, mul_style, seed)


def test_exact_ties_and_neighbours():
    rng = np.random.default_rng(10)
    items = exact_ties(rng, 120)
    # zp 0 and a wide clamp range: the rounding itself is visible
    check(items, 0, -128, 127, "dsp", 10)


def test_ties_made_by_the_double_multiply():
    rng = np.random.default_rng(11)
    items = rounding_made_ties(rng, 60)
    # the search found what it claims: fl(acc * s) is a tie, the exact product is not
    for acc, _, s in items:
        x = float(acc) * float(np.uint64(s).view(np.float64))
        assert x - np.floor(x) == 0.5
    check(items, 3, -128, 127, "dsp", 11)


@pytest.mark.parametrize("mul_style", ["dsp", "serial"])
def test_edges(mul_style):
    items = edge_pairs()
    check(items, -5, -128, 127, mul_style, 12)
    check(items, 20, 20, 127, mul_style, 13)  # ReLU-like range


def test_products_beyond_int64_and_nan_are_defined():
    """Products of 2^63 and more (the golden model's ``astype(int64)`` overflows there: C's
    conversion of such a double is undefined) saturate to the clamp bound of their sign, as
    ``round(+-inf)`` or any huge double clamps; v = 0 times an infinite scale (IEEE NaN, no int8
    value) is defined as q = 0; a NaN scale saturates by the sign of v."""
    inf, nan = bits(float("inf")), bits(float("nan"))
    items = [(-1, 0, bits(1e300)), (1, 0, bits(1e300)), (2**30, 0, bits(1.7e308)), (-3, 0, inf), (3, 0, inf),
             (0, 0, inf), (5, -5, bits(float("-inf"))), (7, 0, nan), (-7, 0, nan), (-2, 0, bits(-1e300))]
    got = run(items, 9, -128, 127, "dsp", 14)
    assert got.tolist() == [-128, 127, 127, -128, 127, 9, 9, 127, -128, 127]


@pytest.mark.parametrize("mul_style", ["dsp", "lut", "serial"])
def test_rate_and_latency_match_the_fixed_requantizer(mul_style):
    fixed = Requantizer(mul_style)
    dut = DoubleRequantizer(mul_style)
    for unit in (fixed, dut):
        unit._MustUse__silence = True  # built to read their attributes, not simulated
    assert (dut.latency, dut.cycles_per_result) == (fixed.latency, fixed.cycles_per_result)


def test_bad_style_refused():
    with pytest.raises(ValueError, match="mul_style must be"):
        DoubleRequantizer("fpu")
