"""The host link's UART (``hw/boards/LINK.md``): 8 data bits, no parity, one stop bit, LSB first,
at a fixed ``divisor`` clocks per bit.

A receiver and a transmitter on byte streams: ``UartRx`` turns the ``rx`` pin into bytes,
``UartTx`` bytes into the ``tx`` pin. Neither has a FIFO: the link endpoint behind the receiver
buffers every byte it is given the clock it arrives (its ring buffer), and the transmitter is
fed by the endpoint one byte at a time. ``uart_divisor`` picks the divisor for a clock and baud
rate, refusing a pair whose rate error would be outside what 8N1 tolerates with margin.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MAX_BAUD_ERROR", "MIN_DIVISOR", "UartRx", "UartTx", "uart_divisor"]

MIN_DIVISOR = 4
"""Fewest clocks a bit: the receiver samples mid-bit (``divisor // 2`` clocks after the start
edge) behind a two-flop synchroniser; with fewer than 4 clocks a bit, one clock of uncertainty
in finding the edge is too large a part of the bit."""

MAX_BAUD_ERROR = 0.02
"""Largest relative baud error ``uart_divisor`` accepts: the sampling point drifts by 9.5 bit
times times the error by the stop bit, so 2% leaves most of the half bit for the other end's
error and the edge uncertainty."""


def uart_divisor(clock_mhz: float, baud: int) -> int:
    """Clocks per bit for ``baud`` at ``clock_mhz``: the nearest integer, or ``ValueError`` when
    its baud error exceeds ``MAX_BAUD_ERROR`` or it is below ``MIN_DIVISOR``."""
    if not clock_mhz > 0 or not baud > 0:
        raise ValueError(f"uart_divisor: clock {clock_mhz} MHz and baud {baud} must be positive")
    clock = clock_mhz * 1e6
    divisor = max(1, round(clock / baud))
    error = abs(clock / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"uart_divisor: {baud} baud at {clock_mhz} MHz: divisor {divisor} gives "
                         f"{clock / divisor:.0f} baud, {100 * error:.1f}% off (at most {100 * MAX_BAUD_ERROR:.0f}%)")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"uart_divisor: {baud} baud at {clock_mhz} MHz is {divisor} clocks a bit, "
                         f"fewer than {MIN_DIVISOR}")
    return divisor


def _check_divisor(name: str, divisor) -> int:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"{name}: divisor (clocks per bit) must be an integer >= {MIN_DIVISOR}, got {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """The receiver: ``rx`` pin in, bytes out.

    The pin goes through two flops (it is asynchronous to the clock). A falling edge starts a
    byte; the start bit is sampled ``divisor // 2`` clocks later (still low, or the edge was a
    glitch and the receiver looks again), then each data bit and the stop bit ``divisor``
    clocks apart, in the middle of each. A low stop bit is a framing error: no byte, and the
    receiver waits for the line to return high before looking for the next start bit.

    Parameters
    ----------
    divisor : int
        Clocks per bit (>= ``MIN_DIVISOR``).

    Members
    -------
    rx : In(1)
        The pin (idle high).
    data : Out(stream.Signature(8))
        One byte held from its stop bit until taken. A byte completing while the previous one
        is still held is lost (an overrun): the held byte stays as the stream rules require.
    framing_errors : Out(16)
        Bad stop bits and overruns since reset (wrapping).
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor("UartRx", divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)), "framing_errors": Out(16)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        s1, pin = Signal(init=1), Signal(init=1)
        m.d.sync += [s1.eq(self.rx), pin.eq(s1)]
        count = Signal(range(d))
        bits = Signal(range(8))
        shift = Signal(8)
        tick = count == 0
        with m.If(~tick):
            m.d.sync += count.eq(count - 1)
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~pin):
                    m.d.sync += count.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(pin):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [count.eq(d - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shift.eq(Cat(shift[1:], pin)), count.eq(d - 1), bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(~pin):
                        m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                        m.next = "BREAK"
                    with m.Else():
                        with m.If(self.data.valid & ~self.data.ready):  # the held byte was not taken
                            m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                        with m.Else():
                            m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):  # after a bad stop bit: wait for the line to go idle
                with m.If(pin):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """The transmitter: bytes in, ``tx`` pin out.

    A byte is taken when the previous one's stop bit has been shown for ``divisor`` clocks;
    its start bit, 8 data bits (LSB first) and stop bit follow from the next clock, ``divisor``
    clocks each, from one 10-bit shift register whose bit 0 is the pin (no output mux).

    Parameters
    ----------
    divisor : int
        Clocks per bit (>= ``MIN_DIVISOR``).

    Members
    -------
    data : In(stream.Signature(8))
    tx : Out(1)
        The pin (idle high).
    """

    def __init__(self, divisor: int):
        self.divisor = _check_divisor("UartTx", divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        shift = Signal(10, init=0x3FF)
        count = Signal(range(d))
        left = Signal(range(11))  # bits still to show, the one on the pin included
        m.d.comb += [self.tx.eq(shift[0]), self.data.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.data.valid):
                m.d.sync += [shift.eq(Cat(0, self.data.payload, 1)), left.eq(10), count.eq(d - 1)]
        with m.Elif(count == 0):
            m.d.sync += [shift.eq(Cat(shift[1:], 1)), left.eq(left - 1), count.eq(d - 1)]
        with m.Else():
            m.d.sync += count.eq(count - 1)
        return m
