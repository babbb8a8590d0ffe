"""What every layer's lowering writes into: the program being built, the weight image, and the
alternation of the weight/parameter slots across layers."""

from __future__ import annotations

import numpy as np

from onda.hw import isa
from onda.hw.config import EngineConfig
from onda.hw.isa import Buffer, Opcode
from onda.sim.ir import Graph, Op

from .memory import MemoryPlan, WeightImage
from .program import ProgramBuilder

MIN_TILES = 8  # vector layers are split at least this finely, so their DMA overlaps the vector unit


def hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an activation with a leading batch of 1: NHWC, or [1, C] as 1 x 1 x C."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return 1, shape[1], shape[2]
    if len(shape) == 2:
        return 1, 1, shape[1]
    if len(shape) == 1:
        return 1, 1, shape[0]
    raise ValueError(f"shape {shape}")


def words(*vals) -> bytes:
    """int32 words, little-endian: a parameter record (``isa.PARAM_RECORDS``)."""
    return np.asarray(vals, dtype="<i4").tobytes()


def pixel_span(mem: MemoryPlan, t: int, first: int, pixels: int) -> dict:
    """A LOAD's or STORE's memory side for ``pixels`` consecutive pixels of ``t`` from pixel
    ``first``: one burst, or for a view (a channel slice, ``concat.py``) one pixel per row."""
    c = int(mem.g.tensor(t).shape[-1])
    if mem.is_view(t):
        stride = mem.pixel_stride(t)
        return dict(dram_addr=mem.dram(t) + first * stride, y_size=pixels, x_size=c, dram_stride=stride)
    return dict(dram_addr=mem.dram(t) + first * c, y_size=1, x_size=pixels * c, dram_stride=pixels * c)


def op_name(op: Op) -> str:
    return f"op #{op.index} {op.kind.value}"


class Emitter:
    def __init__(self, g: Graph, cfg: EngineConfig, mem: MemoryPlan, weights_base: int):
        self.g = g
        self.cfg = cfg
        self.mem = mem
        self.wbase = weights_base
        self.wimg = WeightImage()
        self.prog = ProgramBuilder()
        self.wslot = 1  # the weight/parameter slot last loaded (alternates across layers)
        self.layer_weight_bytes = 0  # weight-image bytes the current layer added

    def weight_data(self, data: bytes) -> int:
        """Append ``data`` to the weight image; its address on the memory port."""
        self.layer_weight_bytes += len(data)
        return self.wbase + self.wimg.add(data)

    def next_weight_slot(self) -> int:
        """The weight/parameter slot the next layer-resident load goes into."""
        self.wslot ^= 1
        return self.wslot

    def param_load(self, addr: int, nbytes: int) -> tuple[isa.Instruction, int]:
        """A vector op's parameter record into the next parameter slot (resident for the layer)."""
        slot_addr = self.next_weight_slot() * self.cfg.slot("param")
        return isa.make(Opcode.LOAD, buffer=Buffer.PARAM, sram_addr=slot_addr, dram_addr=addr, y_size=1,
                        x_size=nbytes, dram_stride=nbytes), slot_addr
