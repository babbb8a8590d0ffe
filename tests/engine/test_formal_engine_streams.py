"""SymbiYosys proofs of the engine blocks' stream handshakes (``onda.sim.formal.engine_stream_props``),
and for each property family a deliberately broken block the same harness must refute (so no proof
is vacuous). A broken block is the real one inside a :class:`Tamper` wrapper that breaks one of its
streams (a payload bit flipped or ``valid`` dropped after a stall, ``valid`` up before any input)
or crosses two clients' streams. Cover checks show the bounded checks' depths reach the cases
they are meant for.

Every refutation must be a reachable counterexample (BMC ``FAIL``), not just a failed induction
step. The unbounded proofs and their refutations take 1-5 s each and run in ``make test``, with
Fetch's ``cmd`` check (4 s): it found a real withdrawal of a memory request (fixed in
``hw/engine/fetch.py``) and is its regression. The other bounded checks (the arbiter's routing
takes 10-20 s a kind), their refutations and the covers are marked slow (``make test-slow``)."""

import pytest
from amaranth.hdl import Cover, Module, Mux, Signal, Value
from amaranth.lib import wiring

from onda.sim.formal.engine_stream_props import (ARBITER_DEPTH, ARBITER_N, ARBITER_P, PLATFORM, ROUTING_DEPTH,
                                                 STORE_BMC_DEPTH, ArbiterHarness, DMAHarness, counter, mirror,
                                                 prove_task, small_cfg, tasks, total)
from onda.sim.formal.sby import MAP_MEMORIES, prove

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")

def _tasks(fast_bmc=()):
    """Every task of ``tasks()``; the bounded (BMC) ones marked slow, except those in ``fast_bmc``."""
    return [pytest.param(b, c, marks=[pytest.mark.slow] if mode == "bmc" and (b, c) not in fast_bmc else [],
                         id=f"{b}-{c}")
            for b, c, mode, *_ in tasks()]


def _resolve(obj, path):
    for p in path:
        obj = obj[p] if isinstance(p, int) else getattr(obj, p)
    return obj


def break_stream(m, outer, inner, how):
    """Pass the output stream ``inner`` on as ``outer``, broken: ``"flip"`` flips payload bit 0 in
    the cycle after a stall, ``"drop"`` pulls ``valid`` low then, ``"speak"`` holds ``valid`` up
    from the first cycle until a transfer (an output without input)."""
    stalled = Signal()
    m.d.sync += stalled.eq(outer.valid & ~outer.ready)
    m.d.comb += inner.ready.eq(outer.ready)
    payload = Value.cast(inner.payload)
    valid = inner.valid
    if how == "flip":
        payload = payload ^ stalled
    elif how == "drop":
        valid = valid & ~stalled
    elif how == "speak":
        talked = Signal()
        with m.If(outer.valid & outer.ready):
            m.d.sync += talked.eq(1)
        valid = valid | ~talked
    else:
        raise ValueError(how)
    m.d.comb += [outer.valid.eq(valid), Value.cast(outer.payload).eq(payload)]


class Tamper(wiring.Component):
    """``dut`` with the same ports, except: port ``p`` of the tamper is the block's port
    ``route(p)`` (paths as ``signature.flatten`` gives them), and the output streams at the paths of
    ``broken`` go through :func:`break_stream` with ``how``."""

    def __init__(self, dut, broken=(), how="flip", route=lambda path: path):
        self.inner, self.broken, self.how, self.route = dut, [tuple(p) for p in broken], how, route
        super().__init__(dict(dut.signature.members))

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        mirror(m, self, self.inner, self.route, skip=self.broken)
        for path in self.broken:
            break_stream(m, _resolve(self, path), _resolve(self.inner, path), self.how)
        return m


def swap_clients(name):
    """A route that crosses clients 0 and 1 on their ``name`` stream (``rdata`` or ``wdata``)."""
    def route(path):
        if path[0] == "clients" and path[2] == name:
            return ("clients", 1 - path[1], *path[2:])
        return path
    return route


# (block, check, how the block is broken): one per property family of tasks().
BROKEN = {
    ("arbiter", "handshake"): lambda d: Tamper(d, [("mem", "cmd")]),
    ("arbiter", "reads"): lambda d: Tamper(d, route=swap_clients("rdata")),
    ("arbiter", "writes"): lambda d: Tamper(d, route=swap_clients("wdata")),
    ("fetch", "queues"): lambda d: Tamper(d, [("compute",)]),
    ("fetch", "cmd"): lambda d: Tamper(d, [("mem", "cmd")], how="drop"),
    ("fetch", "causality"): lambda d: Tamper(d, [("store",)], how="speak"),
    ("issue_load", "handshake"): lambda d: Tamper(d, [("cmd_load",)]),
    ("issue_compute", "handshake"): lambda d: Tamper(d, [("cmd_vec",)], how="drop"),
    ("issue_store", "handshake"): lambda d: Tamper(d, [("cmd_store",)]),
    ("load_dma", "handshake"): lambda d: Tamper(d, [("mem", "cmd")]),
    ("store_dma", "cmd"): lambda d: Tamper(d, [("mem", "cmd")], how="drop"),
    ("store_dma", "wdata"): lambda d: Tamper(d, [("mem", "wdata")]),
}


