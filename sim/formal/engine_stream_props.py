"""Stream handshakes of the engine's blocks (``hw/engine``), proved with SymbiYosys.

Each harness mirrors its block's ports as free top-level inputs (what the block reads) and
outputs (what it drives), assumes what the block's neighbours guarantee, and asserts (the
*stream rules*: once ``valid`` is up without ``ready``, next cycle ``valid`` is still up and the
payload unchanged):

- **MemoryArbiter** (2 clients, P = 1 byte, queues of 2 commands, bursts of 1..3 beats):

  - ``handshake`` (proof): the memory-side ``cmd`` and ``wdata`` streams and every client's
    ``rdata`` stream keep the stream rules;
  - ``reads``, ``writes`` (BMC): at most one client command is taken a cycle, and the memory
    gets no command no client made; every read beat the memory returns goes to exactly one
    client, with its payload, and every write beat it takes comes from exactly one client, with
    its payload; no client receives more read beats (sends more write beats) than its commands
    asked for; and for a read (write) command the solver picks (a free ``tag`` input marks it as
    it is accepted, so the check covers every command of every run): it reaches the memory
    unchanged and in the order commands were accepted, and the beats of its kind that belong
    to it (counted in the memory's order) go to (come from) its client and no other.

- **Fetch** (P = 16 bytes, so an instruction is 2 beats; prefetch and queues of 2):

  - ``queues`` (proof): the load, compute and store queue outputs keep the stream rules;
  - ``cmd`` (BMC): the memory ``cmd`` stream keeps them, ``wdata`` is never valid. This check
    found a real violation (fixed in ``fetch.py``): FINISH or a decode error while a request
    waited for the port withdrew it;
  - ``causality`` (BMC): queue entries out (taken, plus those offered now) never exceed the
    instructions the memory has returned (its beats over 2).

- **IssueUnit** (each of the three modules, proof): every ``cmd_<op>`` stream keeps the stream
  rules until ``halt``. ``halt`` withdraws an offered command by design: the engine has stopped
  (the sequencer took nothing) and the next run starts from reset.

- **LoadDMA**, **StoreDMA** (the icebreaker configuration with small buffers and memory, which
  only narrows counters): the load DMA's memory ``cmd`` and ``wdata`` (never valid) and the
  store DMA's ``cmd`` keep the stream rules (proof); the store DMA's ``wdata`` does (BMC).

What the harnesses assume: every input stream keeps the stream rules (clients' ``cmd`` and
``wdata``, the memory's ``rdata``, an issue unit's instruction queue, a DMA's ``cmd``); the
memory returns no read beat it does not owe (beats of the read commands it took, minus those
it returned); Fetch's ``start`` comes only in the first cycle (the engine pulses it the cycle
after the core's reset); an issue unit's token counts fall only by its own pops, and a
sequencer never pulses ``done`` with its error up; a buffer's read data changes only the cycle
after a read (``ByteReadSignature``).

*Proof* is k-induction (unbounded). The harnesses are elaborated for ``platform="formal"``, so
``amaranth.lib.fifo`` asserts (and the proof proves) its FIFOs' pointer/level invariants, which
the arbiter's ``wdata`` proof needs. *BMC* is bounded to the depth in the table (:func:`tasks`),
where k-induction would need an invariant over the block's internal state, which a harness
outside the block cannot state: the arbiter's routing, the contents of its command queues;
Fetch's ``cmd``, that its prefetch credit plus the instructions requested and not yet
dispatched is the prefetch depth; Fetch's causality, its FIFOs' contents; the store DMA's
``wdata``, that a beat waits only in its RUN state and none is read after the last (plain
k-induction finds unreachable states, stalled for longer than k cycles, that break each).
The depths reach the interesting cases (cover checks in ``tests/engine/test_formal_engine_streams``):
the arbiter's (10) three read or write bursts from both clients with all their beats (at least
5) moved, the third wrapping its depth-2 queue, by step 7; the store DMA's (30) a whole STORE
of 3 write beats, one stalled, by step 11; Fetch's ``cmd`` (24) found the withdrawal above at
step 7.

Run as ``python -m onda.sim.formal.engine_stream_props [block ...]`` (part of ``make formal``):
one sby task per row in ``build/formal/engine-<block>-<check>/``, a table of results, exit
status 1 if any fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from amaranth.hdl import Assert, Assume, Cat, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .sby import MAP_MEMORIES, assert_stable, assume_stable, print_header, print_row, prove

__all__ = ["ArbiterHarness", "DMAHarness", "FetchHarness", "Harness", "IssueHarness", "counter", "main", "mirror",
           "prove_task", "small_cfg", "tasks", "total"]

BEATS = 3  # longest burst the arbiter's clients ask for in the proofs
COUNT_BITS = 5  # the harnesses' counters of commands and beats in flight (a handful at most)
PLATFORM = "formal"


def _ports(obj, signature):
    """``{path: (member, value)}`` of every port of ``signature`` on ``obj``."""
    return {path: (member, Value.cast(value)) for path, member, value in signature.flatten(obj)}


def mirror(m, outer, inner, route=lambda path: path, skip=()):
    """Drive every port of ``inner`` from / onto the port of ``outer`` at ``route(path)`` (the two
    have the same members; ``outer`` may have more), except those under a path in ``skip``."""
    outs = _ports(outer, outer.signature)
    for path, (member, value) in _ports(inner, inner.signature).items():
        if any(path[:len(s)] == tuple(s) for s in skip):
            continue
        other = outs[route(path)][1]
        if member.flow == In:
            m.d.comb += value.eq(other)
        else:
            m.d.comb += other.eq(value)


def counter(m, name, inc, width=COUNT_BITS):
    """A register that adds ``inc`` every cycle (from 0)."""
    c = Signal(width, name=name)
    m.d.sync += c.eq(c + inc)
    return c


def total(values):
    """The sum of ``values`` (bits or unsigned numbers), wide enough not to wrap."""
    return sum(Value.cast(v).as_unsigned() for v in values)


class Harness(wiring.Component):
    """``dut``'s ports as the harness's own (free inputs, observable outputs), plus ``extra``
    members; subclasses state the properties in :meth:`properties`. Reset is assumed low and the
    sync domain comes from outside, as in ``stream_props``."""

    def __init__(self, dut, extra=None):
        self.dut = dut
        super().__init__({**dut.signature.members, **(extra or {})})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += Assume(~ResetSignal())
        m.submodules.dut = self.dut
        mirror(m, self, self.dut)
        self.properties(m, self.dut)
        return m

    def properties(self, m, dut):
        raise NotImplementedError


def _memory_owes(m, mem, name):
    """Assume the memory behind port ``mem`` keeps its rules: ``rdata`` stable while stalled,
    and no read beat it does not owe."""
    assume_stable(m, mem.rdata, f"{name}_rdata")
    took_read = mem.cmd.valid & mem.cmd.ready & ~mem.cmd.payload.write
    owed = counter(m, f"{name}_owed", Mux(took_read, mem.cmd.payload.beats, 0) - (mem.rdata.valid & mem.rdata.ready))
    with m.If(mem.rdata.valid):
        m.d.comb += Assume(owed != 0)


class ArbiterHarness(Harness):
    """The :class:`~onda.hw.engine.memory_port.MemoryArbiter` properties (module docstring);
    ``check`` is ``"handshake"`` or ``"routing"``, the latter of the beats of ``kinds`` (``"r"``
    reads, ``"w"`` writes, ``"rw"`` both in one, slower, task)."""

    def __init__(self, dut, n, check, kinds="rw"):
        self.n, self.check, self.kinds = n, check, kinds
        super().__init__(dut, {"tag": In(1)} if check == "routing" else None)

    def properties(self, m, dut):
        from onda.hw.engine.memory_port import MemCmdLayout

        n, mem, clients = self.n, dut.mem, dut.clients
        for i, c in enumerate(clients):
            assume_stable(m, c.cmd, f"c{i}_cmd")
            assume_stable(m, c.wdata, f"c{i}_wdata")
            with m.If(c.cmd.valid):
                m.d.comb += Assume((c.cmd.payload.beats >= 1) & (c.cmd.payload.beats <= BEATS))
        _memory_owes(m, mem, "mem")
        if self.check == "handshake":
            assert_stable(m, mem.cmd, "mem_cmd")
            assert_stable(m, mem.wdata, "mem_wdata")
            for i, c in enumerate(clients):
                assert_stable(m, c.rdata, f"c{i}_rdata")
            return

        took = mem.cmd.valid & mem.cmd.ready
        beat = {"r": mem.rdata.valid & mem.rdata.ready, "w": mem.wdata.valid & mem.wdata.ready}
        acc = [c.cmd.valid & c.cmd.ready for c in clients]
        c_beat = {"r": [c.rdata.valid & c.rdata.ready for c in clients],
                  "w": [c.wdata.valid & c.wdata.ready for c in clients]}
        any_acc = Signal()
        acc_cmd = Signal(MemCmdLayout())
        acc_client = Signal(range(n))
        m.d.comb += any_acc.eq(Cat(*acc).any())
        for i, c in enumerate(clients):
            with m.If(acc[i]):
                m.d.comb += [acc_cmd.eq(c.cmd.payload), acc_client.eq(i)]
        is_kind = {"r": ~acc_cmd.write, "w": acc_cmd.write}
        # Every count is of things in flight (taken on one side, not yet on the other), so it stays
        # small: an assertion catches it before it would go below zero.

        # One command a cycle; none at the memory that no client made.
        in_flight = counter(m, "cmds_in_flight", any_acc - took)
        m.d.comb += [Assert(total(acc) <= 1), Assert(~took | (in_flight != 0))]
        # Each beat between the memory and exactly one client, with its payload.
        m.d.comb += [Assert(total(c_beat["r"]) == beat["r"]), Assert(total(c_beat["w"]) == beat["w"]),
                     Assert(total(c.rdata.valid for c in clients) <= 1),
                     Assert(total(c.wdata.ready for c in clients) <= 1)]
        for i, c in enumerate(clients):
            with m.If(c.rdata.valid):
                m.d.comb += [Assert(mem.rdata.valid),
                             Assert(Value.cast(c.rdata.payload) == Value.cast(mem.rdata.payload))]
            with m.If(c_beat["w"][i]):
                m.d.comb += Assert(Value.cast(c.wdata.payload) == Value.cast(mem.wdata.payload))
            # Never more beats than its commands asked for.
            for k in self.kinds:
                owed = counter(m, f"c{i}_owed_{k}", Mux(acc[i] & is_kind[k], acc_cmd.beats, 0) - c_beat[k][i])
                m.d.comb += Assert(~c_beat[k][i] | (owed != 0))

        # The tagged command: how many commands are ahead of it on the way to the memory, and how
        # many beats of its kind ahead of it (requested before it, not yet moved).
        ahead = {k: counter(m, f"beats_ahead_{k}", Mux(any_acc & is_kind[k], acc_cmd.beats, 0) - beat[k])
                 for k in ("r", "w")}
        tagged = Signal()
        t_cmd = Signal(MemCmdLayout())
        t_client = Signal(range(n))
        t_cmds = Signal(COUNT_BITS)  # commands ahead of it not yet at the memory
        t_skip = Signal(COUNT_BITS)  # beats of its kind ahead of it not yet moved
        t_left = Signal(COUNT_BITS)  # its beats not yet moved
        t_sent = Signal()  # it has reached the memory
        with m.If(self.tag & any_acc & ~tagged & Cat(*(is_kind[k] for k in self.kinds)).any()):
            m.d.sync += [tagged.eq(1), t_cmd.eq(acc_cmd), t_client.eq(acc_client), t_cmds.eq(in_flight - took),
                         t_skip.eq(Mux(acc_cmd.write, ahead["w"] - beat["w"], ahead["r"] - beat["r"])),
                         t_left.eq(acc_cmd.beats)]
        with m.If(tagged & took & ~t_sent):
            with m.If(t_cmds != 0):
                m.d.sync += t_cmds.eq(t_cmds - 1)
            with m.Else():
                m.d.sync += t_sent.eq(1)
                m.d.comb += Assert(Value.cast(mem.cmd.payload) == Value.cast(t_cmd))
        t_beat = Mux(t_cmd.write, beat["w"], beat["r"])
        with m.If(tagged & t_beat):
            with m.If(t_skip != 0):
                m.d.sync += t_skip.eq(t_skip - 1)
            with m.Elif(t_left != 0):
                m.d.sync += t_left.eq(t_left - 1)
                for i in range(n):
                    m.d.comb += Assert(Mux(t_cmd.write, c_beat["w"][i], c_beat["r"][i]) == (t_client == i))


class FetchHarness(Harness):
    """The :class:`~onda.hw.engine.fetch.Fetch` properties (module docstring); ``check`` is
    ``"queues"``, ``"cmd"`` or ``"causality"``."""

    def __init__(self, dut, beats_per_ins, check):
        self.beats_per_ins, self.check = beats_per_ins, check
        super().__init__(dut)

    def properties(self, m, dut):
        first = Signal(init=1)
        m.d.sync += first.eq(0)
        m.d.comb += Assume(~dut.start | first)
        _memory_owes(m, dut.mem, "mem")
        queues = (dut.load, dut.compute, dut.store)
        if self.check == "queues":
            for name, q in zip(("load", "compute", "store"), queues):
                assert_stable(m, q, name)
            return
        if self.check == "cmd":
            assert_stable(m, dut.mem.cmd, "mem_cmd")
            m.d.comb += Assert(~dut.mem.wdata.valid)
            return
        beats = counter(m, "beats_in", dut.mem.rdata.valid & dut.mem.rdata.ready, width=8)
        out = counter(m, "entries_out", total(q.valid & q.ready for q in queues), width=8)
        m.d.comb += Assert((out + total(q.valid for q in queues)) * self.beats_per_ins <= beats)


class IssueHarness(Harness):
    """The :class:`~onda.hw.engine.issue.IssueUnit` properties (module docstring)."""

    def __init__(self, dut, targets, token_depth):
        self.targets, self.token_depth = targets, token_depth
        super().__init__(dut)

    def properties(self, m, dut):
        from onda.hw.engine.errors import EngineError

        assume_stable(m, dut.i, "i")
        for which in ("prev", "next"):
            count, pop = getattr(dut, f"count_{which}"), getattr(dut, f"pop_{which}")
            last = Signal.like(count, name=f"last_{which}")
            popped = Signal(name=f"popped_{which}")
            m.d.sync += [last.eq(count), popped.eq(pop)]
            m.d.comb += [Assume(count <= self.token_depth), Assume(count + popped >= last)]
        for op in self.targets:
            name = op.name.lower()
            done, err = getattr(dut, f"done_{name}"), getattr(dut, f"error_{name}")
            m.d.comb += Assume(~done | (err == EngineError.NONE))
            assert_stable(m, getattr(dut, f"cmd_{name}"), f"cmd_{name}", unless=dut.halt)


class DMAHarness(Harness):
    """The load and store DMA properties (module docstring), on the memory streams ``streams``."""

    def __init__(self, dut, streams=("cmd", "wdata")):
        self.streams = streams
        super().__init__(dut)

    def properties(self, m, dut):
        assume_stable(m, dut.cmd, "cmd")
        assume_stable(m, dut.mem.rdata, "mem_rdata")
        started = Signal()
        m.d.sync += started.eq(1)
        for name in ("act_r", "out_r"):  # the store DMA's buffer read ports
            port = getattr(dut, name, None)
            if port is None:
                continue
            was_en = Signal(name=f"{name}_was_en")
            last = Signal.like(port.data, name=f"{name}_last")
            m.d.sync += [was_en.eq(port.en), last.eq(port.data)]
            with m.If(started & ~was_en):
                m.d.comb += Assume(Value.cast(port.data) == Value.cast(last))
        for name in self.streams:
            assert_stable(m, getattr(dut.mem, name), f"mem_{name}")


# -- the tasks ------------------------------------------------------------------------------------

ARBITER_N, ARBITER_P, ARBITER_DEPTH = 2, 1, 2
FETCH_P, FETCH_DEPTH = 16, 2
TOKEN_DEPTH = 3
FETCH_CMD_DEPTH = 24
FETCH_CAUSALITY_DEPTH = 18  # 24 takes minutes (the queues' 288-bit entries are in the cone)
STORE_BMC_DEPTH = 30
ROUTING_DEPTH = 10  # three bursts of a kind from both clients, all beats moved, by step 7


def small_cfg():
    """The icebreaker configuration with small buffers and memory: the DMAs' widths shrink; their
    logic is the same."""
    from onda.hw.config import load_config

    return dataclasses.replace(load_config("icebreaker"), act_bytes=512, wgt_bytes=512, out_bytes=512,
                               param_bytes=512, mem_size_bytes=1024)


def _same(dut):
    return dut


def arbiter(check, wrap=None, kinds="rw"):
    from onda.hw.engine.memory_port import MemoryArbiter

    dut = MemoryArbiter(ARBITER_N, ARBITER_P, depth=ARBITER_DEPTH)
    return ArbiterHarness((wrap or _same)(dut), ARBITER_N, check, kinds)


def fetch(check, wrap=None):
    from onda.hw.engine.fetch import Fetch

    dut = Fetch(FETCH_P, queue_depth=FETCH_DEPTH, prefetch=FETCH_DEPTH)
    return FetchHarness((wrap or _same)(dut), dut.beats_per_ins, check)


def issue(module, wrap=None):
    from onda.hw.engine.issue import IssueUnit

    dut = IssueUnit(module, token_depth=TOKEN_DEPTH)
    return IssueHarness((wrap or _same)(dut), dut.targets, TOKEN_DEPTH)


def dma(kind, streams, wrap=None):
    from onda.hw.engine.load_dma import LoadDMA
    from onda.hw.engine.store_dma import StoreDMA

    return DMAHarness((wrap or _same)({"load": LoadDMA, "store": StoreDMA}[kind](small_cfg())), streams)


def tasks():
    """``(block, check, mode, depth, factory, what)`` for every property family; ``factory(wrap)``
    builds the harness around ``wrap(block)`` (``wrap`` breaks it, for the refutation tests; None
    for the block itself)."""
    from onda.hw.isa import Module as IsaModule

    rows = [
        ("arbiter", "handshake", "prove", 4, lambda w: arbiter("handshake", w),
         "cmd, wdata, rdata valid held + stable (proof)"),
        ("arbiter", "reads", "bmc", ROUTING_DEPTH, lambda w: arbiter("routing", w, "r"),
         f"read beats to their command's client (BMC {ROUTING_DEPTH})"),
        ("arbiter", "writes", "bmc", ROUTING_DEPTH, lambda w: arbiter("routing", w, "w"),
         f"write beats from their command's client (BMC {ROUTING_DEPTH})"),
        ("fetch", "queues", "prove", 4, lambda w: fetch("queues", w),
         "load, compute, store valid held + stable (proof)"),
        ("fetch", "cmd", "bmc", FETCH_CMD_DEPTH, lambda w: fetch("cmd", w),
         f"mem cmd valid held + stable (BMC {FETCH_CMD_DEPTH})"),
        ("fetch", "causality", "bmc", FETCH_CAUSALITY_DEPTH, lambda w: fetch("causality", w),
         f"no queue entry not fetched (BMC {FETCH_CAUSALITY_DEPTH})"),
    ]
    for mod in IsaModule:
        rows.append((f"issue_{mod.name.lower()}", "handshake", "prove", 3, lambda w, mod=mod: issue(mod, w),
                     "cmd streams held + stable until halt (proof)"))
    rows += [
        ("load_dma", "handshake", "prove", 4, lambda w: dma("load", ("cmd", "wdata"), w),
         "mem cmd, wdata valid held + stable (proof)"),
        ("store_dma", "cmd", "prove", 4, lambda w: dma("store", ("cmd",), w),
         "mem cmd valid held + stable (proof)"),
        ("store_dma", "wdata", "bmc", STORE_BMC_DEPTH, lambda w: dma("store", ("wdata",), w),
         f"mem wdata valid held + stable (BMC {STORE_BMC_DEPTH})"),
    ]
    return rows


def prove_task(block, check, wrap=None, name=None, mode=None, depth=None):
    """Run the task ``(block, check)`` of :func:`tasks`, on the block broken by ``wrap`` if given
    (under the task name ``name``; in ``mode`` to ``depth`` instead of the task's own, if given);
    returns ``prove``'s (passed, seconds, log tail)."""
    for b, c, task_mode, task_depth, factory, _ in tasks():
        if (b, c) == (block, check):
            return prove(name or f"engine-{b}-{c}", lambda: factory(wrap), depth or task_depth,
                         mode=mode or task_mode, platform=PLATFORM, script=MAP_MEMORIES)
    raise KeyError((block, check))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Prove the engine blocks' stream handshakes.")
    ap.add_argument("blocks", nargs="*", help="subset of block names")
    args = ap.parse_args(argv)
    failed = 0
    print_header()
    for block, check, mode, depth, factory, what in tasks():
        if args.blocks and block not in args.blocks:
            continue
        task = f"engine-{block}-{check}"
        ok, seconds, tail = prove(task, lambda: factory(None), depth, mode=mode, platform=PLATFORM,
                                  script=MAP_MEMORIES)
        print_row(block, what, ok, seconds, task, tail)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
