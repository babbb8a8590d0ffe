"""cocotb bench of the whole engine (``onda.hw.engine.Engine``) as exported Verilog, on Icarus or
Verilator: the host's run protocol over the register bus, a memory behind the memory port.

The job (``$ONDA_JOB``, written by :mod:`onda.sim.cocotb.engine_job`) is a list of runs. For each,
the bench writes the run's image into memory, ``PROG_ADDR``, ``PROG_COUNT`` and 1 to ``CTRL``, polls
``STATUS`` (every cycle, through the bus) until *done* or *error*, and reads ``ERROR``,
``ERROR_INDEX``, ``CYCLES_LO``/``CYCLES_HI``. The memory is :class:`MemoryCore`, the same
cycle-by-cycle behaviour the Amaranth-sim benches use (``hw/ISA.md``, "Memory port"), with
seeded random stalls on every handshake and random extra latency per command; it fails the bench
on a command outside the memory, a misaligned or over-long burst, or a stream rule broken. At each
capture point (the compute module completing the instruction after which a layer's output is
complete in memory, ``program_run.capture_points``) and at the end, every listed tensor is decoded
from memory (``emulator.read_tensor``) and compared byte for byte with the expected bytes; a
mismatch names the run, the tensor and its first differing index. A bad program must stop with its
error code at its instruction's index; a run that completes must leave no memory command
outstanding. Between runs the bench waits for the memory to serve what an error stop left in
flight (job ``drain``; see ``engine_job.engine_job``).

Measurements go to ``$ONDA_RESULT``: per run the ``CYCLES`` register, the clock cycles the bench
saw, wall seconds, the commands outstanding at the stop; the totals and simulated cycles per second.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, First, ReadOnly, RisingEdge

from onda.sim.emulator.model import read_tensor
from onda.hw.engine.errors import EngineError
from onda.hw.engine.registers import STATUS_BITS, address_of
from onda.hw.isa import Module
from onda.sim.cocotb.streams import reset
from onda.sim.engine.memory_model import MemoryCore

STOP = (1 << STATUS_BITS["done"]) | (1 << STATUS_BITS["error"])
COMPUTE = int(Module.COMPUTE)  # its bit of trace.retire
DRAIN_LIMIT = 10_000  # cycles the bench waits, after a stop, for the memory to serve what is outstanding


class MemoryPort:
    """Serves ``dut.mem__*`` from ``core`` every cycle, watches ``STATUS`` on the register bus
    (whatever address the host drives; the host sets ``STATUS`` while it waits) and the compute
    module's retirements for capture points."""

    def __init__(self, dut, core: MemoryCore):
        self.dut, self.core = dut, core
        self.stopped = Event()
        self.watch_status = False
        self.captures: list[int] = []  # compute instruction indices still to capture, ascending
        self.captured: dict[int, bytes] = {}
        self.capture_bytes = 0  # the activation region [0, capture_bytes) is what a capture copies

    async def serve(self):
        dut, core = self.dut, self.core
        clk = dut.clk
        cmd_ready, cmd_valid, cmd_payload = dut.mem__cmd__ready, dut.mem__cmd__valid, dut.mem__cmd__payload
        r_valid, r_ready, r_payload = dut.mem__rdata__valid, dut.mem__rdata__ready, dut.mem__rdata__payload
        w_ready, w_valid, w_payload = dut.mem__wdata__ready, dut.mem__wdata__valid, dut.mem__wdata__payload
        retire, compute_index, r_data = dut.trace__retire, dut.trace__compute_index, dut.csr__r_data
        driven = [None, None, None]  # cmd.ready, rdata.valid, wdata.ready as last written: write only changes
        edge, settle = RisingEdge(clk), ReadOnly()
        while True:
            await edge
            cready, rvalid, rdata, wready = core.drive()
            if rdata is not None:
                r_payload.value = int.from_bytes(rdata, "little")
            now = [cready, rvalid, wready]
            if now != driven:
                for handle, old, new in zip((cmd_ready, r_valid, w_ready), driven, now):
                    if old != new:
                        handle.value = int(new)
                driven = now
            await settle
            # Only what the core will look at this cycle is read (a handle read is not free).
            cv = bool(cmd_valid.value)
            rr = rvalid and bool(r_ready.value)
            wv = bool(w_valid.value)  # also while not ready: the core checks it is held
            hit = False
            if self.captures and retire.value.to_unsigned() >> COMPUTE & 1:
                hit = compute_index.value.to_unsigned() == self.captures[0]
            core.clock(cv, cmd_payload.value.to_unsigned() if cv else 0, rr,
                       wv, w_payload.value.to_unsigned() if wv else 0)
            if hit:  # after this edge's write: what the host would read with the engine paused here
                self.captured[self.captures.pop(0)] = bytes(core.memory[:self.capture_bytes])
            if self.watch_status and r_data.value.to_unsigned() & STOP:
                self.watch_status = False
                self.stopped.set()


