"""The SDR SDRAM chips a ULX3S ships with, and their timings in clock cycles at a given clock.

A chip is a frozen :class:`SdramChip`: geometry (banks, rows, columns, data width) and the
datasheet's minimum times in nanoseconds. :func:`sdram_cycles` turns them into whole clock
cycles at a clock frequency (minimum times rounded up, the refresh interval, a maximum, rounded
down) and picks the smallest CAS latency the chip allows at that clock.

Where a datasheet value could not be confirmed, or LiteDRAM's ``litedram/modules.py`` records a
larger one, the larger (safer) value is taken and the comment says so: at 50 or 100 MHz the
difference is at most one cycle of a rarely paid cost (row miss, refresh), never bandwidth on a
streaming row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AS4C32M16SB_7", "CHIPS", "IS42S16160G_7", "MT48LC16M16A2_6A", "SdramChip", "SdramCycles", "sdram_cycles"]


@dataclass(frozen=True)
class SdramChip:
    """One SDR SDRAM part: geometry and datasheet timings (ns unless the name says ``_ck``).

    ``cl_tck_min`` pairs each supported CAS latency with the shortest clock period (ns) at which
    the chip allows it; ``init_refreshes`` is the AUTO REFRESH count of the power-up sequence
    (PRECHARGE ALL, that many AUTO REFRESH, LOAD MODE REGISTER).
    """

    name: str
    banks: int
    rows: int
    columns: int
    width: int          # data bits
    tRP: float          # PRECHARGE to ACTIVATE / AUTO REFRESH (same bank)
    tRCD: float         # ACTIVATE to READ / WRITE (same bank)
    tRAS: float         # ACTIVATE to PRECHARGE (same bank), minimum
    tRAS_max: float     # ACTIVATE to PRECHARGE, maximum
    tRC: float          # ACTIVATE to ACTIVATE (same bank)
    tRRD: float         # ACTIVATE to ACTIVATE (different banks)
    tRFC: float         # AUTO REFRESH to any command
    tWR: float          # last WRITE to PRECHARGE
    tMRD_ck: int        # LOAD MODE REGISTER to any command, clock cycles
    tREFI: float        # average AUTO REFRESH interval
    power_up: float     # stable power and clock (NOP / INHIBIT) before the first command
    init_refreshes: int
    cl_tck_min: tuple[tuple[int, float], ...]

    @property
    def size_bytes(self) -> int:
        return self.banks * self.rows * self.columns * self.width // 8

    @property
    def bank_bits(self) -> int:
        return (self.banks - 1).bit_length()

    @property
    def row_bits(self) -> int:
        return (self.rows - 1).bit_length()

    @property
    def column_bits(self) -> int:
        return (self.columns - 1).bit_length()


MT48LC16M16A2_6A = SdramChip(
    # Micron 256Mb SDR SDRAM (MT48LC16M16A2, 4 Meg x 16 x 4 banks), speed grade -6A, commercial:
    # the ULX3S bill of materials' first source.
    name="MT48LC16M16A2-6A",
    banks=4, rows=8192, columns=512, width=16,   # datasheet "Addressing": 8K rows A0-A12, 512 columns A0-A8, BA0-1
    tRP=18.0,        # datasheet AC table, -6A: tRP 18 ns (LiteDRAM records 20, the -75 grade)
    tRCD=18.0,       # datasheet, -6A: tRCD 18 ns (LiteDRAM 20, -75)
    tRAS=42.0,       # datasheet, -6A: tRAS 42 ns min (LiteDRAM 44, -75)
    tRAS_max=120_000.0,  # datasheet: tRAS 120,000 ns max
    tRC=60.0,        # datasheet, -6A: tRC 60 ns
    tRRD=12.0,       # datasheet, -6A: tRRD 12 ns
    tRFC=66.0,       # datasheet, -6A: tRFC 60 ns; LiteDRAM's 66 (-75) taken, the larger
    tWR=15.0,        # datasheet, -6A: tWR 12 ns ("1 CLK + 6 ns" with auto precharge); LiteDRAM's 15 taken
    tMRD_ck=2,       # datasheet: tMRD 2 tCK
    tREFI=64e6 / 8192,   # datasheet: 8192 AUTO REFRESH every 64 ms (commercial, industrial): 7.8125 us
    power_up=100_000.0,  # datasheet "Initialization": at least 100 us of NOP / INHIBIT
    init_refreshes=2,    # datasheet "Initialization": at least two AUTO REFRESH before LOAD MODE REGISTER
    cl_tck_min=((2, 10.0), (3, 6.0)),  # -6A: tCK(3) 6 ns (167 MHz); tCK(2) 10 ns taken (datasheet's
                                       # -6A CL2 entry not confirmed; 10 ns is the slowest grade's)
)

IS42S16160G_7 = SdramChip(
    # ISSI 256Mb SDR SDRAM (IS42S16160G, 4M x 16 x 4 banks), speed grade -7, commercial: the
    # bill of materials' second source.
    name="IS42S16160G-7",
    banks=4, rows=8192, columns=512, width=16,   # datasheet: 8K rows A0-A12, 512 columns A0-A8
    tRP=20.0,        # datasheet, -7: tRP 15 ns; LiteDRAM's 20 taken
    tRCD=20.0,       # datasheet, -7: tRCD 15 ns; LiteDRAM's 20 taken
    tRAS=42.0,       # datasheet, -7: tRAS 37 ns; 42 (the -6 grade, other ISSI parts) taken
    tRAS_max=100_000.0,  # datasheet: tRAS 100 us max
    tRC=60.0,        # datasheet, -7: tRC 60 ns
    tRRD=14.0,       # datasheet, -7: tRRD 14 ns
    tRFC=70.0,       # datasheet: AUTO REFRESH period is tRC, 60 ns; LiteDRAM's 70 taken
    tWR=20.0,        # datasheet, -7: tDPL (input data to precharge) 14 ns; LiteDRAM's 20 taken
    tMRD_ck=2,       # datasheet: tMRD 14 ns = 2 tCK at 143 MHz; 2 tCK below that
    tREFI=64e6 / 8192,   # datasheet: 8K refresh / 64 ms (commercial, industrial; 16 ms is the A2 grade)
    power_up=200_000.0,  # datasheet "Power on and initialization": 100 us; 200 us (older ISSI parts) taken
    init_refreshes=8,    # datasheet "Power on and initialization": eight AUTO REFRESH
    cl_tck_min=((2, 10.0), (3, 7.0)),  # -7: tCK(3) 7 ns (143 MHz); tCK(2) 7.5 ns, 10 ns taken
)

AS4C32M16SB_7 = SdramChip(
    # Alliance Memory 512Mb SDR SDRAM (AS4C32M16SB, 8M x 16 x 4 banks), speed grade -7: on some
    # ULX3S boards (64 MB; the engine's configuration uses the first 32 MB).
    name="AS4C32M16SB-7",
    banks=4, rows=8192, columns=1024, width=16,  # datasheet: 8K rows A0-A12, 1K columns A0-A9
    tRP=21.0,        # datasheet AC table, -7: tRP 21 ns (LiteDRAM's 18 is the -6 grade)
    tRCD=21.0,       # datasheet, -7: tRCD 21 ns (LiteDRAM 18, -6)
    tRAS=42.0,       # datasheet, -7: tRAS 42 ns min
    tRAS_max=100_000.0,  # datasheet: tRAS 100K ns max
    tRC=63.0,        # datasheet, -7: tRC 63 ns
    tRRD=14.0,       # datasheet, -7: tRRD 14 ns
    tRFC=63.0,       # datasheet, -7: tRFC 63 ns (LiteDRAM 60, -6)
    tWR=14.0,        # datasheet, -7: tWR 14 ns (LiteDRAM 12, -6)
    tMRD_ck=2,       # datasheet: tMRD 14 ns / 2 tCK
    tREFI=64e6 / 8192,   # datasheet: tREFI 7.8 us (8K refresh / 64 ms)
    power_up=200_000.0,  # datasheet note 11 (power-up sequence): 200 us
    init_refreshes=8,    # datasheet note 11: 8 AUTO REFRESH (Alliance's sequence; Micron asks 2)
    cl_tck_min=((2, 10.0), (3, 7.0)),  # datasheet, -7: tCK 10 ns at CL2, 7 ns at CL3
)

CHIPS = {c.name: c for c in (MT48LC16M16A2_6A, IS42S16160G_7, AS4C32M16SB_7)}
"""The chips by name."""


@dataclass(frozen=True)
class SdramCycles:
    """A chip's timings in whole cycles of one clock (``cl`` the CAS latency chosen)."""

    clock_mhz: float
    cl: int
    tRP: int
    tRCD: int
    tRAS: int
    tRAS_max: int
    tRC: int
    tRRD: int
    tRFC: int
    tWR: int
    tMRD: int
    tREFI: int
    power_up: int
    init_refreshes: int


