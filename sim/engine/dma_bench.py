"""Testbenches for the DMAs: the load or store DMA with the engine's buffers and the memory
model, driven by ISA instructions, next to the functional emulator (``Machine``) on the same
memory contents.

The engine sees one flat memory of ``cfg.mem_size_bytes``; the emulator keeps the activation
region ``[0, act_size)`` and the weight image at ``weights_base`` apart. :func:`flat_memory`
lays both out in one ``bytearray`` with the weight image ending at the top of memory, so a DMA
past the memory is refused by both (``MEMORY_RANGE`` here, ``EmulatorError`` there).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from onda.hw import isa
from onda.hw.engine.buffers import act_buffer, out_buffer, param_buffer, wgt_buffer
from onda.hw.engine.errors import EngineError
from onda.sim.emulator.functional import EmulatorError, Machine
from onda.sim.engine.memory_model import MemoryModel
from onda.sim.rtl.streams import stream_put

__all__ = ["DmaRun", "LoadBench", "SharedPortBench", "StoreBench", "assert_cycles", "assert_outcome", "emulate",
           "flat_memory", "machine_buffer", "machine_for", "run_dma"]


def flat_memory(cfg, act_size: int, weights_size: int, seed: int):
    """Random activations at ``[0, act_size)`` and a random weight image ending at the top of
    memory: ``(memory, memmap, weights)``."""
    rng = np.random.default_rng(seed)
    memory = bytearray(cfg.mem_size_bytes)
    wbase = cfg.mem_size_bytes - weights_size
    memory[:act_size] = rng.integers(0, 256, act_size, dtype=np.uint8).tobytes()
    weights = rng.integers(0, 256, weights_size, dtype=np.uint8).tobytes()
    memory[wbase:] = weights
    return memory, {"act_size": act_size, "weights_base": wbase}, weights


def machine_for(cfg, memory: bytearray, memmap: dict, weights: bytes) -> Machine:
    """An emulator whose activation memory is ``memory[:act_size]`` (one image)."""
    machine = Machine(cfg, memmap, weights, 1)
    a = memmap["act_size"]
    machine.act_mem[0, :a] = np.frombuffer(bytes(memory[:a]), dtype=np.int8)
    return machine


def machine_buffer(machine: Machine, buffer: isa.Buffer) -> bytes:
    """One of the emulator's buffers as bytes (ACT, OUT of image 0)."""
    arr = {isa.Buffer.ACT: machine.act[0], isa.Buffer.WGT: machine.wgt, isa.Buffer.PARAM: machine.param,
           isa.Buffer.OUT: machine.out[0]}[buffer]
    return arr.astype(np.int8).view(np.uint8).tobytes() if arr.dtype != np.uint8 else arr.tobytes()


def _load_links(dma, buffers) -> list:
    """The load DMA's write ports, each with the ``w_load`` port of its buffer."""
    B = isa.Buffer
    return [(dma.act_w, buffers[B.ACT].w_load), (dma.wgt_w, buffers[B.WGT].w_load),
            (dma.param_w, buffers[B.PARAM].w_load)]


def _store_links(dma, buffers) -> list:
    """The store DMA's read ports, each with the ``r_store`` port of its buffer."""
    B = isa.Buffer
    return [(dma.act_r, buffers[B.ACT].r_store), (dma.out_r, buffers[B.OUT].r_store)]


def _add_buffers(m: Module, buffers: dict, links: list) -> None:
    """``buffers`` as submodules of ``m`` (named after them: ``act``, ``wgt``, ...), and every
    ``(DMA port, buffer port)`` of ``links`` connected."""
    for b, buf in buffers.items():
        m.submodules[b.name.lower()] = buf
    for dma_port, buffer_port in links:
        wiring.connect(m, dma_port, buffer_port)


class _DmaBench(Elaboratable):
    """One DMA with its buffers: ``dma``, ``buffers`` (``isa.Buffer`` -> buffer) and ``writes``
    (the DMA's buffer write ports, which :func:`run_dma` watches for a write after a refusal)."""

    def __init__(self, dma, buffers: dict, links: list, writes: list):
        self.dma, self.buffers, self.writes, self._links = dma, buffers, writes, links

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = self.dma
        _add_buffers(m, self.buffers, self._links)
        return m


