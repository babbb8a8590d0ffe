"""Programs every whole-engine bench runs: seeded inputs for compiled programs, and bad programs with
the error each must stop with.

Shared by the Verilator tests (``tests/engine/test_engine_programs.py``) and the cocotb benches on
Icarus and Verilator (``tests/engine/test_cocotb_engine.py``), so both hold the engine to the same
cases: a bad program stops with its ``EngineError`` code at the instruction's index, never hangs,
never writes outside the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onda.hw import isa
from onda.hw.engine.errors import EngineError
from onda.hw.isa import Buffer, Module, Opcode

__all__ = ["BAD_BASE", "BAD_PROGRAMS", "BadProgram", "random_inputs"]

BAD_BASE = 0x8000
"""Where the bad programs are placed in memory (inside every configuration's memory)."""


def random_inputs(model, n: int, seed: int) -> list[np.ndarray]:
    """``n`` images of uniform int8 for each input of ``model`` (an ``EmulatedModel``), seeded."""
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=(n,) + s.shape[1:], dtype=np.int8) for s in model.inputs]


@dataclass(frozen=True)
class BadProgram:
    """A program (its bytes) the engine must refuse with ``error`` at instruction ``index``."""

    what: str
    code: bytes
    error: EngineError
    index: int


def _nop(mod, **kw):
    return isa.make(Opcode.NOP, module=mod, **kw)


def _encoded(what, program, error, index) -> BadProgram:
    return BadProgram(what, isa.encode_program(program), error, index)


def _patched(what, offset, byte, error, index) -> BadProgram:
    """Three legal instructions (NOP, NOP, FINISH) with byte ``offset`` overwritten: what the
    encoder cannot produce (an unknown opcode, a reserved bit set)."""
    code = bytearray(isa.encode_program([_nop(Module.LOAD), _nop(Module.LOAD), isa.make(Opcode.FINISH)]))
    code[offset] = byte
    return BadProgram(what, bytes(code), error, index)


BAD_PROGRAMS = [
    _encoded("LOAD past ACT", [isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=0, y_size=1, x_size=8192,
                                        dram_stride=8192), isa.make(Opcode.FINISH)], EngineError.BUFFER_RANGE, 0),
    _encoded("LOAD past memory", [isa.make(Opcode.LOAD, buffer=Buffer.ACT, dram_addr=(1 << 32) - 4, y_size=1, x_size=8,
                                           dram_stride=8), isa.make(Opcode.FINISH)], EngineError.MEMORY_RANGE, 0),
    _encoded("STORE from WGT", [isa.make(Opcode.STORE, buffer=Buffer.WGT, y_size=1, x_size=4, dram_stride=4),
                                isa.make(Opcode.FINISH)], EngineError.BAD_BUFFER, 0),
    _encoded("pop never pushed", [_nop(Module.COMPUTE), _nop(Module.STORE, pop_prev=True), isa.make(Opcode.FINISH)],
             EngineError.TOKEN_UNDERFLOW, 1),
    _encoded("tokens left at FINISH", [_nop(Module.COMPUTE, push_next=True), isa.make(Opcode.FINISH)],
             EngineError.TOKEN_UNDERFLOW, 1),
    _encoded("no FINISH", [_nop(Module.LOAD), _nop(Module.STORE)], EngineError.NO_FINISH, 2),
    _patched("illegal opcode", 32, 0x0E, EngineError.ILLEGAL_OPCODE, 1),  # instruction 1's opcode: 14
    _patched("reserved bit", 31 + 64, 0x40, EngineError.RESERVED_BITS, 2),  # a high bit of FINISH
]
