"""The SDRAM controller (``onda.hw.boards.sdram``) with the chip model at its pins
(``sdram_model``), driven over its memory port in Amaranth's simulator: traffic runs and the
efficiency benchmark.

:func:`run_traffic` serves a list of :class:`Burst` commands (seeded random idle cycles on
``cmd``/``wdata`` and back-pressure on ``rdata`` optional) and returns every read beat and the
cycles taken; :func:`expected_reads` is the same list served by a ``bytearray`` mirror, the
oracle. :func:`measure_efficiency` times long sequential reads and writes and random 8-beat
bursts: beats moved per cycle (1.0 is the port's peak, one 16-bit word a clock).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from amaranth.sim import Simulator

from onda.hw.boards.sdram import SdramController, sdram_location
from onda.hw.boards.sdram_chips import SdramChip
from onda.sim.board.port_traffic import port_client
from onda.sim.board.sdram_model import SdramModel

__all__ = ["Burst", "TrafficRun", "expected_reads", "measure_efficiency", "preload", "run_traffic"]

P = 2  # bytes a beat


@dataclass(frozen=True)
class Burst:
    """One memory-port command: ``beats`` words from byte ``addr``; a write carries ``data``
    (``2 * beats`` bytes) and ``mask`` (a 2-bit byte mask per beat, all written by default)."""

    addr: int
    beats: int
    write: bool = False
    data: bytes = b""
    mask: tuple[int, ...] = ()

    def beat_mask(self, k: int) -> int:
        return self.mask[k] if self.mask else 0b11


def expected_reads(memory: bytearray, bursts) -> list[bytes]:
    """Serve ``bursts`` in order from ``memory`` (changed in place): each read's bytes."""
    out = []
    for b in bursts:
        if b.write:
            for k in range(b.beats):
                for i in range(P):
                    if b.beat_mask(k) >> i & 1:
                        memory[b.addr + k * P + i] = b.data[k * P + i]
        else:
            out.append(bytes(memory[b.addr:b.addr + b.beats * P]))
    return out


def preload(model: SdramModel, chip: SdramChip, addr: int, data: bytes) -> None:
    """Write ``data`` at byte ``addr`` (even, even length) straight into the model's storage."""
    for k in range(0, len(data), 2):
        model.core.poke(*sdram_location(chip, addr + k), data[k] | data[k + 1] << 8)


@dataclass
class TrafficRun:
    """What a run gave: the bytes of each read command, ``cycles`` from the first command
    offered to the last beat moved (inclusive), the init time, the model."""

    reads: list[bytes]
    cycles: int
    beats: int
    init_cycles: int
    model: SdramModel
    first_read_latency: int = -1  # cycles from the first read command's transfer to its first beat
    extra: dict = field(default_factory=dict)

    @property
    def efficiency(self) -> float:
        return self.beats / self.cycles if self.cycles else 0.0


def run_traffic(chip: SdramChip, clock_mhz: float, bursts, *, read_delay: int = 1, stall: float = 0.0,
                seed: int = 0, image: tuple[int, bytes] | None = None, max_cycles: int = 2_000_000,
                settle: int = 16) -> TrafficRun:
    """Serve ``bursts`` through the controller and the chip model; ``image = (addr, bytes)`` is
    preloaded into the chip. ``stall`` is the probability of an idle cycle before each command
    or write beat and of ``rdata.ready`` low. A model violation raises ``SdramTimingError``."""
    bursts = list(bursts)
    dut = SdramController(chip, clock_mhz, read_delay=read_delay)
    model = SdramModel(dut.pins, chip, clock_mhz)
    if image is not None:
        preload(model, chip, *image)
    result = {}
    client = port_client(dut.port, bursts, result, stall=stall, seed=seed, ready=dut.ready, max_cycles=max_cycles,
                         settle=settle)

    sim = Simulator(dut)
    sim.add_clock(1e-6 / clock_mhz)
    model.add_to(sim)
    sim.add_testbench(client)
    sim.run()
    return TrafficRun(reads=result["reads"], cycles=result["cycles"], beats=sum(b.beats for b in bursts),
                      init_cycles=result["init"], model=model, first_read_latency=result["latency"])


def measure_efficiency(chip: SdramChip, clock_mhz: float, *, size: int = 64 * 1024, random_bursts: int = 256,
                       seed: int = 0, fast_power_up: bool = True) -> dict:
    """Beats per cycle (1.0 = peak) of ``size`` bytes of sequential reads, then writes, in
    64-beat commands issued back to back, and of ``random_bursts`` 8-beat reads and writes at
    random aligned addresses; with the refresh overhead included (the runs are long enough to
    see several refreshes). ``fast_power_up`` shortens the chip's power-up wait, which is not
    timed, to keep the simulation short."""
    if fast_power_up:
        chip = replace(chip, power_up=2000.0)
    rng = random.Random(seed)
    base = 0x10000
    seq_write = [Burst(base + k, 64, True, bytes(rng.randrange(256) for _ in range(128)))
                 for k in range(0, size, 128)]
    seq_read = [Burst(base + k, 64) for k in range(0, size, 128)]
    rand = []
    for _ in range(random_bursts):
        addr = rng.randrange(0, chip.size_bytes // 2 - 16, 2) & ~1
        if rng.random() < 0.5:
            rand.append(Burst(addr, 8, True, bytes(rng.randrange(256) for _ in range(16))))
        else:
            rand.append(Burst(addr, 8))
    out = {"chip": chip.name, "clock_mhz": clock_mhz}
    w = run_traffic(chip, clock_mhz, seq_write)
    r = run_traffic(chip, clock_mhz, seq_read)
    x = run_traffic(chip, clock_mhz, rand)
    rr = run_traffic(chip, clock_mhz, [b for b in rand if not b.write])
    out.update(sequential_write=w.efficiency, sequential_read=r.efficiency, random_8beat_mixed=x.efficiency,
               random_8beat_read=rr.efficiency, read_latency_cycles=r.first_read_latency,
               refreshes=r.model.core.refreshes)
    return out
