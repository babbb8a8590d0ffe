"""Board tops: the PLL settings agree with the vendor tools' (``icepll``, ``ecppll``), the UART
divisor refuses a rate it cannot make, ``make synth`` refuses an engine whose buffers cannot fit
before the tools run, and both tops elaborate for their platforms with the primitives they need."""

import pytest

from onda.hw.boards.pll import PllError, ecp5_pll, ice40_pll
from onda.hw.config import load_config
from onda.hw.synth.flow import SynthError, synthesize_board


# (fin, fout) -> (DIVR, DIVF, DIVQ, FILTER_RANGE) as `icepll -i fin -o fout` prints them.
@pytest.mark.parametrize("fin,fout,want", [
    (12, 24, (0, 63, 5, 1)), (12, 30, (0, 79, 5, 1)), (12, 48, (0, 63, 4, 1)), (12, 16, (0, 84, 6, 1)),
])
def test_ice40_pll_as_icepll(fin, fout, want):
    p = ice40_pll(fin, fout)
    assert (p.divr, p.divf, p.divq, p.filter_range) == want
    assert abs(p.fout_mhz - fout) <= 0.01 * fout and 533 <= p.vco_mhz <= 1066


# (fin, fout) -> (CLKI_DIV, CLKFB_DIV, CLKOP_DIV) as `ecppll -i fin -o fout` chooses them.
@pytest.mark.parametrize("fin,fout,want", [(25, 100, (1, 4, 6)), (25, 50, (1, 2, 12)), (25, 125, (1, 5, 5))])
def test_ecp5_pll_as_ecppll(fin, fout, want):
    p = ecp5_pll(fin, fout)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == want and p.fout_mhz == fout and 400 <= p.vco_mhz <= 800


def test_pll_refuses_what_it_cannot_make():
    with pytest.raises(PllError, match="no setting makes 1000 MHz"):
        ecp5_pll(25, 1000)
    with pytest.raises(PllError, match="iCE40 PLL"):
        ice40_pll(12, 600)


def test_synth_refuses_an_engine_that_cannot_fit_before_the_tools_run():
    with pytest.raises(SynthError, match=r"make synth BOARD=icebreaker: engine 'icebreaker' needs \d+ EBR blocks"):
        synthesize_board("icebreaker")


def _cells(top, platform):
    """Instance types in the elaborated design (the platform's own pins and the engine included)."""
    from amaranth.hdl import Fragment, Instance

    frag = Fragment.get(top, platform)
    types, stack = set(), [frag]
    while stack:
        f = stack.pop()
        if isinstance(f, Instance):
            types.add(f.type)
        stack.extend(sub for sub, *_ in getattr(f, "subfragments", []))
    return types


def test_icebreaker_top_elaborates_with_its_pll_and_spram():
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from onda.hw.boards.icebreaker_top import IcebreakerTop

    top = IcebreakerTop(load_config("icebreaker"))
    assert top.divisor == 8  # 24 MHz / 3 Mbaud
    cells = _cells(top, ICEBreakerPlatform())
    assert {"SB_PLL40_PAD", "SB_SPRAM256KA"} <= cells


def test_ulx3s_top_elaborates_with_its_pll():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from onda.hw.boards.ulx3s_top import Ulx3sTop

    top = Ulx3sTop(load_config("ulx3s-85f"))
    assert top.pll.fout_mhz == load_config("ulx3s-85f").clock_mhz
    assert "EHXPLLL" in _cells(top, ULX3S_85F_Platform())
