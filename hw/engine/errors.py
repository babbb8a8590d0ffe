"""The engine's error codes: why it stopped, as the host reads them from the status registers.

An instruction that would access anything out of range, use a token it has no queue for, or carry a
field the hardware cannot execute stops the engine before it writes anything; the host sees the code
and the failing instruction's index. The engine never hangs silently on a bad program.
"""

from amaranth.lib import enum

__all__ = ["EngineError"]


class EngineError(enum.IntEnum, shape=8):
    NONE = 0
    ILLEGAL_OPCODE = 1  # opcode not in isa.Opcode
    RESERVED_BITS = 2  # bits above the opcode's fields are not zero
    BAD_TOKEN = 3  # a token flag the instruction's module has no queue for
    TOKEN_UNDERFLOW = 4  # FINISH with a token still queued, or a pop that can never be satisfied
    TOKEN_OVERFLOW = 5  # a push onto a full token queue
    BUFFER_RANGE = 6  # an access outside an on-chip buffer
    MEMORY_RANGE = 7  # a DMA outside the memory
    BAD_FIELD = 8  # a field value the hardware cannot execute (zero kernel or stride, odd SPACE_TO_DEPTH, ...)
    NO_FINISH = 9  # the program ended without FINISH
    BAD_BUFFER = 10  # a DMA to or from a buffer it cannot use (STORE from WGT, LOAD of PARAM from ...)
