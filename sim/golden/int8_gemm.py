"""The native exact int8 GEMM (``int8_gemm.cpp``, AVX-512 VNNI): built and loaded on first use, each
call split over the kernel's own worker pool (``threading.gemm_threads()`` threads).

Why native code: ResNet50 is 3.9 G multiply-accumulates. Float BLAS does them exactly (see
``exact_gemm``) but at 16 products per cycle and core; VNNI's ``vpdpbusd`` does 64 int8 products
per cycle into int32, and the int32 result is exact by construction within the bound of
``exact_gemm.EXACT_K_INT32``. No library ships that kernel for NumPy (oneDNN and XNNPACK are whole
inference runtimes, and XNNPACK is the speed being compared against), so onda carries 200 lines
of C++ built with the C++ compiler ``make setup`` installs, cached like the Verilator models
(``onda.sim.native``). Where the CPU lacks VNNI, no compiler is found, or ``ONDA_KERNELS=numpy``,
``available()`` says why and the GEMMs stay on float BLAS.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

import numpy as np

from .. import native
from . import threading

SOURCE = Path(__file__).with_name("int8_gemm.cpp")
FLAGS = ["-O3", "-march=native", "-fno-strict-aliasing"]
ABI = 2
_lib: ctypes.CDLL | None = None
_why: str | None = None
_loaded = False


def _load() -> None:
    global _lib, _why, _loaded
    _loaded = True
    if os.environ.get("ONDA_KERNELS", "").lower() == "numpy":
        _why = "ONDA_KERNELS=numpy"
        return
    flags = native.cpu_flags().split()
    missing = [f for f in ("avx512f", "avx512bw", "avx512_vnni") if f not in flags]
    if missing:
        _why = f"this CPU lacks {', '.join(missing)}"
        return
    try:
        path = native.shared_library(SOURCE, FLAGS, "golden")
        lib = ctypes.CDLL(str(path))
    except (native.NativeBuildError, OSError) as e:
        _why = str(e).splitlines()[0]
        print(f"onda: the native int8 GEMM is unavailable ({_why}); the golden model's GEMMs run on float BLAS",
              file=sys.stderr, flush=True)
        return
    if lib.onda_gemm_abi() != ABI or not lib.onda_gemm_cpu_ok():
        _why = "the compiled kernel does not match this CPU"
        return
    P, L, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    lib.onda_gemm_packed_bytes.restype = L
    lib.onda_gemm_packed_bytes.argtypes = [I, I]
    lib.onda_gemm_pack.restype = None
    lib.onda_gemm_pack.argtypes = [P, L, I, I, P]
    lib.onda_gemm.restype = None
    lib.onda_gemm.argtypes = [P, L, P, I, I, P, L, I]
    lib.onda_gemm_set_threads.restype = None
    lib.onda_gemm_set_threads.argtypes = [I]
    _lib = lib


def available() -> str | None:
    """None when the native GEMM runs here, else why not (one line)."""
    if not _loaded:
        _load()
    return None if _lib is not None else _why


class Packed:
    """[K, N] int8 weights packed for the kernel (once per layer): ``data``, with ``k`` and ``n``."""

    def __init__(self, w: np.ndarray):
        if available() is not None:
            raise RuntimeError(f"native int8 GEMM unavailable: {available()}")
        if w.dtype != np.int8 or w.ndim != 2:
            raise TypeError(f"int8 GEMM: weights must be a 2-D int8 array, got {w.dtype} {w.shape}")
        w = np.ascontiguousarray(w)
        self.k, self.n = w.shape
        self.data = np.empty(_lib.onda_gemm_packed_bytes(self.k, self.n), np.uint8)
        _lib.onda_gemm_pack(w.ctypes.data, w.strides[0], self.k, self.n, self.data.ctypes.data)


def matmul(a: np.ndarray, b: Packed, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` as int32 for int8 ``a`` [M, K] (rows contiguous, any row stride): exact while the
    caller keeps K within ``exact_gemm.EXACT_K_INT32``. Split over ``threading.gemm_threads()``
    threads by the kernel's own pool (its workers take a job in about a microsecond, where a
    Python thread takes tens); ctypes releases the GIL for the call."""
    if a.dtype != np.int8 or a.ndim != 2 or a.shape[1] != b.k:
        raise TypeError(f"int8 GEMM: expected int8 [M, {b.k}], got {a.dtype} {a.shape}")
    if a.shape[0] and a.strides[1] != 1:
        a = np.ascontiguousarray(a)
    m, n = a.shape[0], b.n
    if out is None:
        out = np.empty((m, n), np.int32)
    elif out.dtype != np.int32 or out.shape != (m, n) or out.strides[1] != 4:
        raise TypeError(f"int8 GEMM: out must be int32 [{m}, {n}] with contiguous rows")
    if m == 0 or n == 0:
        return out
    _lib.onda_gemm_set_threads(threading.gemm_threads())
    _lib.onda_gemm(a.ctypes.data, a.strides[0], b.data.ctypes.data, b.k, n, out.ctypes.data, out.strides[0] // 4, m)
    return out
