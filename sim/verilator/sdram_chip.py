"""The parameters of the C++ SDRAM chip model (``sdram_chip.h``, the twin of
``onda.sim.board.sdram_model.SdramCore`` for the Verilator board simulation).

:func:`params_from_chip` gives the doubles ``sdram_params_from_array`` reads, in the order of
:data:`FIELDS`, which is the header's ``kSdramParamFields`` (``ONDA_SDRAM_PARAM_SCALARS`` then the
CAS latency table); the tests compare the two lists as compiled. The chip's name, which the CAS
latency message quotes, is passed beside the array.
"""

from __future__ import annotations

from pathlib import Path

from onda.hw.boards.sdram_chips import SdramChip

__all__ = ["CL_SLOTS", "FIELDS", "HEADER", "params_from_chip"]

HEADER = Path(__file__).resolve().parent / "sdram_chip.h"
CL_SLOTS = 8  # the mode register's CAS latency field is 3 bits

_INTS = ("banks", "rows", "columns", "tMRD_ck", "init_refreshes")
FIELDS: tuple[str, ...] = (
    "clock_mhz", "banks", "rows", "columns", "tRP", "tRCD", "tRAS", "tRAS_max", "tRC", "tRRD", "tRFC", "tWR",
    "tMRD_ck", "tREFI", "power_up", "init_refreshes",
) + tuple(f"cl_tck_min[{k}]" for k in range(CL_SLOTS))
"""The order of ``sdram_params_from_array``'s doubles: ``clock_mhz``, the :class:`SdramChip`
fields of those names, then ``cl_tck_min[k]``: the shortest clock period (ns) allowing CAS latency
``k``, ``-1`` where the chip does not allow it."""


def params_from_chip(chip: SdramChip, clock_mhz: float) -> list[float]:
    """The doubles for ``sdram_params_from_array`` of ``chip`` at ``clock_mhz``. Raises
    ``ValueError`` for what the C++ model cannot represent exactly as ``SdramCore`` sees it: a
    non-integer count, banks not a power of two (at most 16), a CAS latency outside 0..7 or
    a negative minimum period."""
    if not clock_mhz > 0:
        raise ValueError(f"params_from_chip: clock_mhz must be > 0, got {clock_mhz!r}")
    for name in _INTS:
        v = getattr(chip, name)
        if isinstance(v, bool) or not isinstance(v, int) or not -(1 << 31) <= v < 1 << 31:
            raise ValueError(f"params_from_chip: {chip.name}.{name} must be a 32-bit int, got {v!r}")
    if not 1 <= chip.banks <= 16 or chip.banks & (chip.banks - 1):
        raise ValueError(f"params_from_chip: {chip.name} has {chip.banks} banks; a power of two up to 16 is modelled")
    table = [-1.0] * CL_SLOTS
    for cl, tmin in dict(chip.cl_tck_min).items():  # dict(): a repeated CL keeps its last entry, as SdramCore
        if isinstance(cl, bool) or not isinstance(cl, int) or not 0 <= cl < CL_SLOTS or not float(tmin) >= 0:
            raise ValueError(f"params_from_chip: {chip.name}'s CAS latency entry ({cl!r}, {tmin!r}) is not modelled")
        table[cl] = float(tmin)
    scalars = [float(clock_mhz)] + [float(getattr(chip, f)) for f in FIELDS[1:len(FIELDS) - CL_SLOTS]]
    return scalars + table
