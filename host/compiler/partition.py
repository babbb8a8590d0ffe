"""Which ops run on the engine and which on the host.

A float QUANTIZE of a graph input and a DEQUANTIZE to a graph output run on the host (as
Brainwave's host does); the engine program takes and returns their int8 sides. Everything else is
the engine's, in graph order."""

from __future__ import annotations

from dataclasses import dataclass

from onda.sim.ir import Graph, Op, OpKind


@dataclass
class Partition:
    ops: list[Op]  # the engine's ops, in graph order
    inputs: list[int]  # the engine program's input tensors (int8)
    outputs: list[int]  # its output tensors (int8)
    host_ops: list[dict]  # the host's QUANTIZE / DEQUANTIZE, as the memory map records them


def partition(g: Graph) -> Partition:
    host_ops: list[dict] = []
    ops: list[Op] = []
    inputs, outputs = list(g.inputs), list(g.outputs)
    for op in g.ops:
        x = g.tensor(op.inputs[0])
        if op.kind == OpKind.QUANTIZE and x.dtype == "float32" and op.inputs[0] in g.inputs:
            q = g.tensor(op.outputs[0]).quant
            inputs[inputs.index(op.inputs[0])] = op.outputs[0]
            host_ops.append({"kind": "QUANTIZE", "stage": "pre", "input": op.inputs[0],
                             "output": op.outputs[0], "scale": q.s, "zero_point": q.zp})
        elif op.kind == OpKind.DEQUANTIZE and op.outputs[0] in g.outputs:
            outputs[outputs.index(op.outputs[0])] = op.inputs[0]
            host_ops.append({"kind": "DEQUANTIZE", "stage": "post", "input": op.inputs[0],
                             "output": op.outputs[0], "scale": x.quant.s, "zero_point": x.quant.zp})
        else:
            ops.append(op)
    return Partition(ops, inputs, outputs, host_ops)
