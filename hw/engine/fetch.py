"""Instruction fetch, decode and dispatch: the program read from memory, each instruction checked
and routed into its module's queue (load, compute, store), as VTA's Fetch does.

Fetch only asks the memory for instructions it has room for (a prefetch buffer of ``prefetch``
instructions), so a full module queue never back-pressures the shared memory port: the load and
store DMAs keep the port while fetch waits. Dispatch is in program order; a module queue that is
full stalls it (``stall``). A legal program cannot deadlock on that: every token an instruction
pops was pushed by an instruction earlier in program order, which has already been dispatched.

Decode refuses, with the instruction's index: an opcode outside ``isa.Opcode``
(``ILLEGAL_OPCODE``), a non-zero bit above the opcode's fields (``RESERVED_BITS``), a token flag
its module has no queue for (``BAD_TOKEN``, ``isa.TOKEN_QUEUES``). Fetch stops after dispatching
FINISH; a program that ends without one is ``NO_FINISH``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.isa import INSTRUCTION_BITS, INSTRUCTION_BYTES, InstructionLayout, Module as IsaModule, Opcode

from .errors import EngineError
from .memory_port import MAX_BURST, MemoryPortSignature

__all__ = ["Fetch", "QueueEntryLayout", "burst_instructions"]

INDEX_BITS = 32


class QueueEntryLayout(data.StructLayout):
    """A decoded instruction on its way to a module: the 256-bit word and its program index."""

    def __init__(self):
        super().__init__({"ins": InstructionLayout, "index": unsigned(INDEX_BITS)})


def burst_instructions(port_bytes: int, prefetch: int) -> int:
    """Instructions one read burst of fetch carries: as many as the prefetch buffer holds, within
    ``MAX_BURST`` beats."""
    return max(1, min(prefetch, MAX_BURST * port_bytes // INSTRUCTION_BYTES))


def _module_of(m, opcode, nop_module):
    """The ``isa.Module`` an instruction belongs to (NOP names it in a field)."""
    mod = Signal(IsaModule, name="module_of")
    with m.Switch(opcode):
        with m.Case(Opcode.NOP):
            m.d.comb += mod.eq(nop_module)
        with m.Case(Opcode.LOAD):
            m.d.comb += mod.eq(IsaModule.LOAD)
        with m.Case(Opcode.STORE):
            m.d.comb += mod.eq(IsaModule.STORE)
        with m.Default():
            m.d.comb += mod.eq(IsaModule.COMPUTE)
    return mod


class Fetch(wiring.Component):
    """Reads ``count`` instructions from byte address ``addr`` after ``start``; dispatches them.

    Parameters
    ----------
    port_bytes : int
        Bytes per memory beat (the configuration's ``mem_port_bits // 8``); divides 32.
    queue_depth : int
        Instructions each module queue holds.
    prefetch : int
        Instructions fetched ahead of dispatch (the most requested from memory at once).

    Members
    -------
    mem : Out(MemoryPortSignature(port_bytes))
        Read bursts of the program.
    start : In(1)
        Begin fetching at ``addr``, ``count`` instructions.
    addr, count : In(32)
    load, compute, store : Out(stream.Signature(QueueEntryLayout()))
        The module queues' outputs.
    halt : In(1)
        Stop dispatching (the engine stopped on an error).
    error : Out(EngineError)
        Sticky until ``start``; ``error_index`` is the instruction's index.
    error_index : Out(32)
    finished : Out(1)
        FINISH has been dispatched (nothing more will be).
    fetched : Out(32)
        Instructions dispatched so far.
    stall : Out(1)
        Dispatch is waiting for a full module queue this cycle.
    quiet : Out(1)
        No read burst of fetch's is still in flight (the run may end).
    drained : Out(1)
        Every instruction of the program has been requested and dispatched.
    """

    def __init__(self, port_bytes: int, queue_depth: int = 8, prefetch: int = 8):
        if port_bytes < 1 or INSTRUCTION_BYTES % port_bytes:
            raise ValueError(f"Fetch: port_bytes must divide {INSTRUCTION_BYTES}, got {port_bytes!r}")
        if queue_depth < 2 or prefetch < 2:
            raise ValueError("Fetch: queue_depth and prefetch must be at least 2")
        self.port_bytes, self.queue_depth, self.prefetch = port_bytes, queue_depth, prefetch
        self.beats_per_ins = INSTRUCTION_BYTES // port_bytes
        self.burst_ins = burst_instructions(port_bytes, prefetch)
        super().__init__({
            "mem": Out(MemoryPortSignature(port_bytes)),
            "start": In(1), "addr": In(32), "count": In(32), "halt": In(1),
            "load": Out(stream.Signature(QueueEntryLayout())),
            "compute": Out(stream.Signature(QueueEntryLayout())),
            "store": Out(stream.Signature(QueueEntryLayout())),
            "error": Out(EngineError), "error_index": Out(INDEX_BITS),
            "finished": Out(1), "fetched": Out(INDEX_BITS), "stall": Out(1), "quiet": Out(1),
            "drained": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        P, bpi = self.port_bytes, self.beats_per_ins

        # -- requests: whole instructions, only as many as the prefetch buffer has room for ----------
        next_addr = Signal(32)
        to_request = Signal(INDEX_BITS)  # instructions not yet requested
        credit = Signal(range(self.prefetch + 1))  # free prefetch slots not yet spoken for
        running = Signal()
        n = Signal(range(self.burst_ins + 1))
        m.d.comb += n.eq(Mux(to_request < self.burst_ins, to_request, self.burst_ins))
        want = Signal()
        m.d.comb += want.eq(running & (to_request != 0) & (credit >= n) & (n != 0))
        m.d.comb += [self.mem.cmd.valid.eq(want), self.mem.cmd.payload.addr.eq(next_addr),
                     self.mem.cmd.payload.beats.eq(n * bpi), self.mem.cmd.payload.write.eq(0),
                     self.mem.wdata.valid.eq(0)]
        requested = Signal()
        m.d.comb += requested.eq(self.mem.cmd.valid & self.mem.cmd.ready)

        # -- assembly of beats into instructions, into the prefetch buffer -----------------------------
        m.submodules.pre = pre = fifo.SyncFIFOBuffered(width=INSTRUCTION_BITS, depth=self.prefetch)
        word = Signal(INSTRUCTION_BITS)
        beat = Signal(range(bpi))
        m.d.comb += self.mem.rdata.ready.eq(1)  # room was reserved when the burst was requested
        assembled = Signal(INSTRUCTION_BITS)
        m.d.comb += assembled.eq(Cat(word[P * 8:], self.mem.rdata.payload.as_value()) if bpi > 1
                                 else self.mem.rdata.payload.as_value())
        with m.If(self.mem.rdata.valid):
            m.d.sync += [word.eq(assembled), beat.eq(Mux(beat == bpi - 1, 0, beat + 1))]
        m.d.comb += [pre.w_data.eq(assembled), pre.w_en.eq(self.mem.rdata.valid & (beat == bpi - 1) & running)]

        # -- decode and dispatch ----------------------------------------------------------------------
        ins = Signal(InstructionLayout)
        m.d.comb += ins.eq(pre.r_data)
        hdr = ins.header
        index = Signal(INDEX_BITS)
        mod = _module_of(m, hdr.opcode, ins.body.nop.module)
        legal_op = Signal()
        m.d.comb += legal_op.eq(hdr.opcode <= max(Opcode))
        reserved = Signal()
        with m.Switch(hdr.opcode):
            for op in Opcode:
                with m.Case(op):
                    used = isa.field_bits(op)
                    m.d.comb += reserved.eq(ins.body.raw[used:].any() if used < len(ins.body.raw) else 0)
        bad_token = Signal()
        with m.Switch(mod):
            for module, queues in isa.TOKEN_QUEUES.items():
                with m.Case(module):
                    m.d.comb += bad_token.eq(Cat(*(getattr(hdr, f) for f, q in zip(isa.TOKEN_FIELDS, queues)
                                                   if q is None)).any())
        bad_module = Signal()
        m.d.comb += bad_module.eq((hdr.opcode == Opcode.NOP) & (ins.body.nop.module > max(IsaModule)))

        queues = {}
        for module, port in ((IsaModule.LOAD, self.load), (IsaModule.COMPUTE, self.compute),
                             (IsaModule.STORE, self.store)):
            q = fifo.SyncFIFOBuffered(width=QueueEntryLayout().size, depth=self.queue_depth)
            m.submodules[f"q_{module.name.lower()}"] = q
            queues[module] = q
            m.d.comb += [q.w_data.eq(Cat(ins.as_value(), index)), port.payload.eq(q.r_data),
                         port.valid.eq(q.r_rdy), q.r_en.eq(port.ready)]

        error = Signal(EngineError)
        finished = Signal()
        dispatching = Signal()
        m.d.comb += dispatching.eq(running & pre.r_rdy & ~self.halt & ~finished & (error == EngineError.NONE))
        room = Signal()
        m.d.comb += room.eq(Mux(mod == IsaModule.LOAD, queues[IsaModule.LOAD].w_rdy,
                                Mux(mod == IsaModule.STORE, queues[IsaModule.STORE].w_rdy,
                                    queues[IsaModule.COMPUTE].w_rdy)))
        fault = Signal(EngineError)
        with m.If(~legal_op):
            m.d.comb += fault.eq(EngineError.ILLEGAL_OPCODE)
        with m.Elif(reserved | bad_module):
            m.d.comb += fault.eq(EngineError.RESERVED_BITS)
        with m.Elif(bad_token):
            m.d.comb += fault.eq(EngineError.BAD_TOKEN)
        go = Signal()
        m.d.comb += [go.eq(dispatching & (fault == EngineError.NONE) & room),
                     self.stall.eq(dispatching & (fault == EngineError.NONE) & ~room),
                     pre.r_en.eq(go)]
        for module, q in queues.items():
            m.d.comb += q.w_en.eq(go & (mod == module))
        with m.If(dispatching & (fault != EngineError.NONE)):
            m.d.sync += [error.eq(fault), self.error_index.eq(index)]
        with m.If(go):
            m.d.sync += index.eq(index + 1)
            with m.If(hdr.opcode == Opcode.FINISH):
                m.d.sync += finished.eq(1)
        # Every instruction dispatched and none was FINISH.
        with m.If(running & ~finished & (error == EngineError.NONE) & (to_request == 0) & (index == self.count)
                  & ~pre.r_rdy & (credit == self.prefetch)):
            m.d.sync += [error.eq(EngineError.NO_FINISH), self.error_index.eq(index)]

        # Beats requested and not yet received.
        outstanding = Signal(range(self.prefetch * bpi + 1))
        m.d.sync += outstanding.eq(outstanding + Mux(requested, n * bpi, 0) - self.mem.rdata.valid)
        m.d.comb += [self.quiet.eq(outstanding == 0),
                     self.drained.eq((to_request == 0) & ~pre.r_rdy & (outstanding == 0))]

        # Credits: spent when a burst is requested, returned when dispatch frees a slot.
        m.d.sync += credit.eq(credit - Mux(requested, n, 0) + go)
        with m.If(requested):
            m.d.sync += [next_addr.eq(next_addr + n * INSTRUCTION_BYTES), to_request.eq(to_request - n)]
        # Nothing more is requested once FINISH is dispatched or an error stops fetch; bursts in
        # flight drain. A request already offered stays offered until the port takes it: a memory
        # port's cmd keeps the stream rules (valid held until the transfer).
        with m.If((finished | (error != EngineError.NONE)) & ~(self.mem.cmd.valid & ~self.mem.cmd.ready)):
            m.d.sync += to_request.eq(0)

        with m.If(self.start):
            m.d.sync += [running.eq(1), next_addr.eq(self.addr), to_request.eq(self.count),
                         credit.eq(self.prefetch), index.eq(0), beat.eq(0), error.eq(EngineError.NONE),
                         finished.eq(0)]
        m.d.comb += [self.error.eq(error), self.finished.eq(finished), self.fetched.eq(index)]
        return m
