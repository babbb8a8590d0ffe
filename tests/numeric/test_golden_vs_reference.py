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
