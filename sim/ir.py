"""The onda IR: a small typed graph of quantized tensor operations.

It is what the frontend produces from a .tflite file, what the golden model executes and what
the compiler lowers to an engine program. Tensors keep the id they had in the source model, so
any tensor can be compared with the reference interpreter's tensor of the same id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class OpKind(str, enum.Enum):
    CONV_2D = "CONV_2D"
    FULLY_CONNECTED = "FULLY_CONNECTED"
    ADD = "ADD"
    MAX_POOL_2D = "MAX_POOL_2D"
    AVERAGE_POOL_2D = "AVERAGE_POOL_2D"
    MEAN = "MEAN"
    PAD = "PAD"
    RESHAPE = "RESHAPE"
    QUANTIZE = "QUANTIZE"
    DEQUANTIZE = "DEQUANTIZE"
    RELU = "RELU"  # standalone activations: a rescale to the output's quantization, then the clamp
    RELU6 = "RELU6"
    RELU_N1_TO_1 = "RELU_N1_TO_1"
    MUL = "MUL"  # int8 x int8 with broadcasting (DenseNet's batch norms: a per-channel constant)
    CONCATENATION = "CONCATENATION"


ACTIVATION_OPS = (OpKind.RELU, OpKind.RELU6, OpKind.RELU_N1_TO_1)


class Padding(str, enum.Enum):
    SAME = "SAME"
    VALID = "VALID"


class Activation(str, enum.Enum):
    NONE = "NONE"
    RELU = "RELU"
    RELU6 = "RELU6"
    RELU_N1_TO_1 = "RELU_N1_TO_1"


@dataclass(frozen=True)
class Quant:
    """Affine quantization: ``real = scale * (q - zero_point)``, per tensor or per ``axis``."""

    scale: np.ndarray  # float32, shape (1,) or (channels,)
    zero_point: np.ndarray  # int64, same shape as scale
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    @property
    def s(self) -> float:
        """The per-tensor scale (as the float32 TFLite stores)."""
        if self.per_channel:
            raise ValueError("per-channel quantization has no single scale")
        return float(self.scale[0])

    @property
    def zp(self) -> int:
        if self.zero_point.size > 1 and np.any(self.zero_point != self.zero_point[0]):
            raise ValueError("per-channel zero points differ")
        return int(self.zero_point[0])


@dataclass
class Tensor:
    id: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: "int8", "int32", "float32", "int64"
    quant: Quant | None = None
    data: np.ndarray | None = None  # constant contents (weights, biases, shapes)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    def spec(self) -> dict:
        """What a user of the tensor sees: name, shape, dtype and the per-tensor quantization
        (``scale`` None when per channel or unquantized, ``zero_point`` None when unquantized).
        The memory map, the backends' tensor specs and a pipeline's manifest all say it so."""
        q = self.quant
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": q.s if q is not None and not q.per_channel else None,
                "zero_point": q.zp if q is not None else None}


@dataclass(frozen=True)
class TensorSpec:
    """A model's input or output as its user sees it (``Tensor.spec``), with the model's own batch
    size in front of ``shape``."""

    name: str
    shape: tuple[int, ...]  # with the model's own batch size in front
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def of(cls, spec: dict) -> "TensorSpec":
        """From a tensor's spec dictionary (``ir.Tensor.spec``, a memory map's tensor entry)."""
        return cls(name=spec["name"], shape=tuple(spec["shape"]), dtype=spec["dtype"], scale=spec["scale"],
                   zero_point=spec["zero_point"])


@dataclass(frozen=True)
class Conv2DAttrs:
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: Padding
    activation: Activation


@dataclass(frozen=True)
class Pool2DAttrs:
    filter: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding
    activation: Activation


@dataclass(frozen=True)
class FullyConnectedAttrs:
    activation: Activation
    keep_num_dims: bool


@dataclass(frozen=True)
class AddAttrs:
    activation: Activation


@dataclass(frozen=True)
class MulAttrs:
    activation: Activation


@dataclass(frozen=True)
class ConcatAttrs:
    axis: int  # as the model gives it (may be negative)


@dataclass(frozen=True)
class MeanAttrs:
    axes: tuple[int, ...]
    keep_dims: bool


@dataclass(frozen=True)
class PadAttrs:
    paddings: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class NoAttrs:
    pass


@dataclass
class Op:
    index: int  # position in the source model's operator list
    kind: OpKind
    inputs: tuple[int, ...]  # tensor ids; activations first, then constants
    outputs: tuple[int, ...]
    attrs: object = field(default_factory=NoAttrs)


@dataclass
class Graph:
    name: str
    tensors: dict[int, Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def tensor(self, tid: int) -> Tensor:
        return self.tensors[tid]

    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[t] for t in self.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[t] for t in self.outputs]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.kind.value] = counts.get(op.kind.value, 0) + 1
        return counts

    def summary(self) -> str:
        ins = ", ".join(f"{t.name}{list(t.shape)}:{t.dtype}" for t in self.input_tensors())
        outs = ", ".join(f"{t.name}{list(t.shape)}:{t.dtype}" for t in self.output_tensors())
        ops = ", ".join(f"{k} x{n}" for k, n in sorted(self.op_counts().items()))
        return f"{self.name}: {len(self.ops)} ops ({ops}); inputs {ins}; outputs {outs}"
