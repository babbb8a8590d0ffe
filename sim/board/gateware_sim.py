"""A simulated board that is the board top's gateware: engine, UART, host link and memory in
Verilator (``onda.sim.verilator.board_top``), its UART bytes bridged to a TCP socket.

``GatewareBoardSim(cfg).serve()`` listens on 127.0.0.1 like :class:`~.board_sim.BoardSim` (the
engine RTL behind the link's Python reference device) but here the link's device end is the
gateware itself (``hw/boards/link.py``), fed a bit at a time on its rx pin at ``SIM_DIVISOR``
clocks a bit: what answers the host is what a board would answer. The simulated line is slow
(some 10 KB/s on this machine: the clock is the cost), so hosts use longer timeouts with it
(:attr:`frame_seconds`).

    onda board sim --board icebreaker [--reference] [--port N]
"""

from __future__ import annotations

import ctypes

from onda.hw.config import EngineConfig

from .socket_board import SocketBoard

__all__ = ["GatewareBoard", "GatewareBoardSim"]

SLICE = 50_000      # cycles clocked between looks at the socket while anything happens
QUIET = 20_000      # cycles of an idle line and engine after which the board is left until bytes arrive
                    # (more than the link's GAP_BITS x SIM_DIVISOR = 10,240, so a half frame is given up first)
POWER_UP = 60_000   # cycles clocked before serving: the memory's initialisation (SDRAM: 200 us)


def _lib(path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.board_create.restype = ctypes.c_void_p
    lib.board_create.argtypes = [ctypes.c_void_p]
    lib.board_destroy.argtypes = [ctypes.c_void_p]
    lib.board_send.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64]
    lib.board_run.restype = ctypes.c_uint64
    lib.board_run.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
    lib.board_receive.restype = ctypes.c_uint64
    lib.board_receive.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64]
    lib.board_status.restype = ctypes.c_uint32
    lib.board_status.argtypes = [ctypes.c_void_p]
    lib.board_cycles.restype = ctypes.c_uint64
    lib.board_cycles.argtypes = [ctypes.c_void_p]
    lib.board_framing_errors.restype = ctypes.c_uint64
    lib.board_framing_errors.argtypes = [ctypes.c_void_p]
    lib.board_memory_error.restype = ctypes.c_int
    lib.board_memory_error.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    return lib


class GatewareBoard:
    """One simulated board top of ``cfg``: bytes in (:meth:`send`), clocks (:meth:`run`), bytes
    out (:meth:`receive`). A violation of the SDRAM chip's timing stops it with
    :class:`RuntimeError` naming the violation."""

    def __init__(self, cfg: EngineConfig, quiet: bool = True):
        from onda.sim.verilator.board_top import SDRAM_CHIP, memory_kind
        from onda.sim.verilator.build import build_board

        self.cfg = cfg
        self._lib = _lib(build_board(cfg, quiet=quiet))
        params = None
        if memory_kind(cfg) == "sdram":
            from onda.sim.verilator.sdram_chip import params_from_chip

            values = params_from_chip(SDRAM_CHIP, cfg.clock_mhz)
            params = (ctypes.c_double * len(values))(*values)
        self._params = params  # kept alive: the model copies it, but be safe
        self._h = self._lib.board_create(params)
        self.run(POWER_UP, 0)

    def close(self) -> None:
        if getattr(self, "_h", None):
            self._lib.board_destroy(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def send(self, data: bytes) -> None:
        self._lib.board_send(self._h, bytes(data), len(data))

    def run(self, cycles: int, quiet: int = QUIET) -> int:
        """Clock up to ``cycles``, stopping early once line and engine have been idle ``quiet``
        cycles (0: never); returns the cycles clocked."""
        n = self._lib.board_run(self._h, cycles, quiet)
        if self.status & 32:
            raise RuntimeError(f"simulated {self.cfg.name} board: {self.memory_error()}")
        return n

    def receive(self) -> bytes:
        buf = ctypes.create_string_buffer(65536)
        n = self._lib.board_receive(self._h, buf, len(buf))
        return buf.raw[:n]

    @property
    def status(self) -> int:
        """bit 0 running, 1 done, 2 failed, 3 UART busy, 4 memory ready, 5 memory model error."""
        return self._lib.board_status(self._h)

    @property
    def cycles(self) -> int:
        return self._lib.board_cycles(self._h)

    @property
    def framing_errors(self) -> tuple[int, int]:
        """(bytes the board's UART refused, bytes from the board with a bad stop bit)."""
        v = self._lib.board_framing_errors(self._h)
        return v >> 32, v & 0xFFFFFFFF

    def memory_error(self) -> str:
        buf = ctypes.create_string_buffer(512)
        self._lib.board_memory_error(self._h, buf, len(buf))
        return buf.value.decode()


class GatewareBoardSim(SocketBoard):
    """The board top of ``cfg`` in Verilator behind a TCP socket: one host connection at a time."""

    frame_seconds = 0.7  # what a host should allow one frame's round trip on this slow line

    def __init__(self, cfg: EngineConfig, port: int = 0, quiet: bool = True):
        self.cfg = cfg
        self.board = GatewareBoard(cfg, quiet=quiet)
        super().__init__(port)

    def take(self, data: bytes) -> bytes:
        self.board.send(data)
        return b""

    def step(self) -> tuple[bytes, bool]:
        busy = self.board.run(SLICE) == SLICE
        return self.board.receive(), busy

