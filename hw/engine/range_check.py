"""The DMAs' range check: products by shift-add, saturating at the limit they are checked against.

Before it moves a byte, each DMA refuses an instruction whose rows run past the memory or whose
bytes run past the buffer (``hw/ISA.md``). That takes products of instruction fields
(``y_size * x_size``, ``(y_size - 1) * dram_stride``, ...), formed here by a shift-add multiplier
of ``digit_bits`` multiplier bits a cycle (no DSP block: the iCE40 build has none to spare), as
wide as the limit and no wider: a range check only needs to know a product exceeds it.
"""

from __future__ import annotations

from amaranth.hdl import Mux, Signal

__all__ = ["DIGIT_BITS", "SaturatingProduct", "check_cycles", "check_digit_bits", "digit_product"]

DIGIT_BITS = 4
"""Multiplier bits the range check's shift-add multiplier takes a cycle by default (four shifted
adds a product; ``digit_bits=1`` takes a quarter of the adders and 12 more cycles a LOAD)."""


def check_digit_bits(name: str, digit_bits) -> int:
    """``digit_bits`` if it is an int in 1..8, else ``ValueError("{name}: digit_bits must be
    1..8, got …")`` (more than 8 shifted adds a cycle would be the slow path of the design)."""
    if not isinstance(digit_bits, int) or not 1 <= digit_bits <= 8:
        raise ValueError(f"{name}: digit_bits must be 1..8, got {digit_bits!r}")
    return digit_bits


def check_cycles(multiplier_bits: int, digit_bits: int) -> int:
    """Cycles a DMA spends between taking an instruction and starting it: one per ``digit_bits``
    of its widest multiplier (``multiplier_bits``), then one to compare."""
    return -(-multiplier_bits // digit_bits) + 1


def digit_product(digit, value):
    """``digit * value`` for a small unsigned ``digit`` as a sum of shifted copies of ``value``
    (plain adders: no DSP block)."""
    total = 0
    for i in range(len(digit)):
        total = total + Mux(digit[i], value << i, 0)
    return total


class SaturatingProduct:
    """``multiplier * multiplicand`` by shift-add, ``digit_bits`` of the multiplier a cycle, in
    ``width`` bits: ``acc`` is the product if ``over`` is low, and ``over`` is set iff the
    product is ``>= 2**width``. A range check only needs to know a product exceeds a buffer or
    the memory, so the adders are as wide as the limit, not as the fields.

    ``load(multiplier, multiplicand)`` and ``step()`` return the statements for ``m.d.sync``.
    """

    def __init__(self, name: str, multiplier_bits: int, width: int, digit_bits: int = DIGIT_BITS):
        self.width, self.digit_bits = width, digit_bits
        self.mult = Signal(multiplier_bits, name=f"{name}_mult")
        self.mcand = Signal(width, name=f"{name}_mcand")
        self.big = Signal(name=f"{name}_big")  # the shifted multiplicand is >= 2**width
        self.acc = Signal(width, name=f"{name}_acc")
        self.over = Signal(name=f"{name}_over")

    def load(self, multiplier, multiplicand):
        return [self.mult.eq(multiplier), self.mcand.eq(multiplicand), self.big.eq((multiplicand >> self.width) != 0),
                self.acc.eq(0), self.over.eq(0)]

    def step(self):
        D, k = self.digit_bits, self.width
        digit = self.mult[:D]
        total = self.acc + digit_product(digit, self.mcand)
        return [
            self.mult.eq(self.mult >> D),
            self.mcand.eq(self.mcand << D),
            self.big.eq(self.big | ((self.mcand >> (k - D)) != 0)),
            self.acc.eq(total),
            self.over.eq(self.over | (self.big & (digit != 0)) | ((total >> k) != 0)),
        ]
