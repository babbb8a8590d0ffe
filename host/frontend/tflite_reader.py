"""Read a .tflite flatbuffer into the onda IR.

Only the ops of ResNet, VGG and DenseNet-family int8 networks are accepted; anything else is refused with the
op's index, name and tensors, never approximated. Flatten's dynamic-batch pattern (SHAPE,
STRIDED_SLICE, PACK feeding a RESHAPE's shape input) is folded into the RESHAPE, and the converter's
form of a dilated convolution (SPACE_TO_BATCH_ND, a stride-1 VALID CONV_2D, BATCH_TO_SPACE_ND) into
one dilated CONV_2D, when its paddings and crops are exactly those of SAME or VALID padding.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import tflite

from onda.sim.ir import (Activation, AddAttrs, ConcatAttrs, Conv2DAttrs, FullyConnectedAttrs, Graph, MeanAttrs,
                         MulAttrs, NoAttrs, Op, OpKind, Padding, PadAttrs, Pool2DAttrs, Quant, Tensor)


class FrontendError(ValueError):
    """A model the frontend cannot import; the message says which file, op or tensor and why."""


_DTYPES = {
    tflite.TensorType.FLOAT32: "float32", tflite.TensorType.INT32: "int32",
    tflite.TensorType.UINT8: "uint8", tflite.TensorType.INT64: "int64",
    tflite.TensorType.INT16: "int16", tflite.TensorType.INT8: "int8",
    tflite.TensorType.FLOAT16: "float16", tflite.TensorType.BOOL: "bool",
}
_OPNAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_ACTIVATIONS = {
    tflite.ActivationFunctionType.NONE: Activation.NONE,
    tflite.ActivationFunctionType.RELU: Activation.RELU,
    tflite.ActivationFunctionType.RELU6: Activation.RELU6,
    tflite.ActivationFunctionType.RELU_N1_TO_1: Activation.RELU_N1_TO_1,
}
_PADDINGS = {tflite.Padding.SAME: Padding.SAME, tflite.Padding.VALID: Padding.VALID}
_SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}
_SUPPORTED = {k.value for k in OpKind}


def read_tflite(path: str | Path) -> Graph:
    """Parse a .tflite file into a Graph, or raise FrontendError saying precisely why not."""
    path = Path(path)
    if not path.is_file():
        raise FrontendError(f"{path}: no such file")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise FrontendError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        return _Reader(path, buf, model).graph()
    except FrontendError:
        raise
    except Exception as e:  # flatbuffers reports a cut-short file as an out-of-range read
        raise FrontendError(f"{path}: truncated or corrupt TFLite file ({type(e).__name__}: {e})") from None


class _Reader:
    def __init__(self, path: Path, buf: bytes, model):
        self.path, self.buf, self.model = path, buf, model
        if model.SubgraphsLength() != 1:
            raise FrontendError(f"{path}: expected one subgraph, found {model.SubgraphsLength()}")
        self.sg = model.Subgraphs(0)

    def opname(self, op) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        return _OPNAMES.get(builtin, f"BUILTIN_{builtin}")

    def tensor(self, i: int) -> Tensor:
        t = self.sg.Tensors(i)
        ttype = t.Type()
        if ttype not in _DTYPES:
            raise FrontendError(f"{self.path}: tensor #{i} has unsupported type {ttype}")
        dtype = _DTYPES[ttype]
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        quant = None
        q = t.Quantization()
        if q is not None and q.ScaleLength() > 0:
            quant = Quant(scale=q.ScaleAsNumpy().astype(np.float32),
                          zero_point=q.ZeroPointAsNumpy().astype(np.int64),
                          axis=int(q.QuantizedDimension()))
        data = None
        b = self.model.Buffers(t.Buffer())
        if b is not None:
            if b.Offset() > 1:
                raw = self.buf[b.Offset(): b.Offset() + b.Size()]
                if len(raw) != b.Size():
                    raise FrontendError(f"{self.path}: truncated: tensor #{i} data runs past the end of the file")
            elif b.DataLength() > 0:
                raw = b.DataAsNumpy().tobytes()
            else:
                raw = None
            if raw is not None:
                n = int(np.prod(shape)) if shape else 1
                arr = np.frombuffer(raw, dtype=np.dtype(dtype))
                if arr.size != n:
                    raise FrontendError(f"{self.path}: tensor #{i} holds {arr.size} values, shape {list(shape)} needs {n}")
                data = arr.reshape(shape).copy()
        name = t.Name().decode("utf-8", "replace")
        return Tensor(id=i, name=name, shape=shape, dtype=dtype, quant=quant, data=data)

    def graph(self) -> Graph:
        sg = self.sg
        tensors = {i: self.tensor(i) for i in range(sg.TensorsLength())}
        raw_ops = []
        for idx in range(sg.OperatorsLength()):
            op = sg.Operators(idx)
            raw_ops.append((idx, op, self.opname(op),
                            tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else (),
                            tuple(int(i) for i in op.OutputsAsNumpy())))
        folded = self._shape_only_ops(raw_ops)
        dilated = self._dilated_convs(raw_ops, tensors)
        for s2b, b2s, *_ in dilated.values():
            folded |= {s2b, b2s}
        ops = []
        for idx, op, name, ins, outs in raw_ops:
            if idx in folded:
                continue
            if idx in dilated:  # the convolution reads the chain's input and writes its output, dilated
                _, _, x, y, dilation, padding = dilated[idx]
                conv = self._op(idx, op, name, ins, outs, tensors)
                ops.append(replace(conv, inputs=(x,) + tuple(conv.inputs[1:]), outputs=(y,),
                                   attrs=replace(conv.attrs, dilation=dilation, padding=padding)))
                continue
            ops.append(self._op(idx, op, name, ins, outs, tensors))
        # Drop tensors no remaining op touches (the folded shape computations).
        used = {i for o in ops for i in o.inputs + o.outputs if i >= 0}
        inputs = [int(i) for i in sg.InputsAsNumpy()]
        outputs = [int(i) for i in sg.OutputsAsNumpy()]
        used |= set(inputs) | set(outputs)
        name = self.path.stem
        graph = Graph(name=name, tensors={i: t for i, t in tensors.items() if i in used},
                      ops=ops, inputs=inputs, outputs=outputs)
        self._check_quantized(graph)
        return graph

    def _shape_only_ops(self, raw_ops) -> set[int]:
        """Indices of SHAPE/STRIDED_SLICE/PACK ops whose results only feed RESHAPE shape inputs."""
        consumers: dict[int, list[tuple[str, int]]] = {}
        for idx, _, name, ins, _ in raw_ops:
            for pos, t in enumerate(ins):
                consumers.setdefault(t, []).append((name, pos))
        candidates = {idx for idx, _, name, _, _ in raw_ops if name in _SHAPE_OPS}
        by_idx = {r[0]: r for r in raw_ops}
        changed = True
        while changed:
            changed = False
            for idx in sorted(candidates):
                for t in by_idx[idx][4]:
                    for cname, pos in consumers.get(t, []):
                        ok = (cname == "RESHAPE" and pos == 1) or cname in _SHAPE_OPS
                        if not ok:
                            candidates.discard(idx)
                            changed = True
                            break
        return candidates

    def _dilated_convs(self, raw_ops, tensors) -> dict[int, tuple]:
        """{conv index: (SPACE_TO_BATCH_ND index, BATCH_TO_SPACE_ND index, chain input, chain output,
        dilation, padding)} for each
        SPACE_TO_BATCH_ND -> stride-1 undilated VALID CONV_2D -> BATCH_TO_SPACE_ND chain that is exactly a
        dilated CONV_2D. The batches read the input padded with its zero point (TFLite's int8 padding), so
        the VALID convolution of each phase, put back and cropped, is the dilated convolution whose top/left
        padding is the paddings minus the crops; the fold is taken only when that and the output size are
        those of SAME or VALID padding."""
        from onda.sim.golden.params import conv_output_size, same_padding

        consumers: dict[int, list[int]] = {}
        for idx, _, _, ins, _ in raw_ops:
            for t in ins:
                consumers.setdefault(t, []).append(idx)
        by_idx = {r[0]: r for r in raw_ops}
        found = {}
        for idx, op, name, ins, outs in raw_ops:
            if name != "SPACE_TO_BATCH_ND" or len(ins) < 3:
                continue
            block, pads = tensors[ins[1]].data, tensors[ins[2]].data
            nxt = consumers.get(outs[0], [])
            if block is None or pads is None or len(nxt) != 1 or by_idx[nxt[0]][2] != "CONV_2D":
                continue
            conv = by_idx[nxt[0]]
            if conv[3][0] != outs[0] or len(consumers.get(conv[4][0], [])) != 1:
                continue
            b2s = by_idx[consumers[conv[4][0]][0]]
            if b2s[2] != "BATCH_TO_SPACE_ND" or len(b2s[3]) < 3:
                continue
            block2, crops = tensors[b2s[3][1]].data, tensors[b2s[3][2]].data
            if crops is None or block2 is None or not np.array_equal(block, block2) or block.size != 2:
                continue
            o = conv[1].BuiltinOptions()
            co = tflite.Conv2DOptions()
            co.Init(o.Bytes, o.Pos)
            if (co.StrideH(), co.StrideW(), co.DilationHFactor(), co.DilationWFactor()) != (1, 1, 1, 1) or \
                    co.Padding() != tflite.Padding.VALID:
                continue
            x, w, y = tensors[ins[0]], tensors[conv[3][1]], tensors[b2s[4][0]]
            if x.quant is None or tensors[outs[0]].quant is None or \
                    (x.quant.s, x.quant.zp) != (tensors[outs[0]].quant.s, tensors[outs[0]].quant.zp):
                continue  # int8 SPACE_TO_BATCH_ND pads with its zero point, which must be the input's
            dilation = (int(block.reshape(-1)[0]), int(block.reshape(-1)[1]))
            pads, crops = pads.reshape(2, 2), crops.reshape(2, 2)
            kernel = (w.shape[1], w.shape[2])
            for padding in (Padding.SAME, Padding.VALID):
                fits = all(
                    int(pads[a, 0] - crops[a, 0]) == (same_padding(x.shape[1 + a], kernel[a], 1, dilation[a], padding)[0]
                                                      if padding == Padding.SAME else 0)
                    and y.shape[1 + a] == conv_output_size(x.shape[1 + a], kernel[a], 1, dilation[a], padding)
                    for a in (0, 1))
                if fits:
                    found[conv[0]] = (idx, b2s[0], ins[0], b2s[4][0], dilation, padding)
                    break
        return found

    def _op(self, idx, op, name, ins, outs, tensors) -> Op:
        def describe() -> str:
            def t(i):
                if i < 0:
                    return "-"
                tt = tensors[i]
                return f"#{i} {tt.name!r} {list(tt.shape)} {tt.dtype}"
            return f"inputs [{'; '.join(t(i) for i in ins)}], outputs [{'; '.join(t(i) for i in outs)}]"

        if name not in _SUPPORTED:
            raise FrontendError(f"{self.path}: op #{idx} {name} is not supported by onda "
                                f"(supported: {', '.join(sorted(_SUPPORTED))}); {describe()}")
        kind = OpKind(name)
        opts = op.BuiltinOptions()

        def options(cls):
            o = cls()
            o.Init(opts.Bytes, opts.Pos)
            return o

        def act(code):
            if code not in _ACTIVATIONS:
                raise FrontendError(f"{self.path}: op #{idx} {name}: unsupported fused activation {code}; {describe()}")
            return _ACTIVATIONS[code]

        attrs: object = NoAttrs()
        if kind == OpKind.CONV_2D:
            o = options(tflite.Conv2DOptions)
            attrs = Conv2DAttrs(stride=(o.StrideH(), o.StrideW()),
                                dilation=(o.DilationHFactor(), o.DilationWFactor()),
                                padding=_PADDINGS[o.Padding()], activation=act(o.FusedActivationFunction()))
        elif kind in (OpKind.MAX_POOL_2D, OpKind.AVERAGE_POOL_2D):
            o = options(tflite.Pool2DOptions)
            attrs = Pool2DAttrs(filter=(o.FilterHeight(), o.FilterWidth()), stride=(o.StrideH(), o.StrideW()),
                                padding=_PADDINGS[o.Padding()], activation=act(o.FusedActivationFunction()))
        elif kind == OpKind.FULLY_CONNECTED:
            o = options(tflite.FullyConnectedOptions)
            attrs = FullyConnectedAttrs(activation=act(o.FusedActivationFunction()), keep_num_dims=bool(o.KeepNumDims()))
        elif kind == OpKind.ADD:
            o = options(tflite.AddOptions)
            attrs = AddAttrs(activation=act(o.FusedActivationFunction()))
        elif kind == OpKind.MUL:
            o = options(tflite.MulOptions)
            attrs = MulAttrs(activation=act(o.FusedActivationFunction()))
        elif kind == OpKind.CONCATENATION:
            o = options(tflite.ConcatenationOptions)
            if o.FusedActivationFunction() != tflite.ActivationFunctionType.NONE:
                raise FrontendError(f"{self.path}: op #{idx} CONCATENATION: a fused activation is not supported "
                                    f"(TFLite's kernel takes none); {describe()}")
            attrs = ConcatAttrs(axis=int(o.Axis()))
        elif kind == OpKind.MEAN:
            o = options(tflite.ReducerOptions)
            axes = tensors[ins[1]].data
            if axes is None:
                raise FrontendError(f"{self.path}: op #{idx} MEAN: axes must be constant; {describe()}")
            attrs = MeanAttrs(axes=tuple(int(a) for a in axes.reshape(-1)), keep_dims=bool(o.KeepDims()))
        elif kind == OpKind.PAD:
            p = tensors[ins[1]].data
            if p is None:
                raise FrontendError(f"{self.path}: op #{idx} PAD: paddings must be constant; {describe()}")
            attrs = PadAttrs(paddings=tuple((int(a), int(b)) for a, b in p.reshape(-1, 2)))
        if kind == OpKind.RESHAPE:
            ins = ins[:1]  # the output tensor's static shape is the new shape
        if kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED):
            w = tensors[ins[1]]
            if w.data is None:
                raise FrontendError(f"{self.path}: op #{idx} {name}: weights must be constant; {describe()}")
        return Op(index=idx, kind=kind, inputs=ins, outputs=outs, attrs=attrs)

    def _check_quantized(self, g: Graph) -> None:
        for op in g.ops:
            if op.kind in (OpKind.QUANTIZE, OpKind.DEQUANTIZE, OpKind.RESHAPE):
                continue
            for i in op.inputs[:1] + op.outputs:
                t = g.tensor(i)
                if t.dtype != "int8" or t.quant is None:
                    raise FrontendError(
                        f"{self.path}: not an int8-quantized model: op #{op.index} {op.kind.value} has "
                        f"{t.dtype} tensor #{i} {t.name!r}; quantize it first (onda quantize)")
            if op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED):
                w = g.tensor(op.inputs[1])
                if w.dtype != "int8" or w.quant is None:
                    raise FrontendError(f"{self.path}: op #{op.index} {op.kind.value}: weights are {w.dtype}, "
                                        f"onda needs int8 weights (full-integer quantization)")
                if len(op.inputs) > 2 and op.inputs[2] >= 0 and g.tensor(op.inputs[2]).dtype != "int32":
                    raise FrontendError(f"{self.path}: op #{op.index} {op.kind.value}: bias must be int32")
