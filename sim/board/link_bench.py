"""A bench for the link endpoint's gateware (``onda.hw.boards.link``) against the protocol's
reference device (``onda.sim.board.link_device``): the same bytes in, the answers, the memory,
the register writes and the drop count out of each, for a test to compare.

The gateware runs in Amaranth's simulator in front of the engine's register file (``CsrFile``,
its read-only registers tied to the values given) and a memory served by
``onda.sim.engine.memory_model.MemoryCore`` from a ``bytearray`` (latency, stalls, jitter); one
testbench drives the byte streams (gaps on ``rx``, stalls on ``tx``) and serves the memory each
clock. The reference runs over :class:`Target`, the same memory and registers in Python,
including CYCLES_LO's latching of CYCLES_HI.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from onda.hw.boards.link import LinkEndpoint
from onda.hw.engine.csr import CsrFile
from onda.hw.engine.registers import REGISTERS, STATUS_BITS, address_of
from onda.sim.engine.memory_model import MemoryCore

from .link_device import LinkDevice

__all__ = ["BOARD", "FINGERPRINT", "LinkRun", "Target", "VERSION", "random_registers", "run_gateware",
           "run_reference"]

BOARD, FINGERPRINT, VERSION = "icebreaker", bytes(range(0xA0, 0xC0)), 0x00010203


def random_registers(seed: int, running: bool = False) -> tuple[dict[str, int], int]:
    """Seeded values for the read-only registers (STATUS's running bit as asked) and CYCLES."""
    rng = random.Random(seed)
    values = {r.name: rng.getrandbits(32) for r in REGISTERS
              if not r.writable and r.name not in ("CYCLES_LO", "CYCLES_HI")}
    values["STATUS"] = values["STATUS"] & ~(1 << STATUS_BITS["running"]) | int(running) << STATUS_BITS["running"]
    return values, rng.getrandbits(64)


class Target:
    """The engine as ``LinkDevice`` sees it: a memory and the registers ``CsrFile`` shows (CTRL
    reads 0, PROG_ADDR/PROG_COUNT as written, CYCLES_LO latches CYCLES_HI, which reads 0 before
    any CYCLES_LO read). ``writes`` records every register write as (address, value)."""

    def __init__(self, memory: bytearray, values: dict[str, int], cycles: int):
        self.memory, self.values, self.cycles = memory, values, cycles
        self.prog_addr = self.prog_count = self.cycles_hi = 0
        self.writes: list[tuple[int, int]] = []

    def write_memory(self, addr: int, data: bytes) -> None:
        assert 0 <= addr and addr + len(data) <= len(self.memory)
        self.memory[addr:addr + len(data)] = data

    def read_memory(self, addr: int, n: int) -> bytes:
        assert 0 <= addr and addr + n <= len(self.memory)
        return bytes(self.memory[addr:addr + n])

    def write_register(self, name: str, value: int) -> None:
        self.writes.append((address_of(name), value))
        if name == "PROG_ADDR":
            self.prog_addr = value
        elif name == "PROG_COUNT":
            self.prog_count = value

    def read_register(self, name: str) -> int:
        if name == "CTRL":
            return 0
        if name == "PROG_ADDR":
            return self.prog_addr
        if name == "PROG_COUNT":
            return self.prog_count
        if name == "CYCLES_LO":
            self.cycles_hi = self.cycles >> 32
            return self.cycles & 0xFFFF_FFFF
        if name == "CYCLES_HI":
            return self.cycles_hi
        return self.values[name]


@dataclass
class LinkRun:
    """What one side did with a byte stream."""

    answers: bytes
    memory: bytearray
    writes: list[tuple[int, int]]
    dropped: int
    cycles: int = 0  # simulated clocks (gateware)
    rx_blocked: int = 0  # clocks the gateware held rx.ready low with a byte offered
    extra: dict = field(default_factory=dict)


def run_reference(stream: bytes, memory: bytes, values: dict[str, int], cycles: int, *,
                  mem_size: int | None = None, pauses: tuple[int, ...] = ()) -> LinkRun:
    """``pauses``: offsets in ``stream`` before which the line is quiet for a gap (``line_idle``)."""
    target = Target(bytearray(memory), values, cycles)
    device = LinkDevice(target, BOARD, FINGERPRINT, VERSION, len(memory) if mem_size is None else mem_size)
    answers, at = bytearray(), 0
    for cut in sorted(pauses):
        answers += device.feed(stream[at:cut])
        answers += device.line_idle()
        at = cut
    answers += device.feed(stream[at:])
    return LinkRun(bytes(answers), target.memory, target.writes, device.dropped)


class _Bench(wiring.Component):
    def __init__(self, P: int, mem_size: int, values: dict[str, int], cycles: int, gap: int = 0):
        self.values, self.cycles_value = values, cycles
        self.link = LinkEndpoint(BOARD, FINGERPRINT, VERSION, mem_size, P, gap=gap)
        self.regs = CsrFile()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link, m.submodules.regs = link, regs = self.link, self.regs
        wiring.connect(m, link.csr, regs.bus)
        for name, value in self.values.items():
            m.d.comb += getattr(regs, name.lower()).eq(value)
        m.d.comb += [regs.cycles.eq(self.cycles_value),
                     link.running.eq(self.values["STATUS"] >> STATUS_BITS["running"] & 1)]
        return m


def run_gateware(stream: bytes, memory: bytes, values: dict[str, int], cycles: int, *, P: int = 2,
                 mem_size: int | None = None, latency: int = 1, stall: float = 0.0, jitter: int = 0,
                 rx_gap: float = 0.0, tx_stall: float = 0.0, tx_hold: int = 0, seed: int = 0,
                 max_cycles: int = 200_000, gap: int = 0, pauses: tuple[int, ...] = ()) -> LinkRun:
    """``stream`` into the endpoint's ``rx`` (a byte offered with probability ``1 - rx_gap`` a
    clock), answers taken from ``tx`` (``ready`` low for the first ``tx_hold`` clocks, then low
    with probability ``tx_stall``), the memory ``memory`` served with ``latency``, ``stall`` and
    ``jitter``, until every byte has been taken and the endpoint is idle. ``gap``: the endpoint's
    (0: never gives a frame up); before each offset in ``pauses`` the line stays quiet until the
    endpoint has been idle 1.5 gaps."""
    dut = _Bench(P, len(memory) if mem_size is None else mem_size, values, cycles, gap)
    link = dut.link
    mem = bytearray(memory)
    port = link.mem
    cmd_bits, w_bits = len(port.cmd.payload.as_value()), len(port.wdata.payload.as_value())
    # One set and one sample a clock: the simulator evaluates each only once.
    drive = Cat(link.rx.valid, link.rx.payload, link.tx.ready, port.cmd.ready, port.rdata.valid,
                port.rdata.payload.as_value(), port.wdata.ready)
    probe = Cat(link.rx.ready, link.tx.valid, link.tx.payload, link.idle, link.csr.w_en, link.csr.addr,
                link.csr.w_data, port.cmd.valid, port.rdata.ready, port.wdata.valid, port.cmd.payload.as_value(),
                port.wdata.payload.as_value())
    r_shift, w_shift = 12, 12 + 8 * P
    run = LinkRun(b"", mem, [], 0)

    async def bench(ctx):
        core = MemoryCore(mem, P, latency=latency, stall=stall, seed=seed, jitter=jitter)
        rng = random.Random(seed ^ 0x11A)
        answers = bytearray()
        i, offered, last, cycle, rbeat, prev = 0, False, 0, 0, 0, None
        quiet, paused = 0, set()  # clocks of an idle endpoint the line must still stay quiet
        while True:
            if cycle > max_cycles:
                raise TimeoutError(f"link bench: {i} of {len(stream)} bytes taken, {len(answers)} answered "
                                   f"after {cycle} clocks")
            if not offered and i in pauses and i not in paused:
                paused.add(i)
                quiet = gap * 3 // 2
            if (not offered and i < len(stream) and not quiet
                    and not (rx_gap and rng.random() < rx_gap)):
                offered = True
            tx_ready = cycle >= tx_hold and not (tx_stall and rng.random() < tx_stall)
            cready, rvalid, rdata, wready = core.drive()
            if rdata is not None:
                rbeat = int.from_bytes(rdata, "little")
            value = (offered | (stream[i] if offered else 0) << 1 | tx_ready << 9 | cready << 10 | rvalid << 11
                     | rbeat << r_shift | wready << w_shift)
            if value != prev:
                ctx.set(drive, value)
                prev = value
            _, _, s = await ctx.tick().sample(probe)
            rx_ready, tx_valid, tx_byte, idle = s & 1, s >> 1 & 1, s >> 2 & 0xFF, s >> 10 & 1
            w_en, c_addr, c_data = s >> 11 & 1, s >> 12 & 0x3F, s >> 18 & 0xFFFF_FFFF
            s >>= 50
            cvalid, rready, wvalid = s & 1, s >> 1 & 1, s >> 2 & 1
            s >>= 3
            core.clock(bool(cvalid), s & ((1 << cmd_bits) - 1), bool(rready), bool(wvalid),
                       s >> cmd_bits & ((1 << w_bits) - 1))
            if offered:
                if rx_ready:
                    i, offered, last = i + 1, False, cycle
                else:
                    run.rx_blocked += 1
            if tx_valid and tx_ready:
                answers.append(tx_byte)
            if w_en:
                run.writes.append((c_addr, c_data))
            if quiet and idle:
                quiet -= 1
            if i == len(stream) and idle and cycle > last + 1 and not quiet and not core.busy:
                break
            cycle += 1
        run.answers, run.cycles = bytes(answers), cycle
        run.dropped = ctx.get(link.frames_dropped)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return run
