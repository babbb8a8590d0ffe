"""Program assembly: tiles of (loads, computes, stores) joined by VTA-style dependency tokens.

A layer is a sequence of tiles. Tile ``t``'s loads fill buffer slots, its computes read them and
write an output slot, its stores drain that slot. Every buffer alternates between its two slots on
each new load, and the output buffer on each tile, so:

* the first load of tile ``t >= 2`` pops a COMPUTE->LOAD token (compute of tile ``t - 2`` has
  released the slots this load overwrites); the last load pushes LOAD->COMPUTE;
* the first compute pops LOAD->COMPUTE, and for ``t >= 2`` STORE->COMPUTE (the store of tile
  ``t - 2`` has drained the output slot); the last compute pushes COMPUTE->LOAD and COMPUTE->STORE;
* the first store pops COMPUTE->STORE, the last pushes STORE->COMPUTE.

Between layers a barrier makes the next layer's activation loads wait for the previous layer's
stores (its output is the next layer's input, through memory) and drains the outstanding tokens,
so every layer's tiles start from empty queues. The next layer's first weight and parameter loads
do not depend on the previous layer's output: they are issued *before* the barrier, as if they
were one more tile of the previous layer (into the weight slot that layer no longer reads), so
they stream in while the previous layer finishes.

Program order is itself a legal sequential execution: every pop's matching push comes earlier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from onda.hw import isa
from onda.hw.isa import Buffer, Instruction, Module, Opcode


@dataclass
class Tile:
    loads: list[Instruction] = field(default_factory=list)
    # Loads for a later tile, issued after this tile's own (which signal compute) and so not
    # delaying it; they write a slot the slot rule of this tile's first load has freed.
    tail: list[Instruction] = field(default_factory=list)
    computes: list[Instruction] = field(default_factory=list)
    stores: list[Instruction] = field(default_factory=list)


class ProgramBuilder:
    def __init__(self):
        self.instructions: list[Instruction] = []
        self._t = 0  # tiles emitted since the last barrier
        self._pending: list[Tile] = []
        self.pushed = dict.fromkeys(isa.QUEUES, 0)
        self.popped = dict.fromkeys(self.pushed, 0)

    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def pending(self) -> list[Tile]:
        """The tiles of the layer being built (emitted by ``end_layer``)."""
        return self._pending

    def _emit(self, ins: Instruction) -> None:
        q = isa.TOKEN_QUEUES[ins.module]
        for flag, name in zip(("pop_prev", "pop_next", "push_prev", "push_next"), q):
            if getattr(ins, flag):
                if name is None:
                    raise AssertionError(f"{ins.opcode.name}: no queue for {flag}")
                (self.popped if flag.startswith("pop") else self.pushed)[name] += 1
        self.instructions.append(ins)

    def tile(self, tile: Tile) -> None:
        """Queue a tile of the layer being built (emitted by ``end_layer``)."""
        self._pending.append(tile)

    def _tile(self, tile: Tile) -> None:
        t = self._t
        loads = tile.loads or [isa.make(Opcode.NOP, module=Module.LOAD)]
        computes = tile.computes or [isa.make(Opcode.NOP, module=Module.COMPUTE)]
        stores = tile.stores or [isa.make(Opcode.NOP, module=Module.STORE)]
        if t >= 2:
            loads[0].pop_next = True
            computes[0].pop_next = True
        loads[-1].push_next = True
        computes[0].pop_prev = True
        computes[-1].push_prev = True
        computes[-1].push_next = True
        stores[0].pop_prev = True
        stores[-1].push_prev = True
        for ins in loads + tile.tail + computes + stores:
            self._emit(ins)
        self._t += 1

    def _barrier(self) -> None:
        """Later loads wait for every store so far; the token queues end empty."""
        if self._t == 0 and self.pushed == self.popped:
            return
        n = max(1, self.pushed["s2c"] - self.popped["s2c"])
        for i in range(n):
            nop = isa.make(Opcode.NOP, module=Module.COMPUTE)
            nop.pop_next = self.pushed["s2c"] > self.popped["s2c"]
            nop.push_prev = i == n - 1
            self._emit(nop)
        while self.pushed["c2l"] > self.popped["c2l"]:
            self._emit(isa.make(Opcode.NOP, module=Module.LOAD, pop_next=True))
        self._t = 0

    def end_layer(self) -> tuple[int, int]:
        """Emit the queued tiles as one layer; returns its (first, last) instruction indices."""
        tiles, self._pending = self._pending, []
        first = len(self.instructions)
        if not tiles:
            return first, first - 1
        pre = [ins for ins in tiles[0].loads
               if ins.opcode == Opcode.LOAD and ins.fields["buffer"] in (Buffer.WGT, Buffer.PARAM)]
        if pre:
            tiles[0].loads = [ins for ins in tiles[0].loads if not any(ins is p for p in pre)]
            if self._t >= 2:
                pre[0].pop_next = True  # as tile n of the previous layer: compute n - 2 is done
            for ins in pre:
                self._emit(ins)
        self._barrier()
        for tile in tiles:
            self._tile(tile)
        return first, len(self.instructions) - 1

    def finish(self) -> list[Instruction]:
        if self._pending:
            self.end_layer()
        self._barrier()
        self._emit(isa.make(Opcode.FINISH))
        return self.instructions
