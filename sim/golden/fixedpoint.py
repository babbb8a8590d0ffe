"""TFLite's fixed-point integer arithmetic, vectorized over NumPy arrays.

This module is the single written statement of the engine's numeric contract: every other
layer (ISA emulator, RTL tests, compiler) calls these functions instead of re-deriving them.
Each function matches the TFLite reference kernel of the same name bit for bit
(``tensorflow/lite/kernels/internal/common.h`` and ``quantization_util.cc``), including
the saturation of ``INT32_MIN * INT32_MIN``, gemmlowp's upward nudge in the high multiply and the
round-half-away-from-zero of the power-of-two divide.

All functions accept Python ints or NumPy integer arrays and compute in int64 internally;
results that TFLite holds in int32 are returned as int64 arrays whose values fit in int32.
"""

from __future__ import annotations

import math

import numpy as np

from . import loops

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT8_MIN = -128
INT8_MAX = 127


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap of int64 values to int32 range (what C's int32 arithmetic does)."""
    x = _i64(x)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul for int32 operands.

    The high 32 bits of ``2*a*b`` with gemmlowp's nudge (+0.5 rounds up, -0.5 rounds up too);
    the one overflowing case, ``a == b == INT32_MIN``, saturates to INT32_MAX.
    C's ``(ab + nudge) / 2^31`` (truncating, nudge = 2^30 or 1 - 2^30 by the sign of ab) equals
    the arithmetic shift ``(ab + 2^30) >> 31`` for both signs, which is what is computed.
    """
    a, b = _i64(a), _i64(b)
    out = a * b  # |ab| <= 2^62: exact in int64
    out += 1 << 30
    out >>= 31
    if np.any(b == INT32_MIN):
        out = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, out)
    return out


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero.

    gemmlowp's ``(x >> e) + (remainder > threshold)`` equals ``(x + 2^(e-1) - (x < 0)) >> e``
    for e >= 1, and x for e == 0.
    """
    x, exponent = _i64(x), _i64(exponent)
    if np.any((exponent < 0) | (exponent > 31)):
        raise ValueError("rounding_divide_by_pot: exponent must be in 0..31")
    half = ((np.int64(1) << exponent) - 1) >> 1  # 2^(e-1) - 1, or 0 for e == 0
    out = x + half
    out += (x >= 0) & (exponent > 0)
    out >>= exponent
    return out


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier (double rounding): ``x * M0 * 2**shift``.

    ``multiplier`` is a Q0.31 int32 in [2^30, 2^31) (or 0), ``shift`` an exponent in
    [-31, 30]; a positive shift is applied as a wrapping int32 left shift before the
    high multiply, a negative one as a rounding right shift after it.
    """
    shift = _i64(shift)
    x = _i64(x)
    if np.any(shift > 0):
        x = wrap_int32(x << np.maximum(shift, 0))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), np.maximum(-shift, 0))


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: a double as (Q0.31 significand, power-of-two exponent)."""
    if real_multiplier == 0.0:
        return 0, 0
    if real_multiplier < 0 or not math.isfinite(real_multiplier):
        raise ValueError(f"quantize_multiplier: multiplier must be finite and >= 0, got {real_multiplier}")
    q, shift = math.frexp(real_multiplier)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def quantize_multiplier_array(real_multipliers) -> tuple[np.ndarray, np.ndarray]:
    """``quantize_multiplier`` over a 1-D sequence: (int64 multipliers, int64 shifts)."""
    pairs = [quantize_multiplier(float(m)) for m in np.ravel(real_multipliers)]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


def _round_half_away(x: float) -> int:
    """C's std::round for doubles (TfLiteRound)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def round_half_away(x) -> np.ndarray:
    """std::round elementwise on a float array (rounds ties away from zero), exactly.

    ``floor(|x| + 0.5)`` is not: the add rounds, and ``0.49999999999999994 + 0.5`` is 1.0 in
    double (std::round gives 0). ``|x| - floor(|x|)`` is exact, so the fraction is compared instead.
    """
    x = np.asarray(x)
    a = np.abs(x)
    f = np.floor(a)
    with np.errstate(invalid="ignore"):  # inf - inf: inf stays inf, NaN stays NaN
        return np.sign(x) * (f + (a - f >= 0.5))


def divide_round_half_away(x, n) -> np.ndarray:
    """Integer ``x / n`` rounded half away from zero, as TFLite's pooling and MEAN write it:
    ``x > 0 ? (x + n/2) / n : (x - n/2) / n`` with C's truncating division."""
    x, n = _i64(x), _i64(n)
    half = n // 2
    num = np.where(x > 0, x + half, x - half)
    return np.where(num >= 0, num // n, -((-num) // n))


def truncating_divide(x, n) -> np.ndarray:
    """C's integer division (toward zero)."""
    x, n = _i64(x), _i64(n)
    return np.where(x >= 0, x // n, -((-x) // n))


def clamp(x, lo, hi) -> np.ndarray:
    return np.minimum(np.maximum(_i64(x), lo), hi)


def requantize(acc, multiplier, shift, out_zero_point, act_min, act_max) -> np.ndarray:
    """The conv / fully-connected epilogue: scale an int32 accumulator to the output's int8.

    ``clamp(out_zp + MultiplyByQuantizedMultiplier(acc, M0, shift), act_min, act_max)``;
    ``multiplier`` and ``shift`` broadcast along the last (channel) axis.
    """
    scaled = multiply_by_quantized_multiplier(acc, multiplier, shift)
    return clamp(scaled + out_zero_point, act_min, act_max).astype(np.int8)


class Requantizer:
    """``requantize`` for one layer's per-channel parameters, prepared once and run block by block.

    The same arithmetic as ``requantize`` (bias, MultiplyByQuantizedMultiplier, zero point, clamp)
    with the per-channel constants precomputed and every step done in place on int64 row blocks
    small enough to stay in cache, so no int64 temporary is the size of the tensor. ``acc`` may be
    any array of exact integer values (the float32/float64 output of an exact GEMM included).
    Bit-identical to ``requantize`` (tested on random and extreme accumulators). With numba
    present the same steps run as one fused parallel loop (``loops.requantize_rows``).
    """

    BLOCK_ELEMENTS = 1 << 14

    def __init__(self, multiplier, shift, out_zero_point: int, act_min: int, act_max: int):
        self.multiplier = np.ascontiguousarray(_i64(multiplier).reshape(-1))
        self.shift = np.ascontiguousarray(_i64(shift).reshape(-1))
        if np.any((self.shift < -31) | (self.shift > 31)):
            raise ValueError("requantize: shift must be in -31..31")
        self.left = np.maximum(self.shift, 0)
        self.any_left = bool(np.any(self.left))
        self.right = np.maximum(-self.shift, 0)
        self.half = ((np.int64(1) << self.right) - 1) >> 1  # 2^(e-1) - 1, or 0 for e == 0
        self.bump = self.right > 0  # rounding_divide_by_pot adds 1 more for x >= 0 when e > 0
        # SRDHM saturates only for INT32_MIN * INT32_MIN: a multiplier of INT32_MIN takes the reference path.
        self.saturating = bool(np.any(self.multiplier == INT32_MIN))
        self.args = (multiplier, shift, out_zero_point, act_min, act_max)
        self.zp, self.lo, self.hi = int(out_zero_point), int(act_min), int(act_max)

    def __call__(self, acc: np.ndarray, bias=None, out: np.ndarray | None = None) -> np.ndarray:
        """int8 [M, C] of ``requantize(acc + bias)`` for accumulators [M, C] (``acc`` is not modified)."""
        if out is None:
            out = np.empty(acc.shape, dtype=np.int8)
        if loops.enabled() and acc.ndim == 2:
            b = np.zeros(acc.shape[1], np.int64) if bias is None else np.broadcast_to(_i64(bias), acc.shape[1:])
            loops.requantize_rows(acc, np.ascontiguousarray(b), self.multiplier, self.left, self.right,
                                  self.zp, self.lo, self.hi, out)
            return out
        if self.saturating or acc.ndim != 2:
            a = _i64(acc) if bias is None else _i64(acc) + _i64(bias)
            out[...] = requantize(a, *self.args)
            return out
        step = max(1, self.BLOCK_ELEMENTS // max(acc.shape[1], 1))
        rows = min(step, acc.shape[0])
        x_buf = np.empty((rows, acc.shape[1]), dtype=np.int64)
        m_buf = np.empty((rows, acc.shape[1]), dtype=bool)
        for r in range(0, acc.shape[0], step):
            src = acc[r:r + step]
            x, m = x_buf[:src.shape[0]], m_buf[:src.shape[0]]
            np.copyto(x, src, casting="unsafe")  # exact integers: float -> int64 loses nothing
            if bias is not None:
                x += bias
            if self.any_left:
                x <<= self.left
                x += 1 << 31
                x &= 0xFFFFFFFF
                x -= 1 << 31
            x *= self.multiplier  # |x * M0| <= 2^62: exact
            x += 1 << 30
            x >>= 31
            np.greater_equal(x, 0, out=m)
            m &= self.bump
            x += self.half
            x += m
            x >>= self.right
            x += self.zp
            np.clip(x, self.lo, self.hi, out=x)
            out[r:r + step] = x
        return out


def scale_round_double(acc, effective_scale) -> np.ndarray:
    """TFLite's reference FULLY_CONNECTED epilogue (int8): ``std::round(double(acc) * scale)``.

    Unlike CONV_2D, LiteRT's reference fully-connected kernels do not use the fixed-point
    multiplier: they multiply in IEEE double (``scale = double(in_s) * double(w_s) / double(out_s)``)
    and round half away from zero once. float64 NumPy arithmetic is that same IEEE arithmetic.
    """
    v = _i64(acc).astype(np.float64) * np.asarray(effective_scale, dtype=np.float64)
    return round_half_away(v).astype(np.int64)


def requantize_double(acc, effective_scale, out_zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """FULLY_CONNECTED's int8 output (reference_integer_ops::FullyConnected): ``clamp(out_zp +
    round(double(acc) * scale), act_min, act_max)`` (``scale_round_double``), ``acc`` with the bias."""
    return clamp(scale_round_double(acc, effective_scale) + out_zero_point, act_min, act_max).astype(np.int8)


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = INT8_MIN, qmax: int = INT8_MAX) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for a fused activation.

    ``activation`` is one of "NONE", "RELU", "RELU6", "RELU_N1_TO_1". The bounds are
    quantized in float32, as TFLite does (``zero_point + round(v / scale)``).
    """
    def q(v: float) -> int:
        return zero_point + int(round_half_away(np.float32(v) / np.float32(scale)))

    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, q(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"unsupported fused activation {activation!r}")


def add_params(scale1: float, scale2: float, out_scale: float, left_shift: int = 20):
    """Fixed-point parameters of TFLite's int8 ADD (``add.cc`` Prepare).

    Returns ``(m1, s1, m2, s2, m_out, s_out)``: each input is scaled by ``2**left_shift``
    and by its multiplier (< 1) before the sum, the sum by the output multiplier.
    """
    f32 = np.float32
    twice_max = float(f32(2) * max(f32(scale1), f32(scale2)))
    real1 = float(f32(scale1)) / twice_max
    real2 = float(f32(scale2)) / twice_max
    real_out = twice_max / float(f32(1 << left_shift) * f32(out_scale))
    m1, s1 = quantize_multiplier(real1)
    m2, s2 = quantize_multiplier(real2)
    mo, so = quantize_multiplier(real_out)
    return m1, s1, m2, s2, mo, so


def mul(x1, zp1, x2, zp2, multiplier, shift, out_zp, act_min, act_max) -> np.ndarray:
    """TFLite's reference int8 MUL (``MulElementwise``, with broadcasting):
    ``clamp(out_zp + MBQM((x1 - zp1) * (x2 - zp2), M0, shift))``; the product of two 9-bit
    values fits int32."""
    prod = (_i64(x1) - zp1) * (_i64(x2) - zp2)
    out = multiply_by_quantized_multiplier(prod, multiplier, shift) + out_zp
    return clamp(out, act_min, act_max).astype(np.int8)


def add(x1, zp1, x2, zp2, params, out_zp, act_min, act_max, left_shift: int = 20) -> np.ndarray:
    """TFLite's reference int8 ADD (elementwise, with broadcasting)."""
    m1, s1, m2, s2, mo, so = params
    a = wrap_int32((_i64(x1) - zp1) << left_shift)
    b = wrap_int32((_i64(x2) - zp2) << left_shift)
    sa = multiply_by_quantized_multiplier(a, m1, s1)
    sb = multiply_by_quantized_multiplier(b, m2, s2)
    raw = wrap_int32(sa + sb)
    out = multiply_by_quantized_multiplier(raw, mo, so) + out_zp
    return clamp(out, act_min, act_max).astype(np.int8)
