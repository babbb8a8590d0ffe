"""Compiled inner loops of the golden kernels (numba): the requantizer epilogue, ADD's lookup and
the patch matrix of a convolution, each one fused parallel pass.

Why numba: NumPy's int64 ufuncs are not vectorized for shifts and cost about 1 ns per element and
per pass; the requantizer takes ten passes, ResNet50 has about 10 M conv outputs per image, so
the epilogue alone cost more than the exact GEMMs. numba (LLVM, maintained by the NumPy
community for exactly this: compiling numeric loops over arrays) runs the same integer
arithmetic in one pass on all cores. The arithmetic is the same as ``fixedpoint``'s, statement for
statement; the NumPy functions there stay the reference and the fallback, used when numba is not
installed or when ``ONDA_KERNELS=numpy`` (tests run both and compare them).

The GEMMs themselves stay on BLAS (``exact_gemm``). Calls are serialized by a lock: numba's
workqueue threading layer (chosen here, see below) does not take concurrent launches from
several Python threads.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

try:  # numba is a dependency of onda; without it every kernel takes its NumPy path
    import numba
    from numba import njit, prange
    if "NUMBA_THREADING_LAYER" not in os.environ:
        # workqueue: workers sleep between launches; OpenMP's spin-wait starved the GEMM threads
        # (a 2-thread run 4x slower than a 1-thread one on a shared 2-core machine)
        numba.config.THREADING_LAYER = "workqueue"
except ImportError:  # pragma: no cover - exercised by ONDA_KERNELS=numpy instead
    numba = None

_LOCK = threading.Lock()
PARALLEL_MIN_ELEMENTS = 1 << 17  # below this a parallel launch costs more than it saves
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


def set_threads(n: int) -> None:
    """Threads the compiled loops use (BLAS threads are threadpoolctl's)."""
    if numba is not None:
        numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


if numba is not None:
    INT32_MIN = -(2**31)
    INT32_MAX = 2**31 - 1

    def _requantize_rows_body(acc, bias, mult, left, wrap, right, zp, lo, hi, out):  # pragma: no cover
        m_rows, n_cols = acc.shape
        for i in prange(m_rows):
            for j in range(n_cols):
                x = np.int64(acc[i, j]) + bias[j]
                if wrap:  # wrap_int32(x << left), as fixedpoint does once any channel shifts left
                    x = ((x << left[j]) + (np.int64(1) << 31)) & np.int64(0xFFFFFFFF)
                    x -= np.int64(1) << 31
                m = mult[j]
                if x == INT32_MIN and m == INT32_MIN:  # SRDHM's one saturating case
                    y = np.int64(INT32_MAX)
                else:
                    y = (x * m + (np.int64(1) << 30)) >> 31
                e = right[j]
                if e > 0:  # rounding_divide_by_pot
                    y = (y + (((np.int64(1) << e) - 1) >> 1) + (1 if y >= 0 else 0)) >> e
                y += zp
                if y < lo:
                    y = lo
                elif y > hi:
                    y = hi
                out[i, j] = y

    _requantize_rows = njit(parallel=True, cache=True, nogil=True)(_requantize_rows_body)
    _requantize_rows_serial = njit(cache=True, nogil=True)(_requantize_rows_body)

    def _lookup2_body(a, b, table, out):  # pragma: no cover - compiled
        n = a.shape[0]
        for i in prange(n):
            out[i] = table[(np.int64(a[i]) + 128) * 256 + np.int64(b[i]) + 128]

    _lookup2 = njit(parallel=True, cache=True, nogil=True)(_lookup2_body)
    _lookup2_serial = njit(cache=True, nogil=True)(_lookup2_body)  # prange runs as range: no launch cost

    @njit(parallel=True, cache=True, nogil=True)
    def _patches(x, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, pad, out):  # pragma: no cover - compiled
        n, h, w, c = x.shape
        for p in prange(n * oh):
            b = p // oh
            oy = p % oh
            for ox in range(ow):
                row = (b * oh + oy) * ow + ox
                k = 0
                for i in range(kh):
                    iy = oy * sh + i * dh - pt
                    for j in range(kw):
                        ix = ox * sw + j * dw - pl
                        if 0 <= iy < h and 0 <= ix < w:
                            for ch in range(c):
                                out[row, k + ch] = x[b, iy, ix, ch]
                        else:
                            for ch in range(c):
                                out[row, k + ch] = pad
                        k += c


def requantize_rows(acc: np.ndarray, bias: np.ndarray, multiplier: np.ndarray, left: np.ndarray,
                    right: np.ndarray, zp: int, lo: int, hi: int, out: np.ndarray) -> None:
    """``out = clamp(zp + MBQM(acc + bias, M0, shift))`` over [M, C], per-channel vectors of C."""
    fn = _requantize_rows if acc.size >= PARALLEL_MIN_ELEMENTS else _requantize_rows_serial
    with _LOCK:
        fn(acc, bias, multiplier, left, bool(np.any(left > 0)), right, np.int64(zp), np.int64(lo), np.int64(hi), out)


def lookup2(a: np.ndarray, b: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[(a + 128) * 256 + b + 128]`` for equal-shape int8 arrays."""
    out = np.empty(a.shape, dtype=table.dtype)
    fn = _lookup2 if a.size >= PARALLEL_MIN_ELEMENTS else _lookup2_serial
    with _LOCK:
        fn(a.reshape(-1), b.reshape(-1), table.reshape(-1), out.reshape(-1))
    return out


def patches(x: np.ndarray, kh: int, kw: int, stride, dilation, pads: tuple[int, int], oh: int, ow: int,
            pad_value: int, dtype) -> np.ndarray:
    """The [N*OH*OW, KH*KW*C] patch matrix of int8 NHWC ``x``, converted to ``dtype`` in one pass;
    taps outside the input read ``pad_value`` (no padded copy of the input)."""
    n, _, _, c = x.shape
    out = np.empty((n * oh * ow, kh * kw * c), dtype=dtype)
    with _LOCK:
        _patches(x, kh, kw, stride[0], stride[1], dilation[0], dilation[1], pads[0], pads[1],
                 oh, ow, np.dtype(dtype).type(pad_value), out)
    return out
