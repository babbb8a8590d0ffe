"""A memory behind an engine memory port (``onda.hw.engine.memory_port``), for Amaranth-sim
testbenches: serves bursts from a ``bytearray`` with a latency, one beat a cycle, and optional
seeded random stalls on every handshake.

Timing: a command transferred in cycle ``c`` has its data start in cycle
``max(c + latency, end of the previous command's data + 1)``: the first read beat is valid
then (``latency`` cycles after the command), or the first write beat may be taken then. Beats
follow one a cycle while the other side keeps up; commands are served in order and up to
``queue`` of them wait (``cmd.ready`` is low while the queue is full), so a client can issue the
next burst while data streams (``latency + 1`` by default: enough for one-beat bursts to
stream without a gap). ``MemoryModel.from_config`` takes the latency from
``cfg.mem_latency_cycles`` and checks the port is ``cfg.mem_port_bits`` wide.

A command outside the memory, misaligned, or of 0 or more than ``MAX_BURST`` beats raises
:class:`MemoryModelError` out of ``sim.run()``, naming the cycle and the command; so does a
``cmd`` or ``wdata`` beat withdrawn or changed before the model took it (the stream rules).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from onda.hw.engine.memory_port import MAX_BURST

__all__ = ["MemoryModel", "MemoryModelError", "Transfer"]


class MemoryModelError(Exception):
    """A client broke the memory port's rules (the message says which command and why)."""


@dataclass
class Transfer:
    """One command as served: the cycle it was taken (``accepted``), the cycle its first beat
    was offered or could be taken (``start``) and the cycle its last beat moved (``done``)."""

    addr: int
    beats: int
    write: bool
    accepted: int
    start: int = -1
    done: int = -1


