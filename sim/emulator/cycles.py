"""Cycle model of the engine: three in-order modules (load, compute, store) joined by token
queues, one shared memory port.

Each instruction starts when its module is free, every token it pops has been pushed (a token
is available from the end of the pushing instruction), and, for a DMA, the memory port is free.
Its duration comes from the engine configuration:

* DMA (``LOAD``/``STORE``): ``latency + (bursts - 1) * row_overhead + ceil(bytes / bytes_per_cycle)``,
  one burst per row unless the rows are contiguous in memory; padding costs nothing (the DMA
  fills it while the port streams);
* ``GEMM``: per output pixel and lane group one pass over K, ``width`` elements per cycle along
  each kernel row, but no faster than the requantizers drain a vector of ``lanes``
  accumulators (``EngineConfig.drain_cycles``):
  ``pixels * ceil(ct / lanes) * max(kh * ceil(kw * C / width), drain_cycles)`` plus the pipeline;
* ``VEC``: ``ceil(elements / vector_lanes)`` plus the pipeline, elements being the input pixels
  x channels (pools stream each input once through line buffers; ADD reads both operands at once);
* ``NOP``, ``FINISH``: one cycle.

The timed schedule is then checked for races (``check_hazards``): the functional emulator runs
the program in order, so this is what shows the tokens make the overlapped execution equivalent.

Instruction fetch is assumed to keep the three command queues filled (they are deep enough for
a tile's instructions; the program is 32 bytes per instruction, negligible next to the data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onda.hw.config import EngineConfig
from onda.hw.isa import (ADD_PARAM_WORDS, GEMM_PARAM_WORDS, QUEUES, RESCALE_PARAM_WORDS, TOKEN_QUEUES, Instruction, Module,
                         Opcode, VecFunc)

from .functional import EmulatorError


def dma_cycles(cfg: EngineConfig, nbytes: int, bursts: int = 1) -> int:
    return (cfg.mem_latency_cycles + max(0, bursts - 1) * cfg.mem_row_overhead_cycles
            + math.ceil(nbytes / cfg.mem_bytes_per_cycle))


def gemm_cycles(cfg: EngineConfig, pixels: int, out_channels: int, kh: int, kw: int, channels: int,
                dilation_w: int = 1) -> int:
    per_row = math.ceil(kw * channels / cfg.width) if dilation_w == 1 else kw * math.ceil(channels / cfg.width)
    beats = max(kh * per_row, cfg.drain_cycles)
    return pixels * math.ceil(out_channels / cfg.lanes) * beats + cfg.gemm_pipeline_cycles


def dma_bytes(ins: Instruction) -> int:
    if ins.opcode in (Opcode.LOAD, Opcode.STORE):
        return ins.fields["y_size"] * ins.fields["x_size"]
    return 0


def instruction_cycles(cfg: EngineConfig, ins: Instruction) -> int:
    op, f = ins.opcode, ins.fields
    if op in (Opcode.LOAD, Opcode.STORE):
        contiguous = f["dram_stride"] == f["x_size"] or f["y_size"] <= 1
        return dma_cycles(cfg, f["y_size"] * f["x_size"], 1 if contiguous else f["y_size"])
    if op == Opcode.GEMM:
        return gemm_cycles(cfg, f["out_rows"] * f["out_cols"], f["out_channels"], f["kh"], f["kw"],
                           f["channels"], f["dilation_w"])
    if op == Opcode.VEC:
        func = VecFunc(f["func"])
        if func in (VecFunc.MAX_POOL, VecFunc.AVG_POOL):
            # Line buffers: each input pixel is read once, the window reduced as rows stream by.
            elems = max(f["in_rows"] * f["in_cols"], f["out_rows"] * f["out_cols"]) * f["channels"]
        else:
            elems = f["in_rows"] * f["in_cols"] * f["channels"]  # ADD reads its two operands in parallel
        return math.ceil(elems / cfg.vector_lanes) + cfg.vec_pipeline_cycles
    return 1


@dataclass
class CycleTrace:
    start: np.ndarray  # per instruction
    end: np.ndarray
    cycles: np.ndarray  # duration
    bytes: np.ndarray  # DMA bytes
    module: np.ndarray

    @property
    def total(self) -> int:
        return int(self.end.max()) if self.end.size else 0

    def busy(self, module: Module, lo: int = 0, hi: int | None = None) -> int:
        sel = self.module[lo:hi] == int(module)
        return int(self.cycles[lo:hi][sel].sum())


def simulate(program: list[Instruction], cfg: EngineConfig, check: bool = True) -> CycleTrace:
    """Time every instruction; with ``check``, also prove the timed schedule free of buffer and
    memory races (``check_hazards``): the overlap the tokens allow never reorders conflicting accesses."""
    n = len(program)
    start = np.zeros(n, dtype=np.int64)
    end = np.zeros(n, dtype=np.int64)
    cyc = np.array([instruction_cycles(cfg, i) for i in program], dtype=np.int64)
    nbytes = np.array([dma_bytes(i) for i in program], dtype=np.int64)
    mods = np.array([int(i.module) for i in program], dtype=np.int64)
    streams = {m: [k for k in range(n) if mods[k] == int(m)] for m in Module}
    ptr = dict.fromkeys(Module, 0)
    free = dict.fromkeys(Module, 0)
    port_free = 0
    pushes: dict[str, list[int]] = {q: [] for q in QUEUES}
    popped = dict.fromkeys(pushes, 0)
    qnames = TOKEN_QUEUES
    remaining = n
    while remaining:
        best = None
        for m in Module:
            if ptr[m] >= len(streams[m]):
                continue
            k = streams[m][ptr[m]]
            ins = program[k]
            ready = free[m]
            ok = True
            for flag, q in zip(("pop_prev", "pop_next"), qnames[m][:2]):
                if getattr(ins, flag):
                    if q is None:
                        raise EmulatorError(f"instruction {k} {ins.opcode.name}: pops a queue its module lacks")
                    if len(pushes[q]) <= popped[q]:
                        ok = False
                        break
                    ready = max(ready, pushes[q][popped[q]])
            if not ok:
                continue
            request = ready  # when it asks for the port: the port serves requests in that order
            if ins.opcode in (Opcode.LOAD, Opcode.STORE):
                ready = max(ready, port_free)
            if best is None or (ready, request) < best[0]:
                best = ((ready, request), m, k)
        if best is None:
            stuck = {m.name: streams[m][ptr[m]] for m in Module if ptr[m] < len(streams[m])}
            raise EmulatorError(f"deadlock: every module waits for a token (next instructions {stuck})")
        (t0, _), m, k = best
        ins = program[k]
        for flag, q in zip(("pop_prev", "pop_next"), qnames[m][:2]):
            if getattr(ins, flag):
                popped[q] += 1
        t1 = t0 + int(cyc[k])
        start[k], end[k] = t0, t1
        free[m] = t1
        if ins.opcode in (Opcode.LOAD, Opcode.STORE):
            port_free = t1
        for flag, q in zip(("push_prev", "push_next"), qnames[m][2:]):
            if getattr(ins, flag):
                pushes[q].append(t1)
        ptr[m] += 1
        remaining -= 1
    trace = CycleTrace(start, end, cyc, nbytes, mods)
    if check:
        check_hazards(program, trace)
    return trace


class HazardError(EmulatorError):
    """Two instructions touching the same bytes (one writing) overlap in time in the cycle model:
    the program's dependency tokens do not protect a buffer or memory region."""


