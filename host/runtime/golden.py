"""The golden-model backend: runs a .tflite int8 model through the NumPy golden model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onda.sim.golden.model import GoldenModel
from onda.sim.ir import Graph

from ..frontend import read_tflite
from .backend import TensorSpec, check_inputs


def tensor_specs(graph: Graph, ids: list[int]) -> list[TensorSpec]:
    return [TensorSpec.of(graph.tensor(tid).spec()) for tid in ids]


class GoldenModelRunner:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.model = GoldenModel(graph)
        self.inputs = tensor_specs(graph, graph.inputs)
        self.outputs = tensor_specs(graph, graph.outputs)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.model.run(check_inputs(self.inputs, inputs))

    def run_all(self, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
        return self.model.run_all(check_inputs(self.inputs, inputs))

    def producers(self) -> dict[int, str]:
        out = {t: "input" for t in self.graph.inputs}
        out.update({op.outputs[0]: f"#{op.index} {op.kind.value}" for op in self.graph.ops})
        return out

    def tensor_names(self) -> dict[int, str]:
        return {i: t.name for i, t in self.graph.tensors.items()}


class GoldenBackend:
    name = "golden"

    def load(self, path: str | Path) -> GoldenModelRunner:
        return GoldenModelRunner(read_tflite(path))

    def describe(self) -> dict:
        return {"backend": self.name, "device": "host CPU (NumPy golden model)", "exact": True}
