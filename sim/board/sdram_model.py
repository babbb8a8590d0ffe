"""A cycle-level x16 SDR SDRAM at its pins, checking every timing the controller must keep.

:class:`SdramCore` knows no simulator: each clock edge the bench calls :meth:`SdramCore.clock`
with the pins as sampled at that edge (:class:`SdramPins`) and drives ``dq`` with what it
returns for the cycle that follows (``None``: the chip does not drive; the bench then shows junk,
so a controller that samples at the wrong cycle reads garbage). :class:`SdramModel` runs it in
Amaranth's simulator on an ``SdramPinsSignature`` interface.

The chip as modelled:

* storage: a sparse dict of 16-bit words by (bank, row, column), unwritten words read 0;
  ``dq[0:8]`` is the byte under ``dqm[0]``;
* the mode register (burst length 1 only: the controller's; sequential; CAS latency 2 or 3,
  checked against the clock);
* per bank: idle or one open row, with the cycles of its last ACTIVATE, PRECHARGE, WRITE;
* reads: the word of a READ at edge ``n`` is driven in the cycle before edge ``n + CL`` (so the
  controller samples it at ``n + CL``), unless ``dqm`` was high at edge ``n + CL - 2`` (DQM's
  read latency of 2); the chip holds the bus until just after edge ``n + CL``, so a WRITE (its
  data driven before its edge) may come at ``n + CL + 2`` at the earliest;
* writes: bytes written unless their ``dqm`` bit is high at the WRITE's edge.

Every check works in nanoseconds from the cycle count and the clock period (not in the rounded
cycle counts the controller uses), so a rounding error in ``sdram_cycles`` is caught too. A
violation raises :class:`SdramTimingError` naming the cycle, the command and the parameter:
``power-up``, ``initialisation`` (ACTIVATE/READ/WRITE before LOAD MODE REGISTER, too few
refreshes, a sequence out of order), ``tRP``, ``tRCD``, ``tRAS``, ``tRAS_max``, ``tRC``,
``tRRD``, ``tRFC``, ``tWR``, ``tMRD``, ``tREFI`` (more than 8 refreshes postponed: by time
``t`` after initialisation at least ``floor(t / tREFI) - 8`` AUTO REFRESH must have been
issued), ``CAS latency`` (one the chip does not allow at this clock), ``closed bank`` (READ,
WRITE to a bank with no open row), ``open bank`` (ACTIVATE to a bank with a row open, REFRESH
or LOAD MODE REGISTER with any open), ``column``/``row`` (out of range), ``bus contention``
(the controller drives ``dq`` while the chip does), ``write data`` (a WRITE whose unmasked bytes
are not driven), ``unsupported`` (auto precharge, BURST TERMINATE, burst length > 1, CKE low).
A READ or WRITE cannot go to a "wrong row" at the pins (it goes to the open row); a controller
that opens the wrong row is caught by the data tests.
"""

from __future__ import annotations

from typing import NamedTuple

from onda.hw.boards.sdram_chips import SdramChip

__all__ = ["SdramCore", "SdramModel", "SdramPins", "SdramTimingError"]

_NEVER = -(1 << 40)
_CMD_NAMES = {0b111: "NOP", 0b011: "ACTIVATE", 0b101: "READ", 0b100: "WRITE", 0b010: "PRECHARGE",
              0b001: "AUTO REFRESH", 0b000: "LOAD MODE REGISTER", 0b110: "BURST TERMINATE"}


class SdramTimingError(Exception):
    """The controller broke the chip's rules: ``cycle``, ``command`` and ``parameter`` say where."""

    def __init__(self, cycle: int, command: str, parameter: str, detail: str):
        self.cycle, self.command, self.parameter = cycle, command, parameter
        super().__init__(f"SDRAM model, cycle {cycle}: {command}: {parameter} violated: {detail}")


class SdramPins(NamedTuple):
    """The pins as sampled at one clock edge (``dq`` what the controller drives, when ``dq_oe``)."""

    cke: int = 1
    cs_n: int = 1
    ras_n: int = 1
    cas_n: int = 1
    we_n: int = 1
    ba: int = 0
    a: int = 0
    dqm: int = 0
    dq: int = 0
    dq_oe: int = 0


