"""Edge values of TFLite's fixed-point arithmetic (sim/golden/fixedpoint.py).

The expected values are worked out from the C definitions in TFLite's common.h with Python's
arbitrary-precision integers, written independently of the vectorized implementation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from onda.sim.golden import fixedpoint as fp

I32 = st.integers(fp.INT32_MIN, fp.INT32_MAX)


def srdhm_ref(a: int, b: int) -> int:
    if a == b == fp.INT32_MIN:
        return fp.INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return int((ab + nudge) / (1 << 31)) if abs(ab + nudge) < 2**52 else _trunc_div(ab + nudge, 1 << 31)


def _trunc_div(x: int, n: int) -> int:
    q = abs(x) // n
    return q if x >= 0 else -q


def rdbpot_ref(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


@pytest.mark.parametrize("a,b,want", [
    (fp.INT32_MIN, fp.INT32_MIN, fp.INT32_MAX),           # the one saturating case
    (fp.INT32_MAX, fp.INT32_MAX, fp.INT32_MAX - 1),
    (fp.INT32_MIN, fp.INT32_MAX, -fp.INT32_MAX),
    (1 << 30, 1 << 30, 1 << 29),
    (1, 1 << 30, 1),                                      # +0.5 rounds up
    (-1, 1 << 30, 0),                                     # -0.5 also rounds up: gemmlowp's nudge
    (-3, 1 << 30, -1),                                    # -1.5 -> -1
    (0, fp.INT32_MIN, 0),
])
def test_srdhm_edges(a, b, want):
    assert int(fp.saturating_rounding_doubling_high_mul(a, b)) == want


@given(I32, I32)
@settings(max_examples=500, deadline=None)
def test_srdhm_matches_c_definition(a, b):
    assert int(fp.saturating_rounding_doubling_high_mul(a, b)) == _srdhm_exact(a, b)


def _srdhm_exact(a, b):
    if a == b == fp.INT32_MIN:
        return fp.INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _trunc_div(ab + nudge, 1 << 31)


@pytest.mark.parametrize("x,e,want", [
    (5, 1, 3), (-5, 1, -3),        # ties away from zero
    (6, 2, 2), (-6, 2, -2),        # 1.5 -> 2, -1.5 -> -2
    (7, 2, 2), (-7, 2, -2),
    (fp.INT32_MIN, 31, -1), (fp.INT32_MAX, 31, 1),
    (12345, 0, 12345),
])
def test_rounding_divide_by_pot_edges(x, e, want):
    assert int(fp.rounding_divide_by_pot(x, e)) == want


@given(I32, st.integers(0, 31))
@settings(max_examples=500, deadline=None)
def test_rounding_divide_by_pot_every_shift(x, e):
    assert int(fp.rounding_divide_by_pot(x, e)) == rdbpot_ref(x, e)
    # Half away from zero, compared with exact rationals.
    exact = x / 2**e
    assert abs(int(fp.rounding_divide_by_pot(x, e)) - exact) <= 0.5


def test_rounding_divide_rejects_bad_exponent():
    with pytest.raises(ValueError, match="exponent"):
        fp.rounding_divide_by_pot(1, 32)


@given(I32, st.integers(1 << 30, fp.INT32_MAX), st.integers(-31, 30))
@settings(max_examples=500, deadline=None)
def test_multiply_by_quantized_multiplier(x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    shifted = ((x << left) + 2**31) % 2**32 - 2**31   # C's wrapping int32 left shift
    want = rdbpot_ref(_srdhm_exact(shifted, m), right)
    assert int(fp.multiply_by_quantized_multiplier(x, m, shift)) == want


def test_multiply_by_quantized_multiplier_vectorizes_per_channel():
    x = np.array([[100, -100, 7]] * 2)
    m = np.array([1 << 30, 1 << 30, 1518500250])
    s = np.array([0, -1, -3])
    got = fp.multiply_by_quantized_multiplier(x, m, s)
    want = [[int(fp.multiply_by_quantized_multiplier(int(v), int(mm), int(ss))) for v, mm, ss in zip(row, m, s)]
            for row in x]
    assert got.tolist() == want


@pytest.mark.parametrize("real", [1.0, 0.5, 0.75, 2**-31, 2**-32, 1e-12, 3.9999999999, 0.0012345, 1234.5])
def test_quantize_multiplier(real):
    m, shift = fp.quantize_multiplier(real)
    if real < 2**-31 * 0.5:
        assert (m, shift) == (0, 0)     # flushed to zero below 2^-31
        return
    assert (1 << 30) <= m < (1 << 31)
    assert abs(m * 2.0**(shift - 31) - real) <= 2.0**(shift - 32)


def test_quantize_multiplier_rounds_up_to_next_power():
    # A significand that rounds to 2^31 is renormalized: (2^30, shift + 1).
    real = 1.0 - 2**-33
    m, shift = fp.quantize_multiplier(real)
    assert (m, shift) == (1 << 30, 1)


def test_quantize_multiplier_rejects_negative():
    with pytest.raises(ValueError):
        fp.quantize_multiplier(-0.5)


@pytest.mark.parametrize("act,scale,zp,want", [
    ("NONE", 0.1, 3, (-128, 127)),
    ("RELU", 0.1, 3, (3, 127)),
    ("RELU", 0.1, -128, (-128, 127)),
    ("RELU6", 0.05, -128, (-128, -8)),     # -128 + round(6 / 0.05) = -8
    ("RELU6", 0.01, -10, (-10, 127)),      # upper bound clamps to qmax
    ("RELU_N1_TO_1", 0.01, 0, (-100, 100)),
])
def test_activation_range(act, scale, zp, want):
    assert fp.activation_range(act, scale, zp) == want


@pytest.mark.parametrize("x,n,want", [(5, 2, 3), (-5, 2, -3), (4, 3, 1), (-4, 3, -1), (0, 7, 0), (3, 2, 2), (-3, 2, -2)])
def test_divide_round_half_away(x, n, want):
    assert int(fp.divide_round_half_away(x, n)) == want


def test_requantize_clamps_to_activation_limits():
    acc = np.array([-(2**31), -1000, 0, 1000, 2**31 - 1])
    out = fp.requantize(acc, 1 << 30, 0, 5, -20, 100)
    assert out.dtype == np.int8
    # acc / 2 + 5, clamped to [-20, 100]
    assert out.tolist() == [-20, -20, 5, 100, 100]


def test_add_of_differently_scaled_inputs_is_close_to_real_sum():
    rng = np.random.default_rng(0)
    s1, s2, so = 0.02, 0.37, 0.25
    z1, z2, zo = -3, 17, -40
    a = rng.integers(-128, 128, 1000)
    b = rng.integers(-128, 128, 1000)
    params = fp.add_params(s1, s2, so)
    out = fp.add(a, z1, b, z2, params, zo, -128, 127).astype(np.int64)
    real = s1 * (a - z1) + s2 * (b - z2)
    want = np.clip(np.round(real / so) + zo, -128, 127)
    assert np.max(np.abs(out - want)) <= 1     # fixed point is within one LSB of the real sum
    assert np.mean(out == want) > 0.95
