"""ResNet50 and DenseNet-121 through the engine RTL (slow: `make test-slow`): the featurizers with seeded random weights,
compiled for the ULX3S engine and run on its Verilator model, equal to TFLite's reference kernels on every
layer output the program exposes (``onda verify --backend rtl``), its cycles within 2% of the cycle model's.
Also the digits classifier's whole held-out split on both boards' RTL, logits equal to the emulator's."""

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.runtime import get_backend
from onda.host.verify import compare, format_table
from onda.sim.engine.cycle_compare import MODEL_TOLERANCE
from onda.sim.verilator.build import have_toolchain

from .test_digits_rtl import _held_out

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")]


def test_resnet50_every_layer_equals_the_reference(resnet50_tflite, tmp_path):
    path = tmp_path / "r50.onda"
    compile_tflite(resnet50_tflite, "ulx3s-85f").write(path)
    loaded = get_backend("rtl").load(path)
    rows = compare(path, "rtl", images=1, seed=0, loaded=loaded)
    assert len(rows) >= 70 and all(r.ok for r in rows), format_table([r for r in rows if not r.ok])
    model = loaded.cycle_trace().total
    assert abs(loaded.measured_cycles / model - 1) <= MODEL_TOLERANCE, loaded.cycle_report()
    print(loaded.cycle_report())


def test_densenet121_every_layer_equals_the_reference(densenet121_tflite, tmp_path):
    """DenseNet-121 (MUL by per-channel constants, concatenations by memory layout) through the ULX3S
    engine's RTL: every layer output equal to TFLite's reference kernels, cycles within 2%."""
    path = tmp_path / "d121.onda"
    compile_tflite(densenet121_tflite, "ulx3s-85f").write(path)
    loaded = get_backend("rtl").load(path)
    rows = compare(path, "rtl", images=1, seed=0, loaded=loaded)
    assert len(rows) > 200 and all(r.ok for r in rows), format_table([r for r in rows if not r.ok])
    assert abs(loaded.measured_cycles / loaded.cycle_trace().total - 1) <= MODEL_TOLERANCE, loaded.cycle_report()


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
def test_digits_whole_held_out_split_equals_the_emulator(engine, tmp_path):
    from onda.host.models import digits
    from onda.sim.golden.kernels import quantize as quantize_input

    path = tmp_path / f"digits-{engine}.onda"
    compile_tflite(digits.TFLITE, engine).write(path)
    x, y = _held_out(None)
    rtl, emu = get_backend("rtl").load(path), get_backend("emulator").load(path)
    spec = emu.inputs[0]
    q = quantize_input(x, spec.scale, spec.zero_point) if spec.dtype == "int8" else x.astype(spec.dtype)
    got, want = rtl.run([q])[0], emu.run([q])[0]
    assert len(got) == len(y) >= 300
    np.testing.assert_array_equal(got, want)
    assert np.mean(np.argmax(got, axis=-1) == y) > 0.9