REFUTE_DEPTH = 12  # BMC depth refuting the broken proof tasks (they fail by step 9)


def test_every_family_has_a_broken_block():
    assert set(BROKEN) == {(b, c) for b, c, *_ in tasks()}


@pytest.mark.parametrize("block,check", _tasks(fast_bmc={("fetch", "cmd")}))
def test_proved(block, check):
    ok, seconds, tail = prove_task(block, check)
    assert ok, f"{block} {check}: failed\n{tail}"


@pytest.mark.parametrize("block,check", _tasks())
def test_broken_block_refuted(block, check):
    """A reachable counterexample (BMC), not merely a failed induction step: for a proof task the
    check runs as BMC to ``REFUTE_DEPTH``, deep enough to reach each broken stream's stall."""
    mode, task_depth = next((mode, depth) for b, c, mode, depth, *_ in tasks() if (b, c) == (block, check))
    ok, seconds, tail = prove_task(block, check, BROKEN[(block, check)], name=f"engine-broken-{block}-{check}",
                                   mode="bmc", depth=task_depth if mode == "bmc" else REFUTE_DEPTH)
    assert not ok and "DONE (FAIL" in tail, f"{block} {check}: the harness accepted a broken block\n{tail}"


# -- the BMC depths reach what they are meant to cover --------------------------------------------

class ReachArbiter(ArbiterHarness):
    """Covers: three commands of ``kinds`` accepted, from both clients, at least 5 of their
    beats moved and none left (a depth-2 queue wrapped on the way)."""

    def properties(self, m, dut):
        super().properties(m, dut)
        stream = "rdata" if self.kinds == "r" else "wdata"
        write = self.kinds == "w"
        cmds = counter(m, "reach_cmds", total(c.cmd.valid & c.cmd.ready & (c.cmd.payload.write == write)
                                              for c in dut.clients), 4)
        asked = counter(m, "reach_asked", total(Mux(c.cmd.valid & c.cmd.ready & (c.cmd.payload.write == write),
                                                   c.cmd.payload.beats, 0) for c in dut.clients), 5)
        moved = [counter(m, f"reach_moved{i}", getattr(c, stream).valid & getattr(c, stream).ready, 5)
                 for i, c in enumerate(dut.clients)]
        m.d.comb += Cover((cmds == 3) & (moved[0] != 0) & (moved[1] != 0) & (moved[0] + moved[1] >= 5)
                          & (moved[0] + moved[1] == asked))


class ReachStore(DMAHarness):
    """Covers: a STORE done after 3 write beats, one of them stalled."""

    def properties(self, m, dut):
        super().properties(m, dut)
        wdata = dut.mem.wdata
        beats = counter(m, "reach_beats", wdata.valid & wdata.ready, 4)
        stalled = Signal()
        with m.If(wdata.valid & ~wdata.ready):
            m.d.sync += stalled.eq(1)
        m.d.comb += Cover(dut.done & (beats >= 3) & stalled)


@pytest.mark.slow
@pytest.mark.parametrize("kinds", ["r", "w"])
def test_routing_depth_reaches(kinds):
    from onda.hw.engine.memory_port import MemoryArbiter

    ok, seconds, tail = prove(f"engine-reach-arbiter-{kinds}",
                              lambda: ReachArbiter(MemoryArbiter(ARBITER_N, ARBITER_P, depth=ARBITER_DEPTH), ARBITER_N,
                                                   "routing", kinds),
                              ROUTING_DEPTH, mode="cover", platform=PLATFORM, script=MAP_MEMORIES)
    assert ok, f"not reached within {ROUTING_DEPTH} cycles\n{tail}"


@pytest.mark.slow
def test_store_wdata_depth_reaches():
    from onda.hw.engine.store_dma import StoreDMA

    ok, seconds, tail = prove("engine-reach-store", lambda: ReachStore(StoreDMA(small_cfg()), ("wdata",)),
                              STORE_BMC_DEPTH, mode="cover", platform=PLATFORM, script=MAP_MEMORIES)
    assert ok, f"not reached within {STORE_BMC_DEPTH} cycles\n{tail}"
