"""Integer parameters of each op, derived from the IR as TFLite's kernels' Prepare derives them.

The golden model and the compiler both call these, so the engine program carries exactly the
multipliers, shifts, zero points and clamps the reference kernels use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Activation, Graph, Op, OpKind, Padding
from . import fixedpoint as fp


@dataclass(frozen=True)
class GemmParams:
    """Everything a conv or fully-connected op needs besides its input activations.

    ``weights`` are int8 in [out_channels, ...kernel..., in_channels] (TFLite's OHWI layout);
    ``bias`` int32 per output channel (zeros when the model has none).
    """

    weights: np.ndarray
    weight_zero_point: int
    bias: np.ndarray
    in_zero_point: int
    multiplier: np.ndarray  # int64 per output channel
    shift: np.ndarray  # int64 per output channel
    out_zero_point: int
    act_min: int
    act_max: int
    # FULLY_CONNECTED only: the double-precision per-channel scale its reference epilogue uses.
    double_scale: np.ndarray | None = None


@dataclass(frozen=True)
class AddParams:
    zp1: int
    zp2: int
    rescale: tuple[int, int, int, int, int, int]  # m1, s1, m2, s2, m_out, s_out
    out_zero_point: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class MulParams:
    zp1: int
    zp2: int
    multiplier: int
    shift: int
    out_zero_point: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class RequantParams:
    """A tensor-wide rescale: ``clamp(out_zp + MBQM(x - in_zp, M0, shift))``."""

    in_zero_point: int
    multiplier: int
    shift: int
    out_zero_point: int


def conv_output_size(size: int, filt: int, stride: int, dilation: int, padding: Padding) -> int:
    eff = (filt - 1) * dilation + 1
    if padding == Padding.SAME:
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


def same_padding(size: int, filt: int, stride: int, dilation: int, padding: Padding) -> tuple[int, int]:
    """(before, after) padding as TFLite's ComputePaddingHeightWidth places it."""
    out = conv_output_size(size, filt, stride, dilation, padding)
    eff = (filt - 1) * dilation + 1
    total = max(0, (out - 1) * stride + eff - size)
    return total // 2, total // 2 + total % 2


def _act_range(graph: Graph, out_id: int, activation: Activation) -> tuple[int, int]:
    q = graph.tensor(out_id).quant
    return fp.activation_range(activation.value, q.s, q.zp)


def gemm_params(graph: Graph, op: Op) -> GemmParams:
    """CONV_2D / FULLY_CONNECTED: TFLite's PopulateConvolutionQuantizationParams.

    The fixed-point multipliers are what CONV_2D's reference kernel uses; FULLY_CONNECTED's
    reference kernel uses ``double_scale`` instead (see fixedpoint.scale_round_double).
    """
    x, w = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    out = graph.tensor(op.outputs[0])
    cout = w.shape[0]
    has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
    bias = (graph.tensor(op.inputs[2]).data.astype(np.int64) if has_bias
            else np.zeros(cout, dtype=np.int64))
    in_scale = np.float32(x.quant.s)
    out_scale = np.float32(out.quant.s)
    w_scales = w.quant.scale.astype(np.float32)
    if w.quant.per_channel:
        # Per-channel: each scale product is formed in double.
        real = [float(in_scale) * float(s) / float(out_scale) for s in w_scales]
    else:
        # Per-tensor: GetQuantizedConvolutionMultipler forms the product in float32.
        real = [float(np.float32(in_scale * w_scales[0])) / float(out_scale)] * cout
    mult, shift = fp.quantize_multiplier_array(real)
    act_min, act_max = _act_range(graph, out.id, op.attrs.activation)
    double_scale = None
    if op.kind == OpKind.FULLY_CONNECTED:
        scales = w_scales if w.quant.per_channel else np.repeat(w_scales[:1], cout)
        double_scale = np.array([float(in_scale) * float(s) / float(out_scale) for s in scales])
    return GemmParams(weights=w.data, weight_zero_point=w.quant.zp, bias=bias,
                      in_zero_point=x.quant.zp, multiplier=mult, shift=shift,
                      out_zero_point=out.quant.zp, act_min=act_min, act_max=act_max,
                      double_scale=double_scale)


def add_params(graph: Graph, op: Op) -> AddParams:
    a, b = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    out = graph.tensor(op.outputs[0])
    act_min, act_max = _act_range(graph, out.id, op.attrs.activation)
    return AddParams(zp1=a.quant.zp, zp2=b.quant.zp,
                     rescale=fp.add_params(a.quant.s, b.quant.s, out.quant.s),
                     out_zero_point=out.quant.zp, act_min=act_min, act_max=act_max)


def mul_params(graph: Graph, op: Op) -> MulParams:
    """MUL (``mul.cc`` Prepare): one multiplier for ``s1 * s2 / s_out``, computed in float32 (the
    three scales are floats) before widening to double."""
    a, b = graph.tensor(op.inputs[0]), graph.tensor(op.inputs[1])
    out = graph.tensor(op.outputs[0])
    f32 = np.float32
    m, s = fp.quantize_multiplier(float(f32(a.quant.s) * f32(b.quant.s) / f32(out.quant.s)))
    act_min, act_max = _act_range(graph, out.id, op.attrs.activation)
    return MulParams(zp1=a.quant.zp, zp2=b.quant.zp, multiplier=m, shift=s, out_zero_point=out.quant.zp,
                     act_min=act_min, act_max=act_max)


def concat_axis(graph: Graph, op: Op) -> int:
    """CONCATENATION's axis, non-negative; the int8 kernel copies bytes, so every input must carry
    the output's scale and zero point (TFLite's Prepare refuses anything else)."""
    out = graph.tensor(op.outputs[0])
    for i in op.inputs:
        q = graph.tensor(i).quant
        if q is None or out.quant is None or q.per_channel or (q.s, q.zp) != (out.quant.s, out.quant.zp):
            raise ValueError(f"op #{op.index} CONCATENATION: input {graph.tensor(i).name!r} is quantized "
                             f"differently from the output (int8 CONCATENATION copies bytes)")
    return op.attrs.axis % len(out.shape)


def rescale_params(graph: Graph, op: Op) -> RequantParams:
    """MEAN and int8->int8 QUANTIZE: one multiplier for ``in_scale / out_scale`` (in double)."""
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    m, s = fp.quantize_multiplier(float(np.float32(x.quant.s)) / float(np.float32(out.quant.s)))
    return RequantParams(in_zero_point=x.quant.zp, multiplier=m, shift=s,
                         out_zero_point=out.quant.zp)


def activation_params(graph: Graph, op: Op) -> tuple[RequantParams, int, int]:
    """A standalone RELU, RELU6 or RELU_N1_TO_1 (TFLite's ReluPrepare and QuantizedReluX): the rescale to the
    output's quantization, its multiplier from ``in_scale / out_scale`` divided in float32 (as TFLite divides
    the two float scales before widening to double), and the clamp of the activation on the output's scale."""
    x, out = graph.tensor(op.inputs[0]), graph.tensor(op.outputs[0])
    m, s = fp.quantize_multiplier(float(np.float32(x.quant.s) / np.float32(out.quant.s)))
    lo, hi = fp.activation_range(op.kind.value, out.quant.s, out.quant.zp)
    return RequantParams(in_zero_point=x.quant.zp, multiplier=m, shift=s, out_zero_point=out.quant.zp), lo, hi


def pad_value(graph: Graph, op: Op) -> int:
    """The fill of a PAD: TFLite's pad kernel fills a quantized tensor with the output's zero point
    (with a constant-values input, PADV2's form, with that constant); 0 for an unquantized one."""
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        return int(graph.tensor(op.inputs[2]).data.reshape(-1)[0])
    out = graph.tensor(op.outputs[0])
    return out.quant.zp if out.quant is not None else 0


def pool_act_range(graph: Graph, op: Op) -> tuple[int, int]:
    return _act_range(graph, op.outputs[0], op.attrs.activation)


def is_gemm(op: Op) -> bool:
    return op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED)
