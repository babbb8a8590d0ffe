"""Small networks (every op the golden model supports) compiled for every engine, and the trained digits
net for the iCEBreaker engine: the emulator equals TFLite's reference kernels and the golden model, tensor by tensor."""

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.frontend import read_tflite
from onda.host.models import digits
from onda.host.runtime.emulator import EmulatorBackend
from onda.host.verify import compare, format_table, random_inputs
from onda.sim.golden.model import GoldenModel

from ..numeric.nets import CASES, quantized_case


def _check(tflite_path, onda_path, engine="icebreaker"):
    compile_tflite(tflite_path, engine).write(onda_path)
    rows = compare(onda_path, "emulator", images=3, seed=1)
    assert len(rows) >= 3, "no intermediate tensors compared"
    assert all(r.ok for r in rows), format_table(rows)
    # And against the golden model, every tensor the program writes.
    model = EmulatorBackend(engine=engine).load(onda_path)
    xs = random_inputs(model.inputs, 3, seed=2)
    got = model.run_all(xs)
    want = GoldenModel(read_tflite(tflite_path)).run_all(xs)
    for tid, v in got.items():
        np.testing.assert_array_equal(v, want[tid].reshape(v.shape), err_msg=f"tensor {tid}")
    return model


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f", "large"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_small_net(case, engine, tmp_path):
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(quantized_case(case))
    emu = _check(path, tmp_path / f"{case}.onda", engine)
    assert emu.config.name == engine
    assert emu.cycle_trace().total > 0


def test_digits_net_on_icebreaker(tmp_path):
    emu = _check(digits.TFLITE, tmp_path / "digits.onda")
    assert len(emu.layers) >= 3
