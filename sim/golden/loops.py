"""Compiled inner loops of the golden kernels (numba): the requantizer epilogue, ADD's lookup and
the patch matrix of a convolution, each one fused pass.

Why numba: NumPy's int64 ufuncs are not vectorized for shifts and cost about 1 ns per element and
per pass; the requantizer takes ten passes, ResNet50 has about 10 M conv outputs per image, so
the epilogue alone cost more than the exact GEMMs. numba (LLVM, maintained by the NumPy
community for exactly this: compiling numeric loops over arrays) runs the same integer
arithmetic in one branch-free, vectorized pass. The arithmetic is the same as ``fixedpoint``'s,
statement for statement; the NumPy functions there stay the reference and the fallback, used when
numba is not installed or when ``ONDA_KERNELS=numpy`` (tests run both and compare them).

Each loop is compiled serial and without the GIL, and a large call is split into row blocks run on
the golden kernels' threads (``threading.run_parallel``, as the GEMMs are): numba's own parallel
launch cost about 0.1 ms, more than a whole ResNet50 layer's epilogue takes on one core.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

try:  # numba is a dependency of onda; without it every kernel takes its NumPy path
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised by ONDA_KERNELS=numpy instead
    numba = None

SPLIT_MIN_ELEMENTS = 1 << 22  # about 2 ms of work: below it, a handoff to a Python thread (~70 us) and
# the GEMM pool's workers still spinning on the other core cost more than the split saves
_enabled = numba is not None and os.environ.get("ONDA_KERNELS", "").lower() != "numpy"


def enabled() -> bool:
    """Whether the compiled loops are in use (numba present and not switched off)."""
    return _enabled


@contextlib.contextmanager
def use(flag: bool):
    """Run a block with the compiled loops on or off (tests compare the two paths)."""
    global _enabled
    old = _enabled
    _enabled = bool(flag) and numba is not None
    try:
        yield
    finally:
        _enabled = old


def _split(rows: int, elements: int, run) -> None:
    """``run(r0, r1)`` over ``range(rows)``, in one call or in row blocks on the kernels' threads."""
    from . import threading

    parts = threading.gemm_threads()
    if parts <= 1 or elements < SPLIT_MIN_ELEMENTS or rows < parts:
        run(0, rows)
        return
    bounds = [rows * i // parts for i in range(parts + 1)]
    threading.run_parallel([lambda r0=r0, r1=r1: run(r0, r1) for r0, r1 in zip(bounds, bounds[1:])])


if numba is not None:
    INT32_MIN = -(2**31)
    INT32_MAX = 2**31 - 1

    @njit(cache=True, nogil=True)
    def _requantize_rows(acc, bias, mult, left, wrap, right, zp, lo, hi, out, r0, r1):  # pragma: no cover
        n_cols = acc.shape[1]
        for i in range(r0, r1):
            a = acc[i]
            o = out[i]
            for j in range(n_cols):  # branch-free, so LLVM vectorizes it
                x = np.int64(a[j]) + bias[j]
                if wrap:  # wrap_int32(x << left), as fixedpoint does once any channel shifts left
                    x = ((x << left[j]) + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)
                    x -= np.int64(1) << 31
                m = mult[j]
                y = (x * m + (np.int64(1) << 30)) >> 31
                if x == INT32_MIN and m == INT32_MIN:  # SRDHM's one saturating case
                    y = np.int64(INT32_MAX)
                e = right[j]  # rounding_divide_by_pot; e == 0 leaves y as it is
                y = (y + (((np.int64(1) << e) - 1) >> 1) + ((y >= 0) & (e > 0))) >> e
                o[j] = min(max(y + zp, lo), hi)

    @njit(cache=True, nogil=True)
    def _lookup2(a, b, table, out, r0, r1):  # pragma: no cover - compiled
        for i in range(r0, r1):
            out[i] = table[(np.int64(a[i]) + 128) * 256 + np.int64(b[i]) + 128]

    @njit(cache=True, nogil=True)
    def _patches(x, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, pad, out, p0, p1):  # pragma: no cover - compiled
        n, h, w, c = x.shape
        xr = x.reshape(n, h, w * c)
        for p in range(p0, p1):  # one output row of one image
            b = p // oh
            oy = p % oh
            for ox in range(ow):
                row = out[(b * oh + oy) * ow + ox]
                k = 0
                ix0 = ox * sw - pl
                whole = dw == 1 and ix0 >= 0 and ix0 + kw <= w  # the kw taps of a kernel row are one run
                for i in range(kh):
                    iy = oy * sh + i * dh - pt
                    if iy < 0 or iy >= h:
                        row[k:k + kw * c] = pad
                        k += kw * c
                    elif whole:
                        row[k:k + kw * c] = xr[b, iy, ix0 * c:(ix0 + kw) * c]
                        k += kw * c
                    else:
                        for j in range(kw):
                            ix = ix0 + j * dw
                            if 0 <= ix < w:
                                row[k:k + c] = xr[b, iy, ix * c:(ix + 1) * c]
                            else:
                                row[k:k + c] = pad
                            k += c


    @njit(cache=True, nogil=True)
    def _max_pool(x, kh, kw, sh, sw, pt, pl, oh, ow, lo, hi, out, p0, p1):  # pragma: no cover - compiled
        n, h, w, c = x.shape
        for p in range(p0, p1):  # one output row of one image
            b = p // oh
            oy = p % oh
            for ox in range(ow):
                for ch in range(c):  # taps outside the input are excluded: the clamp's floor is the start
                    out[b, oy, ox, ch] = lo
                for i in range(kh):
                    iy = oy * sh + i - pt
                    if 0 <= iy < h:
                        for j in range(kw):
                            ix = ox * sw + j - pl
                            if 0 <= ix < w:
                                for ch in range(c):
                                    out[b, oy, ox, ch] = max(out[b, oy, ox, ch], x[b, iy, ix, ch])
                for ch in range(c):
                    out[b, oy, ox, ch] = min(out[b, oy, ox, ch], hi)


def requantize_rows(acc: np.ndarray, bias: np.ndarray, multiplier: np.ndarray, left: np.ndarray,
                    right: np.ndarray, zp: int, lo: int, hi: int, out: np.ndarray) -> None:
    """``out = clamp(zp + MBQM(acc + bias, M0, shift))`` over [M, C], per-channel vectors of C."""
    wrap = bool(np.any(left > 0))
    zp, lo, hi = np.int64(zp), np.int64(lo), np.int64(hi)
    _split(acc.shape[0], acc.size,
           lambda r0, r1: _requantize_rows(acc, bias, multiplier, left, wrap, right, zp, lo, hi, out, r0, r1))


def lookup2(a: np.ndarray, b: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[(a + 128) * 256 + b + 128]`` for equal-shape int8 arrays."""
    out = np.empty(a.shape, dtype=table.dtype)
    fa, fb, ft, fo = a.reshape(-1), b.reshape(-1), table.reshape(-1), out.reshape(-1)
    _split(fa.size, fa.size, lambda r0, r1: _lookup2(fa, fb, ft, fo, r0, r1))
    return out


def patches(x: np.ndarray, kh: int, kw: int, stride, dilation, pads: tuple[int, int], oh: int, ow: int,
            pad_value: int, dtype) -> np.ndarray:
    """The [N*OH*OW, KH*KW*C] patch matrix of int8 NHWC ``x``, converted to ``dtype`` in one pass;
    taps outside the input read ``pad_value`` (no padded copy of the input)."""
    n, _, _, c = x.shape
    out = np.empty((n * oh * ow, kh * kw * c), dtype=dtype)
    x = np.ascontiguousarray(x)
    pad = np.dtype(dtype).type(pad_value)
    _split(n * oh, out.size, lambda p0, p1: _patches(x, kh, kw, stride[0], stride[1], dilation[0], dilation[1],
                                                      pads[0], pads[1], oh, ow, pad, out, p0, p1))
    return out


def max_pool(x: np.ndarray, kh: int, kw: int, stride, pads: tuple[int, int], oh: int, ow: int, lo: int,
             hi: int) -> np.ndarray:
    """``clamp(max over the in-bounds taps)`` of int8 NHWC ``x`` [n, oh, ow, C]: window ``(oy, ox)``
    covers rows ``oy * sh - pt ...`` and columns ``ox * sw - pl ...``; taps outside ``x`` are
    excluded (and ``lo >= -128`` is where the maximum starts, as the clamp would put it anyway)."""
    n, _, _, c = x.shape
    x = np.ascontiguousarray(x)
    out = np.empty((n, oh, ow, c), np.int8)
    _split(n * oh, out.size * kh * kw, lambda p0, p1: _max_pool(x, kh, kw, stride[0], stride[1], pads[0], pads[1],
                                                                 oh, ow, np.int8(lo), np.int8(hi), out, p0, p1))
    return out
