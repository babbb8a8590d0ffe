"""One module's issue logic: its instructions in program order, each started when the tokens it pops
are there, handed to the module's sequencer, and its tokens pushed when the sequencer says done.

This is where the ISA's dependency tokens (``hw/ISA.md``) are honoured: pops happen as the
instruction starts, pushes as it completes, so an instruction's duration is its sequencer's
(``cmd`` accepted to ``done``); a NOP starts and completes in one cycle. FINISH (compute) is handed
to the engine top, which completes it once the other modules are quiet.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from onda.hw import isa
from onda.hw.isa import Module as IsaModule, Opcode

from .errors import EngineError
from .fetch import INDEX_BITS, QueueEntryLayout

__all__ = ["IssueUnit"]

_TARGETS = {IsaModule.LOAD: (Opcode.LOAD,), IsaModule.COMPUTE: (Opcode.GEMM, Opcode.VEC),
            IsaModule.STORE: (Opcode.STORE,)}


class IssueUnit(wiring.Component):
    """Issue logic of ``module`` (``isa.Module``).

    Members
    -------
    i : In(stream.Signature(QueueEntryLayout()))
        The module's instruction queue.
    count_prev, count_next : In(range(token_depth + 1))
        Tokens in the queues this module pops with ``pop_prev`` / ``pop_next`` (0 if it has none).
    pop_prev, pop_next, push_prev, push_next : Out(1)
        Token strobes, one cycle each, to the ``TokenQueues``.
    cmd_<op>, done_<op>, error_<op>
        For each opcode the module's sequencers execute: the decoded fields out, completion and
        refusal in.
    finish : Out(1)
        (compute) FINISH has started; ``finish_done`` from the top completes it.
    finish_done : In(1)
    halt : In(1)
        Take no further instruction (the engine stopped).
    error : Out(EngineError)
        A sequencer refused the current instruction (sticky); ``index`` is its program index.
    index : Out(32)
        Program index of the instruction executing or last executed.
    busy, wait : Out(1)
        This cycle the module executes an instruction / waits for a token (else it is idle).
    quiet : Out(1)
        Nothing executing and nothing queued.
    retire : Out(1)
        An instruction completes this cycle (its pushes are made); ``retire_index`` is its index.
    retire_index : Out(32)
    started : Out(1)
        An instruction starts this cycle (its pops are made); its index is ``i.payload.index``.
    """

    def __init__(self, module: IsaModule, token_depth: int = 255):
        self.module = IsaModule(module)
        self.targets = _TARGETS[self.module]
        members = {
            "i": In(stream.Signature(QueueEntryLayout())),
            "count_prev": In(range(token_depth + 1)), "count_next": In(range(token_depth + 1)),
            "pop_prev": Out(1), "pop_next": Out(1), "push_prev": Out(1), "push_next": Out(1),
            "finish": Out(1), "finish_done": In(1), "halt": In(1),
            "error": Out(EngineError), "index": Out(INDEX_BITS),
            "busy": Out(1), "wait": Out(1), "quiet": Out(1),
            "retire": Out(1), "retire_index": Out(INDEX_BITS), "started": Out(1),
        }
        for op in self.targets:
            name = op.name.lower()
            members |= {f"cmd_{name}": Out(stream.Signature(isa.field_layout(op))),
                        f"done_{name}": In(1), f"error_{name}": In(EngineError)}
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        head = self.i.payload.ins
        hdr = head.header
        executing = Signal()
        cur_op = Signal(Opcode)
        cur_push = Signal(2)  # push_prev, push_next of the executing instruction
        error = Signal(EngineError)

        done = Signal()
        for op in self.targets:
            with m.If(executing & (cur_op == op) & getattr(self, f"done_{op.name.lower()}")):
                m.d.comb += done.eq(1)
        with m.If(executing & (cur_op == Opcode.FINISH) & self.finish_done):
            m.d.comb += done.eq(1)

        tokens_ok = Signal()
        m.d.comb += tokens_ok.eq((~hdr.pop_prev | (self.count_prev != 0)) & (~hdr.pop_next | (self.count_next != 0)))
        is_nop = Signal()
        m.d.comb += is_nop.eq(hdr.opcode == Opcode.NOP)
        # A NOP pushes in the cycle it is taken: not in the cycle the previous instruction pushes.
        free = Signal()
        m.d.comb += free.eq(~executing | (done & ~is_nop))
        can = Signal()
        m.d.comb += can.eq(self.i.valid & tokens_ok & free & ~self.halt & (error == EngineError.NONE))

        accepted = Signal()
        for op in self.targets:
            cmd = getattr(self, f"cmd_{op.name.lower()}")
            m.d.comb += [cmd.payload.eq(getattr(head.body, op.name.lower())),
                         cmd.valid.eq(can & (hdr.opcode == op))]
            with m.If(cmd.valid & cmd.ready):
                m.d.comb += accepted.eq(1)
        is_finish = Signal()
        m.d.comb += is_finish.eq((self.module == IsaModule.COMPUTE) & (hdr.opcode == Opcode.FINISH))
        take = Signal()
        m.d.comb += take.eq(can & (is_nop | accepted | is_finish))
        m.d.comb += [self.i.ready.eq(take),
                     self.pop_prev.eq(take & hdr.pop_prev), self.pop_next.eq(take & hdr.pop_next),
                     self.finish.eq(take & is_finish)]
        nop_push = Signal(2)
        m.d.comb += nop_push.eq(Mux(take & is_nop, Cat(hdr.push_prev, hdr.push_next), 0))
        m.d.comb += [self.push_prev.eq((done & cur_push[0]) | nop_push[0]),
                     self.push_next.eq((done & cur_push[1]) | nop_push[1])]

        with m.If(done):
            m.d.sync += executing.eq(0)
        with m.If(take):
            m.d.sync += self.index.eq(self.i.payload.index)
            with m.If(~is_nop):
                m.d.sync += [executing.eq(1), cur_op.eq(hdr.opcode), cur_push.eq(Cat(hdr.push_prev, hdr.push_next))]

        for op in self.targets:
            err = getattr(self, f"error_{op.name.lower()}")
            with m.If(executing & (cur_op == op) & (err != EngineError.NONE) & (error == EngineError.NONE)):
                m.d.sync += error.eq(err)
        m.d.comb += [self.error.eq(error),
                     self.busy.eq(executing | (take & is_nop)),
                     self.wait.eq(~executing & self.i.valid & ~tokens_ok),
                     self.quiet.eq(~executing & ~self.i.valid),
                     self.retire.eq(done | (take & is_nop)), self.started.eq(take),
                     self.retire_index.eq(Mux(take & is_nop, self.i.payload.index, self.index))]
        return m