class Csr:
    """The register bus, driven right after a rising edge; every access ends after one."""

    def __init__(self, dut):
        self.dut = dut

    async def write(self, name: str, value: int) -> None:
        d = self.dut
        d.csr__addr.value = address_of(name)
        d.csr__w_data.value = value & 0xFFFFFFFF
        d.csr__w_en.value = 1
        await RisingEdge(d.clk)
        d.csr__w_en.value = 0

    async def read(self, name: str) -> int:
        d = self.dut
        d.csr__addr.value = address_of(name)
        await ReadOnly()
        value = d.csr__r_data.value.to_unsigned()
        await RisingEdge(d.clk)  # a read of CYCLES_LO latches CYCLES_HI at this edge
        return value


def compare(run_name: str, where: str, memory: bytes, tensors: list[dict]) -> list[str]:
    """Every tensor of ``tensors`` decoded from ``memory`` against its expected bytes: one line per
    differing tensor (name, first differing index, got and expected there, how many differ)."""
    mem = np.frombuffer(memory, dtype=np.int8).reshape(1, -1)
    bad = []
    for t in tensors:
        got = read_tensor(mem, t).reshape(-1)
        want = np.frombuffer(bytes.fromhex(t["expected"]), dtype=np.int8)
        if got.shape != want.shape:
            bad.append(f"{run_name}: tensor {t['name']} (id {t['tid']}) {where}: {got.size} bytes read, "
                       f"{want.size} expected")
            continue
        diff = np.flatnonzero(got != want)
        if diff.size:
            i = int(diff[0])
            nhwc = tuple(int(v) for v in np.unravel_index(i, t["shape"]))
            bad.append(f"{run_name}: tensor {t['name']} (id {t['tid']}) {where}: {diff.size} of {want.size} "
                       f"bytes differ, the first at index {i} {nhwc}: got {int(got[i])}, expected {int(want[i])}")
    return bad


