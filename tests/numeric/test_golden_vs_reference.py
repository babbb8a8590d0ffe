"""The golden model against TFLite's reference kernels (LiteRT BUILTIN_REF), every tensor, bit for bit."""

import pytest

from onda.host.quantize import quantize
from onda.host.verify import compare, format_table

from .nets import CASES, build_case


@pytest.mark.parametrize("case", sorted(CASES))
def test_small_net_bit_exact(case, tmp_path):
    model, calib = build_case(case)
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(quantize(model, calib, progress=lambda s: None))
    rows = compare(path, "golden", images=3, seed=1)
    assert len(rows) >= 3, "no intermediate tensors compared"
    assert all(r.ok for r in rows), format_table(rows)


def test_per_tensor_dense_bit_exact(tmp_path):
    """Dense weights quantized per tensor take the other reference fully-connected kernel."""
    from onda.host.frontend import read_tflite

    model, calib = build_case("flatten_dense_relu")
    path = tmp_path / "per_tensor_dense.tflite"
    path.write_bytes(quantize(model, calib, progress=lambda s: None, per_channel_dense=False))
    fc = [op for op in read_tflite(path).ops if op.kind.value == "FULLY_CONNECTED"][0]
    assert not read_tflite(path).tensor(fc.inputs[1]).quant.per_channel
    rows = compare(path, "golden", images=8, seed=1)
    assert all(r.ok for r in rows), format_table(rows)
