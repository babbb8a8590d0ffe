"""ResNet50 (seeded random weights, full size): golden model == TFLite reference kernels on every tensor."""

import numpy as np

from onda.host.frontend import read_tflite
from onda.host.verify import compare, format_table


def test_resnet50_structure(resnet50_tflite):
    g = read_tflite(resnet50_tflite)
    counts = g.op_counts()
    assert counts == {"CONV_2D": 53, "ADD": 16, "PAD": 2, "MAX_POOL_2D": 1, "MEAN": 1}
    (x,), (y,) = g.input_tensors(), g.output_tensors()
    assert (x.shape, x.dtype) == ((1, 224, 224, 3), "int8")
    assert (y.shape, y.dtype) == ((1, 2048), "int8")
    # Weights int8 symmetric per output channel, biases int32.
    for op in g.ops:
        if op.kind.value == "CONV_2D":
            w = g.tensor(op.inputs[1])
            assert w.quant.per_channel and w.quant.scale.size == w.shape[0]
            assert np.all(w.quant.zero_point == 0) and w.data.min() >= -127


def test_resnet50_golden_bit_exact_two_images(resnet50_tflite):
    rows = compare(resnet50_tflite, "golden", images=2, seed=0)
    assert len(rows) == 74  # the input and every op's output
    assert all(r.ok for r in rows), format_table(rows)
