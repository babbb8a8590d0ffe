"""The bytes an instruction touches, its *extents*: one definition of what ``hw/ISA.md``
("Extents") states, which the functional emulator range-checks, the cycle model's race check
compares and the compiler counts as DMA traffic.

An extent is a half-open byte range ``[lo, hi)`` of one resource: a buffer (``"ACT"``, ``"WGT"``,
``"PARAM"``, ``"OUT"``, by ``isa.Buffer`` name; ``"ACC"``, the accumulator buffer) or ``"MEM"``, the memory port's address space.
:func:`extents` gives an instruction's by operand (LOAD, STORE: ``sram``, ``dram``; GEMM: ``act``,
``wgt``, ``param``, ``out`` (unless ``acc_out``), ``acc`` (with ``acc_in`` or ``acc_out``; read and
written in place when both); VEC: ``src``, ``src2``, ``param``, ``dst``; those a function does not
use left out), in the order the engine checks them. NOP and FINISH touch nothing.
"""

from __future__ import annotations

from typing import NamedTuple

from .isa import (ADD_PARAM_WORDS, GEMM_PARAM_WORDS, MUL_PARAM_WORDS, RESCALE_PARAM_WORDS, Buffer, Instruction, Opcode, VecFunc,
                  acc_bytes, gemm_stored_k, weight_bytes)

__all__ = ["Extent", "dma_bytes", "extents", "load_fill_bytes", "row_span", "vec_out_size"]


class Extent(NamedTuple):
    """Bytes ``[lo, hi)`` of ``resource`` (a buffer's name or ``"MEM"``); ``writes``: the
    instruction writes them (else it reads them)."""

    resource: str
    lo: int
    hi: int
    writes: bool

    @property
    def size(self) -> int:
        return self.hi - self.lo


def row_span(rows: int, length: int, stride: int) -> int:
    """Bytes from the first byte of a DMA's first row to the end of its last:
    ``(rows - 1) * stride + length``; 0 without rows."""
    return (rows - 1) * stride + length if rows else 0


def dma_bytes(ins: Instruction) -> int:
    """Bytes a LOAD or STORE moves over the memory port (``y_size * x_size``, the fill not
    included); 0 for every other instruction."""
    if ins.opcode in (Opcode.LOAD, Opcode.STORE):
        return ins.fields["y_size"] * ins.fields["x_size"]
    return 0


def load_fill_bytes(f: dict) -> int:
    """Bytes a LOAD writes into its buffer: ``pad_top + y_size + pad_bottom`` rows of
    ``pad_left + x_size + pad_right``."""
    return (f["pad_top"] + f["y_size"] + f["pad_bottom"]) * (f["pad_left"] + f["x_size"] + f["pad_right"])


def vec_out_size(f: dict) -> int:
    """Bytes a VEC writes to OUT: ``out_rows * out_cols * channels`` (4 ``channels`` a pixel for
    SPACE_TO_DEPTH)."""
    c = f["channels"] * (4 if f["func"] == VecFunc.SPACE_TO_DEPTH else 1)
    return f["out_rows"] * f["out_cols"] * c


def _at(resource: str, addr: int, size: int, writes: bool = False) -> Extent:
    return Extent(resource, addr, addr + size, writes)


def extents(opcode: Opcode, f: dict, lanes: int, width: int) -> dict[str, Extent]:
    """The extents of an instruction with fields ``f`` on an engine of ``lanes`` lanes, by
    operand (``hw/ISA.md``'s table), in the order the engine checks them."""
    if opcode == Opcode.LOAD:
        out = {"sram": _at(Buffer(f["buffer"]).name, f["sram_addr"], load_fill_bytes(f), True)}
        if f["y_size"] and f["x_size"]:
            out["dram"] = _at("MEM", f["dram_addr"], row_span(f["y_size"], f["x_size"], f["dram_stride"]))
        return out
    if opcode == Opcode.STORE:
        out = {"sram": _at(Buffer(f["buffer"]).name, f["sram_addr"], f["y_size"] * f["x_size"])}
        if f["y_size"]:
            out["dram"] = _at("MEM", f["dram_addr"], row_span(f["y_size"], f["x_size"], f["dram_stride"]), True)
        return out
    if opcode == Opcode.GEMM:
        ct, pixels = f["out_channels"], f["out_rows"] * f["out_cols"]
        out = {"act": _at("ACT", f["act_addr"], f["in_rows"] * f["in_cols"] * f["channels"]),
               "wgt": _at("WGT", f["wgt_addr"], weight_bytes(ct, gemm_stored_k(f, width), lanes)),
               "param": _at("PARAM", f["param_addr"], ct * GEMM_PARAM_WORDS * 4)}
        if not f.get("acc_out"):
            out["out"] = _at("OUT", f["out_addr"], pixels * ct, True)
        if f.get("acc_in") or f.get("acc_out"):
            out["acc"] = _at("ACC", f["acc_addr"], acc_bytes(ct, pixels, lanes), bool(f.get("acc_out")))
        return out
    if opcode == Opcode.VEC:
        func = f["func"]
        size = f["in_rows"] * f["in_cols"] * f["channels"]
        out = {"src": _at("ACT", f["src_addr"], size)}
        if func in (VecFunc.ADD, VecFunc.MUL):
            out["src2"] = _at("ACT", f["src2_addr"], size)
            words = ADD_PARAM_WORDS if func == VecFunc.ADD else MUL_PARAM_WORDS
            out["param"] = _at("PARAM", f["param_addr"], words * 4)
        elif func in (VecFunc.MEAN, VecFunc.REQUANT):
            out["param"] = _at("PARAM", f["param_addr"], RESCALE_PARAM_WORDS * 4)
        out["dst"] = _at("OUT", f["dst_addr"], vec_out_size(f), True)
        return out
    return {}

