"""A DMA's strided rows over the memory port: the walk LOAD and STORE share.

Both DMAs move ``rows`` rows of ``length`` bytes, the first at memory address ``addr`` and each
``stride`` bytes after the one before, over a memory port of P bytes a beat (``hw/ISA.md``,
"Memory port"). They differ only in the direction and in what happens to the bytes in the
buffer, so the row walk is written once, here:

- :class:`RowBursts` issues the memory commands: every row as the whole P-aligned beats covering
  it (from the beat holding its first byte to the one holding its last), split into bursts of at
  most ``MAX_BURST`` beats, one command a cycle while the memory takes them.
- :class:`RowCursor` follows the same rows a beat at a time on the byte side: how many of the
  row's bytes a beat holds, where in the buffer they go or come from, and when the last row ends.
- :func:`row_beats` counts the beats the commands carry (the data part of ``load_cycles`` and
  ``store_cycles``).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.engine.memory_port import MAX_BURST, MemCmdLayout

__all__ = ["RowBursts", "RowCursor", "row_beats"]

_FIELDS = isa.field_layout(isa.Opcode.LOAD)
# The row fields' shapes; STORE's are the same (both DMAs feed RowBursts straight from them).
_ADDR, _STRIDE, _LENGTH, _ROWS = (_FIELDS.members[n] for n in ("dram_addr", "dram_stride", "x_size", "y_size"))
assert all(isa.field_layout(isa.Opcode.STORE).members[n] == _FIELDS.members[n]
           for n in ("dram_addr", "dram_stride", "x_size", "y_size"))


def row_beats(P: int, addr: int, stride: int, length: int, rows: int) -> int:
    """Beats :class:`RowBursts` asks for: ``sum over rows j of ceil((addr_j % P + length) / P)``
    with ``addr_j = addr + j*stride`` (each row from the beat holding its first byte to the one
    holding its last; no beat shared between rows, even when they touch)."""
    return sum(-(-((addr + j * stride) % P + length) // P) for j in range(rows))


def _mem_bits(mem_size_bytes: int) -> tuple[int, int]:
    """``(km, am)``: bits of a count of bytes or beats up to the memory's size (with one to
    spare), and of a memory address past it (row starts run one stride beyond the last row)."""
    km = mem_size_bytes.bit_length() + 1
    return km, km + 1


class RowBursts(wiring.Component):
    """Issues the read or write commands of a DMA's rows onto a memory port's ``cmd`` stream.

    On ``go`` it starts from the row at ``addr``; each following cycle in which ``cmd`` is free
    (not valid, or taken this cycle) it puts the next burst in the ``cmd`` register: the next
    ``min(beats left in the row, MAX_BURST)`` beats from the row's current P-aligned address.
    After a row's last burst it moves ``stride`` bytes on; after the last row's it stops. The
    inputs are read while it runs, so they must hold from ``go`` until ``busy`` falls (the DMAs
    drive them from their registered instruction).

    Parameters
    ----------
    P : int
        Bytes a beat (a power of two).
    mem_size_bytes : int
        The memory's size: the width of the address and beat counters (the DMAs refuse rows past
        it before ``go``).
    write : bool
        Write commands (STORE) or read commands (LOAD).

    Members
    -------
    go : In(1)
        Pulse: start on the rows the inputs describe (at least one row of at least one byte).
    addr : In(unsigned(32))
        The first row's first byte in memory.
    stride : In(unsigned(24))
        Bytes from one row's start to the next's.
    length : In(unsigned(24))
        Bytes a row.
    rows : In(unsigned(16))
        Rows.
    busy : Out(1)
        High from the cycle after ``go`` until the last command is in the ``cmd`` register (it
        may still wait there for the memory to take it).
    cmd : Out(stream.Signature(MemCmdLayout()))
        To the memory port's ``cmd``; ``valid`` is a register.
    """

    def __init__(self, P: int, mem_size_bytes: int, *, write: bool):
        self.P, self.write = P, bool(write)
        self._km, self._am = _mem_bits(mem_size_bytes)
        super().__init__({
            "go": In(1), "addr": In(_ADDR), "stride": In(_STRIDE), "length": In(_LENGTH), "rows": In(_ROWS),
            "busy": Out(1),
            "cmd": Out(stream.Signature(MemCmdLayout())),
        })

    def elaborate(self, platform):
        m = Module()
        P, km, am = self.P, self._km, self._am
        lp = (P - 1).bit_length()
        row = Signal(_ROWS.width)
        start = Signal(am)  # row start in memory
        beat = Signal(am)  # next beat's address
        left = Signal(km)  # beats left in the row
        length = self.length

        def beats_of(a):  # the beats covering a row starting at a
            return (a[:lp] + length + (P - 1)) >> lp if lp else length

        cmd = self.cmd
        burst = Signal(16)
        m.d.comb += burst.eq(Mux(left > MAX_BURST, MAX_BURST, left))
        with m.If(cmd.ready):
            m.d.sync += cmd.valid.eq(0)
        with m.If(self.go):
            m.d.sync += [self.busy.eq(1), row.eq(0), start.eq(self.addr),
                         beat.eq(self.addr & ~Const(P - 1, 32)), left.eq(beats_of(self.addr))]
        with m.Elif(self.busy & (~cmd.valid | cmd.ready)):
            m.d.sync += [cmd.valid.eq(1), cmd.payload.addr.eq(beat), cmd.payload.beats.eq(burst),
                         cmd.payload.write.eq(int(self.write))]
            with m.If(left == burst):  # the row's last burst
                nxt = start + self.stride
                m.d.sync += [row.eq(row + 1), start.eq(nxt), beat.eq(nxt & ~Const(P - 1, am)), left.eq(beats_of(nxt))]
                with m.If(row + 1 == self.rows):
                    m.d.sync += self.busy.eq(0)
            with m.Else():
                m.d.sync += [beat.eq(beat + burst * P), left.eq(left - burst)]
        return m


class RowCursor:
    """Where a DMA's byte side is in its rows, one P-byte beat at a time.

    A row's first beat holds ``avail = P - off`` of its bytes (``off``: the row's first byte
    within its beat), every later one P; ``nbytes`` of them belong to the row (fewer at its end).
    ``addr`` is the buffer address of the beat's first row byte; rows lie ``pitch`` bytes apart in
    the buffer. ``row_end``: this beat is the row's last; ``last``: and the row is the last.

    ``comb(rows)``, ``start(...)`` return statements for ``m.d.comb`` and ``m.d.sync``;
    ``step(m, ...)`` adds the move past the current beat to ``m.d.sync`` (call it in the
    condition under which the beat is consumed).

    Parameters
    ----------
    P : int
        Bytes a beat (a power of two).
    buf_bits : int
        Width of the buffer addresses.
    mem_size_bytes : int
        The memory's size (the width of the byte count and the memory address).
    """

    def __init__(self, P: int, buf_bits: int, mem_size_bytes: int):
        km, am = _mem_bits(mem_size_bytes)
        self.P, self.lp = P, (P - 1).bit_length()
        self.row = Signal(_ROWS.width, name="d_row")
        self.first = Signal(name="d_first")  # next beat is the row's first
        self.off = Signal(max(1, self.lp), name="d_off")
        self.addr = Signal(buf_bits, name="d_addr")
        self.row_start = Signal(buf_bits, name="d_row_start")
        self.left = Signal(km, name="d_left")  # row bytes not yet moved
        self.mem = Signal(am, name="d_mem")  # the row's memory address (for the next row's offset)
        self.avail = Signal(range(P + 1), name="d_avail")
        self.nbytes = Signal(range(P + 1), name="d_nbytes")  # bytes of the row in this beat
        self.row_end = Signal(name="d_row_end")
        self.last = Signal(name="d_last")

    def _off(self, a):
        return a[:self.lp] if self.lp else 0

    def comb(self, rows):
        """``avail``, ``nbytes``, ``row_end`` and ``last`` (of ``rows`` rows)."""
        P = self.P
        return [self.avail.eq(Mux(self.first, P - self.off, P) if self.lp else P),
                self.nbytes.eq(Mux(self.left < self.avail, self.left, self.avail)),
                self.row_end.eq(self.left == self.nbytes),
                self.last.eq(self.row_end & (self.row + 1 == rows))]

    def start(self, mem_addr, buf_addr, length):
        """To the first beat of the first row: at ``mem_addr`` in memory, ``buf_addr`` in the buffer."""
        return [self.row.eq(0), self.first.eq(1), self.left.eq(length), self.mem.eq(mem_addr),
                self.off.eq(self._off(mem_addr)), self.addr.eq(buf_addr), self.row_start.eq(buf_addr)]

    def step(self, m: Module, *, length, stride, pitch):
        """Past the current beat: to the next row's first beat (``stride`` on in memory, ``pitch``
        on in the buffer) after a row's last one, else ``nbytes`` on in the row."""
        with m.If(self.row_end):
            nxt = self.mem + stride
            m.d.sync += [self.row.eq(self.row + 1), self.first.eq(1), self.left.eq(length), self.mem.eq(nxt),
                         self.off.eq(self._off(nxt)),
                         self.addr.eq(self.row_start + pitch), self.row_start.eq(self.row_start + pitch)]
        with m.Else():
            m.d.sync += [self.first.eq(0), self.left.eq(self.left - self.nbytes), self.addr.eq(self.addr + self.nbytes)]
