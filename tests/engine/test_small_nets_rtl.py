"""Every op and edge case of the compiler's small networks (``tests/numeric/nets.py``: convolutions of
each kernel, stride, padding and activation, residual adds of very different scales, max and average
pools, global pooling heads, dense layers, ResNet50's stem, saturating inputs) compiled for both
boards and run on the engine RTL (Verilator): every tensor the program writes equal to the ISA
emulator's, and the RTL's cycle count within 2% of the cycle model's."""

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.runtime.emulator import EmulatedModel
from onda.host.runtime.rtl import RtlModel
from onda.host.verify import random_inputs
from onda.hw import container as ctr
from onda.sim.engine.cycle_compare import MODEL_TOLERANCE
from onda.sim.verilator.build import have_toolchain

from ..numeric.nets import CASES, quantized_case

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_small_net_on_the_rtl(case, engine, tmp_path):
    tflite = tmp_path / f"{case}.tflite"
    tflite.write_bytes(quantized_case(case))
    onda = tmp_path / f"{case}.onda"
    compile_tflite(tflite, engine).write(onda)
    c = ctr.read(onda)
    emu, rtl = EmulatedModel(c, "emulator"), RtlModel(c, "rtl", "verilator")
    xs = random_inputs(emu.inputs, 2, seed=5)
    want, got = emu.run_all(xs), rtl.run_all(xs)
    assert set(got) == set(want) and len(want) >= 2
    for tid in want:
        np.testing.assert_array_equal(got[tid], want[tid], err_msg=f"tensor {tid} ({emu.tensors[tid]['name']})")
    assert abs(rtl.measured_cycles / rtl.cycle_trace().total - 1) <= MODEL_TOLERANCE, rtl.cycle_report()
