"""How many of a device's block RAMs the engine's buffers take, counted before synthesis.

A :class:`~.buffers.ByteBuffer` is a set of RAMs (``word_data``), one copy per physical read
port (``read_groups``: a block RAM has one read port, so k read ports are k copies written
together). Each RAM goes to the device's blocks in the cheapest of their width x depth shapes
(``RAM_SHAPES``), which is what Yosys's memory mapping picks for these simple dual-port RAMs.
The count matched Yosys on the ULX3S engine (200 DP16KD, 409 before ACT's reads were shared),
so ``make synth`` can refuse a configuration that cannot fit in seconds instead of an hour.

On a device without LUT RAM (iCE40) Yosys also puts the fetch unit's instruction FIFOs into
blocks, one block per 16 bits of width whatever their depth (70 for the engine's four: Yosys's
own count of the Fetch unit alone); on the ECP5 they go to distributed RAM (TRELLIS_DPR16X4).
"""

from __future__ import annotations

from .buffers import ByteBuffer, act_buffer, out_buffer, param_buffer, wgt_buffer

__all__ = ["NO_LUT_RAM", "RAM_SHAPES", "blocks_for", "buffer_blocks", "engine_ram_blocks", "fetch_fifo_blocks",
           "ram_shortfall"]

# Block RAM kinds on devices with no LUT RAM: shallow FIFOs take blocks there too.
NO_LUT_RAM = {"EBR"}

# Block RAM kind -> (data bits, words) of each shape a block can take (simple dual port).
RAM_SHAPES = {
    "DP16KD": ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)),  # ECP5: 18 kbit
    "EBR": ((2, 2048), (4, 1024), (8, 512), (16, 256)),  # iCE40 SB_RAM40_4K: 4 kbit
}


def blocks_for(kind: str, bits: int, depth: int) -> int:
    """Blocks of ``kind`` one RAM of ``depth`` words of ``bits`` takes, in its cheapest shape."""
    try:
        shapes = RAM_SHAPES[kind]
    except KeyError:
        raise ValueError(f"no block RAM shapes known for {kind!r} (known: {', '.join(RAM_SHAPES)})") from None
    return min(-(-bits // w) * -(-depth // d) for w, d in shapes)


def buffer_blocks(buf: ByteBuffer, kind: str) -> int:
    """Blocks of ``kind`` the buffer takes: each RAM once per physical read port."""
    return len(buf.read_groups) * sum(blocks_for(kind, wd.shape.width, wd.depth) for wd in buf.word_data)


def engine_ram_blocks(cfg) -> dict[str, int]:
    """Blocks of ``cfg.ram_kind`` per buffer: act, wgt, param, out (ByteBuffers) and acc (the
    GEMM's int32 accumulator RAM), as the engine instantiates them."""
    kind = cfg.ram_kind
    use = {}
    for name, make in (("act", act_buffer), ("wgt", wgt_buffer), ("param", param_buffer), ("out", out_buffer)):
        buf = make(cfg)
        buf._MustUse__silence = True  # built to be counted, not elaborated
        use[name] = buffer_blocks(buf, kind)
    use["acc"] = blocks_for(kind, 32, cfg.acc_bytes // 4) if cfg.acc_bytes else 0
    if kind in NO_LUT_RAM:
        use["fetch"] = fetch_fifo_blocks(kind)
    return use


def fetch_fifo_blocks(kind: str) -> int:
    """Blocks of ``kind`` the fetch unit's FIFOs take (the prefetch FIFO of whole instructions,
    a queue of entries per instruction module), as ``Engine`` sizes them."""
    from onda.hw.isa import INSTRUCTION_BITS, Module

    from .engine import PREFETCH, QUEUE_DEPTH
    from .fetch import QueueEntryLayout

    return (blocks_for(kind, INSTRUCTION_BITS, PREFETCH)
            + len(Module) * blocks_for(kind, QueueEntryLayout().size, QUEUE_DEPTH))


def ram_shortfall(cfg, extra: int = 0) -> str | None:
    """Why ``cfg``'s buffers (plus ``extra`` blocks of the board top's own) cannot fit the
    device's ``ram_blocks``, or None when they can."""
    use = engine_ram_blocks(cfg)
    total = sum(use.values()) + extra
    if total <= cfg.ram_blocks:
        return None
    parts = ", ".join(f"{k} {v}" for k, v in use.items() if v) + (f", board top {extra}" if extra else "")
    return (f"engine {cfg.name!r} needs {total} {cfg.ram_kind} blocks ({parts}); the device has {cfg.ram_blocks}: "
            f"shrink its buffers (hw/configs/{cfg.name}.yaml)")
