"""Compare a backend with TFLite's reference kernels, tensor by tensor, on random inputs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..runtime import get_backend
from .reference import ReferenceModel


@dataclass
class TensorComparison:
    tensor_id: int
    name: str
    producer: str  # op that writes it ("input" for model inputs)
    elements: int
    mismatches: int
    max_abs_diff: float

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


def random_inputs(specs, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for s in specs:
        shape = (n,) + tuple(s.shape[1:])
        if np.dtype(s.dtype).kind == "i":
            info = np.iinfo(s.dtype)
            out.append(rng.integers(info.min, info.max + 1, size=shape, dtype=s.dtype))
        else:
            out.append(rng.standard_normal(shape).astype(s.dtype))
    return out


def reference_tflite(loaded, model_path: Path) -> Path | bytes:
    """The .tflite the reference runs: the model itself, or the source a compiled model embeds."""
    source = getattr(loaded, "source_tflite", None)
    if source is None:
        return model_path
    return source() if callable(source) else source


def compare(model_path: str | Path, backend: str, images: int = 2, seed: int = 0,
            inputs: list[np.ndarray] | None = None, loaded=None) -> list[TensorComparison]:
    """Every tensor the backend exposes against the reference's, on ``inputs`` (default:
    ``images`` uniformly random inputs drawn with ``seed``). ``loaded``: the model already loaded
    on ``backend`` (to read what else it measured, e.g. the RTL's cycles)."""
    model_path = Path(model_path)
    if loaded is None:
        loaded = get_backend(backend).load(model_path)
    if inputs is None:
        inputs = random_inputs(loaded.inputs, images, seed)
    got = loaded.run_all(inputs)
    ref = ReferenceModel(reference_tflite(loaded, model_path))
    producers = getattr(loaded, "producers", lambda: {})()
    names = getattr(loaded, "tensor_names", lambda: {})()
    want = ref.run_all(inputs, sorted(got))
    rows = []
    for tid in sorted(got):
        a = np.asarray(got[tid])
        b = want[tid].reshape(a.shape) if want[tid].size == a.size else want[tid]
        if a.shape != b.shape:
            rows.append(TensorComparison(tid, names.get(tid, ""), producers.get(tid, "?"), b.size, b.size, float("inf")))
            continue
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        rows.append(TensorComparison(tid, names.get(tid, ""), producers.get(tid, "?"), int(a.size),
                                     int(np.count_nonzero(diff)), float(diff.max()) if diff.size else 0.0))
    return rows


def format_table(rows: list[TensorComparison]) -> str:
    lines = [f"{'tensor':>6}  {'producer':<22} {'name':<44} {'elements':>10} {'mismatch':>9} {'max|diff|':>9}"]
    for r in rows:
        name = r.name if len(r.name) <= 44 else "…" + r.name[-43:]
        lines.append(f"{r.tensor_id:>6}  {r.producer:<22} {name:<44} {r.elements:>10} {r.mismatches:>9} "
                     f"{r.max_abs_diff:>9g}")
    total = sum(r.elements for r in rows)
    bad = sum(r.mismatches for r in rows)
    lines.append(f"{len(rows)} tensors, {total} elements compared, {bad} mismatches"
                 + ("" if bad else ": bit-exact"))
    return "\n".join(lines)
