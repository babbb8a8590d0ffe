"""The whole engine on Amaranth's own simulator, behind the memory model: the fallback simulator of
the RTL backend (no C++ toolchain needed; a few thousand cycles a second, so small programs only)
and the simulator of the engine's unit-level whole-program tests.
"""

from __future__ import annotations

import warnings

from amaranth.sim import Simulator

from onda.hw.config import EngineConfig
from onda.hw.engine.engine import Engine
from onda.hw.engine.errors import EngineError
from onda.hw.engine.registers import STATUS_BITS, address_of

from .memory_model import MemoryModel
from .program_run import COUNTERS, EngineRun, RunTimeout

__all__ = ["AmaranthEngine"]


class AmaranthEngine:
    """An engine of ``cfg`` in Amaranth sim with ``memory`` bytes of memory (default: the
    configuration's size), memory stalls with probability ``stall`` (seeded)."""

    def __init__(self, cfg: EngineConfig, stall: float = 0.0, seed: int = 0, memory: int | None = None,
                 vcd: str | None = None):
        self.cfg = cfg
        self.memory = bytearray(memory or cfg.mem_size_bytes)
        self.stall, self.seed, self.vcd = stall, seed, vcd

    def write_memory(self, addr: int, data) -> None:
        data = bytes(data)
        if addr + len(data) > len(self.memory):
            raise ValueError(f"memory write [{addr}, {addr + len(data)}) outside the {len(self.memory)}-byte memory")
        self.memory[addr:addr + len(data)] = data

    def read_memory(self, addr: int, n: int) -> bytes:
        return bytes(self.memory[addr:addr + n])

    def run_program(self, image, prog_addr: int, count: int, capture_at=(), capture_range=(0, 0),
                    max_cycles: int = 10**7) -> EngineRun:
        for addr, data in image:
            self.write_memory(addr, data)
        dut = Engine(self.cfg)
        sim = Simulator(dut)
        sim.add_clock(1e-8)
        MemoryModel.from_config(self.cfg, dut.mem, self.memory, stall=self.stall, seed=self.seed).add_to(sim)
        pending = sorted(set(capture_at))
        result: dict = {"captures": {}}
        mask = (1 << STATUS_BITS["done"]) | (1 << STATUS_BITS["error"])

        async def reg_write(ctx, name, value):
            ctx.set(dut.csr.addr, address_of(name))
            ctx.set(dut.csr.w_data, value)
            ctx.set(dut.csr.w_en, 1)
            await ctx.tick()
            ctx.set(dut.csr.w_en, 0)

        async def reg_read(ctx, name):
            ctx.set(dut.csr.addr, address_of(name))
            value = ctx.get(dut.csr.r_data)
            await ctx.tick()
            return value

        async def bench(ctx):
            await reg_write(ctx, "PROG_ADDR", prog_addr)
            await reg_write(ctx, "PROG_COUNT", count)
            await reg_write(ctx, "CTRL", 1)
            ctx.set(dut.csr.addr, address_of("STATUS"))
            for _ in range(max_cycles):
                if ctx.get(dut.csr.r_data) & mask:
                    break
                hit = pending and ctx.get(dut.trace.retire) >> 1 & 1 and ctx.get(dut.trace.compute_index) == pending[0]
                await ctx.tick()
                if hit:
                    result["captures"][pending.pop(0)] = self.read_memory(*capture_range)
            else:
                result["timeout"] = True
                return
            lo = await reg_read(ctx, "CYCLES_LO")
            hi = await reg_read(ctx, "CYCLES_HI")
            result.update(status=await reg_read(ctx, "STATUS"), error=await reg_read(ctx, "ERROR"),
                          index=await reg_read(ctx, "ERROR_INDEX"), cycles=hi << 32 | lo,
                          counters={n: await reg_read(ctx, n) for n in COUNTERS})

        sim.add_testbench(bench)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            if self.vcd:
                with sim.write_vcd(self.vcd):
                    sim.run()
            else:
                sim.run()
        if result.get("timeout"):
            raise RunTimeout(f"engine still running after {max_cycles} cycles")
        return EngineRun(status=result["status"], error=EngineError(result["error"]), error_index=result["index"],
                         cycles=result["cycles"], captures=result["captures"], counters=result["counters"])
