"""The board tops' PLLs: the divider settings that make a target clock from the board's
oscillator, and the primitive that does it (ECP5 ``EHXPLLL``, iCE40 ``SB_PLL40_PAD``).

The solvers search the datasheets' ranges as Trellis' ``ecppll`` and IceStorm's ``icepll`` do
(their results agree with those tools' for the boards' clocks, ``tests/boards/test_board_tops.py``)
and refuse a target they cannot reach within 1%, so a configuration's ``clock_mhz`` is the clock
the engine gets, not a wish.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, Signal

__all__ = ["Ecp5Pll", "Ice40Pll", "PllError", "ecp5_pll", "ecp5_pll_instance", "ice40_pll", "ice40_pll_instance"]


class PllError(ValueError):
    """No divider setting reaches the target clock closely enough."""


@dataclass(frozen=True)
class Ecp5Pll:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    fin_mhz: float

    @property
    def fout_mhz(self) -> float:
        return self.fin_mhz * self.clkfb_div / self.clki_div

    @property
    def vco_mhz(self) -> float:
        return self.fout_mhz * self.clkop_div


def ecp5_pll(fin_mhz: float, fout_mhz: float) -> Ecp5Pll:
    """EHXPLLL dividers (feedback from CLKOP): PFD 3.125..400 MHz, VCO 400..800 MHz; the closest
    output, then the VCO nearest 600 MHz."""
    best = None
    for clki in range(1, 129):
        if not 3.125 <= fin_mhz / clki <= 400:
            continue
        for fb in range(1, 81):
            out = fin_mhz * fb / clki
            for op in range(1, 129):
                vco = out * op
                if not 400 <= vco <= 800:
                    continue
                key = (abs(out - fout_mhz), abs(vco - 600))
                if best is None or key < best[0]:
                    best = (key, Ecp5Pll(clki, fb, op, fin_mhz))
    if best is None or best[0][0] > fout_mhz * 0.01:
        raise PllError(f"ECP5 PLL: no setting makes {fout_mhz} MHz from {fin_mhz} MHz within 1%")
    return best[1]


def ecp5_pll_instance(m: Module, pll: Ecp5Pll, clkin, domain: str = "sync", platform=None) -> Signal:
    """Drive ClockDomain ``domain`` from the PLL's CLKOP (constrained to its frequency on
    ``platform``); returns LOCK (the domain's reset is its inverse, so the engine starts only on a
    locked clock)."""
    locked = Signal(name=f"{domain}_pll_locked")
    cd = ClockDomain(domain)
    m.domains += cd
    m.submodules[f"{domain}_pll"] = Instance(
        "EHXPLLL",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
        p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=pll.clki_div, p_CLKFB_DIV=pll.clkfb_div, p_CLKOP_DIV=pll.clkop_div,
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=pll.clkop_div - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
        a_FREQUENCY_PIN_CLKI=f"{pll.fin_mhz:g}", a_FREQUENCY_PIN_CLKOP=f"{pll.fout_mhz:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
        i_CLKI=clkin, i_CLKFB=ClockSignal(domain), i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
        i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
        o_CLKOP=cd.clk, o_LOCK=locked)
    m.d.comb += cd.rst.eq(~locked)
    if platform is not None:
        platform.add_clock_constraint(cd.clk, pll.fout_mhz * 1e6)
    return locked


@dataclass(frozen=True)
class Ice40Pll:
    divr: int
    divf: int
    divq: int
    fin_mhz: float

    @property
    def pfd_mhz(self) -> float:
        return self.fin_mhz / (self.divr + 1)

    @property
    def vco_mhz(self) -> float:
        return self.pfd_mhz * (self.divf + 1)

    @property
    def fout_mhz(self) -> float:
        return self.vco_mhz / (1 << self.divq)

    @property
    def filter_range(self) -> int:
        pfd = self.pfd_mhz
        for limit, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
            if pfd < limit:
                return value
        return 6


def ice40_pll(fin_mhz: float, fout_mhz: float) -> Ice40Pll:
    """SB_PLL40 dividers (simple feedback): PFD 10..133 MHz, VCO 533..1066 MHz, DIVQ 1..6; the
    closest output (``icepll``'s search)."""
    best = None
    for divr in range(16):
        pfd = fin_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if best is None or abs(out - fout_mhz) < best[0]:
                    best = (abs(out - fout_mhz), Ice40Pll(divr, divf, divq, fin_mhz))
    if best is None or best[0] > fout_mhz * 0.01:
        raise PllError(f"iCE40 PLL: no setting makes {fout_mhz} MHz from {fin_mhz} MHz within 1%")
    return best[1]


def ice40_pll_instance(m: Module, pll: Ice40Pll, package_pin, domain: str = "sync", platform=None) -> Signal:
    """Drive ClockDomain ``domain`` from an SB_PLL40_PAD on the oscillator's pad (``package_pin``:
    the raw pin, requested with ``dir="-"``); returns LOCK (the domain is held in reset until it)."""
    locked = Signal(name=f"{domain}_pll_locked")
    cd = ClockDomain(domain)
    m.domains += cd
    m.submodules[f"{domain}_pll"] = Instance(
        "SB_PLL40_PAD",
        p_FEEDBACK_PATH="SIMPLE", p_DIVR=pll.divr, p_DIVF=pll.divf, p_DIVQ=pll.divq,
        p_FILTER_RANGE=pll.filter_range,
        i_PACKAGEPIN=package_pin, i_RESETB=1, i_BYPASS=0,
        o_PLLOUTGLOBAL=cd.clk, o_LOCK=locked)
    m.d.comb += cd.rst.eq(~locked)
    if platform is not None:
        platform.add_clock_constraint(cd.clk, pll.fout_mhz * 1e6)
    return locked
