"""Exact int8 GEMMs: the bounds that make each path exact, and the paths.

NumPy's integer matmul does not use BLAS (100-700x slower than float). Two kinds of exact GEMM
stand in for it:

**Native int8** (``int8_gemm``, AVX-512 VNNI, the fast path where it runs): int8 operands, int32
results. Every step is int32 arithmetic modulo 2**32 (``vpdpbusd``'s add wraps, it does not
saturate), so the result is exact whenever the true sum fits int32. With int8 operands
``|sum| <= K * 128 * 128 = K * 2**14``; the largest is ``K * 2**14`` (every operand -128), which
is below ``2**31`` while ``K <= 131071`` (``EXACT_K_INT32``); the worst case, K = 131071 with every
operand -128, sums to ``2**31 - 2**14``. Longer K take the float path.

**Float BLAS** (the fallback, and the path for K beyond ``EXACT_K_INT32``): int8 values held as
floats. Why the result is exact, whatever BLAS does:

* every product of two int8 values has ``|a * b| <= 128 * 128 = 2**14`` and is an integer;
* a dot product of ``K`` such products has every partial sum, in any order, grouping or
  blocking (FMA, threads, SIMD lanes), an integer of magnitude ``<= K * 2**14``;
* float32 holds every integer of magnitude ``<= 2**24`` exactly, so a float32 GEMM is exact
  while ``K <= 2**24 / 2**14 = 1024`` (``EXACT_K_F32``); the worst case, ``K = 1024`` with every
  operand -128, sums to exactly ``2**24``. float64 (``2**53``) is exact while ``K <= 2**39``.

``float32`` operands: SGEMM over K-chunks of at most 1024 products, each chunk's exact
result summed in float64 (exact). ``float64`` operands: one DGEMM at half the
speed, no chunking. Every path is tested at its worst case (``tests/numeric/test_exact_gemm.py``).

``Weights`` holds one layer's weights prepared for whichever path runs; ``operand_dtype()`` says
what its patch matrices are made of (int8 for the native kernel, else float32).
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import int8_gemm, threading

EXACT_K_F32 = 1024  # 1024 * 128 * 128 == 2**24, the largest integer span float32 holds exactly
EXACT_K_F64 = 1 << 39  # 2**39 * 2**14 == 2**53
EXACT_K_INT32 = (2**31 - 1) // 2**14  # 131071: K * 2**14 < 2**31

_native = True


def native() -> bool:
    """Whether GEMMs take the native int8 kernel (it runs here and is not switched off)."""
    return _native and int8_gemm.available() is None


@contextlib.contextmanager
def use_native(flag: bool):
    """Run a block with the native int8 GEMM on or off (tests compare the paths)."""
    global _native
    old = _native
    _native = bool(flag)
    try:
        yield
    finally:
        _native = old


def operand_dtype(k: int = 0) -> np.dtype:
    """What the activation operand of a GEMM with ``k`` products is made of: int8 for the native
    kernel, float32 for BLAS."""
    return np.dtype(np.int8) if native() and k <= EXACT_K_INT32 else np.dtype(np.float32)


def k_chunks(k: int, dtype) -> list[tuple[int, int]]:
    """``[(k0, k1), ...]`` covering ``range(k)`` in chunks short enough to be exact in ``dtype``."""
    limit = EXACT_K_F32 if np.dtype(dtype) == np.float32 else EXACT_K_F64
    return [(k0, min(k, k0 + limit)) for k0 in range(0, max(k, 1), limit)]


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b``, split across ``threading.gemm_threads()`` threads (rows, or columns when
    there are few rows), each one single-threaded BLAS call: onda runs BLAS single-threaded and
    shares the cores itself, so BLAS workers never spin against the compiled loops' threads."""
    parts = threading.gemm_threads()
    m, n = out.shape
    if parts <= 1 or m * n * a.shape[1] < 1 << 21:
        np.matmul(a, b, out=out)
        return
    if m >= 8 * parts:
        bounds = np.linspace(0, m, parts + 1).astype(int)
        threading.run_parallel([lambda r0=r0, r1=r1: np.matmul(a[r0:r1], b, out=out[r0:r1])
                                for r0, r1 in zip(bounds[:-1], bounds[1:])])
    else:
        bounds = np.linspace(0, n, parts + 1).astype(int)

        def cols(c0, c1):
            out[:, c0:c1] = a @ b[:, c0:c1]
        threading.run_parallel([lambda c0=c0, c1=c1: cols(c0, c1) for c0, c1 in zip(bounds[:-1], bounds[1:])])


def exact_int8_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for int8-valued float matrices a [M, K] and b [K, N], exact, in a float array.

    float32 operands: SGEMM per K-chunk of at most 1024 products (each partial exact in float32);
    several chunks are summed in float64, exact too (``|sum| <= K * 2**14 < 2**53``). float64
    operands: one DGEMM.
    """
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"exact int8 GEMM: operands must both be float32 or float64, got {a.dtype}, {b.dtype}")
    chunks = k_chunks(a.shape[1], a.dtype)
    part = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    if len(chunks) == 1:
        _matmul(a, b, part)
        return part
    acc = np.zeros((a.shape[0], b.shape[1]), dtype=np.float64)
    for k0, k1 in chunks:
        _matmul(a[:, k0:k1], b[k0:k1], part)
        acc += part
    return acc


def exact_int8_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as int64 for int8-valued float matrices a [M, K] and b [K, N], exact."""
    return exact_int8_product(a, b).astype(np.int64)


class Weights:
    """The [K, N] int8 weights of one GEMM, prepared once (packed for the native kernel, or as a
    float BLAS operand) when a product first needs them."""

    def __init__(self, w: np.ndarray):
        if w.ndim != 2 or w.dtype != np.int8:
            raise TypeError(f"GEMM weights must be int8 [K, N], got {w.dtype} {w.shape}")
        self.w = np.ascontiguousarray(w)
        self.k, self.n = w.shape
        self._packed = None
        self._floats: dict[np.dtype, np.ndarray] = {}

    def float_operand(self, dtype=np.float32) -> np.ndarray:
        dtype = np.dtype(dtype)
        if dtype not in self._floats:
            self._floats[dtype] = self.w.astype(dtype)
        return self._floats[dtype]

    def product(self, cols: np.ndarray) -> np.ndarray:
        """``cols @ w`` [M, N], exact: an int32 array from the native kernel when ``cols`` is int8
        (as ``operand_dtype`` makes it), else a float array from BLAS (``exact_int8_product``)."""
        if cols.dtype == np.int8:
            if native() and self.k <= EXACT_K_INT32:
                if self._packed is None:
                    self._packed = int8_gemm.Packed(self.w)
                return int8_gemm.matmul(cols, self._packed)
            cols = cols.astype(np.float32)
        if cols.dtype not in (np.float32, np.float64):
            raise TypeError(f"GEMM operand must be int8, float32 or float64, got {cols.dtype}")
        return exact_int8_product(cols, self.float_operand(cols.dtype))
