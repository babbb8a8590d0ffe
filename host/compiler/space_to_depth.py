"""Space-to-depth for a strided stem.

A PAD whose only consumer is a stride-2 VALID conv with few input channels is stored as
``[ceil(H/2), ceil(W/2), 4C]`` (each 2x2 pixel block's channels side by side); the conv becomes a
stride-1 conv with a ``ceil(k/2)`` kernel over 4C channels. The MAC array then sees
``ceil(kw/2) * 4C`` contiguous bytes per kernel row instead of ``kw * C``: for a 7x7 conv on 3
channels, 48 bytes instead of 21. Chosen only when the engine's GEMM timing (``cycles.gemm_cycles``: the requantizer's drain
included) says it is faster.
"""

from __future__ import annotations

from onda.hw.config import EngineConfig
from onda.sim.emulator import cycles
from onda.sim.ir import Graph, Op, OpKind, Padding


def plan_space_to_depth(g: Graph, ops: list[Op], outputs: list[int], alias: dict[int, int],
                        cfg: EngineConfig) -> dict[int, tuple[int, int, int]]:
    """The PAD outputs to store space-to-depth, with their stored shape ``(H/2, W/2, 4C)``."""
    consumers: dict[int, list[Op]] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)
    chosen = {}
    for op in ops:
        if op.kind != OpKind.PAD or len(g.tensor(op.outputs[0]).shape) != 4:
            continue
        t = op.outputs[0]
        users = consumers.get(t, [])
        if len(users) != 1 or t in outputs or t in alias.values():
            continue
        conv = users[0]
        if (conv.kind != OpKind.CONV_2D or conv.inputs[0] != t or conv.attrs.stride != (2, 2)
                or conv.attrs.dilation != (1, 1) or conv.attrs.padding != Padding.VALID):
            continue
        _, hp, wp, c = g.tensor(t).shape
        cout, kh, kw, _ = g.tensor(conv.inputs[1]).shape
        hs, ws, kh2, kw2 = -(-hp // 2), -(-wp // 2), -(-kh // 2), -(-kw // 2)
        oh, ow = g.tensor(conv.outputs[0]).shape[1:3]
        if hs - kh2 + 1 < oh or ws - kw2 + 1 < ow:
            continue
        plain = cycles.gemm_cycles(cfg, oh * ow, cout, kh, kw, c)
        packed = cycles.gemm_cycles(cfg, oh * ow, cout, kh2, kw2, 4 * c)
        if packed < plain:
            chosen[t] = (hs, ws, 4 * c)
    return chosen

