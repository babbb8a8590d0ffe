"""The ULX3S SDRAM: the chip model rejects each timing violation (a hand-written command sequence
per parameter) and passes a legal sequence; the controller with the model at its pins
initialises, serves random traffic and the engine's DMA patterns exactly as a bytearray mirror,
refreshes on time and streams long sequential rows (efficiency printed, not asserted)."""

import random
from dataclasses import replace

import pytest

from onda.hw.boards.sdram import SdramController, sdram_location
from onda.hw.boards.sdram_chips import CHIPS, MT48LC16M16A2_6A, sdram_cycles
from onda.sim.board.sdram_bench import Burst, expected_reads, run_traffic
from onda.sim.board.sdram_model import SdramCore, SdramPins, SdramTimingError

# A short power-up wait keeps the simulations short; one test runs the datasheets' own.
FAST = {name: replace(chip, power_up=2000.0) for name, chip in CHIPS.items()}
CLOCKS = [50.0, 100.0]

# -- the model alone ---------------------------------------------------------------------------

NOP, ACT, READ, WRITE, PRE, REF, LMR = "NOP", "ACT", "READ", "WRITE", "PRE", "REF", "LMR"
_CODES = {NOP: 0b111, ACT: 0b011, READ: 0b101, WRITE: 0b100, PRE: 0b010, REF: 0b001, LMR: 0b000}


class Driver:
    """Hand-written command sequences at the model's pins, one edge per command or NOP."""

    def __init__(self, chip=MT48LC16M16A2_6A, mhz=100.0):
        self.chip, self.core = chip, SdramCore(chip, mhz)
        self.cy = sdram_cycles(chip, mhz)
        self.out = []  # (edge, word) the chip drove

    def cmd(self, name, ba=0, a=0, dq=0, dqm=0, oe=None):
        code = _CODES[name]
        pins = SdramPins(cke=1, cs_n=0, ras_n=code >> 2, cas_n=code >> 1 & 1, we_n=code & 1, ba=ba, a=a, dqm=dqm,
                         dq=dq, dq_oe=int(name == WRITE) if oe is None else oe)
        word = self.core.clock(pins)
        if word is not None:
            self.out.append((self.core.cycle, word))  # sampled at the next edge
        return self

    def nop(self, n=1):
        for _ in range(n):
            self.cmd(NOP)
        return self

    def init(self, cl=None, refreshes=None):
        cy = self.cy
        self.nop(cy.power_up)
        self.cmd(PRE, a=1 << 10).nop(cy.tRP - 1)
        for _ in range(cy.init_refreshes if refreshes is None else refreshes):
            self.cmd(REF).nop(cy.tRFC - 1)
        self.cmd(LMR, a=(cy.cl if cl is None else cl) << 4).nop(cy.tMRD - 1)
        return self

    def open(self, bank=0, row=1):
        self.cmd(ACT, ba=bank, a=row).nop(self.cy.tRCD - 1)
        return self


def seq_tRCD(d):
    d.init().cmd(ACT, a=1).cmd(READ)


def seq_tRP(d):
    d.init().cmd(ACT, a=1).nop(10).cmd(PRE).cmd(ACT, a=2)


def seq_tRAS(d):
    d.init().cmd(ACT, a=1).nop(1).cmd(PRE)


def seq_tRC(d):
    d.init().cmd(ACT, a=1).nop(d.cy.tRAS - 1).cmd(PRE).nop(d.cy.tRP - 1).cmd(ACT, a=2)


def seq_tRRD(d):
    d.init().cmd(ACT, ba=0, a=1).cmd(ACT, ba=1, a=1)


def seq_tRFC(d):
    d.init().cmd(REF).cmd(ACT, a=1)


def seq_tWR(d):
    d.init().cmd(ACT, a=1).nop(10).cmd(WRITE, dq=1).cmd(PRE)


def seq_tMRD(d):
    d.init().cmd(LMR, a=d.cy.cl << 4).cmd(ACT, a=1)


def seq_cas_latency(d):
    d.init(cl=1)