def sdram_cycles(chip: SdramChip, clock_mhz: float) -> SdramCycles:
    """``chip``'s timings at ``clock_mhz``: each minimum time in cycles rounded up (at least 1),
    the maximums (``tREFI``, ``tRAS_max``) rounded down, and the smallest CAS latency whose
    minimum clock period the clock meets. Raises ``ValueError`` if none does."""
    if not clock_mhz > 0:
        raise ValueError(f"sdram_cycles: clock_mhz must be > 0, got {clock_mhz!r}")
    tck = 1000.0 / clock_mhz
    cls = [cl for cl, tmin in sorted(chip.cl_tck_min) if tck >= tmin - 1e-9]
    if not cls:
        fastest = 1000.0 / min(t for _, t in chip.cl_tck_min)
        raise ValueError(f"sdram_cycles: {chip.name} runs at {fastest:.1f} MHz at most, asked for {clock_mhz} MHz")

    def up(ns: float) -> int:
        return max(1, math.ceil(ns / tck - 1e-9))

    def down(ns: float) -> int:
        return math.floor(ns / tck + 1e-9)

    return SdramCycles(clock_mhz=clock_mhz, cl=cls[0], tRP=up(chip.tRP), tRCD=up(chip.tRCD), tRAS=up(chip.tRAS),
                       tRAS_max=down(chip.tRAS_max), tRC=up(chip.tRC), tRRD=up(chip.tRRD), tRFC=up(chip.tRFC),
                       tWR=up(chip.tWR), tMRD=chip.tMRD_ck, tREFI=down(chip.tREFI), power_up=up(chip.power_up),
                       init_refreshes=chip.init_refreshes)
