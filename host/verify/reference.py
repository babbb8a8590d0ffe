"""TFLite's reference int8 kernels (LiteRT with BUILTIN_REF): the oracle of the numeric contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _interpreter(model: str | Path | bytes, reference: bool, preserve: bool, threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    if reference:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
    if preserve:
        kwargs["experimental_preserve_all_tensors"] = True
    if threads:
        kwargs["num_threads"] = threads
    interp = Interpreter(**kwargs)
    interp.allocate_tensors()
    return interp


class ReferenceModel:
    """A .tflite model (a path or its bytes) in LiteRT: reference kernels by default, XNNPACK
    with ``reference=False``."""

    def __init__(self, model: str | Path | bytes, reference: bool = True, preserve_all_tensors: bool = True,
                 threads: int | None = None):
        self.interp = _interpreter(model, reference, preserve_all_tensors, threads)
        self.input_details = self.interp.get_input_details()
        self.output_details = self.interp.get_output_details()

    def invoke(self, inputs: list[np.ndarray]) -> None:
        """Run one batch-1 example (each input of shape [1, ...])."""
        for d, x in zip(self.input_details, inputs):
            self.interp.set_tensor(d["index"], x)
        self.interp.invoke()

    def run_all(self, inputs: list[np.ndarray], tensor_ids) -> dict[int, np.ndarray]:
        """Given tensors for a batch of any size, run item by item and stack."""
        n = inputs[0].shape[0]
        per_item: list[dict[int, np.ndarray]] = []
        for i in range(n):
            self.invoke([x[i:i + 1] for x in inputs])
            per_item.append({t: self.interp.get_tensor(t).copy() for t in tensor_ids})
        return {t: np.concatenate([p[t] for p in per_item], axis=0) for t in tensor_ids}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        ids = [d["index"] for d in self.output_details]
        values = self.run_all(inputs, ids)
        return [values[t] for t in ids]