class LoadBench(_DmaBench):
    """LoadDMA with ACT, WGT and PARAM (as the engine builds them) on its write ports."""

    def __init__(self, cfg, **dma_args):
        from onda.hw.engine.load_dma import LoadDMA
        dma = LoadDMA(cfg, **dma_args)
        buffers = {isa.Buffer.ACT: act_buffer(cfg), isa.Buffer.WGT: wgt_buffer(cfg),
                   isa.Buffer.PARAM: param_buffer(cfg)}
        super().__init__(dma, buffers, _load_links(dma, buffers), [dma.act_w, dma.wgt_w, dma.param_w])


class StoreBench(_DmaBench):
    """StoreDMA reading OUT and ACT (as the engine builds them) through their ``store`` ports."""

    def __init__(self, cfg, **dma_args):
        from onda.hw.engine.store_dma import StoreDMA
        dma = StoreDMA(cfg, **dma_args)
        buffers = {isa.Buffer.ACT: act_buffer(cfg), isa.Buffer.OUT: out_buffer(cfg)}
        super().__init__(dma, buffers, _store_links(dma, buffers), [])


class SharedPortBench(Elaboratable):
    """Both DMAs on one memory port through a ``MemoryArbiter`` (load DMA client 0, store DMA
    client 1), with the engine's four buffers: ``mem`` is the arbiter's memory side."""

    def __init__(self, cfg):
        from onda.hw.engine.load_dma import LoadDMA
        from onda.hw.engine.memory_port import MemoryArbiter
        from onda.hw.engine.store_dma import StoreDMA
        self.load, self.store = LoadDMA(cfg), StoreDMA(cfg)
        self.arbiter = MemoryArbiter(2, cfg.mem_port_bits // 8)
        self.mem = self.arbiter.mem
        self.buffers = {isa.Buffer.ACT: act_buffer(cfg), isa.Buffer.WGT: wgt_buffer(cfg),
                        isa.Buffer.PARAM: param_buffer(cfg), isa.Buffer.OUT: out_buffer(cfg)}

    def elaborate(self, platform):
        m = Module()
        m.submodules.load, m.submodules.store, m.submodules.arbiter = self.load, self.store, self.arbiter
        _add_buffers(m, self.buffers, _load_links(self.load, self.buffers) + _store_links(self.store, self.buffers))
        wiring.connect(m, self.load.mem, self.arbiter.clients[0])
        wiring.connect(m, self.store.mem, self.arbiter.clients[1])
        return m


@dataclass
class DmaRun:
    """What one simulation did: the cycles each command transferred and each ``done`` pulsed,
    the error code, the buffers' final contents, the memory model (its transfers, contents)."""

    accepts: list = field(default_factory=list)
    dones: list = field(default_factory=list)
    error: int = 0
    buffers: dict = field(default_factory=dict)
    model: MemoryModel | None = None
    wrote_while_refused: bool = False

    @property
    def cycles(self) -> list[int]:
        """Cycles each completed instruction held the DMA: from the cycle its command transferred
        to its ``done`` pulse, both included."""
        return [d - a + 1 for a, d in zip(self.accepts, self.dones)]


def run_dma(bench, cfg, program, memory: bytearray, *, stall: float = 0.0, seed: int = 0,
            preload: dict | None = None, timeout: int = 20000, windows: dict | None = None) -> DmaRun:
    """Run ``program`` (LOAD or STORE instructions) one after another through ``bench``'s DMA;
    stop at the first error. ``preload``: buffer -> [(addr, bytes)] poked in before the first one.
    ``windows``: buffer -> [(lo, hi)] byte ranges to read back at the end (``run.buffers[b]``
    is then a dict address -> byte); default: every buffer whole (slow for large ones)."""
    dma = bench.dma
    run = DmaRun()
    sim = Simulator(bench)
    sim.add_clock(1e-8)
    run.model = MemoryModel.from_config(cfg, dma.mem, memory, stall=stall, seed=seed)
    run.model.add_to(sim)
    rng = random.Random(seed + 1)

    async def drive(ctx):
        for b, pieces in (preload or {}).items():
            for addr, data in pieces:
                bench.buffers[b].sim_poke(ctx, addr, data)
        for ins in program:
            fields = dict(ins.fields, buffer=isa.Buffer(ins.fields["buffer"]))
            await stream_put(ctx, dma.cmd, [fields], rng=rng, idle=stall)
            for _ in range(timeout):
                _, _, done, error = await ctx.tick().sample(dma.done, dma.error)
                if done or error:
                    break
            else:
                raise AssertionError(f"{ins.opcode.name} {ins.fields}: neither done nor error in {timeout} cycles")
            if error:
                run.error = EngineError(error)
                for _ in range(8):  # the engine never writes after refusing
                    await ctx.tick()
                break
        # Let any write the memory still has in hand finish (there should be none).
        for _ in range(4):
            await ctx.tick()
        for b, buf in bench.buffers.items():
            if windows is None:
                run.buffers[b] = buf.sim_peek(ctx, 0, buf.size)
            else:
                got = {}
                for lo, hi in windows.get(b, []):
                    lo, hi = max(0, lo), min(buf.size, hi)
                    if lo < hi:
                        got.update(zip(range(lo, hi), buf.sim_peek(ctx, lo, hi - lo)))
                run.buffers[b] = got

    async def watch(ctx):
        # Cycle numbers of every command transfer and done pulse; and a refused instruction
        # writes nothing: no buffer write enable once error is set.
        cycle = 0
        async for _, _, valid, ready, done, error, *ens in ctx.tick().sample(
                dma.cmd.valid, dma.cmd.ready, dma.done, dma.error, *(w.en for w in bench.writes)):
            if valid and ready:
                run.accepts.append(cycle)
            if done:
                run.dones.append(cycle)
            if error and any(ens):
                run.wrote_while_refused = True
            cycle += 1

    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run()
    return run


def emulate(machine: Machine, program) -> tuple[int, str]:
    """Run ``program`` on the emulator up to its first error: ``(instructions done, message)``."""
    for i, ins in enumerate(program):
        try:
            machine.step(ins)
        except EmulatorError as e:
            return i, str(e)
    return len(program), ""


def assert_outcome(run: DmaRun, done: int, message: str, expect_error=None) -> None:
    """The RTL ended where the emulator did (``done, message`` from :func:`emulate`): as many
    instructions completed, and either neither refused one (``expect_error`` None) or both did,
    the RTL with the code ``expect_error`` and without a buffer write after it."""
    assert len(run.dones) == done, f"RTL completed {len(run.dones)} instructions, emulator {done} ({message})"
    if expect_error is None:
        assert not message, message
        assert run.error == EngineError.NONE
    else:
        assert message, "the emulator accepted the instruction the test expects refused"
        assert run.error == expect_error, f"{run.error!r}, emulator: {message}"
        assert not run.wrote_while_refused


def assert_cycles(cfg, program, run: DmaRun, formula, *, digit_bits: int, board: str, capsys) -> None:
    """Each instruction of ``program`` held the DMA exactly ``formula(cfg, fields,
    digit_bits=digit_bits)`` cycles in ``run`` (a run without stalls); the table (y, x, addr%P,
    RTL, the cycle model's ``instruction_cycles``) printed past pytest's capture, so a run with
    ``-s`` or not shows how far the cycle model is from the RTL."""
    from onda.sim.emulator import cycles
    rows = []
    for ins, got in zip(program, run.cycles, strict=True):
        want = formula(cfg, ins.fields, digit_bits=digit_bits)
        assert got == want, f"{ins.fields}: RTL {got}, formula {want}"
        rows.append((ins.fields["y_size"], ins.fields["x_size"], ins.fields["dram_addr"] % 2, got,
                     cycles.instruction_cycles(cfg, ins)))
    with capsys.disabled():
        print(f"\n{program[0].opcode.name} cycles on {board} (latency {cfg.mem_latency_cycles}, "
              f"digit_bits {digit_bits}): y, x, addr%P, RTL, cycle model")
        for r in rows:
            print("  %5d %5d %2d %6d %6d" % r)
