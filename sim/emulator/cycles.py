"""Cycle model of the engine: what ``onda report`` claims, and what the RTL is held to.

``simulate`` runs ``timeline.timeline`` (the engine's fetch, three in-order modules joined by
token queues, one shared memory port, timed as the RTL in ``hw/engine`` runs them) and checks the
timed schedule for races (``check_hazards``): the functional emulator runs the program in order,
so this is what shows the tokens make the overlapped execution equivalent.

``instruction_cycles`` is one instruction alone on an idle engine (no port contention):

* ``LOAD``/``STORE``: ``load_dma.load_cycles`` / ``store_cycles`` (range check, the memory's
  latency, one beat a cycle over the P-byte beats covering each row) plus the memory's
  ``row_overhead`` for each burst that does not continue the one before;
* ``GEMM``: ``gemm_unit.gemm_unit_cycles``, per output pixel and lane group one pass over K,
  ``width`` elements a cycle along each kernel row, no faster than the requantizers drain a vector
  of ``lanes`` accumulators (``EngineConfig.drain_cycles``), plus the pipeline's fill;
* ``VEC``: ``vec_unit.vec_cycles`` (the middle of ``vec_cycles_bounds`` for the one function whose
  count varies by a few cycles with the serial requantizer's phase);
* ``NOP``, ``FINISH``: one cycle.

``gemm_cycles`` and ``dma_cycles`` are the compiler's quick estimates for choosing tile shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onda.hw.config import EngineConfig
from onda.hw.engine.gemm_unit import dot_product_beats, dot_product_interval
from onda.hw.extents import dma_bytes, extents
from onda.hw.isa import Instruction, Module, Opcode, weight_groups

from .functional import EmulatorError


def dma_cycles(cfg: EngineConfig, nbytes: int, bursts: int = 1) -> int:
    """A first-order DMA time from a byte count alone (no addresses): the memory's latency, its
    row overhead per further burst, ``mem_bytes_per_cycle``. The exact, address-dependent counts
    are ``load_dma.load_cycles`` / ``store_dma.store_cycles``."""
    return (cfg.mem_latency_cycles + max(0, bursts - 1) * cfg.mem_row_overhead_cycles
            + math.ceil(nbytes / cfg.mem_bytes_per_cycle))


def gemm_cycles(cfg: EngineConfig, pixels: int, out_channels: int, kh: int, kw: int, channels: int,
                dilation_w: int = 1) -> int:
    """A first-order GEMM time: every dot product (``pixels`` x lane groups) at the GEMM unit's
    steady rate (``gemm_unit.dot_product_beats`` / ``dot_product_interval``, the rule
    ``gemm_unit_cycles`` is built on) plus the configuration's pipeline depth. The compiler's
    estimate, and the cycle model's GEMM time on a configuration the RTL does not build."""
    beats = dot_product_beats(cfg, kh, kw, channels, dilation_w)
    return pixels * weight_groups(out_channels, cfg.lanes) * dot_product_interval(cfg, beats) + cfg.gemm_pipeline_cycles


def instruction_cycles(cfg: EngineConfig, ins: Instruction) -> int:
    """Cycles ``ins`` takes alone on an idle engine, its start and completion cycles included."""
    from onda.hw.engine import load_dma, store_dma

    from .timeline import LOAD_ISSUE, STORE_ISSUE, bursts, compute_cycles

    op, f = ins.opcode, ins.fields
    if op in (Opcode.LOAD, Opcode.STORE):
        runs = bursts(cfg.mem_port_bits // 8, f)
        P = cfg.mem_port_bits // 8
        breaks = sum(1 for (a0, n0), (a1, _) in zip(runs, runs[1:]) if a1 != a0 + n0 * P)
        if op == Opcode.LOAD:
            base = load_dma.load_cycles(cfg, f) + LOAD_ISSUE
        else:
            base = store_dma.store_cycles(cfg, f) + STORE_ISSUE
        return base + breaks * cfg.mem_row_overhead_cycles
    if op in (Opcode.GEMM, Opcode.VEC):
        return compute_cycles(cfg, ins)
    return 1


@dataclass
class CycleTrace:
    start: np.ndarray  # per instruction: the cycle it starts
    end: np.ndarray    # the cycle after it completes
    cycles: np.ndarray  # end - start
    bytes: np.ndarray  # DMA bytes
    module: np.ndarray
    total_cycles: int = 0  # the run, first cycle to done
    lanes: int = 1  # the engine's: a GEMM reads whole lane groups of WGT (``extents``)
    width: int = 1  # the engine's MAC width: WGT pads a kernel row to whole beats (``extents``)

    @property
    def total(self) -> int:
        return int(self.total_cycles)

    def busy(self, module: Module, lo: int = 0, hi: int | None = None) -> int:
        sel = self.module[lo:hi] == int(module)
        return int(self.cycles[lo:hi][sel].sum())


def simulate(program: list[Instruction], cfg: EngineConfig, check: bool = True,
             program_addr: int | None = None) -> CycleTrace:
    """Time every instruction (``timeline.timeline``, the program read from ``program_addr``
    if given); with ``check``, also prove the timed
    schedule free of buffer and memory races (``check_hazards``): the overlap the tokens allow
    never reorders conflicting accesses."""
    from .timeline import timeline

    tl = timeline(program, cfg) if program_addr is None else timeline(program, cfg, program_addr)
    start = tl.take.copy()
    end = tl.done + 1
    nbytes = np.array([dma_bytes(i) for i in program], dtype=np.int64)
    mods = np.array([int(i.module) for i in program], dtype=np.int64)
    never = start < 0  # after FINISH: never fetched
    start[never] = end[never] = tl.total
    trace = CycleTrace(start, end, end - start, nbytes, mods, tl.total, cfg.lanes, cfg.width)
    if check:
        check_hazards(program, trace)
    return trace


class HazardError(EmulatorError):
    """Two instructions touching the same bytes (one writing) overlap in time in the cycle model:
    the program's dependency tokens do not protect a buffer or memory region."""


def check_hazards(program: list[Instruction], trace: CycleTrace) -> int:
    """Raise HazardError if any two conflicting accesses (same bytes, at least one write) of
    instructions i < j in program order have j starting before i ends; the accesses are the
    instructions' extents (``onda.hw.extents``: the buffers and "MEM", the memory port's address
    space). Returns the number of access pairs compared."""
    # An access that ends before every later instruction starts can conflict with none of them.
    horizon = np.minimum.accumulate(trace.start[::-1])[::-1] if len(program) else trace.start
    hist: dict[str, list[tuple[int, int, int, bool, int]]] = {}
    checked = 0
    for j, ins in enumerate(program):
        start = int(trace.start[j])
        for res, lo, hi, writes in extents(ins.opcode, ins.fields, trace.lanes, trace.width).values():
            if hi <= lo:
                continue
            h = [e for e in hist.get(res, ()) if e[2] > horizon[j]]
            checked += len(h)
            for elo, ehi, eend, ewr, i in h:
                if elo < hi and ehi > lo and (ewr or writes) and eend > start:
                    raise HazardError(f"{res} [{lo}, {hi}): instruction {j} ({ins.opcode.name}) starts at cycle "
                                      f"{start} before instruction {i} ({program[i].opcode.name}, "
                                      f"{'write' if ewr else 'read'} of [{elo}, {ehi})) ends at {eend}")
            h.append((lo, hi, int(trace.end[j]), writes, j))
            hist[res] = h
    return checked
