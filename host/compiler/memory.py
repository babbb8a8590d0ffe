"""Where every activation tensor lives in the engine's memory.

A RESHAPE's output shares its input's bytes (an alias); a concatenation's input may be a *view*,
a channel slice of the output (``concat.py``), stored with the output's pixel stride; a tensor chosen
for space-to-depth is stored as ``[ceil(H/2), ceil(W/2), 4C]``; the rest are NHWC int8. Tensors are placed first-fit
over their live ranges (op positions), so a tensor's bytes are reused once its last reader ran.
"""

from __future__ import annotations

import numpy as np

from onda.sim.ir import Graph, Op, OpKind

ALIGN = 64


def align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


def reshape_aliases(ops: list[Op]) -> dict[int, int]:
    """RESHAPE output -> the tensor whose bytes it shares."""
    return {op.outputs[0]: op.inputs[0] for op in ops if op.kind == OpKind.RESHAPE}


class MemoryPlan:
    """The activation region: ``addr`` per root tensor, ``act_size`` bytes in all."""

    def __init__(self, g: Graph, ops: list[Op], inputs: list[int], outputs: list[int],
                 alias: dict[int, int], s2d: dict[int, tuple[int, int, int]],
                 views: dict[int, tuple[int, int]] | None = None):
        self.g = g
        self.alias = alias
        self.views = views or {}  # tensor -> (the tensor it is a channel slice of, its first channel)
        self.s2d = s2d  # tensor -> its space-to-depth stored shape
        self.addr: dict[int, int] = {}
        self.act_size = 0
        self._allocate(ops, inputs, outputs)

    def root(self, tid: int) -> int:
        """The tensor whose allocation holds ``tid``'s bytes."""
        while tid in self.alias or tid in self.views:
            tid = self.alias[tid] if tid in self.alias else self.views[tid][0]
        return tid

    def _channel_offset(self, tid: int) -> int:
        off = 0
        while tid in self.alias or tid in self.views:
            if tid in self.views:
                off += self.views[tid][1]
                tid = self.views[tid][0]
            else:
                tid = self.alias[tid]
        return off

    def pixel_stride(self, tid: int) -> int:
        """Bytes from one pixel of ``tid`` to the next: its channels, or its container's for a view."""
        return int(self.g.tensor(self.root(tid)).shape[-1]) if tid in self.views else int(self.g.tensor(tid).shape[-1])

    def is_view(self, tid: int) -> bool:
        return tid in self.views

    def nbytes(self, tid: int) -> int:
        if tid in self.s2d:
            hs, ws, c4 = self.s2d[tid]
            return hs * ws * c4
        return int(np.prod(self.g.tensor(tid).shape))

    def dram(self, tid: int) -> int:
        """The address of ``tid``'s first byte (a view's: its first channel in its container)."""
        return self.addr[self.root(tid)] + self._channel_offset(tid)

    def _allocate(self, ops: list[Op], inputs: list[int], outputs: list[int]) -> None:
        """First-fit allocation of activation tensors over their live ranges (op positions)."""
        g = self.g
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        for t in inputs:
            start[self.root(t)] = -1
        for pos, op in enumerate(ops):
            for t in op.outputs:
                r = self.root(t)
                start.setdefault(r, pos)
                end[r] = max(end.get(r, pos), pos)
            for t in op.inputs:
                if t >= 0 and not g.tensor(t).is_constant:
                    r = self.root(t)
                    end[r] = max(end.get(r, pos), pos)
        for t in outputs + inputs:
            end[self.root(t)] = len(ops)
        live: list[tuple[int, int, int]] = []  # (offset, size, end)
        for r in sorted(start, key=lambda r: (start[r], r)):
            s = start[r]
            live = [blk for blk in live if blk[2] >= s]
            size = align(self.nbytes(r))
            off = 0
            for o, sz, _ in sorted(live):
                if off + size <= o:
                    break
                off = max(off, o + sz)
            live.append((off, size, end[r]))
            self.addr[r] = off
            self.act_size = max(self.act_size, off + size)


class WeightImage:
    """The weight region's bytes: chunks appended at 64-byte aligned offsets."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        addr = self.size
        pad = align(len(data)) - len(data)
        self.chunks.append(data + b"\0" * pad)
        self.size += len(data) + pad
        return addr

    def bytes(self) -> bytes:
        return b"".join(self.chunks)