def seq_tREFI(d):
    d.init().nop(9 * d.cy.tREFI + 128)


def seq_tRAS_max(d):
    d.init().cmd(ACT, a=1).nop(int(d.chip.tRAS_max / d.core.tck) + 2)


def seq_closed_bank(d):
    d.init().cmd(WRITE, ba=2, a=5, dq=7)


def seq_open_bank(d):
    d.init().cmd(ACT, a=1).nop(20).cmd(ACT, a=2)


def seq_refresh_open_bank(d):
    d.init().cmd(ACT, a=1).nop(20).cmd(REF)


def seq_before_mode(d):
    d.nop(d.cy.power_up).cmd(PRE, a=1 << 10).nop(4).cmd(ACT, a=1)


def seq_too_few_refreshes(d):
    d.init(refreshes=d.cy.init_refreshes - 1)


def seq_power_up(d):
    d.nop(5).cmd(PRE, a=1 << 10)


def seq_first_not_precharge(d):
    d.nop(d.cy.power_up).cmd(REF)


def seq_bus_contention(d):
    d.init().open().cmd(READ).nop(d.cy.cl - 1).cmd(WRITE, dq=3)


def seq_write_not_driven(d):
    d.init().open().cmd(WRITE, dq=3, oe=0)


def seq_auto_precharge(d):
    d.init().open().cmd(READ, a=1 << 10)


def seq_column(d):
    d.init().open().cmd(READ, a=d.chip.columns)


VIOLATIONS = [
    # (sequence, parameter named, chip override)
    (seq_tRCD, "tRCD", {}),
    (seq_tRP, "tRP", {}),
    (seq_tRAS, "tRAS", {}),
    (seq_tRC, "tRC", {"tRC": 100.0}),  # tRC longer than tRAS + tRP, else those catch it first
    (seq_tRRD, "tRRD", {}),
    (seq_tRFC, "tRFC", {}),
    (seq_tWR, "tWR", {}),
    (seq_tMRD, "tMRD", {}),
    (seq_cas_latency, "CAS latency", {}),
    (seq_tREFI, "tREFI", {}),
    (seq_tRAS_max, "tRAS_max", {"tRAS_max": 5000.0}),
    (seq_closed_bank, "closed bank", {}),
    (seq_open_bank, "open bank", {}),
    (seq_refresh_open_bank, "open bank", {}),
    (seq_before_mode, "initialisation", {}),
    (seq_too_few_refreshes, "initialisation", {}),
    (seq_first_not_precharge, "initialisation", {}),
    (seq_power_up, "power-up", {}),
    (seq_bus_contention, "bus contention", {}),
    (seq_write_not_driven, "write data", {}),
    (seq_auto_precharge, "unsupported", {}),
    (seq_column, "column", {}),
]


@pytest.mark.parametrize("seq, parameter, override", VIOLATIONS, ids=[v[0].__name__[4:] for v in VIOLATIONS])
def test_model_rejects(seq, parameter, override):
    chip = replace(FAST["MT48LC16M16A2-6A"], **override)
    d = Driver(chip)
    with pytest.raises(SdramTimingError) as e:
        seq(d)
    assert e.value.parameter == parameter, str(e.value)
    assert f"cycle {e.value.cycle}" in str(e.value) and parameter in str(e.value)


