"""The shipped digits classifier: int8 accuracy (golden model) within 1 point of float accuracy,
and golden == emulator == TFLite reference kernels, every tensor, on every held-out image."""

import numpy as np
import pytest

from onda.host.models import digits
from onda.host.runtime import get_backend
from onda.host.verify import compare, format_table
from onda.sim.golden.kernels import quantize as quantize_input


@pytest.fixture(scope="module")
def data():
    return digits.load_data()


def test_int8_accuracy_within_one_point_of_float(data):
    _, _, x_te, y_te = data
    float_model = digits.load_float_model()
    float_acc = float(np.mean(np.argmax(float_model.predict(x_te, verbose=0), axis=1) == y_te))

    loaded = get_backend("golden").load(digits.TFLITE)
    spec = loaded.inputs[0]
    q = quantize_input(x_te, spec.scale, spec.zero_point)
    logits = loaded.run([q])[0]
    int8_acc = float(np.mean(np.argmax(logits, axis=1) == y_te))

    print(f"digits held-out accuracy: float {float_acc:.4f}, int8 {int8_acc:.4f} on {len(y_te)} images")
    assert float_acc > 0.95, "the shipped float model should be a real classifier"
    assert int8_acc >= float_acc - 0.01


def test_int8_model_bit_exact_with_reference(data):
    _, _, x_te, _ = data
    rows = compare(digits.TFLITE, "golden", images=4, seed=2)
    assert all(r.ok for r in rows), format_table(rows)
    # And on every held-out digit: real data reaches rounding cases random inputs miss.
    spec = get_backend("golden").load(digits.TFLITE).inputs[0]
    q = quantize_input(x_te, spec.scale, spec.zero_point)
    rows = compare(digits.TFLITE, "golden", inputs=[q])
    assert all(r.ok for r in rows), format_table(rows)


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
def test_emulator_on_every_held_out_digit(data, engine, tmp_path):
    """The compiled program on the ISA emulator, every tensor it exposes against TFLite's reference
    kernels on the whole held-out split: more images than one emulator pass takes, so the batch is
    split into passes too."""
    from onda.host.compiler import compile_tflite
    from onda.host.runtime.emulator import MAX_BATCH_PER_PASS

    _, _, x_te, _ = data
    program = tmp_path / "digits.onda"
    compile_tflite(digits.TFLITE, engine).write(program)
    spec = get_backend("emulator").load(program).inputs[0]
    q = quantize_input(x_te, spec.scale, spec.zero_point)
    assert q.shape[0] > MAX_BATCH_PER_PASS
    rows = compare(program, "emulator", inputs=[q])
    assert len(rows) >= 3 and all(r.ok for r in rows), format_table(rows)