@cocotb.test()
async def engine_runs_the_job(dut):
    """Every run of the job: outputs equal to the expected bytes, or the expected error."""
    with open(os.environ["ONDA_JOB"]) as f:
        job = json.load(f)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("csr__addr", "csr__w_en", "csr__w_data", "mem__cmd__ready", "mem__rdata__valid",
                 "mem__rdata__payload", "mem__wdata__ready"):
        getattr(dut, name).value = 0
    await reset(dut, 4)
    memory = bytearray(job["mem_size"])
    core = MemoryCore(memory, job["P"], latency=job["latency"], stall=job["stall"], seed=job["seed"],
                      jitter=job["jitter"])
    port = MemoryPort(dut, core)
    cocotb.start_soon(port.serve())
    csr = Csr(dut)
    failures: list[str] = []
    results = []
    wall0 = time.perf_counter()
    for run in job["runs"]:
        for addr, data in run["image"]:
            chunk = bytes.fromhex(data)
            memory[addr:addr + len(chunk)] = chunk
        port.captures = [c["index"] for c in run["captures"]]
        port.captured = {}
        port.capture_bytes = run["act_size"]
        t0, c0 = time.perf_counter(), core.cycle
        await csr.write("PROG_ADDR", run["prog_addr"])
        await csr.write("PROG_COUNT", run["prog_count"])
        await csr.write("CTRL", 1)
        dut.csr__addr.value = address_of("STATUS")
        port.stopped.clear()
        port.watch_status = True
        await First(port.stopped.wait(), ClockCycles(dut.clk, run["max_cycles"]))
        if not port.stopped.is_set():
            port.watch_status = False
            failures.append(f"{run['name']}: still running after {run['max_cycles']} cycles")
            results.append({"name": run["name"], "timeout": True})
            break
        await RisingEdge(dut.clk)
        bench_cycles = core.cycle - c0
        seconds = time.perf_counter() - t0
        # What the memory still owes the engine (or the engine the memory) when STATUS says it stopped.
        owed = [[t.addr, t.beats, t.write] for t in core.transfers if t.done < 0]
        status = await csr.read("STATUS")
        error, index = await csr.read("ERROR"), await csr.read("ERROR_INDEX")
        lo = await csr.read("CYCLES_LO")
        cycles = (await csr.read("CYCLES_HI")) << 32 | lo
        drain = 0
        if job["drain"]:  # the next run starts only once the memory has served every command
            while core.busy and drain < DRAIN_LIMIT:
                await RisingEdge(dut.clk)
                drain += 1
            if core.busy:
                failures.append(f"{run['name']}: memory commands still outstanding {DRAIN_LIMIT} cycles after "
                                f"the engine stopped: {owed}")
        done = bool(status >> STATUS_BITS["done"] & 1)
        try:
            err_name = EngineError(error).name
        except ValueError:
            err_name = f"error code {error}"
        want = run["expect_error"]
        if want is None:
            if not done or error:
                failures.append(f"{run['name']}: engine stopped with {err_name} at instruction {index} "
                                f"(status {status:#x})")
            elif owed:
                failures.append(f"{run['name']}: done with memory commands outstanding (addr, beats, write): {owed}")
            missing = [c["index"] for c in run["captures"] if c["index"] not in port.captured]
            if missing:
                failures.append(f"{run['name']}: compute instructions {missing} never retired (no capture)")
            for c in run["captures"]:
                if c["index"] in port.captured:
                    failures += compare(run["name"], f"after compute instruction {c['index']}",
                                        port.captured[c["index"]], c["tensors"])
            failures += compare(run["name"], "at the end", bytes(memory[:run["act_size"]]), run["outputs"])
        elif done or error != want["code"] or index != want["index"]:
            failures.append(f"{run['name']}: expected {want['name']} at instruction {want['index']}, got "
                            f"{'done' if done else err_name} at instruction {index} (status {status:#x})")
        checked = sum(len(c["tensors"]) for c in run["captures"]) + len(run["outputs"])
        results.append({"name": run["name"], "cycles": cycles, "bench_cycles": bench_cycles, "seconds": seconds,
                        "done": done, "error": err_name, "error_index": index, "tensors_checked": checked,
                        "owed_at_stop": owed, "drain_cycles": drain})
        cocotb.log.info("%s: %s, CYCLES %d (%d clock cycles in the bench), %.2f s, %.0f cycles/s, %d tensors checked",
                        run["name"], "done" if done else f"{err_name} at {index}", cycles, bench_cycles,
                        seconds, bench_cycles / seconds if seconds else 0.0, checked)
    wall = time.perf_counter() - wall0
    total = core.cycle
    summary = {"runs": results, "failures": failures, "clock_cycles": total, "seconds": wall,
               "cycles_per_second": total / wall if wall else 0.0,
               "transfers": len(core.transfers), "jittered": sum(t.latency > core.latency for t in core.transfers)}
    with open(os.environ["ONDA_RESULT"], "w") as f:
        json.dump(summary, f)
    cocotb.log.info("%d runs, %d clock cycles in %.1f s: %.0f cycles/s", len(results), total, wall,
                    summary["cycles_per_second"])
    assert not failures, "\n".join(failures)
