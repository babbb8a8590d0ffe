"""The device end of the host link (``hw/boards/LINK.md``) in Python: the protocol's reference
implementation, byte stream in, byte stream out, over any engine that has a memory and registers.

``LinkDevice(target, ...)`` parses frames from the bytes given to :meth:`feed` and returns the
answers' bytes; ``target`` is an engine with ``write_memory``, ``read_memory``,
``write_register(name, value)`` and ``read_register(name)`` (``onda.sim.verilator.VerilatorEngine``).
What it does is what the gateware must do, byte for byte: the simulated board
(``onda.sim.board.board_sim``) runs it in front of the engine RTL.
"""

from __future__ import annotations

import struct

from onda.hw.boards.link_protocol import (IDENTIFY_FORMAT, MAX_PAYLOAD, RESPONSE, STATUS_FORMAT, WINDOW, Command,
                                          Status, abandon_frame, encode_frame, is_idempotent, take_frame)
from onda.hw.engine.registers import REGISTERS, STATUS_BITS

__all__ = ["LinkDevice"]

_U32, _U32x2, _READ = struct.Struct("<I"), struct.Struct("<II"), struct.Struct("<IH")


class LinkDevice:
    def __init__(self, target, board: str, fingerprint: bytes, version: int, mem_size: int):
        self.target = target
        self.identity = IDENTIFY_FORMAT.pack(board.encode()[:16], fingerprint[:32], version, mem_size, MAX_PAYLOAD,
                                             WINDOW)
        self.mem_size = mem_size
        self.expected = 0
        self.statuses: dict[int, int] = {}  # seq -> status of the last WINDOW requests executed
        self.buf = bytearray()
        self.dropped = 0  # frames dropped (bad CRC or length, or out of sequence)

    # -- bytes --------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> bytes:
        """The answers to every whole frame in the bytes received so far."""
        self.buf += data
        out = bytearray()
        while True:
            frame, skipped = take_frame(self.buf)
            self.dropped += skipped
            if frame is None:
                return bytes(out)
            out += self._frame(frame.seq, frame.cmd, frame.payload)

    def line_idle(self) -> bytes:
        """The line has been quiet for ``GAP_BITS`` bit times: a frame begun in the bytes received
        is given up (dropped, hunted again after its SYNC); the answers that rescan finds."""
        if not abandon_frame(self.buf):
            return b""
        self.dropped += 1
        return self.feed(b"")

    # -- sequence -----------------------------------------------------------------------------------
    def _frame(self, seq: int, cmd: int, payload: bytes) -> bytes:
        if cmd == Command.HELLO:
            self.expected, self.statuses = (seq + 1) & 0xFF, {}
            return encode_frame(seq, cmd | RESPONSE, bytes([Status.OK]) + self.identity)
        behind = (self.expected - seq) & 0xFF
        if seq == self.expected:
            status, body = self._execute(cmd, payload)
            self.statuses[seq] = status
            self.statuses.pop((seq - WINDOW) & 0xFF, None)
            self.expected = (seq + 1) & 0xFF
        elif 1 <= behind <= WINDOW and seq in self.statuses:  # a retransmission: its answer was lost
            if is_idempotent(cmd):
                status, body = self._execute(cmd, payload)
            else:
                status, body = self.statuses[seq], b""
        else:  # after a lost request: the host resends from there
            self.dropped += 1
            return b""
        return encode_frame(seq, cmd | RESPONSE, bytes([status]) + (body if status == Status.OK else b""))

    # -- commands -----------------------------------------------------------------------------------
    def _running(self) -> bool:
        return bool(self.target.read_register("STATUS") >> STATUS_BITS["running"] & 1)

    def _in_memory(self, addr: int, n: int) -> bool:
        return 0 <= addr and addr + n <= self.mem_size

    def _execute(self, cmd: int, p: bytes) -> tuple[int, bytes]:
        t = self.target
        if cmd == Command.IDENTIFY:
            return (Status.OK, self.identity) if not p else (Status.BAD_LENGTH, b"")
        if cmd == Command.WRITE_MEM:
            if not 4 < len(p) <= MAX_PAYLOAD:
                return Status.BAD_LENGTH, b""
            (addr,) = _U32.unpack_from(p)
            if not self._in_memory(addr, len(p) - 4):
                return Status.OUT_OF_RANGE, b""
            if self._running():
                return Status.BUSY, b""
            t.write_memory(addr, p[4:])
            return Status.OK, b""
        if cmd == Command.READ_MEM:
            if len(p) != _READ.size:
                return Status.BAD_LENGTH, b""
            addr, n = _READ.unpack(p)
            if not 0 < n < MAX_PAYLOAD:
                return Status.BAD_LENGTH, b""
            if not self._in_memory(addr, n):
                return Status.OUT_OF_RANGE, b""
            if self._running():
                return Status.BUSY, b""
            return Status.OK, bytes(t.read_memory(addr, n))
        if cmd == Command.WRITE_REG:
            if len(p) != _U32x2.size:
                return Status.BAD_LENGTH, b""
            reg, value = _U32x2.unpack(p)
            if reg >= len(REGISTERS) or not REGISTERS[reg].writable:
                return Status.OUT_OF_RANGE, b""
            if self._running():
                return Status.BUSY, b""
            t.write_register(REGISTERS[reg].name, value)
            return Status.OK, b""
        if cmd == Command.READ_REG:
            if len(p) != _U32.size:
                return Status.BAD_LENGTH, b""
            (reg,) = _U32.unpack(p)
            if reg >= len(REGISTERS):
                return Status.OUT_OF_RANGE, b""
            return Status.OK, _U32.pack(t.read_register(REGISTERS[reg].name))
        if cmd == Command.RUN:
            if len(p) != _U32x2.size:
                return Status.BAD_LENGTH, b""
            prog, count = _U32x2.unpack(p)
            if not self._in_memory(prog, count * 32):
                return Status.OUT_OF_RANGE, b""
            if self._running():
                return Status.BUSY, b""
            t.write_register("PROG_ADDR", prog)
            t.write_register("PROG_COUNT", count)
            t.write_register("CTRL", 1)
            return Status.OK, b""
        if cmd == Command.STATUS:
            if p:
                return Status.BAD_LENGTH, b""
            lo = t.read_register("CYCLES_LO")  # latches CYCLES_HI
            cycles = lo | t.read_register("CYCLES_HI") << 32
            return Status.OK, STATUS_FORMAT.pack(t.read_register("STATUS"), t.read_register("ERROR"),
                                                 t.read_register("ERROR_INDEX"), cycles)
        return Status.UNKNOWN_COMMAND, b""
