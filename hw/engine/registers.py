"""The engine's control and status registers: one table, read by the RTL (``csr.py``) and by every
host driver (the simulation harnesses, the board link), so an address is written down once.

32-bit registers at word addresses. ``CTRL`` starts a run; ``STATUS`` says whether it is running,
done or stopped on an error; ``ERROR``/``ERROR_INDEX`` say why and at which instruction; the
counters say where the cycles went (per module: executing, waiting for a dependency token, idle
with nothing fetched for it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REGISTERS", "Register", "STATUS_BITS", "address_of"]


@dataclass(frozen=True)
class Register:
    name: str
    address: int  # word address
    writable: bool
    doc: str


_TABLE = [
    ("CTRL", True, "write 1: start a run of the program at PROG_ADDR (counters and token queues cleared)"),
    ("STATUS", False, "bit 0 running, bit 1 done (FINISH completed), bit 2 stopped on an error"),
    ("PROG_ADDR", True, "byte address of the program in memory (a multiple of 32)"),
    ("PROG_COUNT", True, "instructions in the program"),
    ("ERROR", False, "EngineError code of the stop (0: none)"),
    ("ERROR_INDEX", False, "index of the instruction that stopped the engine"),
    ("CYCLES_LO", False, "cycles from start to done or error, low word"),
    ("CYCLES_HI", False, "high word (read CYCLES_LO first: it latches CYCLES_HI)"),
    ("FINGERPRINT", False, "the first 32 bits of the engine configuration's SHA-256 fingerprint"),
    ("FETCHED", False, "instructions fetched"),
    ("FETCH_STALL", False, "cycles fetch waited for a full module queue"),
    ("LOAD_BUSY", False, "cycles the load module executed an instruction"),
    ("LOAD_WAIT", False, "cycles the load module waited for a token"),
    ("LOAD_IDLE", False, "cycles the load module had no instruction"),
    ("COMPUTE_BUSY", False, "cycles the compute module executed an instruction"),
    ("COMPUTE_WAIT", False, "cycles the compute module waited for a token"),
    ("COMPUTE_IDLE", False, "cycles the compute module had no instruction"),
    ("STORE_BUSY", False, "cycles the store module executed an instruction"),
    ("STORE_WAIT", False, "cycles the store module waited for a token"),
    ("STORE_IDLE", False, "cycles the store module had no instruction"),
]

REGISTERS = [Register(name, i, w, doc) for i, (name, w, doc) in enumerate(_TABLE)]
STATUS_BITS = {"running": 0, "done": 1, "error": 2}
_BY_NAME = {r.name: r for r in REGISTERS}


def address_of(name: str) -> int:
    try:
        return _BY_NAME[name].address
    except KeyError:
        raise KeyError(f"no engine register {name!r} (registers: {', '.join(_BY_NAME)})") from None
