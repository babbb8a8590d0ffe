"""The golden model: executes an onda IR graph op by op with TFLite's integer arithmetic."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..ir import ACTIVATION_OPS, Graph, Op, OpKind
from . import kernels as K
from . import params as P

Kernel = Callable[[list[np.ndarray]], np.ndarray]


class UnsupportedOpError(ValueError):
    """An op the golden model (and so the engine) cannot execute."""


class GoldenModel:
    """Executes a Graph exactly; parameters are derived once, at construction (TFLite's Prepare).

    ``run`` takes one array per graph input with any leading batch size and returns the
    outputs; ``run_all`` also returns every intermediate tensor by id.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self._kernels: list[tuple[Op, Kernel]] = [(op, self._prepare(op)) for op in graph.ops]

    def _prepare(self, op: Op) -> Kernel:
        g = self.graph
        a = op.attrs
        k = op.kind
        if k == OpKind.CONV_2D:
            p = P.gemm_params(g, op)
            prep = K.PreparedGemm(p)
            return lambda xs: K.conv2d(xs[0], p, a.stride, a.dilation, a.padding, prep)
        if k == OpKind.FULLY_CONNECTED:
            p = P.gemm_params(g, op)
            out_shape = g.tensor(op.outputs[0]).shape

            def fc(xs):
                y = K.fully_connected(xs[0], p)
                if a.keep_num_dims:
                    return y.reshape(xs[0].shape[:-1] + (y.shape[-1],))
                return y.reshape((-1,) + tuple(out_shape[1:])) if len(out_shape) > 1 else y
            return fc
        if k in (OpKind.ADD, OpKind.MUL):  # a pure function of two int8 operands: a 256 x 256 table
            table = K.add_table(P.add_params(g, op)) if k == OpKind.ADD else K.mul_table(P.mul_params(g, op))
            consts = [g.tensor(i).data for i in op.inputs[:2]]

            def binary(xs):
                it = iter(xs)
                a_, b_ = (c if c is not None else next(it) for c in consts)
                return K.lookup2(a_, b_, table)
            return binary
        if k == OpKind.CONCATENATION:
            try:
                axis = P.concat_axis(g, op)
            except ValueError as e:
                raise UnsupportedOpError(f"golden model: {e}") from None
            consts = [g.tensor(i).data for i in op.inputs]

            def concat(xs):
                it = iter(xs)
                parts = [next(it) if c is None else np.broadcast_to(c, (xs[0].shape[0],) + c.shape[1:]) for c in consts]
                return K.concatenation(parts, axis)
            return concat
        if k in (OpKind.MAX_POOL_2D, OpKind.AVERAGE_POOL_2D):
            lo, hi = P.pool_act_range(g, op)
            fn = K.max_pool if k == OpKind.MAX_POOL_2D else K.average_pool
            return lambda xs: fn(xs[0], a.filter, a.stride, a.padding, lo, hi)
        if k == OpKind.MEAN:
            p = P.rescale_params(g, op)
            return lambda xs: K.mean(xs[0], a.axes, a.keep_dims, p)
        if k == OpKind.PAD:
            value = P.pad_value(g, op)
            return lambda xs: K.pad(xs[0], a.paddings, value)
        if k == OpKind.RESHAPE:
            shape = g.tensor(op.outputs[0]).shape
            return lambda xs: xs[0].reshape((xs[0].shape[0],) + tuple(shape[1:]))
        if k == OpKind.QUANTIZE:
            x, out = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
            if x.dtype == "float32":
                s, z = out.quant.s, out.quant.zp
                return lambda xs: K.quantize(xs[0], s, z)
            p = P.rescale_params(g, op)
            return lambda xs: K.requantize_tensor(xs[0], p)
        if k in ACTIVATION_OPS:
            p, lo, hi = P.activation_params(g, op)
            return lambda xs: K.requantize_tensor(xs[0], p, lo, hi)
        if k == OpKind.DEQUANTIZE:
            q = g.tensor(op.inputs[0]).quant
            s, z = q.s, q.zp
            return lambda xs: K.dequantize(xs[0], s, z)
        raise UnsupportedOpError(f"golden model: op #{op.index} {k} is not supported")

    def run_all(self, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
        """Every activation tensor's value by tensor id (inputs included)."""
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise ValueError(f"model has {len(g.inputs)} inputs, got {len(inputs)}")
        values: dict[int, np.ndarray] = {}
        for tid, x in zip(g.inputs, inputs):
            t = g.tensor(tid)
            x = np.asarray(x)
            if x.dtype != np.dtype(t.dtype):
                raise ValueError(f"input {t.name!r}: expected dtype {t.dtype}, got {x.dtype}")
            if tuple(x.shape[1:]) != tuple(t.shape[1:]):
                raise ValueError(f"input {t.name!r}: expected shape [N, {', '.join(map(str, t.shape[1:]))}], "
                                 f"got {list(x.shape)}")
            values[tid] = x
        for op, kernel in self._kernels:
            args = [values[i] for i in op.inputs if i >= 0 and not g.tensor(i).is_constant]
            values[op.outputs[0]] = kernel(args)
        return values

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        values = self.run_all(inputs)
        return [values[t] for t in self.graph.outputs]
