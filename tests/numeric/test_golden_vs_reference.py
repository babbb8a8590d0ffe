"""The golden model against TFLite's reference kernels (LiteRT BUILTIN_REF), every tensor, bit for bit."""

import pytest

from onda.host.quantizer import quantize
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


@pytest.mark.parametrize("case, dilation, padding", [("conv3x3_dilated2_same", (2, 2), "SAME"),
                                                     ("conv3x3_dilated3_valid", (3, 3), "VALID"),
                                                     ("conv3x2_dilated2_same_odd", (2, 3), "SAME")])
def test_dilated_conv_is_read_as_one_op(case, dilation, padding, tmp_path):
    """The converter writes a Keras dilated convolution as SPACE_TO_BATCH_ND, CONV_2D, BATCH_TO_SPACE_ND;
    the frontend reads it as one dilated CONV_2D (the tests above check it against BUILTIN_REF, which
    runs the converter's three ops)."""
    from onda.host.frontend import read_tflite

    from .nets import quantized_case

    path = tmp_path / f"{case}.tflite"
    path.write_bytes(quantized_case(case))
    g = read_tflite(path)
    assert [op.kind.value for op in g.ops] == ["CONV_2D", "CONV_2D"]
    assert g.ops[1].attrs.dilation == dilation and g.ops[1].attrs.padding.value == padding
