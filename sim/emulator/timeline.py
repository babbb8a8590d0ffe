"""The engine's timeline as its RTL runs a program: when each instruction starts and completes.

This is the cycle model behind ``onda report`` and ``cycles.simulate``, written from the RTL's
structure (``hw/engine``) so that the engine simulated in Verilator and the model agree to the
cycle count (``python -m onda.sim.engine.cycle_compare`` holds them side by side):

* **Fetch** reads the program in bursts of ``burst_instructions`` instructions, only while its
  prefetch buffer has room for them (credits), and dispatches one instruction a cycle, in program
  order, into the module queues; a full queue stalls dispatch for everyone.
* **Issue**, per module, in order: an instruction starts when it is at the head of its queue, the
  module is free (the cycle the previous one completes; a NOP starts only after it) and every
  token it pops was pushed at least a cycle earlier; its pushes happen as it completes.
* **Compute** instructions take what their sequencers take (``GemmUnit``, ``VecUnit``):
  ``gemm_unit_cycles``, ``vec_cycles``.
* **DMA** instructions range-check for ``check_cycles``, then issue their bursts (``RowBursts``:
  each row as the P-byte beats covering it, at most ``MAX_BURST`` beats a burst), one a cycle as
  the arbiter takes them; a LOAD takes read data only after its padding fill.
* **Arbiter and memory**: fetch, load and store share one port, a command at a time granted
  round-robin into a register; the memory (the simulation harness's model of it) holds up to
  ``MEMORY_QUEUE`` commands, serves them in order, one beat a cycle, and starts a command
  ``latency`` cycles after it arrives at an idle port, or ``row_overhead`` cycles after the
  previous one when it does not continue it (``cfg.mem_latency_cycles``,
  ``cfg.mem_row_overhead_cycles``).

Times are cycles of the run, 0 being the first cycle counted by the ``CYCLES`` register. The
simulation is event-driven: one step per memory command and per instruction, not per cycle.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from onda.hw.config import EngineConfig
from onda.hw.engine import load_dma, store_dma
from onda.hw.engine.engine import PREFETCH, QUEUE_DEPTH
from onda.hw.engine.fetch import burst_instructions
from onda.hw.engine.gemm_unit import gemm_unit_cycles
from onda.hw.engine.memory_port import MAX_BURST
from onda.hw.engine.vec_unit import vec_cycles_bounds
from onda.hw.isa import INSTRUCTION_BYTES, QUEUES, TOKEN_QUEUES, Instruction, Module, Opcode

from .functional import EmulatorError

__all__ = ["MEMORY_QUEUE", "Timeline", "timeline"]

MEMORY_QUEUE = 4
"""Commands the memory holds (the one being served included); the Verilator harness's model."""

# Pipeline distances of the RTL, in cycles (the register stages between the blocks).
FETCH_START = 2      # CYCLES starts counting -> fetch's first request
PREFETCH_READ = 2    # last beat of an instruction -> dispatchable from the prefetch buffer
QUEUE_READ = 2       # dispatched -> at the head of its module queue
FINISH_DONE = 0      # everything quiet -> the run's last counted cycle
LOAD_ISSUE = 2       # a DMA's range check over -> its first command offered to the arbiter
STORE_ISSUE = 2

FETCH, LOAD, STORE = 0, 1, 2  # arbiter clients, in the Engine's order


@dataclass
class Timeline:
    take: np.ndarray    # cycle each instruction starts (its pops)
    done: np.ndarray    # cycle it completes (its pushes; a NOP's is its start)
    total: int          # the run's CYCLES
    commands: np.ndarray  # per memory command, in the memory's order: accepted, first beat, last beat,
                          # address, beats, write (the Verilator harness's ``memory_events``)