@pytest.mark.parametrize("name", sorted(CHIPS))
@pytest.mark.parametrize("mhz", CLOCKS)
def test_model_legal_sequence(name, mhz):
    """Every command at its earliest legal cycle: no error, the data written reads back CL
    edges after each READ, DQM masks a written byte, refreshes keep the model happy."""
    chip = FAST[name]
    d = Driver(chip, mhz)
    cy = d.cy
    d.init().cmd(ACT, ba=0, a=3).nop(cy.tRRD - 1).cmd(ACT, ba=1, a=4).nop(cy.tRCD - 1)
    d.cmd(WRITE, ba=0, a=7, dq=0x1234).cmd(WRITE, ba=1, a=8, dq=0xABCD, dqm=0b10)
    d.cmd(READ, ba=0, a=7)
    read_edge = d.core.cycle - 1
    d.cmd(READ, ba=1, a=8).nop(cy.cl + 1)
    d.cmd(WRITE, ba=0, a=9, dq=0x5555)  # CL + 2 after the last READ: the bus is free
    assert d.out[:2] == [(read_edge + cy.cl, 0x1234), (read_edge + 1 + cy.cl, 0x00CD)]
    d.nop(max(cy.tWR, cy.tRAS) - 1).cmd(PRE, a=1 << 10).nop(cy.tRP - 1)
    for _ in range(12):  # regular refreshes through 12 intervals
        d.cmd(REF).nop(cy.tREFI - 1)
    d.cmd(ACT, ba=0, a=3).nop(cy.tRCD - 1).cmd(READ, ba=0, a=9).nop(cy.cl)
    assert d.out[-1][1] == 0x5555
    assert d.core.peek(0, 3, 9) == 0x5555 and d.core.refreshes == 12


def test_cycles_table():
    """The datasheet times in cycles, rounded up; tREFI rounded down; CL by the clock."""
    c = sdram_cycles(MT48LC16M16A2_6A, 100.0)
    assert (c.cl, c.tRP, c.tRCD, c.tRAS, c.tRC, c.tRRD, c.tRFC, c.tWR, c.tMRD, c.tREFI) == \
        (2, 2, 2, 5, 6, 2, 7, 2, 2, 781)
    c = sdram_cycles(CHIPS["AS4C32M16SB-7"], 50.0)
    assert (c.cl, c.tRP, c.tRCD, c.tRAS, c.tRC, c.tRFC, c.tWR, c.tREFI, c.power_up) == \
        (2, 2, 2, 3, 4, 4, 1, 390, 10000)
    assert sdram_cycles(MT48LC16M16A2_6A, 143.0).cl == 3
    with pytest.raises(ValueError, match="MHz at most"):
        sdram_cycles(CHIPS["IS42S16160G-7"], 150.0)


def test_controller_refusals():
    with pytest.raises(ValueError, match="read_delay"):
        SdramController(MT48LC16M16A2_6A, 50.0, read_delay=-1)
    with pytest.raises(ValueError, match="x8"):
        SdramController(replace(MT48LC16M16A2_6A, width=8), 50.0)


# -- the controller with the model -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CHIPS))
def test_initialisation(name):
    """The datasheet's own power-up wait: ``ready`` rises after it, the model saw PRECHARGE ALL,
    the datasheet's refreshes and the mode register (CL as chosen); nothing is violated."""
    chip = CHIPS[name]
    run = run_traffic(chip, 50.0, [Burst(0, 1)])
    core = run.model.core
    cy = sdram_cycles(chip, 50.0)
    assert core.ready and core.cl == cy.cl and core.init_refs == chip.init_refreshes
    assert cy.power_up < run.init_cycles < cy.power_up + 200


def random_bursts(rng, chip, n, window):
    """Random reads and masked writes, lengths 1..64, in ``window`` (lo, hi) byte addresses."""
    lo, hi = window
    out = []
    for _ in range(n):
        beats = rng.choice([1, 2, 3, 8, 17, 33, 64, rng.randint(1, 64)])
        addr = rng.randrange(lo, hi - 2 * beats, 2)
        if rng.random() < 0.5:
            out.append(Burst(addr, beats, True, rng.randbytes(2 * beats), tuple(rng.randrange(4) for _ in range(beats))))
        else:
            out.append(Burst(addr, beats))
    return out


