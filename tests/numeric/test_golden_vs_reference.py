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


def test_concat_quantization(tmp_path):
    """TFLite's int8 CONCATENATION copies bytes: the converter quantizes every input as the output
    (here even the graph input takes the wide conv's range), and a graph whose inputs differ is
    refused by name, as TFLite's Prepare refuses it."""
    import dataclasses

    from onda.host.frontend import read_tflite
    from onda.sim.golden.model import GoldenModel, UnsupportedOpError
    from onda.sim.ir import Quant

    from .nets import quantized_case

    path = tmp_path / "concat.tflite"
    path.write_bytes(quantized_case("concat_graph_input_wide_conv"))
    g = read_tflite(path)
    (cat,) = [op for op in g.ops if op.kind.value == "CONCATENATION"]
    out = g.tensor(cat.outputs[0]).quant
    assert all((g.tensor(i).quant.s, g.tensor(i).quant.zp) == (out.s, out.zp) for i in cat.inputs)
    assert cat.inputs[0] in g.inputs
    x = g.tensor(cat.inputs[1])
    g.tensors[x.id] = dataclasses.replace(x, quant=Quant(out.scale * 2, out.zero_point))
    with pytest.raises(UnsupportedOpError, match=r"op #\d+ CONCATENATION: input .* quantized differently"):
        GoldenModel(g)


@pytest.mark.slow
def test_densenet121_bit_exact(densenet121_tflite, tmp_path):
    """DenseNet-121 (random weights, seed 0) as `onda quantize densenet121` builds it: every tensor
    against BUILTIN_REF, on the golden model and compiled for ulx3s-85f on the emulator (the RTL:
    ``tests/engine/test_resnet50_rtl.py``)."""
    rows = compare(densenet121_tflite, "golden", images=1, seed=0)
    assert len(rows) > 200 and all(r.ok for r in rows), format_table(rows)
    from onda.host.compiler import compile_tflite

    onda = tmp_path / "d121.onda"
    compile_tflite(densenet121_tflite, "ulx3s-85f").write(onda)
    rows = compare(onda, "emulator", images=1, seed=0)
    assert len(rows) > 200 and all(r.ok for r in rows), format_table(rows)
