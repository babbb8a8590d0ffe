"""The shipped digits classifier compiled for both boards and run on the engine RTL (Verilator): every
tensor bit-exact with TFLite's reference kernels on random inputs (``onda verify``'s comparison), the
logits equal to the emulator's on real held-out digits; the RTL's cycles within 2% of the cycle model's."""

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.models import digits
from onda.host.runtime import get_backend
from onda.host.verify import compare, format_table
from onda.sim.engine.cycle_compare import MODEL_TOLERANCE
from onda.sim.golden.kernels import quantize as quantize_input
from onda.sim.verilator.build import have_toolchain

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")

HELD_OUT_IMAGES = 24  # of the 360 (the whole split: make test-slow)


@pytest.fixture(scope="module", params=["icebreaker", "ulx3s-85f"])
def compiled(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / f"digits-{request.param}.onda"
    compile_tflite(digits.TFLITE, request.param).write(path)
    return path


def test_every_tensor_equals_the_reference(compiled):
    loaded = get_backend("rtl").load(compiled)
    rows = compare(compiled, "rtl", images=2, seed=3, loaded=loaded)
    assert len(rows) > 10 and all(r.ok for r in rows), format_table(rows)
    model = loaded.cycle_trace().total
    assert abs(loaded.measured_cycles / model - 1) <= MODEL_TOLERANCE, loaded.cycle_report()
    print(loaded.cycle_report())


def _held_out(n):
    _, _, x_te, y_te = digits.load_data()
    return x_te[:n], y_te[:n]


def test_held_out_digits_equal_the_emulator(compiled):
    x, y = _held_out(HELD_OUT_IMAGES)
    rtl, emu = get_backend("rtl").load(compiled), get_backend("emulator").load(compiled)
    spec = emu.inputs[0]
    q = quantize_input(x, spec.scale, spec.zero_point) if spec.dtype == "int8" else x.astype(spec.dtype)
    got, want = rtl.run([q])[0], emu.run([q])[0]
    np.testing.assert_array_equal(got, want)
    assert np.mean(np.argmax(got, axis=-1) == y) > 0.9  # a real classifier, run by the hardware
