"""CRC-16/CCITT-FALSE (polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR), one byte a
clock: the host link's frame check (``link_protocol.crc16``) as an expression for the gateware.

The byte-at-once form folds the eight bit steps of the shift register into one XOR network (no
table, no carry chain): with ``x = crc[8:16] ^ byte`` and ``x ^= x >> 4``, the next CRC is
``crc << 8 ^ x << 12 ^ x << 5 ^ x`` in 16 bits. Each output bit is the XOR of at most a dozen
inputs, a few LUTs each: cheap enough to share between a link's receiver and transmitter.
"""

from __future__ import annotations

from amaranth.hdl import Value

__all__ = ["CRC_INIT", "crc16_next"]

CRC_INIT = 0xFFFF


def crc16_next(crc, byte) -> Value:
    """The CRC (16 bits) after ``byte`` (8 bits) given the CRC ``crc`` (16 bits) before it."""
    crc, byte = Value.cast(crc), Value.cast(byte)
    x = crc[8:16] ^ byte[:8]
    x = x ^ (x >> 4)
    return ((crc[:16] << 8) ^ (x << 12) ^ (x << 5) ^ x)[:16]
