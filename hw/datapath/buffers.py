"""On-chip buffers on ``amaranth.lib.memory``: a streamed-read buffer and its double-buffered
form (the back bank loads while the front bank feeds the MAC array)."""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamBuffer", "DoubleBuffer", "WriteLayout"]


def _check(name, shape, depth):
    if not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
        raise ValueError(f"{name}: depth must be a power of two >= 2, got {depth!r}")
    return Shape.cast(shape) if not isinstance(shape, data.Layout) else shape


class WriteLayout(data.StructLayout):
    """A buffer write: ``addr`` and ``data``."""

    def __init__(self, shape, depth):
        super().__init__({"addr": range(depth), "data": shape})


class StreamBuffer(wiring.Component):
    """A ``depth``-word memory of ``shape`` with a write stream and a streamed read.

    The read side is a request/response pair of streams: each ``raddr`` beat yields one
    ``rdata`` beat (the word at that address) one cycle later, in order. The read port's enable
    is ``~rdata.valid | rdata.ready``, so a stalled response holds its word (block RAM output
    register semantics) and one read a cycle is sustained. Writes are always accepted; a write
    and a read of the same address in one cycle return the old word.

    Parameters
    ----------
    shape : ShapeLike
        The word (e.g. ``ArrayLayout(signed(8), width)`` for activations).
    depth : int
        Words; a power of two.

    Members
    -------
    w : In(stream.Signature(WriteLayout(shape, depth)))
    raddr : In(stream.Signature(range(depth)))
    rdata : Out(stream.Signature(shape))
    """

    def __init__(self, shape, depth: int):
        self.shape = _check("StreamBuffer", shape, depth)
        self.depth = depth
        super().__init__({
            "w": In(stream.Signature(WriteLayout(shape, depth))),
            "raddr": In(stream.Signature(range(depth))),
            "rdata": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self.shape, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()
        en = Signal()
        m.d.comb += [
            self.w.ready.eq(1),
            wr.addr.eq(self.w.payload.addr), wr.data.eq(self.w.payload.data), wr.en.eq(self.w.valid),
            en.eq(~self.rdata.valid | self.rdata.ready),
            self.raddr.ready.eq(en),
            rd.en.eq(en), rd.addr.eq(self.raddr.payload),
            self.rdata.payload.eq(rd.data),
        ]
        with m.If(en):
            m.d.sync += self.rdata.valid.eq(self.raddr.valid)
        return m


class DoubleBuffer(wiring.Component):
    """Two banks of :class:`StreamBuffer`'s interface: writes fill the back bank while reads
    drain the front one; ``swap`` (a one-cycle pulse, between tiles) exchanges them.

    Members
    -------
    w : In(stream.Signature(WriteLayout(shape, depth)))
        Writes to the back bank.
    raddr : In(stream.Signature(range(depth)))
    rdata : Out(stream.Signature(shape))
        Reads of the front bank.
    swap : In(1)
    front : Out(1)
        Which bank (0 or 1) is being read.
    """

    def __init__(self, shape, depth: int):
        self.shape = _check("DoubleBuffer", shape, depth)
        self.depth = depth
        super().__init__({
            "w": In(stream.Signature(WriteLayout(shape, depth))),
            "raddr": In(stream.Signature(range(depth))),
            "rdata": Out(stream.Signature(shape)),
            "swap": In(1),
            "front": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = StreamBuffer(self.shape, 2 * self.depth)
        with m.If(self.swap):
            m.d.sync += self.front.eq(~self.front)
        m.d.comb += [
            buf.w.valid.eq(self.w.valid), self.w.ready.eq(buf.w.ready),
            buf.w.payload.addr.eq(self.w.payload.addr | (~self.front << (self.depth.bit_length() - 1))),
            buf.w.payload.data.eq(self.w.payload.data),
            buf.raddr.valid.eq(self.raddr.valid), self.raddr.ready.eq(buf.raddr.ready),
            buf.raddr.payload.eq(self.raddr.payload | (self.front << (self.depth.bit_length() - 1))),
        ]
        wiring.connect(m, buf.rdata, wiring.flipped(self.rdata))
        return m