class _Bank:
    __slots__ = ("row", "act", "pre", "write")

    def __init__(self):
        self.row = None
        self.act = self.pre = self.write = _NEVER


class SdramCore:
    """The chip's behaviour, one :meth:`clock` per edge.

    Parameters
    ----------
    chip : SdramChip
        Geometry and timings.
    clock_mhz : float
        The clock the pins are sampled at.

    Attributes
    ----------
    cycle : int
        Edges seen so far (the next :meth:`clock` is edge ``cycle``).
    ready : bool
        LOAD MODE REGISTER has completed the power-up sequence.
    cl : int | None
        The CAS latency programmed.
    words : dict[(bank, row, column), int]
        The storage.
    commands : dict[str, int]
        How many of each command (by name) the chip has taken.
    refreshes : int
        AUTO REFRESH commands since initialisation.
    """

    def __init__(self, chip: SdramChip, clock_mhz: float):
        self.chip, self.clock_mhz = chip, clock_mhz
        self.tck = 1000.0 / clock_mhz
        self.cycle = 0
        self.banks = [_Bank() for _ in range(chip.banks)]
        self.words: dict[tuple[int, int, int], int] = {}
        self.commands = {name: 0 for name in _CMD_NAMES.values()}
        self.phase = "power-up"  # -> "precharged" -> "mode" (after LOAD MODE REGISTER)
        self.ready = False
        self.cl = None
        self.init_refs = 0
        self.refreshes = 0
        self.ready_cycle = None
        self.last_ref = self.last_lmr = self.last_act = _NEVER
        self.last_act_bank = None
        self._reads: dict[int, tuple[int, int, int]] = {}  # output cycle -> (bank, row, col)
        self._drives: set[int] = set()  # edges at which the controller samples a READ's word
        self._dqm_prev = 0  # dqm at the previous edge

    # -- backdoor ---------------------------------------------------------------------------
    def peek(self, bank: int, row: int, col: int) -> int:
        return self.words.get((bank, row, col), 0)

    def poke(self, bank: int, row: int, col: int, value: int) -> None:
        self.words[(bank, row, col)] = value & 0xFFFF

    # -- checks -----------------------------------------------------------------------------
    def _fail(self, command: str, parameter: str, detail: str):
        raise SdramTimingError(self.cycle, command, parameter, detail)

    def _since(self, command: str, parameter: str, then: int, ns: float, what: str):
        elapsed = (self.cycle - then) * self.tck
        if elapsed < ns - 1e-6:
            self._fail(command, parameter, f"{elapsed:g} ns after the {what} at cycle {then}, needs {ns:g} ns")

    def _common(self, name: str):
        if self.cycle * self.tck < self.chip.power_up - 1e-6:
            self._fail(name, "power-up", f"{self.cycle * self.tck:g} ns after power-up, needs "
                                         f"{self.chip.power_up:g} ns of NOP/INHIBIT first")
        self._since(name, "tMRD", self.last_lmr, self.chip.tMRD_ck * self.tck, "LOAD MODE REGISTER")
        self._since(name, "tRFC", self.last_ref, self.chip.tRFC, "AUTO REFRESH")

    def _all_idle(self, name: str):
        for b, bank in enumerate(self.banks):
            if bank.row is not None:
                self._fail(name, "open bank", f"bank {b} has row {bank.row} open")
            self._since(name, "tRP", bank.pre, self.chip.tRP, f"PRECHARGE of bank {b}")

    def _check_refresh_debt(self):
        if self.ready_cycle is None:
            return
        owed = int((self.cycle - self.ready_cycle) * self.tck // self.chip.tREFI)
        if owed - self.refreshes > 8:
            self._fail("(any)", "tREFI", f"{self.refreshes} AUTO REFRESH since initialisation at cycle "
                                         f"{self.ready_cycle}, {owed} due: more than 8 postponed")

    # -- one edge ---------------------------------------------------------------------------
    def clock(self, pins: SdramPins) -> int | None:
        """The edge ``cycle`` with ``pins`` sampled at it; returns the word the chip drives on
        ``dq`` in the cycle that follows (``None``: high impedance)."""
        chip = self.chip
        cyc = self.cycle
        # The chip drives a READ's word in the cycle before its sample edge e and holds it just
        # past e: the controller driving dq before edge cyc (dq_oe sampled at cyc) collides
        # when e is cyc or cyc - 1.
        if pins.dq_oe and (cyc in self._drives or cyc - 1 in self._drives):
            e = cyc if cyc in self._drives else cyc - 1
            self._fail("WRITE" if not pins.cs_n and self._decode(pins) == 0b100 else "dq driven", "bus contention",
                       f"the chip drives dq for a READ sampled at edge {e}")
        self._drives.discard(cyc - 1)
        if not pins.cke and self.phase != "power-up":
            self._fail("CKE low", "unsupported", "clock suspend / power-down are not modelled")
        if (cyc & 63) == 0:
            self._check_refresh_debt()
        if not pins.cs_n and pins.cke:
            code = self._decode(pins)
            if code != 0b111:
                self._command(code, pins)
        # DQM masks read data two edges later.
        masked = self._dqm_prev  # dqm at edge cyc - 1 masks the word sampled at cyc + 1
        self._dqm_prev = pins.dqm
        out = None
        where = self._reads.pop(cyc + 1, None)
        if where is not None:
            word = self.words.get(where, 0)
            if masked:
                word &= ~(0xFF if masked & 1 else 0) & ~(0xFF00 if masked & 2 else 0) & 0xFFFF
            out = word
        for b, bank in enumerate(self.banks):
            if bank.row is not None and (cyc - bank.act) * self.tck > chip.tRAS_max + 1e-6:
                self._fail("(row open)", "tRAS_max", f"bank {b}'s row {bank.row} open since cycle {bank.act}, "
                                                     f"longer than {chip.tRAS_max:g} ns")
        self.cycle += 1
        return out

    @staticmethod
    def _decode(pins: SdramPins) -> int:
        return (pins.ras_n & 1) << 2 | (pins.cas_n & 1) << 1 | (pins.we_n & 1)

    def _command(self, code: int, pins: SdramPins):
        chip = self.chip
        name = _CMD_NAMES[code]
        self.commands[name] += 1
        b = pins.ba & (chip.banks - 1)
        what = f"{name} to bank {b}" if code in (0b011, 0b101, 0b100) or (code == 0b010 and not pins.a >> 10 & 1) \
            else name
        self._common(what)
        if code == 0b110:
            self._fail(what, "unsupported", "BURST TERMINATE (bursts are 1 word)")
        if self.phase == "power-up" and code != 0b010:
            self._fail(what, "initialisation", "the first command after power-up must be PRECHARGE ALL")
        if code in (0b011, 0b101, 0b100) and not self.ready:
            self._fail(what, "initialisation", "the mode register is not loaded yet")
        bank = self.banks[b]
        if code == 0b011:  # ACTIVATE
            row = pins.a & 0x1FFF
            if bank.row is not None:
                self._fail(what, "open bank", f"row {bank.row} is open")
            if row >= chip.rows:
                self._fail(what, "row", f"row {row} of {chip.rows}")
            self._since(what, "tRP", bank.pre, chip.tRP, "PRECHARGE")
            self._since(what, "tRC", bank.act, chip.tRC, "ACTIVATE")
            if self.last_act_bank is not None and self.last_act_bank != b:
                self._since(what, "tRRD", self.last_act, chip.tRRD, f"ACTIVATE of bank {self.last_act_bank}")
            bank.row, bank.act = row, self.cycle
            self.last_act, self.last_act_bank = self.cycle, b
        elif code in (0b101, 0b100):  # READ, WRITE
            col = pins.a & 0x3FF
            if pins.a >> 10 & 1:
                self._fail(what, "unsupported", "auto precharge (A10 high)")
            if bank.row is None:
                self._fail(what, "closed bank", "no row is open")
            if col >= chip.columns:
                self._fail(what, "column", f"column {col} of {chip.columns}")
            self._since(what, "tRCD", bank.act, chip.tRCD, "ACTIVATE")
            key = (b, bank.row, col)
            if code == 0b101:
                self._reads[self.cycle + self.cl] = key
                self._drives.add(self.cycle + self.cl)
            else:
                keep = (0xFF if pins.dqm & 1 else 0) | (0xFF00 if pins.dqm & 2 else 0)
                if keep != 0xFFFF and not pins.dq_oe:
                    self._fail(what, "write data", "dq is not driven for the unmasked bytes")
                old = self.words.get(key, 0)
                self.words[key] = (old & keep) | (pins.dq & ~keep & 0xFFFF)
                bank.write = self.cycle
        elif code == 0b010:  # PRECHARGE (one bank, or all with A10)
            targets = range(chip.banks) if pins.a >> 10 & 1 else [b]
            for t in targets:
                tb = self.banks[t]
                if tb.row is not None:
                    self._since(what, "tRAS", tb.act, chip.tRAS, f"ACTIVATE of bank {t}")
                    self._since(what, "tWR", tb.write, chip.tWR, f"WRITE to bank {t}")
                tb.row, tb.pre = None, self.cycle
            if self.phase == "power-up":
                if not pins.a >> 10 & 1:
                    self._fail(what, "initialisation", "the first command after power-up must be PRECHARGE ALL")
                self.phase = "precharged"
        elif code == 0b001:  # AUTO REFRESH
            self._all_idle(what)
            self._since(what, "tRC", max(bk.act for bk in self.banks), chip.tRC, "last ACTIVATE")
            self.last_ref = self.cycle
            if self.ready:
                self.refreshes += 1
            else:
                self.init_refs += 1
        elif code == 0b000:  # LOAD MODE REGISTER
            self._all_idle(what)
            if self.init_refs < chip.init_refreshes and not self.ready:
                self._fail(what, "initialisation", f"{self.init_refs} AUTO REFRESH before it, the datasheet "
                                                   f"asks {chip.init_refreshes}")
            mode = pins.a
            bl, cl = mode & 7, mode >> 4 & 7
            if bl != 0 or mode >> 7 & 3:
                self._fail(what, "unsupported", f"mode {mode:#x}: only burst length 1, standard operation")
            allowed = dict(chip.cl_tck_min)
            if cl not in allowed or self.tck < allowed[cl] - 1e-9:
                self._fail(what, "CAS latency", f"CL {cl} at {self.clock_mhz:g} MHz; {chip.name} allows "
                           + ", ".join(f"CL{c} from {t:g} ns" for c, t in sorted(allowed.items())))
            self.cl = cl
            self.last_lmr = self.cycle
            if not self.ready:
                self.ready, self.ready_cycle = True, self.cycle


class SdramModel:
    """:class:`SdramCore` at ``pins`` (an ``SdramPinsSignature`` interface of the device under
    test, e.g. ``dut.pins``) in Amaranth's simulator: drives ``dq_i``."""

    def __init__(self, pins, chip: SdramChip, clock_mhz: float):
        self.pins = pins
        self.core = SdramCore(chip, clock_mhz)

    def add_to(self, sim) -> None:
        """Run as a background testbench of ``sim``; a violation raises out of ``sim.run()``."""
        sim.add_testbench(self._serve, background=True)

    async def _serve(self, ctx):
        p, core = self.pins, self.core
        signals = (p.cke, p.cs_n, p.ras_n, p.cas_n, p.we_n, p.ba, p.a, p.dqm, p.dq_o, p.dq_oe)
        while True:
            sampled = await ctx.tick().sample(*signals)
            out = core.clock(SdramPins(*sampled[2:]))
            # Junk while the chip does not drive: a mis-timed capture reads garbage.
            ctx.set(p.dq_i, out if out is not None else (0xA5C3 ^ (core.cycle * 0x9E37)) & 0xFFFF)
