"""TFLite's reference int8 kernels, written as exact, vectorized NumPy.

Each function takes int8 activations (NHWC) and the integer parameters from ``params``; none
loops over pixels. GEMMs are exact by the bounds stated in ``exact_gemm``: the native int8 kernel
(int32, K <= 131071) where it runs, else float BLAS (float32 K-chunks of at most 1024 products).
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ..ir import Padding
from . import fixedpoint as fp
from . import loops
from .params import AddParams, GemmParams, MulParams, RequantParams, conv_output_size, same_padding

from .exact_gemm import Weights, exact_int8_matmul, exact_int8_product, operand_dtype  # noqa: F401 (the GEMMs)


def pad_spatial(x: np.ndarray, pads_h: tuple[int, int], pads_w: tuple[int, int], value: int) -> np.ndarray:
    if pads_h == (0, 0) and pads_w == (0, 0):
        return x
    return np.pad(x, ((0, 0), pads_h, pads_w, (0, 0)), constant_values=value)


def patch_matrix(x: np.ndarray, kh: int, kw: int, stride, dilation, pads: tuple[int, int], oh: int, ow: int,
                 pad_value: int, dtype=np.float32) -> np.ndarray:
    """The [N*OH*OW, KH*KW*C] patch matrix of int8 NHWC ``x`` (TFLite's OHWI K order): row
    ``(b, oy, ox)`` holds the taps ``x[b, oy*sh + i*dh - pt, ox*sw + j*dw - pl, :]``, with
    ``pad_value`` for taps outside ``x``. Written once, converted to ``dtype``; a 1x1 stride-1
    matrix is the input itself (not copied when it is int8 and contiguous).
    """
    n, h, w, c = x.shape
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pads
    if loops.enabled() and (kh, kw) != (1, 1) and x.dtype == np.int8:
        return loops.patches(x, kh, kw, stride, dilation, pads, oh, ow, pad_value, dtype)
    hp = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(w + pl, (ow - 1) * sw + (kw - 1) * dw + 1)
    xp = pad_spatial(x, (pt, hp - h - pt), (pl, wp - w - pl), pad_value)
    if kh == 1 and kw == 1:
        cols = xp[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, :]
        return np.ascontiguousarray(cols, dtype=dtype).reshape(n * oh * ow, c)
    s0, s1, s2, s3 = xp.strides
    win = as_strided(xp, shape=(n, oh, ow, kh, kw, c),
                     strides=(s0, sh * s1, sw * s2, dh * s1, dw * s2, s3), writeable=False)
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=dtype)
    np.copyto(cols, win, casting="unsafe")
    return cols.reshape(n * oh * ow, kh * kw * c)


def im2col(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int],
           padding: Padding, pad_value: int, dtype=np.float32) -> tuple[np.ndarray, int, int]:
    """Patches of an NHWC tensor as a [N*OH*OW, KH*KW*C] matrix for a TFLite padding mode."""
    n, h, w, c = x.shape
    sh, sw = stride
    dh, dw = dilation
    oh = conv_output_size(h, kh, sh, dh, padding)
    ow = conv_output_size(w, kw, sw, dw, padding)
    ph = same_padding(h, kh, sh, dh, padding) if padding == Padding.SAME else (0, 0)
    pw = same_padding(w, kw, sw, dw, padding) if padding == Padding.SAME else (0, 0)
    return patch_matrix(x, kh, kw, stride, dilation, (ph[0], pw[0]), oh, ow, pad_value, dtype), oh, ow


def folded_bias(bias: np.ndarray, in_zero_point: int, wmat: np.ndarray) -> np.ndarray:
    """The bias with the input zero point folded in, int64 [Cout]: ``bias - x_zp * sum(w)``.

    TFLite's conv and fully-connected kernels accumulate ``bias[c] + sum((x - x_zp) * w[c])``
    with symmetric int8 weights (zero point 0); expanded, that is ``sum(x * w[c])`` plus this
    per-channel constant, so a GEMM over the raw int8 activations (the engine's MAC array, this
    model's exact GEMM) gives the same accumulator. ``wmat`` is the weights as [Cout, K] (or
    OHWI, flattened per output channel).
    """
    w = np.asarray(wmat)
    w = w.reshape(w.shape[0], -1)
    return np.asarray(bias, dtype=np.int64) - int(in_zero_point) * w.sum(axis=1, dtype=np.int64)


class PreparedGemm:
    """A conv's or fully-connected op's constants, prepared once per model (TFLite's Prepare):
    the weights as a [K, Cout] GEMM operand (``exact_gemm.Weights``), the per-channel constant and
    the requantizer."""

    def __init__(self, p: GemmParams):
        cout = p.weights.shape[0]
        self.k = int(np.prod(p.weights.shape[1:]))
        w = p.weights.reshape(cout, self.k)
        self.weights = Weights(w.T)
        # the per-channel constant of the expanded accumulator; an asymmetric weight zero point
        # (not TFLite's int8 scheme, kept for completeness) adds k * x_zp * w_zp
        self.corr = folded_bias(p.bias, p.in_zero_point, w) + self.k * p.in_zero_point * p.weight_zero_point
        self.requant = fp.Requantizer(p.multiplier, p.shift, p.out_zero_point, p.act_min, p.act_max)
        self.weight_zero_point = p.weight_zero_point

    @property
    def dtype(self) -> np.dtype:
        """What this GEMM's patch matrix is made of (``exact_gemm.operand_dtype``)."""
        return operand_dtype(self.k)

    def product(self, cols: np.ndarray) -> np.ndarray:
        """``sum(x w)`` [M, Cout] as exact integers (int32, or a float array), with the zw term if any."""
        prod = self.weights.product(cols)
        if self.weight_zero_point:
            rows = cols.sum(axis=1, dtype=np.float64).astype(np.int64)  # exact: |sum| < 2**53
            prod = prod.astype(np.int64) - self.weight_zero_point * rows[:, None]
        return prod


_PREPARED: dict[int, tuple[GemmParams, PreparedGemm]] = {}


def prepared(p: GemmParams) -> PreparedGemm:
    """``PreparedGemm(p)``, cached while ``p`` lives (the golden model prepares its own once)."""
    hit = _PREPARED.get(id(p))
    if hit is not None and hit[0] is p:
        return hit[1]
    if len(_PREPARED) > 256:
        _PREPARED.clear()
    prep = PreparedGemm(p)
    _PREPARED[id(p)] = (p, prep)
    return prep


def conv_accumulators(x: np.ndarray, p: GemmParams, stride, dilation, padding: Padding,
                      prep: PreparedGemm | None = None) -> np.ndarray:
    """int32 accumulators ``bias + sum((x - x_zp) * w)`` of a conv, shape [N, OH, OW, Cout].

    Padding is filled with the input zero point so it contributes nothing, exactly as the
    reference kernel skips out-of-bounds taps.
    """
    prep = prep or prepared(p)
    cout, kh, kw, cin = p.weights.shape
    cols, oh, ow = im2col(x, kh, kw, stride, dilation, padding, p.in_zero_point, prep.dtype)
    acc = prep.product(cols).astype(np.int64)
    acc += prep.corr
    return acc.reshape(x.shape[0], oh, ow, cout)


def conv2d(x: np.ndarray, p: GemmParams, stride, dilation, padding: Padding,
           prep: PreparedGemm | None = None) -> np.ndarray:
    """TFLite's reference_integer_ops::ConvPerChannel: accumulate, then requantize per channel.

    One exact GEMM over the whole patch matrix, then the requantizer in cache-sized row blocks.
    """
    prep = prep or prepared(p)
    cout, kh, kw, cin = p.weights.shape
    cols, oh, ow = im2col(x, kh, kw, stride, dilation, padding, p.in_zero_point, prep.dtype)
    out = prep.requant(prep.product(cols), prep.corr)
    return out.reshape(x.shape[0], oh, ow, cout)


def fully_connected_accumulators(x: np.ndarray, p: GemmParams) -> np.ndarray:
    """int32 accumulators [N, Cout] of a fully-connected op; x is flattened to [-1, K]."""
    cout, k = p.weights.shape[0], int(np.prod(p.weights.shape[1:]))
    as_conv = replace(p, weights=p.weights.reshape(cout, 1, 1, k))
    return conv_accumulators(x.reshape(-1, 1, 1, k), as_conv, (1, 1), (1, 1), Padding.VALID).reshape(-1, cout)


def fully_connected(x: np.ndarray, p: GemmParams) -> np.ndarray:
    """TFLite's reference_integer_ops::FullyConnected(PerChannel) with its double epilogue."""
    return fp.requantize_double(fully_connected_accumulators(x, p), p.double_scale, p.out_zero_point, p.act_min,
                                p.act_max)


@functools.lru_cache(maxsize=512)
def add_table(p: AddParams) -> np.ndarray:
    """ADD is a pure function of its two int8 operands: its 256 x 256 results, computed once
    with the reference arithmetic (fixedpoint.add), indexed by ``(a + 128, b + 128)``."""
    a = np.arange(-128, 128, dtype=np.int64)
    return fp.add(a[:, None], p.zp1, a[None, :], p.zp2, p.rescale, p.out_zero_point, p.act_min, p.act_max)


def add(a: np.ndarray, b: np.ndarray, p: AddParams, table: np.ndarray | None = None) -> np.ndarray:
    """TFLite's reference int8 ADD (with broadcasting), by lookup in ``add_table``."""
    return lookup2(a, b, add_table(p) if table is None else table)


@functools.lru_cache(maxsize=512)
def mul_table(p: MulParams) -> np.ndarray:
    """MUL's 256 x 256 results (fixedpoint.mul), indexed by ``(a + 128, b + 128)``."""
    a = np.arange(-128, 128, dtype=np.int64)
    return fp.mul(a[:, None], p.zp1, a[None, :], p.zp2, p.multiplier, p.shift, p.out_zero_point, p.act_min, p.act_max)


def mul(a: np.ndarray, b: np.ndarray, p: MulParams, table: np.ndarray | None = None) -> np.ndarray:
    """TFLite's reference int8 MUL (with broadcasting), by lookup in ``mul_table``."""
    return lookup2(a, b, mul_table(p) if table is None else table)


def concatenation(xs: list[np.ndarray], axis: int) -> np.ndarray:
    """TFLite's int8 CONCATENATION: the inputs' bytes side by side along ``axis`` (they share the
    output's quantization: ``params.concat_axis``)."""
    return np.concatenate(xs, axis=axis)


def lookup2(a: np.ndarray, b: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[a + 128, b + 128]`` over the broadcast of two int8 arrays: a binary int8 op."""
    a, b = np.broadcast_arrays(a, b)
    if loops.enabled() and a.dtype == b.dtype == np.int8 and table.dtype == np.int8:
        return loops.lookup2(np.ascontiguousarray(a), np.ascontiguousarray(b), table)
    index = (a.astype(np.intp) + 128) * 256
    index += b
    index += 128
    return table.reshape(-1)[index]


def pool_geometry(h: int, w: int, filt, stride, padding: Padding):
    """``(oh, ow, (top, bottom), (left, right))`` of a pooling window over an ``h x w`` input:
    TFLite's pooling Prepare (ComputePaddingHeightWidth with dilation 1)."""
    (fh, fw), (sh, sw) = filt, stride
    ph = same_padding(h, fh, sh, 1, padding) if padding == Padding.SAME else (0, 0)
    pw = same_padding(w, fw, sw, 1, padding) if padding == Padding.SAME else (0, 0)
    return conv_output_size(h, fh, sh, 1, padding), conv_output_size(w, fw, sw, 1, padding), ph, pw


def pool_windows(x: np.ndarray, filt, stride, pads: tuple[int, int], oh: int, ow: int, pad_value: int) -> np.ndarray:
    """The pooling windows of NHWC ``x``, a read-only view [N, oh, ow, C, fh, fw]: window
    ``(oy, ox)`` holds the taps ``x[b, oy*sh + i - top, ox*sw + j - left, :]`` (``pads`` =
    ``(top, left)``, as the reference kernels' ``padding_values``), ``pad_value`` for taps outside
    ``x`` (max pool: a value that never wins; average: 0, and ``pool_counts`` leaves them out)."""
    n, h, w, c = x.shape
    (fh, fw), (sh, sw) = filt, stride
    pt, pl = pads
    # Pad at the end as far as the last window reaches (or not at all).
    pb = max(0, (oh - 1) * sh + fh - pt - h)
    pr = max(0, (ow - 1) * sw + fw - pl - w)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    win = sliding_window_view(xp, (fh, fw), axis=(1, 2))
    return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def pool_counts(h: int, w: int, filt, stride, pads: tuple[int, int], oh: int, ow: int) -> np.ndarray:
    """How many taps of each pooling window (``pool_windows``) fall inside the ``h x w`` input,
    int64 [1, oh, ow, 1]: the divisor of TFLite's AveragePool (padding taps are not counted)."""
    ones = np.ones((1, h, w, 1), dtype=np.int32)
    return pool_windows(ones, filt, stride, pads, oh, ow, 0).sum(axis=(-2, -1), dtype=np.int64)


def max_pool_explicit(x: np.ndarray, filt, stride, pads: tuple[int, int], oh: int, ow: int, act_min: int,
                      act_max: int) -> np.ndarray:
    """TFLite's reference_integer_ops::MaxPool with explicit geometry (its PoolParams: padding
    values ``pads`` = (top, left), output ``oh x ow``): the max over each window's in-bounds
    taps, clamped to the activation range."""
    if loops.enabled() and x.dtype == np.int8 and -128 <= act_min <= act_max <= 127:
        return loops.max_pool(x, filt[0], filt[1], stride, pads, oh, ow, act_min, act_max)
    win = pool_windows(x.astype(np.int16), filt, stride, pads, oh, ow, -32768)
    return fp.clamp(win.max(axis=(-2, -1)), act_min, act_max).astype(np.int8)


def average_pool_explicit(x: np.ndarray, filt, stride, pads: tuple[int, int], oh: int, ow: int, act_min: int,
                          act_max: int) -> np.ndarray:
    """TFLite's reference_integer_ops::AveragePool with explicit geometry (as
    ``max_pool_explicit``): the sum over each window's in-bounds taps divided by their count
    (``pool_counts``), rounded half away from zero, clamped."""
    _, h, w, _ = x.shape
    sums = pool_windows(x.astype(np.int32), filt, stride, pads, oh, ow, 0).sum(axis=(-2, -1), dtype=np.int64)
    out = fp.divide_round_half_away(sums, pool_counts(h, w, filt, stride, pads, oh, ow))
    return fp.clamp(out, act_min, act_max).astype(np.int8)


def max_pool(x: np.ndarray, filt, stride, padding: Padding, act_min: int, act_max: int) -> np.ndarray:
    """TFLite's reference_integer_ops::MaxPool (padding taps excluded)."""
    oh, ow, ph, pw = pool_geometry(x.shape[1], x.shape[2], filt, stride, padding)
    return max_pool_explicit(x, filt, stride, (ph[0], pw[0]), oh, ow, act_min, act_max)


def average_pool(x: np.ndarray, filt, stride, padding: Padding, act_min: int, act_max: int) -> np.ndarray:
    """TFLite's reference_integer_ops::AveragePool: sum over in-bounds taps, divided by their
    count with round-half-away-from-zero."""
    oh, ow, ph, pw = pool_geometry(x.shape[1], x.shape[2], filt, stride, padding)
    return average_pool_explicit(x, filt, stride, (ph[0], pw[0]), oh, ow, act_min, act_max)


def mean(x: np.ndarray, axes: tuple[int, ...], keep_dims: bool, p: RequantParams) -> np.ndarray:
    """TFLite's reference int8 MEAN (reference_ops::QuantizedMeanOrSum, the path LiteRT's
    reference kernel takes for every int8 MEAN): an int32 sum, the count folded into the
    ``in_scale / out_scale`` multiplier by a shift of floor(log2(count)) and an integer divide.
    """
    nd = x.ndim
    axes = tuple(sorted({a % nd for a in axes}))
    count = int(np.prod([x.shape[a] for a in axes]))
    multiplier, shift = mean_multiplier(p.multiplier, p.shift, count)
    sums = x.astype(np.int64).sum(axis=axes, keepdims=keep_dims)
    shifted = fp.wrap_int32(sums - p.in_zero_point * count)
    out = fp.multiply_by_quantized_multiplier(shifted, multiplier, shift) + p.out_zero_point
    return fp.clamp(out, fp.INT8_MIN, fp.INT8_MAX).astype(np.int8)


def mean_multiplier(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """The ``in_scale / out_scale`` multiplier with ``1 / count`` folded in, as
    QuantizedMeanOrSum folds it (precision traded for range at large counts)."""
    s = min(count.bit_length() - 1, 32, 31 + shift)
    return (multiplier << s) // count, shift - s


def pad(x: np.ndarray, paddings, value: int) -> np.ndarray:
    """TFLite PAD: constant padding, with the output zero point unless a constant is given."""
    return np.pad(x, paddings, constant_values=value)


def requantize_tensor(x: np.ndarray, p: RequantParams, lo: int = fp.INT8_MIN, hi: int = fp.INT8_MAX) -> np.ndarray:
    """int8 -> int8 QUANTIZE (reference_ops::Requantize), and with an activation's ``lo``/``hi`` a standalone
    RELU / RELU6 / RELU_N1_TO_1 (reference_ops::ReluX: the same rescale, then the clamp)."""
    out = fp.multiply_by_quantized_multiplier(x.astype(np.int64) - p.in_zero_point, p.multiplier, p.shift)
    return fp.clamp(out + p.out_zero_point, lo, hi).astype(np.int8)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float32 -> int8 QUANTIZE (AffineQuantize): ``round(x / scale) + zp`` in float32."""
    q = fp.round_half_away(x.astype(np.float32) / np.float32(scale))
    return fp.clamp(q.astype(np.int64) + zero_point, fp.INT8_MIN, fp.INT8_MAX).astype(np.int8)


def dequantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8 -> float32 DEQUANTIZE: ``(x - zp) * scale`` in float32."""
    return (x.astype(np.int32) - zero_point).astype(np.float32) * np.float32(scale)
