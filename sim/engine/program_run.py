"""Run a compiled program on a simulated engine: the steps every simulator shares.

``execute(device, ...)`` puts the memory image in place, writes the program's address and length,
starts the engine, stops at each capture point (the compute module completing an instruction) to
copy a memory range, then runs to done or error and reads the status registers. ``device`` is a
simulated engine with the methods of ``onda.sim.verilator.harness.VerilatorEngine``
(``write_memory``, ``read_memory``, ``write_register``, ``read_register``, ``run``); the
Amaranth-simulator engine (``engine_sim.AmaranthEngine``) has the same. The cocotb bench
(``onda.sim.cocotb.engine_bench``) takes the same image and capture points in its job file.

``program_image`` and ``capture_points`` say what a run of a container needs: the weight image
and the program at their MEMMAP addresses, and where each layer's output is complete in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from onda.hw.engine.errors import EngineError
from onda.hw.engine.registers import REGISTERS, STATUS_BITS
from onda.hw.isa import Module

__all__ = ["EngineRun", "RunResult", "RunTimeout", "capture_points", "execute", "program_image"]


class RunResult:
    """Why ``device.run`` returned."""

    STATUS, BREAK, LIMIT, MEMORY = 0, 1, 2, 3


class RunTimeout(RuntimeError):
    """The engine did not finish within the cycle limit."""


@dataclass
class EngineRun:
    status: int
    error: EngineError
    error_index: int
    cycles: int  # the run's CYCLES register: start to done or error
    captures: dict[int, bytes] = field(default_factory=dict)  # capture index -> memory range copy
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return bool(self.status >> STATUS_BITS["done"] & 1)


COUNTERS = [r.name for r in REGISTERS if r.name in ("FETCHED",) or r.name.endswith(("_BUSY", "_WAIT", "_IDLE", "_STALL"))]


def execute(device, image: list[tuple[int, bytes]], prog_addr: int, count: int, capture_at: list[int] = (),
            capture_range: tuple[int, int] = (0, 0), max_cycles: int = 10**9) -> EngineRun:
    """Run ``count`` instructions at ``prog_addr`` after writing ``image`` ((address, bytes) pairs).

    ``capture_at``: instruction indices of the compute module; when each completes, the memory
    range ``capture_range`` (start, length) is copied into ``EngineRun.captures``.
    """
    if hasattr(device, "run_program"):  # a simulator that cannot pause between calls runs it all at once
        return device.run_program(image, prog_addr, count, capture_at, capture_range, max_cycles)
    for addr, data in image:
        device.write_memory(addr, data)
    device.write_register("PROG_ADDR", prog_addr)
    device.write_register("PROG_COUNT", count)
    device.write_register("CTRL", 1)
    captures: dict[int, bytes] = {}
    budget = max_cycles
    for index in sorted(set(capture_at)):
        before = device.cycles
        rc = device.run(budget, break_index=index)
        budget -= device.cycles - before
        if rc == RunResult.BREAK:
            captures[index] = bytes(device.read_memory(*capture_range))
        elif rc == RunResult.STATUS:
            break
        else:
            raise RunTimeout(f"engine still running after {max_cycles} cycles (waiting for instruction {index})")
    else:
        if device.run(budget) == RunResult.LIMIT:
            raise RunTimeout(f"engine still running after {max_cycles} cycles")
    lo = device.read_register("CYCLES_LO")
    hi = device.read_register("CYCLES_HI")
    return EngineRun(status=device.read_register("STATUS"), error=EngineError(device.read_register("ERROR")),
                     error_index=device.read_register("ERROR_INDEX"), cycles=hi << 32 | lo, captures=captures,
                     counters={name: device.read_register(name) for name in COUNTERS})


def program_image(container) -> list[tuple[int, bytes]]:
    """The weight image and the program of ``container`` at their MEMMAP addresses."""
    memmap = container.memmap
    return [(int(memmap["weights_base"]), container.weights), (int(memmap["program_base"]), container.program)]


def capture_points(program, layers) -> dict[int, int]:
    """Tensor id of each layer's output -> the compute instruction at whose completion that output
    is complete in memory: the one whose pop of STORE->COMPUTE takes the token of the layer's last
    store (a barrier NOP of the next layer or of FINISH). Stores complete in order and no later
    store can start before it. Layers without such a pop (the last, before FINISH) are left out:
    their outputs are read at the end."""
    pushes_upto, pushed = [], 0
    for ins in program:
        pushed += ins.module == Module.STORE and ins.push_prev
        pushes_upto.append(pushed)
    popped, pop_at = 0, {}
    for i, ins in enumerate(program):
        if ins.module == Module.COMPUTE and ins.pop_next:
            popped += 1
            pop_at[popped] = i
    capture: dict[int, int] = {}
    for layer in layers:
        need = pushes_upto[layer["last"]]
        if need in pop_at:
            capture[layer["output"]] = pop_at[need]
    return capture