def check(chip, mhz, bursts, image_base, image_len, *, seed=0, **kw):
    rng = random.Random(seed ^ 0xABC)
    image = rng.randbytes(image_len)
    mirror = bytearray(chip.size_bytes)
    mirror[image_base:image_base + image_len] = image
    want = expected_reads(mirror, bursts)
    run = run_traffic(chip, mhz, bursts, image=(image_base, image), seed=seed, **kw)
    assert len(run.reads) == len(want)
    for i, (g, w) in enumerate(zip(run.reads, want)):
        assert g == w, f"read {i}: got {g.hex()}, want {w.hex()}"
    # every write reached the chip
    for b in bursts:
        if b.write:
            for k in range(0, 2 * b.beats, 2):
                bank, row, col = sdram_location(chip, b.addr + k)
                word = run.model.core.peek(bank, row, col)
                assert word == mirror[b.addr + k] | mirror[b.addr + k + 1] << 8
    return run


@pytest.mark.parametrize("name", sorted(CHIPS))
@pytest.mark.parametrize("mhz", CLOCKS)
def test_random_traffic(name, mhz):
    """Random reads and masked writes of 1..64 beats, with idle cycles and rdata back-pressure,
    over a window crossing several rows and banks: reads equal the mirror's bytes."""
    chip = FAST[name]
    rng = random.Random(hash((name, mhz)) & 0xFFFF)
    row_bytes = chip.columns * 2
    window = (3 * row_bytes * 4 - 8192, 3 * row_bytes * 4 + 8192)  # around a row-and-bank boundary
    bursts = random_bursts(rng, chip, 70, window)
    far = [Burst(rng.randrange(0, chip.size_bytes - 256, 2), rng.randint(1, 64)) for _ in range(8)]
    check(chip, mhz, bursts + far, window[0], window[1] - window[0], stall=0.25, seed=rng.randrange(1000))


@pytest.mark.parametrize("read_delay", [0, 2])
def test_read_delay(read_delay):
    """The IO register stages on dq_i: data still exact, the latency grows with them."""
    chip = FAST["MT48LC16M16A2-6A"]
    rng = random.Random(read_delay)
    check(chip, 100.0, random_bursts(rng, chip, 20, (0, 4096)), 0, 4096, read_delay=read_delay, stall=0.2)
    warm = run_traffic(chip, 100.0, [Burst(0, 1, True, b"\1\2"), Burst(0, 4)], read_delay=read_delay)
    assert warm.reads == [b"\1\2\0\0\0\0\0\0"] and warm.first_read_latency == 5 + read_delay


def test_read_latency_row_hit():
    """Command to first read beat: 6 cycles on an open row at CL2 with the default IO register
    (command register 1, pins register 1, CL 2, IO register 1, FIFO 1); tRCD more on a closed
    bank."""
    chip = FAST["MT48LC16M16A2-6A"]
    cold = run_traffic(chip, 100.0, [Burst(0, 1)])
    warm = run_traffic(chip, 100.0, [Burst(0, 1, True, b"\1\2"), Burst(0, 4)])
    assert warm.first_read_latency == 6
    assert cold.first_read_latency == 6 + sdram_cycles(chip, 100.0).tRCD
    print(f"\nread latency: {warm.first_read_latency} cycles (row hit), {cold.first_read_latency} (bank closed)")


