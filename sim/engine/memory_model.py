"""A memory behind an engine memory port (``onda.hw.engine.memory_port``), for testbenches: serves
bursts from a ``bytearray`` with a latency, one beat a cycle, and optional seeded random stalls on
every handshake and random extra latency per command.

The memory's behaviour is :class:`MemoryCore`, a cycle-by-cycle state machine that knows no
simulator (what to drive before a clock edge, what to do with the handshakes sampled at it), so
every bench serves the port with the same rules and timing: :class:`MemoryModel` runs it in
Amaranth's simulator, ``onda.sim.cocotb.engine_bench`` in cocotb on Icarus and Verilator.

Timing: a command transferred in cycle ``c`` has its data start in cycle
``max(c + latency, end of the previous command's data + 1)``: the first read beat is valid
then (``latency`` cycles after the command), or the first write beat may be taken then. Beats
follow one a cycle while the other side keeps up (with ``jitter`` > 0, each command's latency
is ``latency`` plus a seeded random 0..``jitter`` cycles); commands are served in order and up to
``queue`` of them wait (``cmd.ready`` is low while the queue is full), so a client can issue the
next burst while data streams (``latency + jitter + 1`` by default: enough for one-beat bursts
to stream without a gap). ``MemoryModel.from_config`` takes the latency from
``cfg.mem_latency_cycles`` and checks the port is ``cfg.mem_port_bits`` wide.

A command outside the memory, misaligned, or of 0 or more than ``MAX_BURST`` beats raises
:class:`MemoryModelError` out of ``sim.run()``, naming the cycle and the command; so does a
``cmd`` or ``wdata`` beat withdrawn or changed before the model took it (the stream rules).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from amaranth.lib import data

from onda.hw.engine.memory_port import MAX_BURST, MemCmdLayout, MemWriteLayout

__all__ = ["MemoryCore", "MemoryModel", "MemoryModelError", "Transfer"]


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
    latency: int = 0  # this command's latency (the model's plus its random extra)


class MemoryCore:
    """The memory's cycle-by-cycle behaviour, for any simulator: each cycle the bench calls
    :meth:`drive` for what the memory shows before the clock edge, then :meth:`clock` with the
    client's side of the handshakes as sampled at that edge.

    Parameters
    ----------
    memory : bytearray
        The contents; writes change it in place.
    P : int
        Bytes per beat.
    latency : int
        Cycles from a command's transfer to its first data beat (>= 1).
    stall : float
        Probability in [0, 1) of a stall cycle before each handshake (``cmd.ready`` low,
        ``rdata.valid`` held low before a beat, ``wdata.ready`` low), from ``random.Random(seed)``.
    queue : int
        Commands taken but not yet finished, at most (>= 1); default ``latency + jitter + 1``,
        the fewest that let one-beat bursts stream one a cycle.
    jitter : int
        Each command waits ``latency`` plus a random 0..``jitter`` cycles (>= 0; from a second
        generator seeded with ``seed``, so ``jitter=0`` leaves the stalls as they were).

    Attributes
    ----------
    cycle : int
        Cycles simulated so far (the first is cycle 0).
    transfers : list[Transfer]
        Every command taken, in order.
    last_done : int
        Cycle in which the last beat of the most recent finished command moved (-1: none yet).
    """

    def __init__(self, memory: bytearray, P: int, *, latency: int = 1, stall: float = 0.0, seed: int = 0,
                 queue: int | None = None, jitter: int = 0):
        if not isinstance(latency, int) or latency < 1:
            raise ValueError(f"MemoryModel: latency must be an integer >= 1 cycle, got {latency!r}")
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"MemoryModel: stall must be a probability in [0, 1), got {stall!r}")
        if not isinstance(jitter, int) or jitter < 0:
            raise ValueError(f"MemoryModel: jitter must be an integer >= 0 cycles, got {jitter!r}")
        if queue is None:
            queue = latency + jitter + 1
        if not isinstance(queue, int) or queue < 1:
            raise ValueError(f"MemoryModel: queue must be >= 1 command, got {queue!r}")
        if not isinstance(memory, bytearray):
            raise TypeError(f"MemoryModel: memory must be a bytearray, got {type(memory).__name__}")
        self.memory, self.P = memory, P
        self.latency, self.stall, self.queue, self.jitter = latency, stall, queue, jitter
        self.rng = random.Random(seed)
        self.jitter_rng = random.Random(seed ^ 0x5EED)
        self.cmd_layout, self.w_layout = MemCmdLayout(), MemWriteLayout(P)
        self.cycle = 0
        self.transfers: list[Transfer] = []
        self.last_done = -1
        self._pending: deque[Transfer] = deque()
        self._cur: Transfer | None = None
        self._beat = 0
        self._rvalid = self._cready = self._wready = False
        self._held_cmd = self._held_w = None  # payloads offered but not taken last cycle

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

    def drive(self) -> tuple[bool, bool, bytes | None, bool]:
        """What the memory shows this cycle: ``(cmd_ready, rdata_valid, rdata, wdata_ready)``;
        ``rdata`` is the beat newly offered this cycle (None: the payload stays as it was)."""
        self._cready = len(self._pending) + (self._cur is not None) < self.queue and not self._stalled()
        pending, cur = self._pending, self._cur
        if cur is None and pending and pending[0].accepted + pending[0].latency <= self.cycle:
            cur, self._beat = pending.popleft(), 0
            cur.start = self.cycle
            self._cur = cur
        rdata = None
        if cur is not None and not cur.write and not self._rvalid and not self._stalled():
            self._rvalid = True
            base = cur.addr + self._beat * self.P
            rdata = bytes(self.memory[base:base + self.P])
        self._wready = cur is not None and cur.write and not self._stalled()
        return self._cready, self._rvalid, rdata, self._wready

    def clock(self, cmd_valid: bool, cmd: int, rdata_ready: bool, wdata_valid: bool, wdata: int) -> None:
        """The clock edge, with the client's side sampled at it: ``cmd`` and ``wdata`` are the raw
        payloads (``MemCmdLayout``, ``MemWriteLayout(P)`` bits as integers)."""
        # The client's streams keep the rules: once valid, valid and payload hold until taken.
        for what, held, valid, payload in (("cmd", self._held_cmd, cmd_valid, cmd),
                                           ("wdata", self._held_w, wdata_valid, wdata)):
            if held is not None and not valid:
                raise MemoryModelError(f"memory model, cycle {self.cycle}: {what}.valid dropped before the transfer")
            if held is not None and payload != held:
                raise MemoryModelError(f"memory model, cycle {self.cycle}: {what}.payload changed while waiting")
        self._held_cmd = cmd if cmd_valid and not self._cready else None
        self._held_w = wdata if wdata_valid and not self._wready else None
        if cmd_valid and self._cready:
            c = data.Const(self.cmd_layout, cmd)
            extra = self.jitter_rng.randint(0, self.jitter) if self.jitter else 0
            t = Transfer(int(c.addr), int(c.beats), bool(c.write), self.cycle, latency=self.latency + extra)
            self._check(t.addr, t.beats, t.write)
            self.transfers.append(t)
            self._pending.append(t)
        moved = False
        if self._rvalid and rdata_ready:
            self._rvalid, moved = False, True
        cur = self._cur
        if self._wready and wdata_valid:
            base = cur.addr + self._beat * self.P
            w = data.Const(self.w_layout, wdata)
            value, mask = w.data.as_value().value, int(w.mask)
            for i in range(self.P):
                if mask >> i & 1:
                    self.memory[base + i] = (value >> (8 * i)) & 0xFF
            moved = True
        if moved:
            self._beat += 1
            if self._beat == cur.beats:
                cur.done = self.last_done = self.cycle
                self._cur = None
        self.cycle += 1


class MemoryModel(MemoryCore):
    """Serves the memory side of ``port`` (a ``MemoryPortSignature`` interface of the device
    under test, e.g. ``dut.mem``) from ``memory``, in Amaranth's simulator.

    ``port`` is the client port; the model drives ``cmd.ready``, ``rdata.valid``/``payload``
    and ``wdata.ready``. The other parameters and the attributes are :class:`MemoryCore`'s.
    """

    def __init__(self, port, memory: bytearray, **kwargs):
        self.port = port
        super().__init__(memory, port.rdata.payload.shape().length, **kwargs)

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

    async def _serve(self, ctx):
        port = self.port
        while True:
            cready, rvalid, rdata, wready = self.drive()
            ctx.set(port.cmd.ready, cready)
            if rdata is not None:
                ctx.set(port.rdata.payload, list(rdata))
            ctx.set(port.rdata.valid, rvalid)
            ctx.set(port.wdata.ready, wready)
            _, _, cvalid, cmd, rready, wvalid, wbeat = await ctx.tick().sample(
                port.cmd.valid, port.cmd.payload, port.rdata.ready, port.wdata.valid, port.wdata.payload)
            self.clock(bool(cvalid), cmd.as_value().value, bool(rready), bool(wvalid), wbeat.as_value().value)
