"""A memory-port client for Amaranth-sim testbenches: serves a list of bursts through any
``MemoryPortSignature(2)`` memory (the SDRAM controller, the SPRAM memory) and records what came
back, so every memory of the boards is held to the same ``bytearray`` oracle
(``sdram_bench.expected_reads``).
"""

from __future__ import annotations

import random
from collections import deque

__all__ = ["port_client"]

P = 2  # bytes a beat


def port_client(port, bursts, result: dict, *, stall: float = 0.0, seed: int = 0, ready=None,
                max_cycles: int = 2_000_000, settle: int = 16):
    """An async testbench that offers ``bursts`` (``sdram_bench.Burst``) on ``port`` in order,
    with a seeded idle cycle before a command or write beat and ``rdata.ready`` low each with
    probability ``stall``, after waiting for the signal ``ready`` (if given). Fills ``result``:
    ``reads`` (bytes per read command), ``cycles`` (first command offered to last beat moved,
    inclusive), ``init`` (cycles waited for ``ready``), ``latency`` (first read command taken to
    its first beat)."""
    bursts = list(bursts)
    rng = random.Random(seed)

    async def client(ctx):
        init = 0
        while ready is not None and not ctx.get(ready):
            await ctx.tick()
            init += 1
        pending = deque(bursts)
        wbeats = deque()   # (data, mask) of write commands taken
        reads = deque()    # beats owed per read command taken
        got: list[bytearray] = []
        offering_cmd = offering_w = False
        cycle = last = 0
        first_read_cmd = first_read_beat = None
        total = sum(b.beats for b in bursts)
        moved = 0
        while moved < total:
            if cycle > max_cycles:
                raise TimeoutError(f"port_client: {moved} of {total} beats after {cycle} cycles")
            if not offering_cmd and pending and not (stall and rng.random() < stall):
                b = pending[0]
                ctx.set(port.cmd.payload, {"addr": b.addr, "beats": b.beats, "write": int(b.write)})
                offering_cmd = True
            ctx.set(port.cmd.valid, offering_cmd)
            if not offering_w and wbeats and not (stall and rng.random() < stall):
                d, mk = wbeats[0]
                ctx.set(port.wdata.payload, {"data": list(d), "mask": mk})
                offering_w = True
            ctx.set(port.wdata.valid, offering_w)
            rready = not (stall and rng.random() < stall)
            ctx.set(port.rdata.ready, rready)
            _, _, cready, wready, rvalid, rdata = await ctx.tick().sample(
                port.cmd.ready, port.wdata.ready, port.rdata.valid, port.rdata.payload)
            if offering_cmd and cready:
                b = pending.popleft()
                offering_cmd = False
                if b.write:
                    wbeats.extend((b.data[k * P:(k + 1) * P], b.beat_mask(k)) for k in range(b.beats))
                else:
                    reads.append(b.beats)
                    got.append(bytearray())
                    if first_read_cmd is None:
                        first_read_cmd = cycle
            if offering_w and wready:
                wbeats.popleft()
                offering_w = False
                moved += 1
                last = cycle
            if rvalid and rready:
                idx = len(got) - len(reads)
                got[idx].extend(rdata)
                if first_read_beat is None:
                    first_read_beat = cycle
                if len(got[idx]) == reads[0] * P:
                    reads.popleft()
                moved += 1
                last = cycle
            cycle += 1
        for _ in range(settle):  # the last writes land
            await ctx.tick()
        result.update(reads=[bytes(g) for g in got], cycles=last + 1, init=init,
                      latency=(first_read_beat - first_read_cmd) if first_read_cmd is not None else -1)

    return client
