"""The host end of the board link (``hw/boards/LINK.md``): framed requests with CRC, a window of
frames in flight, retransmission on timeout, over pyserial's ``serial_for_url``, so a real port
(``/dev/ttyUSB0``) and a simulated board (``socket://127.0.0.1:PORT``) use the same code.

``Link(url).open()`` says HELLO and reads the board's identity; then ``write_memory``,
``read_memory``, ``write_register``, ``read_register``, ``run`` and ``status``. Long memory
transfers go as many frames, ``WINDOW`` of them in flight. A link that stays silent past its
retry budget raises :class:`LinkError` naming the device and the time waited; a request the
device refuses raises it with the device's status.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass

from onda.hw.boards.link_protocol import (CRC, HEADER, IDENTIFY_FORMAT, MAX_PAYLOAD, RESPONSE, STATUS_FORMAT, WINDOW,
                                          Command, Status, abandon_frame, bytes_missing, encode_frame, take_frame)
from onda.hw.engine.registers import STATUS_BITS, address_of

__all__ = ["BoardStatus", "Identity", "Link", "LinkError"]

WRITE_CHUNK = MAX_PAYLOAD - 4
READ_CHUNK = MAX_PAYLOAD - 1


class LinkError(RuntimeError):
    """The board did not answer, or refused a request; the message says which and why."""


@dataclass(frozen=True)
class Identity:
    board: str
    fingerprint: str  # hex SHA-256 of the engine configuration
    version: int
    mem_size: int
    max_payload: int
    window: int


@dataclass(frozen=True)
class BoardStatus:
    running: bool
    done: bool
    error: int  # EngineError code (0: none)
    error_index: int
    cycles: int


@dataclass
class _Pending:
    seq: int
    cmd: int
    payload: bytes
    sent: float = 0.0


def wire_bytes(n: int, write: bool) -> tuple[int, int]:
    """Bytes on the cable (host to board, board to host) of a WRITE_MEM or READ_MEM of ``n`` bytes
    as :class:`Link` frames it: with a full window the two directions overlap, so the slower one
    over the baud rate is the transfer's time."""
    frame = HEADER.size + CRC.size
    chunk = WRITE_CHUNK if write else READ_CHUNK
    frames = -(-n // chunk)
    if write:
        return frames * (frame + 4) + n, frames * (frame + 1)
    return frames * (frame + 6), frames * (frame + 1) + n


class Link:
    """One board. ``timeout``: seconds the oldest request may go unanswered (counted from its
    sending or from the answer before it, whichever is later) before it is sent again, and the
    rest of the window after it once it is answered; ``retries``: how many times, before
    :class:`LinkError`."""

    def __init__(self, url: str, baudrate: int = 3_000_000, timeout: float = 0.5, retries: int = 8,
                 window: int = WINDOW):
        self.url, self.baudrate, self.timeout, self.retries = url, baudrate, timeout, retries
        self.window = max(1, min(window, WINDOW))
        self.port = None
        self.seq = 0
        self.rx = bytearray()
        self.identity: Identity | None = None
        self.stats = {"frames": 0, "resent": 0, "timeouts": 0, "bad_frames": 0, "bytes_out": 0, "bytes_in": 0}

    # -- connection ---------------------------------------------------------------------------------
    def open(self) -> Identity:
        import serial

        self.close()
        try:
            self.port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.01, write_timeout=5)
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"board at {self.url}: cannot open ({e})") from None
        self.rx.clear()
        self.seq = 0
        (body,) = self._exchange([(Command.HELLO, b"")], hello=True)
        self.identity = self._identity(body)
        return self.identity

    def close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except Exception:
                pass
            self.port = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _identity(body: bytes) -> Identity:
        board, fp, version, mem, maxp, window = IDENTIFY_FORMAT.unpack(body)
        return Identity(board.rstrip(b"\0").decode(errors="replace"), fp.hex(), version, mem, maxp, window)

    # -- requests -----------------------------------------------------------------------------------
    def identify(self) -> Identity:
        (body,) = self._exchange([(Command.IDENTIFY, b"")])
        return self._identity(body)

    def write_memory(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        reqs = [(Command.WRITE_MEM, struct.pack("<I", addr + o) + data[o:o + WRITE_CHUNK])
                for o in range(0, len(data), WRITE_CHUNK)]
        self._exchange(reqs)

    def read_memory(self, addr: int, n: int) -> bytes:
        reqs = [(Command.READ_MEM, struct.pack("<IH", addr + o, min(READ_CHUNK, n - o))) for o in range(0, n, READ_CHUNK)]
        return b"".join(self._exchange(reqs))

    def write_register(self, name: str, value: int) -> None:
        self._exchange([(Command.WRITE_REG, struct.pack("<II", address_of(name), value & 0xFFFFFFFF))])

    def read_register(self, name: str) -> int:
        (body,) = self._exchange([(Command.READ_REG, struct.pack("<I", address_of(name)))])
        return struct.unpack("<I", body)[0]

    def run(self, prog_addr: int, count: int) -> None:
        self._exchange([(Command.RUN, struct.pack("<II", prog_addr, count))])

    def status(self) -> BoardStatus:
        (body,) = self._exchange([(Command.STATUS, b"")])
        st, err, index, cycles = STATUS_FORMAT.unpack(body)
        return BoardStatus(bool(st >> STATUS_BITS["running"] & 1), bool(st >> STATUS_BITS["done"] & 1), err, index,
                           cycles)

    # -- the window ---------------------------------------------------------------------------------
    def _send(self, p: _Pending) -> None:
        frame = encode_frame(p.seq, p.cmd, p.payload)
        try:
            self.port.write(frame)
        except Exception as e:
            raise LinkError(f"board at {self.url}: write failed ({e})") from None
        p.sent = time.monotonic()
        self.stats["bytes_out"] += len(frame)

    def _exchange(self, reqs: list[tuple[int, bytes]], hello: bool = False) -> list[bytes]:
        """Send ``reqs`` with at most ``window`` unanswered; their answers' bodies, in order."""
        if self.port is None:
            raise LinkError(f"board at {self.url}: link not open")
        todo = deque(reqs)
        flight: deque[_Pending] = deque()
        out: list[bytes] = []
        tries, started, recovering = 0, time.monotonic(), False
        while todo or flight:
            while todo and len(flight) < (1 if hello else self.window):
                cmd, payload = todo.popleft()
                p = _Pending(self.seq, int(cmd), payload)
                self.seq = (self.seq + 1) & 0xFF
                flight.append(p)
                self._send(p)
                self.stats["frames"] += 1
            answer = self._receive()
            if answer is None:
                if time.monotonic() - flight[0].sent > self.timeout:
                    tries += 1
                    self.stats["timeouts"] += 1
                    if tries > self.retries:
                        raise LinkError(f"board at {self.url}: no answer to {Command(flight[0].cmd).name} "
                                        f"after {time.monotonic() - started:.1f} s ({self.retries} retries)")
                    # A frame begun but unfinished after a whole timeout is dead (its length field
                    # was hit, or its tail lost): hunt again past its SYNC (LINK.md).
                    if abandon_frame(self.rx):
                        self.stats["bad_frames"] += 1
                    # The oldest alone: on a slow line the rest may still be on their way, and
                    # sending them all again would only queue more behind them.
                    self._send(flight[0])
                    self.stats["resent"] += 1
                    recovering = True
                continue
            seq, cmd, body = answer
            head = flight[0]
            if seq != head.seq or cmd != head.cmd | RESPONSE:
                continue  # a duplicate or stale answer
            flight.popleft()
            tries = 0
            if flight and recovering:  # go back N: the device dropped what followed a lost request
                for p in flight:
                    self._send(p)
                    self.stats["resent"] += 1
            elif flight:  # the next answer is due a timeout after this one, not after its own send
                flight[0].sent = max(flight[0].sent, time.monotonic())
            recovering = False
            if not body or body[0] != Status.OK:
                code = Status(body[0]).name if body and body[0] in Status._value2member_map_ else repr(body[:1])
                raise LinkError(f"board at {self.url}: {Command(head.cmd).name} refused: {code}")
            out.append(body[1:])
        return out

    def _receive(self) -> tuple[int, int, bytes] | None:
        """The next whole, valid frame from the port, or None if none arrived in a short wait."""
        while True:
            frame, skipped = take_frame(self.rx)
            self.stats["bad_frames"] += skipped
            if frame is not None:
                return frame.seq, frame.cmd, frame.payload
            try:
                data = self.port.read(max(bytes_missing(self.rx), self.port.in_waiting))
            except Exception as e:
                raise LinkError(f"board at {self.url}: read failed ({e})") from None
            if not data:
                return None
            self.rx += data
            self.stats["bytes_in"] += len(data)
