"""The whole engine: the blocks of ``hw/engine`` around the four on-chip buffers, one memory port,
one register bus. It executes ``.onda`` programs as ``hw/ISA.md`` defines them.

::

    csr bus -> CsrFile -> start, PROG_ADDR, PROG_COUNT        STATUS, ERROR, CYCLES, counters <-
                    |
    memory port <- MemoryArbiter <- Fetch (program) -> queues -> IssueUnit x3 <-> TokenQueues
                                 <- LoadDMA  <- load issue      (ACT, WGT, PARAM writes)
                                 <- StoreDMA <- store issue     (OUT, ACT reads)
                                    GemmUnit, VecUnit <- compute issue (ACT/WGT/PARAM reads, OUT writes)

A write of 1 to ``CTRL`` resets every block but the register file (the buffers keep their
contents; the token queues and counters restart) and starts fetching. The run ends *done* when
FINISH completes (the load and store modules quiet and every token queue empty) or *stopped*
(once the memory port is quiet: no beat of it is left in flight for a restart to see) on
the first error: an instruction a block refuses, a token queue overflowing, FINISH with tokens
left (``TOKEN_UNDERFLOW``), or no module able to progress (every one waiting for a token that no
instruction will push: also ``TOKEN_UNDERFLOW``, at the waiting instruction). The engine never
hangs on a bad program.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from onda.hw.config import EngineConfig
from onda.hw.isa import QUEUES, TOKEN_QUEUES, Module as IsaModule

from .buffers import act_buffer, out_buffer, param_buffer, wgt_buffer
from .csr import CsrBusSignature, CsrFile
from .errors import EngineError
from .fetch import INDEX_BITS, Fetch
from .gemm_unit import GemmUnit
from .issue import IssueUnit
from .load_dma import LoadDMA
from .memory_port import MemoryArbiter, MemoryPortSignature
from .registers import STATUS_BITS
from .store_dma import StoreDMA
from .tokens import TokenQueues
from .vec_unit import VecUnit

__all__ = ["Engine", "TraceSignature"]

STUCK_CYCLES = 8  # no module able to progress for this long: a token that will never come
QUEUE_DEPTH = 16  # instructions each module queue holds
PREFETCH = 8      # instructions fetch reads ahead of dispatch


class TraceSignature(wiring.Signature):
    """What a simulation harness watches: ``retire[m]`` when module ``m`` (``isa.Module``: load,
    compute, store) completes the instruction ``<module>_index`` this cycle, ``start[m]`` when it
    starts ``<module>_start_index``."""

    def __init__(self):
        super().__init__({"retire": Out(len(IsaModule)), "start": Out(len(IsaModule)),
                          **{f"{mod.name.lower()}_index": Out(INDEX_BITS) for mod in IsaModule},
                          **{f"{mod.name.lower()}_start_index": Out(INDEX_BITS) for mod in IsaModule}})


class Engine(wiring.Component):
    """The onda engine of configuration ``cfg``.

    Members
    -------
    csr : In(CsrBusSignature())
        The host's register bus (``registers.REGISTERS``).
    mem : Out(MemoryPortSignature(mem_port_bits // 8))
        The one memory port (program, weights, activations).
    trace : Out(TraceSignature())
        Instruction retirements, for simulation harnesses (left unconnected on a board).
    running, done, failed : Out(1)
        STATUS's bits as wires, for a board's LEDs and its link (which answers BUSY while running).
    """

    def __init__(self, cfg: EngineConfig, queue_depth: int = QUEUE_DEPTH, prefetch: int = PREFETCH):
        self.cfg = cfg
        self.P = cfg.mem_port_bits // 8
        self.queue_depth, self.prefetch = queue_depth, prefetch
        super().__init__({
            "csr": In(CsrBusSignature()),
            "mem": Out(MemoryPortSignature(self.P)),
            "trace": Out(TraceSignature()),
            "running": Out(1), "done": Out(1), "failed": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.csr = csr = CsrFile()
        wiring.connect(m, wiring.flipped(self.csr), csr.bus)

        core = Module()
        restart = Signal()  # resets the core the cycle CTRL is written
        m.d.comb += restart.eq(csr.start)
        m.submodules.core = ResetInserter(restart)(core)

        core.submodules.fetch = fetch = Fetch(self.P, self.queue_depth, self.prefetch)
        core.submodules.tokens = tokens = TokenQueues()
        core.submodules.arbiter = arbiter = MemoryArbiter(3, self.P)
        issue = {mod: IssueUnit(mod) for mod in IsaModule}
        for mod, unit in issue.items():
            core.submodules[f"issue_{mod.name.lower()}"] = unit
        core.submodules.load = load = LoadDMA(cfg)
        core.submodules.store = store = StoreDMA(cfg)
        core.submodules.gemm = gemm = GemmUnit(cfg)
        core.submodules.vec = vec = VecUnit(cfg)
        # Buffers keep their contents across runs: outside the reset.
        m.submodules.act = act = act_buffer(cfg)
        m.submodules.wgt = wgt = wgt_buffer(cfg)
        m.submodules.param = param = param_buffer(cfg)
        m.submodules.out = out = out_buffer(cfg)

        # -- memory ---------------------------------------------------------------------------------
        wiring.connect(core, fetch.mem, arbiter.clients[0])
        wiring.connect(core, load.mem, arbiter.clients[1])
        wiring.connect(core, store.mem, arbiter.clients[2])
        wiring.connect(m, arbiter.mem, wiring.flipped(self.mem))

        # -- buffer ports -----------------------------------------------------------------------------
        wiring.connect(m, load.act_w, act.w_load)
        wiring.connect(m, load.wgt_w, wgt.w_load)
        wiring.connect(m, load.param_w, param.w_load)
        wiring.connect(m, store.out_r, out.r_store)
        wiring.connect(m, store.act_r, act.r_store)
        wiring.connect(m, gemm.act_r, act.r_gemm)
        wiring.connect(m, gemm.wgt_r, wgt.r_gemm)
        wiring.connect(m, gemm.param_r, param.r_gemm)
        wiring.connect(m, gemm.out_w, out.w_gemm)
        wiring.connect(m, vec.r_vec_a, act.r_vec_a)
        wiring.connect(m, vec.r_vec_b, act.r_vec_b)
        wiring.connect(m, vec.r_vec, param.r_vec)
        wiring.connect(m, vec.w_vec, out.w_vec)

        # -- instructions -------------------------------------------------------------------------------
        wiring.connect(core, fetch.load, issue[IsaModule.LOAD].i)
        wiring.connect(core, fetch.compute, issue[IsaModule.COMPUTE].i)
        wiring.connect(core, fetch.store, issue[IsaModule.STORE].i)
        seqs = {"load": (issue[IsaModule.LOAD], load), "store": (issue[IsaModule.STORE], store),
                "gemm": (issue[IsaModule.COMPUTE], gemm), "vec": (issue[IsaModule.COMPUTE], vec)}
        for name, (unit, seq) in seqs.items():
            wiring.connect(core, getattr(unit, f"cmd_{name}"), seq.cmd)
            core.d.comb += [getattr(unit, f"done_{name}").eq(seq.done), getattr(unit, f"error_{name}").eq(seq.error)]

        # -- tokens: each flag of each module onto its queue (isa.TOKEN_QUEUES) --------------------------
        for mod, unit in issue.items():
            pop_prev, pop_next, push_prev, push_next = TOKEN_QUEUES[mod]
            for q, sig in ((pop_prev, unit.pop_prev), (pop_next, unit.pop_next)):
                if q is not None:
                    core.d.comb += getattr(tokens, f"pop_{q}").eq(sig)
            for q, sig in ((push_prev, unit.push_prev), (push_next, unit.push_next)):
                if q is not None:
                    core.d.comb += getattr(tokens, f"push_{q}").eq(sig)
            core.d.comb += [unit.count_prev.eq(getattr(tokens, f"count_{pop_prev}") if pop_prev else 0),
                            unit.count_next.eq(getattr(tokens, f"count_{pop_next}") if pop_next else 0)]

        # -- run state ----------------------------------------------------------------------------------------
        running = Signal()
        done = Signal()
        error = Signal(EngineError)
        error_index = Signal(INDEX_BITS)
        m.d.sync += fetch.start.eq(0)
        with m.If(restart):
            m.d.sync += [running.eq(1), done.eq(0), error.eq(EngineError.NONE), error_index.eq(0), fetch.start.eq(1)]
        core.d.comb += [fetch.addr.eq(csr.prog_addr), fetch.count.eq(csr.prog_count)]
        halt = Signal()
        m.d.comb += halt.eq(~running | (error != EngineError.NONE))
        core.d.comb += fetch.halt.eq(halt)
        for unit in issue.values():
            core.d.comb += unit.halt.eq(halt)

        # FINISH completes once everything else is quiet; tokens left over are an error.
        comp = issue[IsaModule.COMPUTE]
        finishing = Signal()
        with core.If(comp.finish):
            core.d.sync += finishing.eq(1)
        quiet = Signal()
        m.d.comb += quiet.eq(issue[IsaModule.LOAD].quiet & issue[IsaModule.STORE].quiet & fetch.quiet)
        tokens_left = Signal()
        m.d.comb += tokens_left.eq(Cat(*(getattr(tokens, f"count_{q}") != 0 for q in QUEUES)).any())
        finish_now = Signal()
        m.d.comb += [finish_now.eq(finishing & quiet & running & (error == EngineError.NONE)),
                     comp.finish_done.eq(finish_now & ~tokens_left)]

        # No module can progress: each waits for a token or has nothing queued, nothing executes,
        # and fetch has nothing more to give (finished, or stalled on a queue whose module waits).
        units = list(issue.values())
        # (A compute module finishing waits on the others: it cannot progress by itself.)
        stuck = Signal()
        m.d.comb += stuck.eq(running & Cat(*(u.wait | u.quiet | (finishing if u is comp else 0) for u in units)).all()
                             & Cat(*(u.wait for u in units)).any() & (fetch.finished | fetch.stall | fetch.drained))
        stuck_for = Signal(range(STUCK_CYCLES + 1))
        m.d.sync += stuck_for.eq(Mux(stuck, Mux(stuck_for == STUCK_CYCLES, stuck_for, stuck_for + 1), 0))
        waiting_index = Signal(INDEX_BITS)
        for u in reversed(units):
            with m.If(u.wait):
                m.d.comb += waiting_index.eq(u.i.payload.index)

        # The first error stops the run.
        fault = Signal(EngineError)
        fault_index = Signal(INDEX_BITS)
        with m.If(fetch.error != EngineError.NONE):
            m.d.comb += [fault.eq(fetch.error), fault_index.eq(fetch.error_index)]
        for u in units:
            with m.Elif(u.error != EngineError.NONE):
                m.d.comb += [fault.eq(u.error), fault_index.eq(u.index)]
        with m.Elif(tokens.overflow):
            m.d.comb += fault.eq(EngineError.TOKEN_OVERFLOW)
            for u in units:
                with m.If(u.push_prev | u.push_next):
                    m.d.comb += fault_index.eq(u.index)
        with m.Elif(finish_now & tokens_left):
            m.d.comb += [fault.eq(EngineError.TOKEN_UNDERFLOW), fault_index.eq(comp.index)]
        with m.Elif(stuck_for == STUCK_CYCLES):
            m.d.comb += [fault.eq(EngineError.TOKEN_UNDERFLOW), fault_index.eq(waiting_index)]
        with m.If(running & ~restart & (error == EngineError.NONE) & (fault != EngineError.NONE)):
            m.d.sync += [error.eq(fault), error_index.eq(fault_index)]
        # Stopped only once the memory port is quiet: no instruction still moving data (but the
        # refused one, and a FINISH that will not complete), nothing offered or owed. A restart
        # then finds no beat of the stopped run in flight.
        drained = Signal()
        m.d.comb += drained.eq(arbiter.idle & Cat(*(~u.busy | (u.error != EngineError.NONE)
                                                    | ((finishing if u is comp else 0)) for u in units)).all())
        with m.If(running & ~restart & (error != EngineError.NONE) & drained):
            m.d.sync += running.eq(0)
        with m.If(comp.finish_done):
            m.d.sync += [done.eq(1), running.eq(0)]

        # -- counters and status ----------------------------------------------------------------------------------
        cycles = Signal(64)
        with m.If(restart):
            m.d.sync += cycles.eq(0)
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
        counters = {"fetch_stall": fetch.stall}
        for mod, u in issue.items():
            name = mod.name.lower()
            counters |= {f"{name}_busy": u.busy, f"{name}_wait": u.wait, f"{name}_idle": ~u.busy & ~u.wait}
        for name, cond in counters.items():
            c = Signal(32, name=f"count_{name}")
            with m.If(restart):
                m.d.sync += c.eq(0)
            with m.Elif(running & cond):
                m.d.sync += c.eq(c + 1)
            m.d.comb += getattr(csr, name).eq(c)
        m.d.comb += [self.running.eq(running), self.done.eq(done),
                     self.failed.eq((error != EngineError.NONE) & ~running),
                     csr.cycles.eq(cycles), csr.fetched.eq(fetch.fetched),
                     csr.status.eq((self.running << STATUS_BITS["running"]) | (self.done << STATUS_BITS["done"])
                                   | (self.failed << STATUS_BITS["error"])),
                     csr.error.eq(error), csr.error_index.eq(error_index),
                     csr.fingerprint.eq(int(cfg.fingerprint[:8], 16))]
        for mod, u in issue.items():
            m.d.comb += [self.trace.retire[mod].eq(u.retire), self.trace.start[mod].eq(u.started),
                         getattr(self.trace, f"{mod.name.lower()}_index").eq(u.retire_index),
                         getattr(self.trace, f"{mod.name.lower()}_start_index").eq(u.i.payload.index)]
        return m