def bursts(P: int, f: dict) -> list[tuple[int, int]]:
    """(address, beats) of each command ``RowBursts`` issues for a LOAD/STORE with fields ``f``."""
    out = []
    x = f["x_size"]
    if not (x and f["y_size"]):
        return out
    for j in range(f["y_size"]):
        a = f["dram_addr"] + j * f["dram_stride"]
        base = a - a % P
        left = -(-(a % P + x) // P)
        while left:
            n = min(left, MAX_BURST)
            out.append((base, n))
            base += n * P
            left -= n
    return out


def compute_cycles(cfg: EngineConfig, ins: Instruction) -> int:
    """Cycles a compute instruction takes, its start and completion included: the sequencers'
    (``gemm_unit_cycles``, ``vec_cycles``). A configuration the RTL does not build (``large``, a
    study of a datacenter part) is timed by their first-order terms: one MAC beat or one vector of
    ``vector_lanes`` a cycle, no faster than the drain, plus the configuration's pipeline depth."""
    f = ins.fields
    try:
        if ins.opcode == Opcode.GEMM:
            return gemm_unit_cycles(cfg, f) + 1
        if ins.opcode == Opcode.VEC:
            lo, hi = vec_cycles_bounds(cfg, f)
            return (lo + hi) // 2 + 1
    except ValueError:
        pass
    else:
        return 1
    from .cycles import gemm_cycles

    if ins.opcode == Opcode.GEMM:
        return gemm_cycles(cfg, f["out_rows"] * f["out_cols"], f["out_channels"], f["kh"], f["kw"], f["channels"],
                           f["dilation_w"])
    elems = max(f["in_rows"] * f["in_cols"], f["out_rows"] * f["out_cols"]) * f["channels"]
    return -(-elems // cfg.vector_lanes) + cfg.vec_pipeline_cycles


class _Memory:
    """The port as the harness serves it: commands in order, their beats' cycles known on arrival."""

    def __init__(self, cfg: EngineConfig, record: bool):
        self.P = cfg.mem_port_bits // 8
        self.latency, self.row = cfg.mem_latency_cycles, cfg.mem_row_overhead_cycles
        self.ends: deque[int] = deque()  # last-beat cycle of the commands still held (in order)
        self.last_end = -1         # of the last command taken
        self.prev_addr = None      # address just past the last command's beats
        self.log: list[tuple[int, int, int, int, int, int]] | None = [] if record else None

    def accept_at(self, t: int) -> int:
        """First cycle >= t in which the memory takes a command (it holds fewer than MEMORY_QUEUE).
        The caller serves a command at that cycle next."""
        ends = self.ends
        while ends and ends[0] < t:
            ends.popleft()
        if len(ends) < MEMORY_QUEUE:
            return t
        return ends[len(ends) - MEMORY_QUEUE] + 1

    def serve(self, a: int, addr: int, beats: int, write: bool, ready: int = 0) -> tuple[int, int]:
        """Take a command in cycle ``a``; (first beat, last beat) cycles. ``ready``: the client
        takes no beat before it."""
        ends = self.ends
        while ends and ends[0] < a:
            ends.popleft()
        if a >= self.last_end:  # the port was idle
            first = a + 1 + self.latency
        else:
            first = self.last_end + 1 + (0 if addr == self.prev_addr else self.row)
        if ready > first:
            first = ready
        last = first + beats - 1
        ends.append(last)
        self.last_end, self.prev_addr = last, addr + beats * self.P
        if self.log is not None:
            self.log.append((a, first, last, addr, beats, int(write)))
        return first, last


def timeline(program: list[Instruction], cfg: EngineConfig, program_addr: int = 1 << 40,
             commands: bool = False) -> Timeline:
    """Start and completion cycle of every instruction of ``program`` on the engine of ``cfg``,
    read from ``program_addr`` (by default apart from all data: only whether one command continues
    the one before matters); with ``commands``, every memory command's cycles too (else
    ``Timeline.commands`` is empty: a ResNet50 has a million of them).

    Raises ``EmulatorError`` for a program the engine would stop on before FINISH: a token popped
    that no instruction pushes (deadlock), a program without FINISH. (Tokens left at FINISH, which
    the engine reports as TOKEN_UNDERFLOW then, change no timing; the functional emulator refuses them.)
    """
    n = len(program)
    P = cfg.mem_port_bits // 8
    burst_ins = burst_instructions(P, PREFETCH)
    mem = _Memory(cfg, commands)
    mods = [int(i.module) for i in program]
    ops = [int(i.opcode) for i in program]
    pop_q, push_q = [], []  # the queues each instruction pops and pushes (isa.TOKEN_QUEUES)
    for ins, m in zip(program, mods):
        qs = TOKEN_QUEUES[Module(m)]
        pop_q.append([q for flag, q in zip(("pop_prev", "pop_next"), qs[:2]) if getattr(ins, flag)])
        push_q.append([q for flag, q in zip(("push_prev", "push_next"), qs[2:]) if getattr(ins, flag)])
    stream_pos = [0] * n  # index of each instruction within its module's stream
    streams: dict[int, list[int]] = {int(m): [] for m in Module}
    for k, m in enumerate(mods):
        stream_pos[k] = len(streams[m])
        streams[m].append(k)
    finish_at = next((k for k, op in enumerate(ops) if op == Opcode.FINISH), None)
    if finish_at is None:
        raise EmulatorError("the program has no FINISH: the engine stops with NO_FINISH")
    count = finish_at + 1  # fetch dispatches nothing after FINISH
    NOP, LOAD_OP, STORE_OP, FINISH_OP = int(Opcode.NOP), int(Opcode.LOAD), int(Opcode.STORE), int(Opcode.FINISH)

    INF = 1 << 62
    take = [-1] * n
    done = [-1] * n
    arrive = [INF] * n      # last beat of each instruction read by fetch
    dispatch = [INF] * n    # cycle fetch put it in its module queue
    pushes: dict[str, list[int]] = {q: [] for q in QUEUES}
    pops = dict.fromkeys(QUEUES, 0)

    f_req = 0               # instructions fetch has requested
    f_next_valid = FETCH_START
    f_disp = 0              # instructions dispatched
    ptr = {int(m): 0 for m in Module}
    free = {int(m): 0 for m in Module}  # earliest start of the module's next instruction
    dma = {LOAD: None, STORE: None}     # per DMA client: the instruction it executes
    dma_of = {int(Module.LOAD): LOAD, int(Module.STORE): STORE}
    arb_free = 0
    last_client = 2
    finish_take = -1

    def dma_state(k: int, t: int):
        f = program[k].fields
        is_load = ops[k] == LOAD_OP
        check = load_dma.CHECK_CYCLES if is_load else store_dma.CHECK_CYCLES
        runs = bursts(P, f)
        fill = load_dma.fill_cycles(cfg, f) if is_load else 0
        if not runs:
            done[k] = t + 1 + check + fill
            return None
        issue = LOAD_ISSUE if is_load else STORE_ISSUE
        return [k, runs, 0, t + check + issue, t + check + issue + 1 + fill if is_load else 0]

    def complete(k: int, d: int) -> None:
        done[k] = d
        free[mods[k]] = d + 1
        for q in push_q[k]:
            pushes[q].append(d)

    def module_candidate(m: int):
        """(cycle, instruction) the module's next instruction can start, or None if not known yet."""
        s = streams[m]
        if ptr[m] >= len(s):
            return None
        k = s[ptr[m]]
        if k >= count or dispatch[k] == INF:
            return None
        if ptr[m] and done[s[ptr[m] - 1]] < 0:
            return None  # the previous one still runs with its end unknown
        t = max(dispatch[k] + QUEUE_READ, free[m])
        used = {}
        for q in pop_q[k]:
            i = pops[q] + used.get(q, 0)
            used[q] = used.get(q, 0) + 1
            if i >= len(pushes[q]):
                return None
            t = max(t, pushes[q][i] + 1)
        return t, k

    def dispatch_candidate():
        if f_disp >= count or arrive[f_disp] == INF:
            return None
        k = f_disp
        t = max(dispatch[k - 1] + 1 if k else 0, arrive[k] + PREFETCH_READ)
        pos = stream_pos[k]
        if pos >= QUEUE_DEPTH:
            older = streams[mods[k]][pos - QUEUE_DEPTH]
            if take[older] < 0:
                return None
            t = max(t, take[older] + 1)
        return t, k

    mcand = {m: None for m in streams}
    mdirty = True
    dcand, ddirty = None, True
    while True:
        # -- candidate events: the earliest cycle each block can act ------------------------------
        if mdirty:
            mcand = {m: module_candidate(m) for m in streams}
            mdirty = False
        if ddirty:
            dcand, ddirty = dispatch_candidate(), False
        best_t, best = INF, None
        for m, cand in mcand.items():
            if cand is not None and cand[0] < best_t:
                best_t, best = cand[0], m
        if dcand is not None and dcand[0] < best_t:
            best_t, best = dcand[0], "dispatch"
        fv = INF  # when fetch's next request is valid
        if f_req < count:
            nb = min(burst_ins, count - f_req)
            need = f_req + nb - PREFETCH  # dispatches needed before the credits cover the burst
            if need <= 0:
                fv = f_next_valid
            elif need <= f_disp:
                fv = max(f_next_valid, dispatch[need - 1] + 1)
        lv = dma[LOAD][3] if dma[LOAD] is not None else INF
        sv = dma[STORE][3] if dma[STORE] is not None else INF
        t = max(arb_free, min(fv, lv, sv))
        if t < best_t:
            best_t, best = t, "grant"
        if best is None:
            break
        now = best_t

        if best == "grant":
            valid = (fv <= now, lv <= now, sv <= now)
            c = next(c for c in ((last_client + 1) % 3, (last_client + 2) % 3, last_client) if valid[c])
            last_client = c
            a = mem.accept_at(now + 1)
            arb_free = a
            if c == FETCH:
                nb = min(burst_ins, count - f_req)
                first, _ = mem.serve(a, program_addr + f_req * INSTRUCTION_BYTES, -(-nb * INSTRUCTION_BYTES // P), False)
                for i in range(nb):
                    arrive[f_req + i] = first + -(-(i + 1) * INSTRUCTION_BYTES // P) - 1
                f_req += nb
                f_next_valid = now + 1
                ddirty = True
            else:
                st = dma[c]
                runs, write = st[1], c == STORE
                addr, beats = runs[st[2]]
                first, last = mem.serve(a, addr, beats, write, st[4] if st[2] == 0 else 0)
                st[2] += 1
                # While no other block can act first, this client's next bursts go through alone.
                others = min(fv, sv if c == LOAD else lv,
                             *(cand[0] for cand in mcand.values() if cand is not None),
                             dcand[0] if dcand is not None else INF)
                t = max(arb_free, now + 1)
                while st[2] < len(runs) and t < others:
                    a = mem.accept_at(t + 1)
                    addr, beats = runs[st[2]]
                    first, last = mem.serve(a, addr, beats, write)
                    st[2] += 1
                    now, arb_free = t, a
                    t = max(a, t + 1)
                st[3] = now + 1
                if st[2] == len(runs):
                    complete(st[0], last + 1)
                    dma[c] = None
                    mdirty = True
        elif best == "dispatch":
            dispatch[dcand[1]] = now
            f_disp += 1
            ddirty = mdirty = True
        else:
            m, k = best, mcand[best][1]
            take[k] = now
            for q in pop_q[k]:
                pops[q] += 1
            ptr[m] += 1
            op = ops[k]
            if op == NOP:
                complete(k, now)
            elif op == LOAD_OP or op == STORE_OP:
                c = dma_of[m]
                dma[c] = dma_state(k, now)
                if dma[c] is None:
                    complete(k, done[k])
            elif op == FINISH_OP:
                finish_take = now
            else:
                complete(k, now + compute_cycles(cfg, program[k]) - 1)
            mdirty = ddirty = True

    take = np.array(take, dtype=np.int64)
    done = np.array(done, dtype=np.int64)
    if finish_take < 0:
        stuck = {Module(m).name: s[ptr[m]] for m, s in streams.items() if ptr[m] < len(s) and s[ptr[m]] < count}
        raise EmulatorError(f"deadlock: every module waits for a token (next instructions {stuck})")
    others = [int(done[k]) + 1 for k in range(count) if mods[k] != Module.COMPUTE and done[k] >= 0]
    # (a module is quiet the cycle after its last instruction completes)
    quiet = max([finish_take + 1, mem.last_end + 1, *others])
    done[finish_at] = quiet
    return Timeline(take, done, quiet + FINISH_DONE, np.array(mem.log or [], dtype=np.int64).reshape(-1, 6))
