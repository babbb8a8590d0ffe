"""Program assembly: tiles of (loads, computes, stores) joined by VTA-style dependency tokens.

A layer is a sequence of tiles. Tile ``t``'s loads fill buffer slots, its computes read them and
write an output slot, its stores drain that slot. Every buffer alternates between its two slots on
each new load, and the output buffer on each tile, so:

* the first load of tile ``t >= 2`` pops a COMPUTE->LOAD token (compute of tile ``t - 2`` has
  released the slots this load overwrites); the last load pushes LOAD->COMPUTE;
* the first compute pops LOAD->COMPUTE, and for ``t >= 2`` STORE->COMPUTE (the store of tile
  ``t - 2`` has drained the output slot); the last compute pushes COMPUTE->LOAD and COMPUTE->STORE;
* the first store pops COMPUTE->STORE, the last pushes STORE->COMPUTE.

Between layers a barrier makes the next layer's loads wait for the previous layer's stores (its
output is the next layer's input, through memory) and drains the outstanding tokens, so every
layer starts from empty queues. Program order is itself a legal sequential execution: every pop's
matching push comes earlier in the program.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from onda.hw import isa
from onda.hw.isa import Instruction, Module, Opcode


@dataclass
class Tile:
    loads: list[Instruction] = field(default_factory=list)
    computes: list[Instruction] = field(default_factory=list)
    stores: list[Instruction] = field(default_factory=list)


class ProgramBuilder:
    def __init__(self):
        self.instructions: list[Instruction] = []
        self._t = 0  # tile index within the current layer

    def __len__(self) -> int:
        return len(self.instructions)

    def tile(self, tile: Tile) -> None:
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
        self.instructions += loads + computes + stores
        self._t += 1

    def barrier(self) -> None:
        """End a layer: later loads wait for every store so far; token queues end empty."""
        n = min(self._t, 2)
        if self._t == 0:
            return
        for i in range(n):
            nop = isa.make(Opcode.NOP, module=Module.COMPUTE, pop_next=True)
            nop.push_prev = i == n - 1
            self.instructions.append(nop)
        for _ in range(n + 1):
            self.instructions.append(isa.make(Opcode.NOP, module=Module.LOAD, pop_next=True))
        self._t = 0

    def finish(self) -> list[Instruction]:
        self.barrier()
        self.instructions.append(isa.make(Opcode.FINISH))
        return self.instructions
