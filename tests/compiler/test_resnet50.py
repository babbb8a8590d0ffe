"""ResNet50 (seeded random weights, int8) compiled for ulx3s-85f and large: the emulator executes the
program bit-exact with the golden model and with TFLite's reference kernels, every tensor, on 2 images;
the cycle model never beats the bounds of one port and one MAC array; iCEBreaker refuses it naming the buffer that is too small."""

import json

import numpy as np
import pytest

from onda.host.cli import main
from onda.host.compiler import CompileError, compile_tflite
from onda.host.frontend import read_tflite
from onda.host.verify import ReferenceModel
from onda.host.runtime.emulator import EmulatorBackend
from onda.host.verify import random_inputs
from onda.sim.golden.model import GoldenModel


@pytest.fixture(scope="module")
def r50_inputs():
    return random_inputs([type("S", (), {"shape": (1, 224, 224, 3), "dtype": "int8"})()], 2, seed=0)


@pytest.fixture(scope="module")
def r50_golden(resnet50_tflite, r50_inputs):
    return GoldenModel(read_tflite(resnet50_tflite)).run_all(r50_inputs)


@pytest.fixture(scope="module")
def r50_reference(resnet50_tflite, r50_inputs, r50_golden):
    return ReferenceModel(resnet50_tflite).run_all(r50_inputs, sorted(r50_golden))


@pytest.mark.parametrize("engine", ["ulx3s-85f", "large"])
def test_resnet50_bit_exact(engine, resnet50_tflite, r50_inputs, r50_golden, r50_reference, tmp_path, capsys):
    onda = tmp_path / f"r50-{engine}.onda"
    assert main(["compile", str(resnet50_tflite), "--engine", engine, "-o", str(onda), "--quiet"]) == 0
    model = EmulatorBackend(engine=engine).load(onda)
    got = model.run_all(r50_inputs)
    conv_outputs = [layer["output"] for layer in model.layers if layer["kind"] == "CONV_2D"]
    assert len(conv_outputs) == 53
    assert set(conv_outputs) <= set(got)
    assert len(got) == len(r50_golden) == 74
    for tid, want in r50_golden.items():
        np.testing.assert_array_equal(got[tid], want, err_msg=f"emulator vs golden, tensor {tid}")
        np.testing.assert_array_equal(got[tid], r50_reference[tid].reshape(want.shape),
                                      err_msg=f"emulator vs TFLite reference, tensor {tid}")
    # run() on a batch agrees with run_all and has the featurizer's shape
    out = model.run(r50_inputs)[0]
    assert out.shape == (2, 2048)
    np.testing.assert_array_equal(out, r50_golden[model.memmap["outputs"][0]])

    # The report: every layer at or above its roofline bound, the total the sum of the layers.
    out_dir = tmp_path / "report"
    assert main(["report", str(onda), "--out-dir", str(out_dir)]) == 0
    assert "roofline bound" in capsys.readouterr().out
    rep = json.loads((out_dir / "report.json").read_text())
    assert (out_dir / "roofline.png").stat().st_size > 10_000
    assert (out_dir / "utilization.png").stat().st_size > 10_000
    layers = rep["layers"]
    assert len(layers) == 73
    for layer in layers:  # a layer's GEMMs run within its span (weights may stream in earlier)
        assert layer["cycles"] >= layer["compute_cycles"], layer
    total = rep["summary"]["total_cycles"]
    # one memory port and one MAC array: no schedule beats either bound of the whole network
    assert total >= rep["summary"]["bytes_moved"] / rep["summary"]["bytes_per_cycle"]
    assert total >= rep["summary"]["total_macs"] / rep["summary"]["macs_per_cycle"]
    assert 0 <= total - sum(layer["cycles"] for layer in layers) <= 2
    assert sum(layer["macs"] for layer in layers) == rep["summary"]["total_macs"] > 3.8e9


def test_resnet50_does_not_fit_icebreaker(resnet50_tflite):
    with pytest.raises(CompileError, match=r"model needs at least \d+ B of engine memory .* engine 'icebreaker' has "
                                           r"131072 B \(SPRAM\)"):
        compile_tflite(resnet50_tflite, "icebreaker")
