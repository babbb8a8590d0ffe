"""Amaranth-simulator helpers for ``amaranth.lib.stream`` interfaces, with random stalls.

One producer and one consumer testbench per stream (as Glasgow's ``stream_put``/``stream_get``):
the producer drops ``valid`` for a random number of cycles between beats, the consumer drops
``ready``, so every test exercises back-pressure on both sides of the device under test.
"""

from __future__ import annotations

import random


async def stream_put(ctx, stream, payloads, *, rng: random.Random | None = None, idle: float = 0.0):
    """Send each payload in turn; before each, stay idle while ``rng.random() < idle``."""
    for payload in payloads:
        while rng is not None and rng.random() < idle:
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, count: int, *, rng: random.Random | None = None,
                     stall: float = 0.0) -> list:
    """Receive ``count`` payloads; before each, hold ``ready`` low while ``rng.random() < stall``.

    While ``ready`` is low, checks the stream rules: once ``valid`` is seen it stays high and
    the payload stays put until the transfer.
    """
    out = []
    for _ in range(count):
        held = None
        while rng is not None and rng.random() < stall:
            ctx.set(stream.ready, 0)
            _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
            if held is not None:
                assert valid, "valid dropped before the transfer"
                assert payload == held, f"payload changed while stalled: {held} -> {payload}"
            held = payload if valid else None
        ctx.set(stream.ready, 1)
        payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
        if held is not None:
            assert payload == held, f"payload changed while stalled: {held} -> {payload}"
        ctx.set(stream.ready, 0)
        out.append(payload)
    return out
