"""cocotb drivers for Amaranth ``lib.stream`` ports as exported to Verilog
(``<name>__valid``, ``<name>__ready``, ``<name>__payload``), with random idle/stall cycles.

Values are sampled in the ReadOnly phase before each rising edge, and every receiver checks
the stream rules while it stalls: ``valid`` stays high and the payload stays put until the
transfer.
"""

from __future__ import annotations

import random

from cocotb.triggers import ReadOnly, RisingEdge


def _port(dut, name, member):
    return getattr(dut, f"{name}__{member}")


def set_signed(handle, value: int) -> None:
    width = len(handle)
    handle.value = value & ((1 << width) - 1)


async def put(dut, name: str, payloads, *, rng: random.Random | None = None, idle: float = 0.0):
    """Drive ``payloads`` (ints, already packed) into stream ``name``."""
    valid, ready, payload = (_port(dut, name, m) for m in ("valid", "ready", "payload"))
    for p in payloads:
        while rng is not None and rng.random() < idle:
            valid.value = 0
            await RisingEdge(dut.clk)
        valid.value = 1
        payload.value = p
        while True:
            await ReadOnly()
            fire = bool(ready.value)
            await RisingEdge(dut.clk)
            if fire:
                break
    valid.value = 0


async def get(dut, name: str, count: int, *, rng: random.Random | None = None, stall: float = 0.0,
              signed: bool = True, max_cycles: int = 10_000_000) -> list[int]:
    """Receive ``count`` payloads from stream ``name``, checking the handshake rules."""
    valid, ready, payload = (_port(dut, name, m) for m in ("valid", "ready", "payload"))
    out: list[int] = []
    held = None
    cycles = 0
    while len(out) < count:
        r = 0 if (rng is not None and rng.random() < stall) else 1
        ready.value = r
        await ReadOnly()
        v = bool(valid.value)
        if v:
            data = payload.value.to_signed() if signed else payload.value.to_unsigned()
            if held is not None:
                assert data == held, f"{name}: payload changed while stalled: {held} -> {data}"
            if r:
                out.append(data)
                held = None
            else:
                held = data
        else:
            assert held is None, f"{name}: valid dropped before the transfer"
        await RisingEdge(dut.clk)
        cycles += 1
        assert cycles < max_cycles, f"{name}: timeout after {cycles} cycles with {len(out)}/{count}"
    ready.value = 0
    return out


async def reset(dut, cycles: int = 2) -> None:
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
