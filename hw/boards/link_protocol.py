"""The host link's wire format: one definition shared by the gateware (``hw/boards``), the host
driver (``onda.host.runtime.link``) and the reference device (``onda.sim.board.link_device``).

``hw/boards/LINK.md`` states the protocol; this module is its field-exact statement: the frame
layout, the command and status codes, the CRC, the limits. Frames travel over a UART (8N1), the
board's FTDI (ULX3S: FT231X; iCEBreaker: FT2232H channel B) or, for a simulated board, a TCP
socket carrying the same bytes.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

__all__ = ["CRC", "Command", "Frame", "FrameError", "GAP_BITS", "HEADER", "IDENTIFY_FORMAT", "MAX_PAYLOAD",
           "RESPONSE", "STATUS_FORMAT", "SYNC", "Status", "WINDOW", "abandon_frame", "bytes_missing", "crc16",
           "decode_frame", "encode_frame", "is_idempotent", "take_frame"]

SYNC = 0x5A  # first byte of every frame: where a receiver that lost its place starts looking again
HEADER = struct.Struct("<BBBH")  # sync, seq, cmd, payload length
CRC = struct.Struct("<H")
MAX_PAYLOAD = 1024  # payload bytes a frame may carry (a WRITE_MEM: 4 address bytes + 1020 data bytes)
WINDOW = 8  # frames the host may have in flight unanswered; the device remembers as many answers
RESPONSE = 0x80  # a response's cmd is the request's with this bit set
GAP_BITS = 2560  # bit times (256 bytes) a begun frame may wait for its next byte before the device gives it up


class Command(enum.IntEnum):
    """Requests (host -> device). Payload layouts in ``hw/boards/LINK.md``."""

    IDENTIFY = 0x01  # -> board, engine fingerprint, gateware version, memory size, limits
    WRITE_MEM = 0x02  # addr u32, data...      -> (nothing)
    READ_MEM = 0x03  # addr u32, count u16     -> data
    WRITE_REG = 0x04  # reg u32, value u32     -> (nothing)
    READ_REG = 0x05  # reg u32                 -> value u32
    RUN = 0x06  # prog_addr u32, count u32     -> (nothing): PROG_ADDR, PROG_COUNT, CTRL = 1
    STATUS = 0x07  # (nothing)                 -> STATUS_FORMAT
    HELLO = 0x08  # (nothing), any seq          -> as IDENTIFY; the device expects seq + 1 next


class Status(enum.IntEnum):
    """First payload byte of every response."""

    OK = 0
    UNKNOWN_COMMAND = 1  # the cmd byte names no command
    BAD_LENGTH = 2  # the payload is the wrong size for the command
    OUT_OF_RANGE = 3  # a memory access outside the board's memory, or an unknown register
    BUSY = 4  # memory or program registers touched while the engine runs


# Commands whose repetition changes nothing: a duplicate (retransmitted) request is executed
# again; any other duplicate is answered with the status it first got, and not executed again.
_IDEMPOTENT = {Command.IDENTIFY, Command.READ_MEM, Command.READ_REG, Command.STATUS, Command.HELLO}

IDENTIFY_FORMAT = struct.Struct("<16s32sIIHB")  # board, fingerprint (SHA-256), version, memory bytes, max payload, window
STATUS_FORMAT = struct.Struct("<IIIQ")  # STATUS register, ERROR, ERROR_INDEX, CYCLES


def is_idempotent(cmd: int) -> bool:
    return cmd in _IDEMPOTENT


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR)."""
    return binascii.crc_hqx(data, 0xFFFF)


class FrameError(ValueError):
    """Bytes that are not a valid frame (the message says what is wrong)."""


@dataclass(frozen=True)
class Frame:
    seq: int
    cmd: int
    payload: bytes = b""


def encode_frame(seq: int, cmd: int, payload: bytes = b"") -> bytes:
    """``SYNC, seq, cmd, len (u16 LE), payload, CRC-16 (LE) of seq .. payload``."""
    if not 0 <= seq <= 255 or not 0 <= cmd <= 255:
        raise FrameError(f"seq {seq} and cmd {cmd} must be bytes")
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = HEADER.pack(SYNC, seq, cmd, len(payload))
    return head + payload + CRC.pack(crc16(head[1:] + payload))


def take_frame(buf: bytearray) -> tuple[Frame | None, int]:
    """Take the first whole valid frame out of the received bytes ``buf`` (in place): hunt for
    SYNC, skip a SYNC whose length or CRC is wrong and hunt again from the byte after it, leave
    an incomplete frame's bytes for later. Returns (the frame or None, SYNCs skipped)."""
    skipped = 0
    while True:
        start = buf.find(SYNC)
        if start < 0:
            buf.clear()
            return None, skipped
        del buf[:start]
        if len(buf) < HEADER.size:
            return None, skipped
        _, seq, cmd, n = HEADER.unpack_from(buf)
        end = HEADER.size + n + CRC.size
        if n <= MAX_PAYLOAD and len(buf) < end:
            return None, skipped
        if n > MAX_PAYLOAD or CRC.unpack_from(buf, HEADER.size + n)[0] != crc16(bytes(buf[1:HEADER.size + n])):
            del buf[:1]
            skipped += 1
            continue
        frame = Frame(seq, cmd, bytes(buf[HEADER.size:HEADER.size + n]))
        del buf[:end]
        return frame, skipped


def abandon_frame(buf: bytearray) -> bool:
    """Give up on the begun frame at the start of ``buf`` (left there by :func:`take_frame`): skip
    its SYNC so the bytes after it are hunted again. What a receiver does when that frame's bytes
    stopped coming (its length field was hit, or its tail lost). True if there was one."""
    if buf[:1] == bytes([SYNC]):
        del buf[:1]
        return True
    return False


def bytes_missing(buf: bytes) -> int:
    """How many more bytes the frame that starts ``buf`` (after :func:`take_frame` left it there)
    needs before it can be judged: a receiver reads that many at once instead of byte by byte."""
    if len(buf) < HEADER.size:
        return HEADER.size - len(buf)
    n = HEADER.unpack_from(buf)[3]
    return max(1, HEADER.size + min(n, MAX_PAYLOAD) + CRC.size - len(buf))


def decode_frame(data: bytes) -> Frame:
    """One whole frame's bytes, checked (sync, length, CRC)."""
    if len(data) < HEADER.size + CRC.size:
        raise FrameError(f"{len(data)} bytes: shorter than a frame's {HEADER.size + CRC.size}")
    sync, seq, cmd, n = HEADER.unpack_from(data)
    if sync != SYNC:
        raise FrameError(f"sync byte {sync:#04x}, expected {SYNC:#04x}")
    if n > MAX_PAYLOAD or len(data) != HEADER.size + n + CRC.size:
        raise FrameError(f"length field {n} does not match the frame's {len(data)} bytes")
    (crc,) = CRC.unpack_from(data, HEADER.size + n)
    if crc != crc16(data[1:HEADER.size + n]):
        raise FrameError("CRC mismatch")
    return Frame(seq, cmd, bytes(data[HEADER.size:HEADER.size + n]))