class MemoryModel:
    """Serves the memory side of ``port`` (a ``MemoryPortSignature`` interface of the device
    under test, e.g. ``dut.mem``) from ``memory``.

    Parameters
    ----------
    port :
        The client port; the model drives ``cmd.ready``, ``rdata.valid``/``payload`` and
        ``wdata.ready``.
    memory : bytearray
        The contents; writes change it in place.
    latency : int
        Cycles from a command's transfer to its first data beat (>= 1).
    stall : float
        Probability in [0, 1) of a stall cycle before each handshake (``cmd.ready`` low,
        ``rdata.valid`` held low before a beat, ``wdata.ready`` low), from ``random.Random(seed)``.
    queue : int
        Commands taken but not yet finished, at most (>= 1); default ``latency + 1``, the
        fewest that let one-beat bursts stream one a cycle.

    Attributes
    ----------
    cycle : int
        Cycles simulated so far (the first is cycle 0).
    transfers : list[Transfer]
        Every command taken, in order.
    last_done : int
        Cycle in which the last beat of the most recent finished command moved (-1: none yet).
    """

    def __init__(self, port, memory: bytearray, *, latency: int = 1, stall: float = 0.0, seed: int = 0,
                 queue: int | None = None):
        if not isinstance(latency, int) or latency < 1:
            raise ValueError(f"MemoryModel: latency must be an integer >= 1 cycle, got {latency!r}")
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"MemoryModel: stall must be a probability in [0, 1), got {stall!r}")
        if queue is None:
            queue = latency + 1 if isinstance(latency, int) else 1
        if not isinstance(queue, int) or queue < 1:
            raise ValueError(f"MemoryModel: queue must be >= 1 command, got {queue!r}")
        if not isinstance(memory, bytearray):
            raise TypeError(f"MemoryModel: memory must be a bytearray, got {type(memory).__name__}")
        self.port, self.memory = port, memory
        self.P = port.rdata.payload.shape().length
        self.latency, self.stall, self.queue = latency, stall, queue
        self.rng = random.Random(seed)
        self.cycle = 0
        self.transfers: list[Transfer] = []
        self.last_done = -1

    @classmethod
    def from_config(cls, cfg, port, memory: bytearray, **kwargs) -> "MemoryModel":
        """The model with ``cfg``'s timing: ``latency = cfg.mem_latency_cycles`` (at least 1),
        one ``cfg.mem_port_bits``-bit beat a cycle. ``kwargs`` override (``stall``, ``seed``...)."""
        P = cfg.mem_port_bits // 8
        width = port.rdata.payload.shape().length
        if width != P:
            raise ValueError(f"MemoryModel: the port carries {width} bytes a beat, configuration "
                             f"{cfg.name!r} has {P}")
        kwargs.setdefault("latency", max(1, cfg.mem_latency_cycles))
        return cls(port, memory, **kwargs)

    def add_to(self, sim) -> None:
        """Run the model as a background testbench of ``sim`` (it does not keep ``sim.run()``
        going once the critical testbenches have finished)."""
        sim.add_testbench(self._serve, background=True)

    @property
    def busy(self) -> bool:
        """A command has been taken whose data has not all moved."""
        return any(t.done < 0 for t in self.transfers)

    def _stalled(self) -> bool:
        return self.stall > 0 and self.rng.random() < self.stall

    def _check(self, addr: int, beats: int, write: bool) -> None:
        kind = "write" if write else "read"
        what = f"memory model, cycle {self.cycle}: {kind} of {beats} beats at {addr:#x}"
        if addr % self.P:
            raise MemoryModelError(f"{what}: address is not a multiple of the {self.P}-byte beat")
        if not 1 <= beats <= MAX_BURST:
            raise MemoryModelError(f"{what}: a burst is 1..{MAX_BURST} beats")
        if addr + beats * self.P > len(self.memory):
            raise MemoryModelError(f"{what}: [{addr:#x}, {addr + beats * self.P:#x}) is outside the memory "
                                   f"[0, {len(self.memory):#x})")

    async def _serve(self, ctx):
        port, P, mem = self.port, self.P, self.memory
        pending: deque[Transfer] = deque()
        cur: Transfer | None = None
        beat = 0
        rvalid = False
        held_cmd = held_w = None  # payloads offered but not taken last cycle
        while True:
            cready = len(pending) + (cur is not None) < self.queue and not self._stalled()
            ctx.set(port.cmd.ready, cready)
            if cur is None and pending and pending[0].accepted + self.latency <= self.cycle:
                cur, beat = pending.popleft(), 0
                cur.start = self.cycle
            if cur is not None and not cur.write and not rvalid and not self._stalled():
                rvalid = True
                base = cur.addr + beat * P
                ctx.set(port.rdata.payload, list(mem[base:base + P]))
            ctx.set(port.rdata.valid, rvalid)
            wready = cur is not None and cur.write and not self._stalled()
            ctx.set(port.wdata.ready, wready)
            _, _, cvalid, cmd, rready, wvalid, wbeat = await ctx.tick().sample(
                port.cmd.valid, port.cmd.payload, port.rdata.ready, port.wdata.valid, port.wdata.payload)
            # The client's streams keep the rules: once valid, valid and payload hold until taken.
            for what, held, valid, payload in (("cmd", held_cmd, cvalid, cmd), ("wdata", held_w, wvalid, wbeat)):
                if held is not None and not valid:
                    raise MemoryModelError(f"memory model, cycle {self.cycle}: {what}.valid dropped before the transfer")
                if held is not None and payload.as_value().value != held:
                    raise MemoryModelError(f"memory model, cycle {self.cycle}: {what}.payload changed while waiting")
            held_cmd = cmd.as_value().value if cvalid and not cready else None
            held_w = wbeat.as_value().value if wvalid and not wready else None
            if cvalid and cready:
                t = Transfer(int(cmd.addr), int(cmd.beats), bool(cmd.write), self.cycle)
                self._check(t.addr, t.beats, t.write)
                self.transfers.append(t)
                pending.append(t)
            moved = False
            if rvalid and rready:
                rvalid, moved = False, True
            if wready and wvalid:
                base = cur.addr + beat * P
                value, mask = wbeat.data.as_value().value, int(wbeat.mask)
                for i in range(P):
                    if mask >> i & 1:
                        mem[base + i] = (value >> (8 * i)) & 0xFF
                moved = True
            if moved:
                beat += 1
                if beat == cur.beats:
                    cur.done = self.last_done = self.cycle
                    cur = None
            self.cycle += 1