def _accesses(ins: Instruction) -> list[tuple[str, int, int, bool]]:
    """(resource, lo, hi, writes) byte ranges an instruction touches; resources are the buffers and
    "MEM" (the memory port's address space)."""
    from onda.hw.isa import Buffer

    f = ins.fields
    op = ins.opcode
    if op == Opcode.LOAD:
        size = (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * (f["pad_left"] + f["x_size"] + f["pad_right"])
        out = [(Buffer(f["buffer"]).name, f["sram_addr"], f["sram_addr"] + size, True)]
        if f["y_size"]:
            out.append(("MEM", f["dram_addr"], f["dram_addr"] + (f["y_size"] - 1) * f["dram_stride"] + f["x_size"], False))
        return out
    if op == Opcode.STORE:
        size = f["y_size"] * f["x_size"]
        return [(Buffer(f["buffer"]).name, f["sram_addr"], f["sram_addr"] + size, False),
                ("MEM", f["dram_addr"], f["dram_addr"] + (f["y_size"] - 1) * f["dram_stride"] + f["x_size"], True)]
    if op == Opcode.GEMM:
        k = f["kh"] * f["kw"] * f["channels"]
        ct = f["out_channels"]
        return [("ACT", f["act_addr"], f["act_addr"] + f["in_rows"] * f["in_cols"] * f["channels"], False),
                ("WGT", f["wgt_addr"], f["wgt_addr"] + ct * k, False),
                ("PARAM", f["param_addr"], f["param_addr"] + ct * GEMM_PARAM_WORDS * 4, False),
                ("OUT", f["out_addr"], f["out_addr"] + f["out_rows"] * f["out_cols"] * ct, True)]
    if op == Opcode.VEC:
        func = VecFunc(f["func"])
        size = f["in_rows"] * f["in_cols"] * f["channels"]
        out = [("ACT", f["src_addr"], f["src_addr"] + size, False),
               ("OUT", f["dst_addr"], f["dst_addr"] + f["out_rows"] * f["out_cols"] * f["channels"], True)]
        if func == VecFunc.ADD:
            out += [("ACT", f["src2_addr"], f["src2_addr"] + size, False), ("PARAM", f["param_addr"], f["param_addr"] + ADD_PARAM_WORDS * 4, False)]
        elif func == VecFunc.SPACE_TO_DEPTH:
            out[1] = ("OUT", f["dst_addr"], f["dst_addr"] + size, True)
        elif func in (VecFunc.MEAN, VecFunc.REQUANT):
            out.append(("PARAM", f["param_addr"], f["param_addr"] + RESCALE_PARAM_WORDS * 4, False))
        return out
    return []


def check_hazards(program: list[Instruction], trace: CycleTrace) -> int:
    """Raise HazardError if any two conflicting accesses (same bytes, at least one write) of
    instructions i < j in program order have j starting before i ends. Returns the number of
    access pairs compared."""
    # An access that ends before every later instruction starts can conflict with none of them.
    horizon = np.minimum.accumulate(trace.start[::-1])[::-1] if len(program) else trace.start
    hist: dict[str, list[tuple[int, int, int, bool, int]]] = {}
    checked = 0
    for j, ins in enumerate(program):
        start = int(trace.start[j])
        for res, lo, hi, writes in _accesses(ins):
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
