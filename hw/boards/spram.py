"""The iCEBreaker's memory: the iCE40UP5K's four SPRAM blocks (4 x 16K x 16 bits, 128 KiB)
serving the engine's 16-bit memory port (``hw/ISA.md``, "Memory port").

One word a cycle either way: a write beat goes straight into its block; a read issues a word a
cycle into a small FIFO while the FIFO is sure to have room (the reads in flight counted), so a
consumer that stalls loses nothing and one that does not sees one beat a clock. A command is
taken when the previous one has issued its last beat. On other devices (and in simulation) the
blocks are one ``lib.memory.Memory`` of the same words with the same latency.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import fifo, memory, wiring
from amaranth.lib.wiring import In

from onda.hw.engine.memory_port import MemoryPortSignature

__all__ = ["SPRAM_BYTES", "SpramMemory"]

SPRAM_BYTES = 4 * 16384 * 2  # four SB_SPRAM256KA of 16K 16-bit words
_QUEUE = 6  # read beats buffered: covers the block's latency and the FIFO's so reads stream


class SpramMemory(wiring.Component):
    """128 KiB of 16-bit words on the engine's memory port.

    Parameters
    ----------
    use_spram : bool
        Instantiate four ``SB_SPRAM256KA`` (an iCE40UP5K build); else one ``Memory`` with the
        same behaviour (simulation, other devices).

    Members
    -------
    port : In(MemoryPortSignature(2))
        Addresses wrap at 128 KiB (the engine checks its DMA addresses against the configured
        memory size).
    """

    def __init__(self, use_spram: bool = False):
        self.use_spram = use_spram
        super().__init__({"port": In(MemoryPortSignature(2))})

    def elaborate(self, platform):
        m = Module()
        p = self.port
        words = SPRAM_BYTES // 2

        # -- the words: address, data in, byte mask, write enable -> data out a cycle later ----------
        addr, wdata, wmask, wen, rd = Signal(range(words)), Signal(16), Signal(2), Signal(), Signal(16)
        if self.use_spram:
            outs = []
            for b in range(4):
                q = Signal(16, name=f"spram{b}_q")
                sel = addr[14:] == b
                m.submodules[f"spram{b}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:14], i_DATAIN=wdata,
                    i_MASKWREN=Cat(wmask[0], wmask[0], wmask[1], wmask[1]),
                    i_WREN=wen & sel, i_CHIPSELECT=1, i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=q)
                outs.append(q)
            bank_q = Signal(2)
            m.d.sync += bank_q.eq(addr[14:])
            with m.Switch(bank_q):
                for b, q in enumerate(outs):
                    with m.Case(b):
                        m.d.comb += rd.eq(q)
        else:
            m.submodules.words = mem = memory.Memory(shape=16, depth=words, init=[])
            wp = mem.write_port(granularity=8)
            rp = mem.read_port(transparent_for=())
            m.d.comb += [wp.addr.eq(addr), wp.data.eq(wdata), wp.en.eq(Mux(wen, wmask, 0)),
                         rp.addr.eq(addr), rd.eq(rp.data)]

        # -- commands -----------------------------------------------------------------------------------
        at, left, writing, active = Signal(range(words)), Signal(16), Signal(), Signal()
        m.submodules.queue = q = fifo.SyncFIFOBuffered(width=16, depth=_QUEUE)
        inflight = Signal()  # a read issued last cycle: its word enters the FIFO now
        m.d.sync += inflight.eq(0)
        m.d.comb += [q.w_data.eq(rd), q.w_en.eq(inflight)]
        room = Signal()
        m.d.comb += room.eq(q.level + inflight < _QUEUE)
        issue = Signal()
        with m.If(active & ~writing):
            m.d.comb += [issue.eq(room), addr.eq(at)]
        with m.If(active & writing):
            m.d.comb += [p.wdata.ready.eq(1), addr.eq(at), wdata.eq(p.wdata.payload.data.as_value()),
                         wmask.eq(p.wdata.payload.mask), wen.eq(p.wdata.valid)]
        step = issue | (active & writing & p.wdata.valid)
        with m.If(step):
            m.d.sync += [at.eq(at + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += active.eq(0)
        m.d.sync += inflight.eq(issue)
        m.d.comb += p.cmd.ready.eq(~active | (step & (left == 1)))
        with m.If(p.cmd.valid & p.cmd.ready):
            m.d.sync += [at.eq(p.cmd.payload.addr[1:]), left.eq(p.cmd.payload.beats),
                         writing.eq(p.cmd.payload.write), active.eq(p.cmd.payload.beats != 0)]

        # -- read data ----------------------------------------------------------------------------------
        m.d.comb += [p.rdata.valid.eq(q.r_rdy), p.rdata.payload.as_value().eq(q.r_data), q.r_en.eq(p.rdata.ready)]
        return m

