"""How the golden kernels share the CPU: one thread count for the GEMMs and the compiled loops.

The native int8 GEMM splits each call over its own pool of persistent workers (``int8_gemm.cpp``),
which spin briefly after a job and so take the next one in about a microsecond. Everything else
uses a small pool of Python threads: the float BLAS GEMMs of the fallback path (each block one
single-threaded BLAS call) and compiled loops (``loops``) large enough that a handoff (about
70 us on a 2-core VM: the GIL passes through the kernel twice) is worth it. BLAS's own threads
and numba's parallel launches are not used: OpenBLAS workers busy-wait after every call and
numba's launch costs about 0.1 ms, and thread pools spinning against each other made a 2-thread
run slower than a 1-thread one on a shared 2-core machine. ``set_threads(n)`` sets it all; the
default is the number of cores.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

_threads = 0
_pool: ThreadPoolExecutor | None = None


def set_threads(n: int | None = None) -> int:
    """Use ``n`` threads (default: the cores this process may run on) for GEMMs and compiled loops;
    BLAS itself is limited to one thread. Returns the count."""
    global _threads, _pool
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = max(1, int(n))
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    if n != _threads:
        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool = ThreadPoolExecutor(n - 1, thread_name_prefix="onda-gemm") if n > 1 else None
        _threads = n
    return n


def gemm_threads() -> int:
    if not _threads:
        set_threads()
    return _threads


def run_parallel(tasks: list) -> None:
    """Run callables on the pool and this thread; re-raise the first error."""
    if _pool is None or len(tasks) == 1:
        for t in tasks:
            t()
        return
    futures = [_pool.submit(t) for t in tasks[1:]]
    tasks[0]()
    for f in futures:
        f.result()
