"""CONCATENATION by memory layout.

TFLite's int8 CONCATENATION copies bytes (every input is quantized as the output), so along the
channel axis an input can simply *be* a slice of the output: its producer stores its pixels with
the output's pixel stride at the input's channel offset, and its other readers read it with that
stride. DenseNet's dense blocks nest this (each block's concatenations are slices of the last one),
so a block lives in one buffer and each layer appends its channels, with no copy at all.

An input becomes such a *view* only where every instruction touching it can take a pixel stride:
its producer is a GEMM, a pool, MEAN, an elementwise VEC op or another concatenation; its other
readers are elementwise ops, pools, MEAN or VALID convolutions (whose DMA reads whole pixels, no
horizontal padding). Graph inputs and outputs, RESHAPE aliases, space-to-depth tensors and tensors
already in another concatenation are copied instead (a VEC COPY into the slice).
"""

from __future__ import annotations

from onda.sim.golden import params as P
from onda.sim.ir import ACTIVATION_OPS, Graph, Op, OpKind, Padding

from .errors import CompileError

_STRIDED_WRITERS = {OpKind.CONV_2D, OpKind.FULLY_CONNECTED, OpKind.MAX_POOL_2D, OpKind.AVERAGE_POOL_2D,
                    OpKind.MEAN, OpKind.ADD, OpKind.MUL, OpKind.QUANTIZE, OpKind.CONCATENATION, *ACTIVATION_OPS}
_STRIDED_READERS = {OpKind.MAX_POOL_2D, OpKind.AVERAGE_POOL_2D, OpKind.MEAN, OpKind.ADD, OpKind.MUL,
                    OpKind.QUANTIZE, OpKind.CONCATENATION, *ACTIVATION_OPS}


def _reads_strided(g: Graph, op: Op, t: int) -> bool:
    if op.kind in _STRIDED_READERS:
        return True
    # A VALID convolution's bands are whole pixels, no padding: its DMA can take a pixel stride.
    return op.kind == OpKind.CONV_2D and op.inputs[0] == t and op.attrs.padding == Padding.VALID


def concat_channel_axis(g: Graph, op: Op) -> int:
    """Refuse what the engine cannot lay out: quantization (as TFLite does) and a non-channel axis."""
    try:
        axis = P.concat_axis(g, op)
    except ValueError as e:
        raise CompileError(str(e)) from None
    out = g.tensor(op.outputs[0])
    if axis != len(out.shape) - 1:
        raise CompileError(f"op #{op.index} CONCATENATION: along axis {axis} of {list(out.shape)} not supported "
                           f"(the engine concatenates channels, the last axis)")
    for i in op.inputs:
        if g.tensor(i).is_constant:
            raise CompileError(f"op #{op.index} CONCATENATION: a constant input is not supported")
    return axis


def plan_views(g: Graph, ops: list[Op], inputs: list[int], outputs: list[int], alias: dict[int, int],
               s2d: dict) -> dict[int, tuple[int, int]]:
    """Tensor -> (the concatenation output it is a slice of, its first channel there)."""
    producer: dict[int, Op] = {t: op for op in ops for t in op.outputs}
    readers: dict[int, list[Op]] = {}
    for op in ops:
        for t in op.inputs:
            readers.setdefault(t, []).append(op)
    fixed = set(inputs) | set(outputs) | set(alias) | set(alias.values()) | set(s2d)
    views: dict[int, tuple[int, int]] = {}
    for op in reversed(ops):  # outer concatenations first: an inner one may become a slice of them
        if op.kind != OpKind.CONCATENATION:
            continue
        concat_channel_axis(g, op)
        offset = 0
        for t in op.inputs:
            c = g.tensor(t).shape[-1]
            p = producer.get(t)
            if (t not in fixed and t not in views and p is not None and p.kind in _STRIDED_WRITERS
                    and all(r is op or _reads_strided(g, r, t) for r in readers.get(t, ()))
                    and op.inputs.count(t) == 1):
                views[t] = (op.outputs[0], offset)
            offset += c
    return views
