"""The engine's memory port and the arbiter that shares it between fetch, load DMA and store DMA.

A memory port (``hw/ISA.md``, "Memory port") is three streams seen from the engine: ``cmd``
(a burst: P-aligned byte address, beats, read or write), ``wdata`` (P bytes and a byte mask per
beat of a write) and ``rdata`` (P bytes per beat of a read). The memory serves commands in
order and may accept the next command while an earlier one's data streams, so one client keeps
the port busy by issuing burst after burst.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MAX_BURST", "MemCmdLayout", "MemWriteLayout", "MemoryArbiter", "MemoryPortSignature"]

MAX_BURST = 64
"""Most beats one command may carry: 64 beats (128 bytes on a 16-bit port) keeps a burst inside
one SDRAM row (1 KiB) when aligned, and bounds how long the arbiter lets one client hold the
port (``n - 1`` bursts at most before any other client's turn)."""


class MemCmdLayout(data.StructLayout):
    """A burst: ``addr`` (byte address, a multiple of P), ``beats`` (1..MAX_BURST), ``write``."""

    def __init__(self):
        super().__init__({"addr": unsigned(32), "beats": unsigned(16), "write": 1})


class MemWriteLayout(data.StructLayout):
    """A write beat: P bytes, byte ``i`` written iff ``mask[i]``."""

    def __init__(self, P: int):
        super().__init__({"data": data.ArrayLayout(unsigned(8), P), "mask": P})


class MemoryPortSignature(wiring.Signature):
    """A memory port of P bytes a beat, seen from the engine (the client).

    Members
    -------
    cmd : Out(stream.Signature(MemCmdLayout()))
    wdata : Out(stream.Signature(MemWriteLayout(P)))
        ``beats`` beats per write command, in command order.
    rdata : In(stream.Signature(ArrayLayout(unsigned(8), P)))
        ``beats`` beats per read command, in command order; beat ``k`` holds the bytes
        ``addr + k*P .. addr + k*P + P - 1``.
    """

    def __init__(self, P: int):
        if not isinstance(P, int) or P < 1 or P & (P - 1):
            raise ValueError(f"MemoryPortSignature: P (bytes per beat) must be a power of two >= 1, got {P!r}")
        self.P = P
        super().__init__({
            "cmd": Out(stream.Signature(MemCmdLayout())),
            "wdata": Out(stream.Signature(MemWriteLayout(P))),
            "rdata": In(stream.Signature(data.ArrayLayout(unsigned(8), P))),
        })

    def __eq__(self, other):
        return type(other) is MemoryPortSignature and other.P == self.P

    def __hash__(self):
        return hash((MemoryPortSignature, self.P))

    def __repr__(self):
        return f"MemoryPortSignature({self.P})"


class MemoryArbiter(wiring.Component):
    """``n`` client memory ports onto one: a whole command (burst) is granted at a time, write
    data follows its command, read data goes back to the client that asked, in order.

    Grants are **round-robin** (the client after the last one granted goes first): the engine's
    clients (fetch, load DMA, store DMA) each issue long series of bursts, and with a fixed
    priority one DMA streaming a large tile would hold off the others for its whole length;
    round-robin bounds any client's wait to ``n - 1`` bursts (at most ``MAX_BURST`` beats each)
    and costs nothing when only one client is active.

    The chosen command goes through a register (``mem.cmd`` is valid the cycle after a client's
    ``cmd`` transfers; one command a cycle sustained), so ``mem.cmd``'s payload stays put while
    it waits. Each forwarded command records its client and length in a queue for reads or one
    for writes (``depth`` entries each; a command waits while its queue is full). ``wdata``
    and ``rdata`` are combinational between the port and the client at the head of the
    matching queue.

    Parameters
    ----------
    n : int
        Client ports (>= 1).
    P : int
        Bytes per beat (a power of two).
    depth : int
        Outstanding commands of each kind (>= 1). Short bursts stream without gaps only if it
        exceeds the memory's latency (the default, 16, covers the configurations' 2 and 12).

    Members
    -------
    clients : In(MemoryPortSignature(P)).array(n)
        The clients' ports (client ``i`` is ``clients[i]``).
    mem : Out(MemoryPortSignature(P))
        To the memory.
    idle : Out(1)
        No command is offered, held or owed data: nothing the memory could still deliver or take
        (the engine stops on an error only then, so a restart never sees a stale beat).
    """

    def __init__(self, n: int, P: int, depth: int = 16):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"MemoryArbiter: n (client ports) must be >= 1, got {n!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"MemoryArbiter: depth (outstanding commands) must be >= 1, got {depth!r}")
        self.n, self.P, self.depth = n, P, depth
        super().__init__({
            "clients": In(MemoryPortSignature(P)).array(n),
            "mem": Out(MemoryPortSignature(P)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.n
        idx_bits = max(1, (n - 1).bit_length())
        owner = data.StructLayout({"client": unsigned(idx_bits), "beats": unsigned(16)})
        m.submodules.rq = rq = fifo.SyncFIFO(width=owner.size, depth=self.depth)
        m.submodules.wq = wq = fifo.SyncFIFO(width=owner.size, depth=self.depth)

        # -- command: round-robin choice into a holding register ------------------------------
        last = Signal(idx_bits, init=n - 1)
        load = Signal()  # the register takes a command this cycle
        m.d.comb += load.eq(~self.mem.cmd.valid | self.mem.cmd.ready)
        eligible = Signal(n)
        for i, c in enumerate(self.clients):
            m.d.comb += eligible[i].eq(c.cmd.valid & (c.cmd.payload.write & wq.w_rdy |
                                                      ~c.cmd.payload.write & rq.w_rdy))
        pick = Signal(idx_bits)
        any_ = Signal()
        picked = Signal(MemCmdLayout())
        with m.Switch(last):
            for prev in range(n):
                with m.Case(prev):
                    order = [(prev + k) % n for k in range(1, n + 1)]
                    for j, i in enumerate(order):
                        with (m.If if j == 0 else m.Elif)(eligible[i]):
                            m.d.comb += [pick.eq(i), any_.eq(1)]
        with m.If(self.mem.cmd.ready):
            m.d.sync += self.mem.cmd.valid.eq(0)
        with m.If(load & any_):
            m.d.sync += [self.mem.cmd.valid.eq(1), last.eq(pick)]
            with m.Switch(pick):
                for i, c in enumerate(self.clients):
                    with m.Case(i):
                        m.d.comb += c.cmd.ready.eq(1)
                        m.d.comb += picked.eq(c.cmd.payload)
            m.d.sync += self.mem.cmd.payload.eq(picked)
            entry = Signal(owner)
            m.d.comb += [entry.client.eq(pick), entry.beats.eq(picked.beats),
                         wq.w_data.eq(entry.as_value()), rq.w_data.eq(entry.as_value()),
                         wq.w_en.eq(picked.write), rq.w_en.eq(~picked.write)]

        m.d.comb += self.idle.eq(~self.mem.cmd.valid & ~rq.r_rdy & ~wq.r_rdy
                                 & ~Cat(*(c.cmd.valid for c in self.clients)).any())

        # -- read data: to the client at the head of the read queue ---------------------------
        rhead = Signal(owner)
        rcount = Signal(16)
        m.d.comb += rhead.eq(rq.r_data)
        rbeat = Signal()
        m.d.comb += rbeat.eq(self.mem.rdata.valid & self.mem.rdata.ready)
        for i, c in enumerate(self.clients):
            sel = rq.r_rdy & (rhead.client == i)
            m.d.comb += [c.rdata.payload.eq(self.mem.rdata.payload), c.rdata.valid.eq(self.mem.rdata.valid & sel)]
            with m.If(sel):
                m.d.comb += self.mem.rdata.ready.eq(c.rdata.ready)
        with m.If(rbeat):
            with m.If(rcount == rhead.beats - 1):
                m.d.sync += rcount.eq(0)
                m.d.comb += rq.r_en.eq(1)
            with m.Else():
                m.d.sync += rcount.eq(rcount + 1)

        # -- write data: from the client at the head of the write queue -----------------------
        whead = Signal(owner)
        wcount = Signal(16)
        m.d.comb += whead.eq(wq.r_data)
        for i, c in enumerate(self.clients):
            with m.If(wq.r_rdy & (whead.client == i)):
                m.d.comb += [self.mem.wdata.valid.eq(c.wdata.valid), self.mem.wdata.payload.eq(c.wdata.payload),
                             c.wdata.ready.eq(self.mem.wdata.ready)]
        with m.If(self.mem.wdata.valid & self.mem.wdata.ready):
            with m.If(wcount == whead.beats - 1):
                m.d.sync += wcount.eq(0)
                m.d.comb += wq.r_en.eq(1)
            with m.Else():
                m.d.sync += wcount.eq(wcount + 1)
        return m
