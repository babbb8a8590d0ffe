"""The Verilator-built engine as a Python object: memory, registers, run.

``VerilatorEngine(cfg)`` builds (or takes from the cache) the shared library of ``cfg``'s engine
and opens one simulated engine with its memory. Python is called only to load and read memory,
to access registers, and between runs to a stop condition: the clock loop is C++.
"""

from __future__ import annotations

import ctypes

import numpy as np

from onda.hw.config import EngineConfig
from onda.hw.engine.registers import STATUS_BITS, address_of
from onda.sim.engine.program_run import RunResult

from .build import build

__all__ = ["VerilatorEngine"]

_LIBS: dict[str, ctypes.CDLL] = {}


def _lib(path) -> ctypes.CDLL:
    key = str(path)
    if key not in _LIBS:
        lib = ctypes.CDLL(key)
        lib.onda_create.restype = ctypes.c_void_p
        lib.onda_create.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_double, ctypes.c_uint64]
        lib.onda_destroy.argtypes = [ctypes.c_void_p]
        for f in (lib.onda_mem_write, lib.onda_mem_read):
            f.restype = ctypes.c_int
            f.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64]
        lib.onda_write_reg.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
        lib.onda_read_reg.restype = ctypes.c_uint32
        lib.onda_read_reg.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.onda_run.restype = ctypes.c_int
        lib.onda_run.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int64]
        lib.onda_cycles.restype = ctypes.c_uint64
        lib.onda_cycles.argtypes = [ctypes.c_void_p]
        lib.onda_trace.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.onda_trace_size.restype = ctypes.c_uint64
        lib.onda_trace_size.argtypes = [ctypes.c_void_p]
        lib.onda_trace_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.onda_mtrace_size.restype = ctypes.c_uint64
        lib.onda_mtrace_size.argtypes = [ctypes.c_void_p]
        lib.onda_mtrace_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.onda_mem_error.restype = ctypes.c_int
        lib.onda_mem_error.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]
        _LIBS[key] = lib
    return _LIBS[key]


class VerilatorEngine:
    """One simulated engine of ``cfg`` with ``cfg.mem_size_bytes`` of memory.

    ``stall`` is the probability that the memory refuses a handshake in a cycle (0: the
    configuration's timing exactly); ``seed`` seeds those refusals. ``train``: the model is the
    profile-guided build trained on that program (``build.build``); ``lib``: this library instead.
    """

    def __init__(self, cfg: EngineConfig, stall: float = 0.0, seed: int = 0, quiet: bool = False,
                 train=None, lib=None):
        self.cfg = cfg
        self._lib = _lib(lib or build(cfg, quiet=quiet, train=train))
        self._h = self._lib.onda_create(cfg.mem_size_bytes, cfg.mem_latency_cycles, cfg.mem_row_overhead_cycles,
                                        float(stall), int(seed))

    def close(self) -> None:
        if getattr(self, "_h", None):
            self._lib.onda_destroy(self._h)
            self._h = None

    def __del__(self):
        self.close()

    # -- memory ------------------------------------------------------------------------------------
    def write_memory(self, addr: int, data: bytes | np.ndarray) -> None:
        buf = np.ascontiguousarray(np.frombuffer(bytes(data), dtype=np.uint8) if isinstance(data, (bytes, bytearray))
                                   else np.asarray(data).view(np.uint8).reshape(-1))
        if self._lib.onda_mem_write(self._h, addr, buf.ctypes.data, buf.size):
            raise ValueError(f"memory write [{addr}, {addr + buf.size}) outside the {self.cfg.mem_size_bytes}-byte memory")

    def read_memory(self, addr: int, n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.uint8)
        if self._lib.onda_mem_read(self._h, addr, out.ctypes.data, n):
            raise ValueError(f"memory read [{addr}, {addr + n}) outside the {self.cfg.mem_size_bytes}-byte memory")
        return out

    # -- registers ---------------------------------------------------------------------------------
    def write_register(self, name: str, value: int) -> None:
        self._lib.onda_write_reg(self._h, address_of(name), value & 0xFFFFFFFF)

    def read_register(self, name: str) -> int:
        return int(self._lib.onda_read_reg(self._h, address_of(name)))

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since the engine was made (not the run's CYCLES register)."""
        return int(self._lib.onda_cycles(self._h))

    def trace(self, enable: bool = True) -> None:
        """Record every instruction's retirement from now on (and forget earlier ones)."""
        self._lib.onda_trace(self._h, int(enable))

    def events(self) -> np.ndarray:
        """[(cycle, started, module, index)] of the recorded instruction starts (started 1) and
        retirements (0), in order (cycles of this engine's clock, see ``cycles``)."""
        n = int(self._lib.onda_trace_size(self._h))
        raw = np.empty(n, dtype=np.uint64)
        if not n:
            return np.zeros((0, 4), dtype=np.int64)
        self._lib.onda_trace_read(self._h, raw.ctypes.data)
        return np.stack([raw >> np.uint64(35), (raw >> np.uint64(34)) & np.uint64(1),
                         (raw >> np.uint64(32)) & np.uint64(3), raw & np.uint64(0xFFFFFFFF)], axis=1).astype(np.int64)

    def memory_events(self) -> np.ndarray:
        """[(accepted, first beat, last beat, addr, beats, write)] of every memory command completed
        while tracing, in order (cycles of this engine's clock, see ``cycles``)."""
        n = int(self._lib.onda_mtrace_size(self._h))
        raw = np.zeros(n * 6, dtype=np.uint64)
        if n:
            self._lib.onda_mtrace_read(self._h, raw.ctypes.data)
        return raw.reshape(n, 6).astype(np.int64)

    def run(self, max_cycles: int, break_index: int = -1) -> int:
        """Clock until done or error (``RunResult.STATUS``), the compute module completing
        instruction ``break_index`` (``BREAK``), ``max_cycles`` (``LIMIT``), or a memory command
        outside the memory (``MEMORY``)."""
        mask = (1 << STATUS_BITS["done"]) | (1 << STATUS_BITS["error"])
        rc = self._lib.onda_run(self._h, max_cycles, address_of("STATUS"), mask, break_index)
        if rc == RunResult.MEMORY:
            addr = ctypes.c_uint64()
            kind = self._lib.onda_mem_error(self._h, ctypes.byref(addr))
            what = "misaligned" if kind == 2 else "outside the memory"
            raise RuntimeError(f"engine issued a memory command {what} at address {addr.value}")
        return rc