DMA_PATTERNS = {
    # 4 KiB rows written then read back in 64-beat bursts: four 1 KiB rows, all banks
    "sequential": lambda chip: [Burst(k, 64, True, bytes((k + i) & 255 for i in range(128))) for k in range(0, 4096, 128)]
    + [Burst(k, 64) for k in range(0, 4096, 128)],
    # 24 rows of 200 bytes 1000 apart (a channel slice of an activation: y pixels, x channels)
    "strided": lambda chip: [Burst(2000 + j * 1000 + k, min(64, (200 - k) // 2), True, bytes(range(2 * min(64, (200 - k) // 2))))
                             for j in range(24) for k in range(0, 200, 128)]
    + [Burst(2000 + j * 1000 + k, min(64, (200 - k) // 2)) for j in range(24) for k in range(0, 200, 128)],
    # bursts straddling row (and bank) boundaries, and the last bank's row into the next row
    "row_crossing": lambda chip: [Burst(r * chip.columns * 2 - 2 * s, 64, True, bytes(range(128))) for r in (1, 2, 3, 4, 5, 8)
                                  for s in (1, 32, 63)]
    + [Burst(r * chip.columns * 2 - 2 * s, 64) for r in (1, 2, 3, 4, 5, 8) for s in (1, 32, 63)],
}


@pytest.mark.parametrize("pattern", sorted(DMA_PATTERNS))
@pytest.mark.parametrize("name", ["MT48LC16M16A2-6A", "AS4C32M16SB-7"])
def test_dma_patterns(pattern, name):
    chip = FAST[name]
    bursts = DMA_PATTERNS[pattern](chip)
    check(chip, 100.0, bursts, 0, 64 * 1024)


def test_refresh_on_time_long_run():
    """A long read run with rdata back-pressure: refresh interrupts bursts, the model sees one
    AUTO REFRESH per tREFI (it raises if more than 8 are late), every beat still exact."""
    chip = FAST["IS42S16160G-7"]
    cy = sdram_cycles(chip, 50.0)
    bursts = [Burst(k, 64) for k in range(0, 8192, 128)] * 2
    run = check(chip, 50.0, bursts, 0, 8192, stall=0.2, seed=5)
    core = run.model.core
    elapsed = core.cycle - core.ready_cycle
    assert elapsed > 10 * cy.tREFI
    assert elapsed // cy.tREFI - 1 <= core.refreshes <= elapsed // cy.tREFI + 1


@pytest.mark.parametrize("mhz", CLOCKS)
def test_sequential_efficiency(mhz):
    """16 KiB of 64-beat writes then reads, back to back: exact, and the efficiency printed
    (``sdram_bench.measure_efficiency`` is the benchmark; speed is not asserted here)."""
    chip = FAST["MT48LC16M16A2-6A"]
    writes = [Burst(k, 64, True, bytes((k // 128 + i) & 255 for i in range(128))) for k in range(0, 16384, 128)]
    reads = [Burst(k, 64) for k in range(0, 16384, 128)]
    w = check(chip, mhz, writes, 0, 16384)
    r = check(chip, mhz, reads, 0, 16384)
    print(f"\n{chip.name} at {mhz} MHz: sequential write {w.efficiency:.3f}, read {r.efficiency:.3f} beats/cycle")


def short_bank_traffic(chip, seed=3, n=300):
    """Short bursts over two rows each of four banks: row misses, read/write switches, a refresh."""
    rng = random.Random(seed)
    row = chip.columns * 2
    out = []
    for _ in range(n):
        addr = rng.choice([0, 1, 2, 5]) * row * 4 + rng.choice([0, 1]) * row + rng.randrange(0, row - 16, 2)
        beats = rng.randint(1, 4)
        out.append(Burst(addr, beats, True, rng.randbytes(2 * beats)) if rng.random() < 0.5 else Burst(addr, beats))
    return out


@pytest.mark.parametrize("parameter", ["tRCD", "tRP", "tRAS", "tRFC", "tWR"])
def test_model_catches_short_controller(parameter, monkeypatch):
    """The controller built with one timing a cycle short (the model keeps the datasheet's):
    the model names that parameter. (tRC and tRRD never bind at these clocks: tRAS + tRP >= tRC,
    and one bank is opened at a time, tRCD apart.)"""
    import onda.hw.boards.sdram as sdram

    real = sdram.sdram_cycles
    monkeypatch.setattr(sdram, "sdram_cycles",
                        lambda chip, mhz: replace(real(chip, mhz), **{parameter: getattr(real(chip, mhz), parameter) - 1}))
    with pytest.raises(SdramTimingError) as e:
        run_traffic(FAST["MT48LC16M16A2-6A"], 100.0, short_bank_traffic(FAST["MT48LC16M16A2-6A"]))
    assert e.value.parameter == parameter, str(e.value)


def test_short_bursts_row_misses():
    """The same short-burst traffic with the real timings: exact."""
    chip = FAST["MT48LC16M16A2-6A"]
    check(chip, 100.0, short_bank_traffic(chip), 0, 6 * chip.columns * 2 * 4)
