"""`onda run` and `onda verify` and `onda quantize` through the real command line."""

import os
import subprocess
import sys

import numpy as np
import pytest

from onda.host.cli import main
from onda.host.verify import ReferenceModel
from onda.host.runtime import get_backend

from .nets import build_case
from onda.host.quantizer import quantize


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model, calib = build_case("resnet_stem_pad_maxpool")
    p = tmp_path_factory.mktemp("cli") / "stem.tflite"
    p.write_bytes(quantize(model, calib, progress=lambda s: None))
    return p


def test_run_any_batch_matches_reference(model_path, tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(3, 32, 32, 3), dtype=np.int8)
    np.save(tmp_path / "in.npy", x)
    assert main(["run", str(model_path), "--backend", "golden", "--input", str(tmp_path / "in.npy"),
                 "-o", str(tmp_path / "out.npy")]) == 0
    out = np.load(tmp_path / "out.npy")
    want = ReferenceModel(model_path).run([x])[0]
    assert out.dtype == np.int8 and out.shape == (3, 8, 8, 16)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("array,message", [
    (np.zeros((1, 32, 32, 3), np.float32), "expected dtype int8, got float32"),
    (np.zeros((1, 31, 32, 3), np.int8), "expected shape [N, 32, 32, 3], got [1, 31, 32, 3]"),
    (np.zeros((32, 32, 3), np.int8), "expected shape [N, 32, 32, 3], got [32, 32, 3]"),
    (np.zeros((0, 32, 32, 3), np.int8), "empty batch"),
])
def test_run_rejects_wrong_input(model_path, tmp_path, capsys, array, message):
    np.save(tmp_path / "in.npy", array)
    rc = main(["run", str(model_path), "--input", str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npy")])
    assert rc == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_run_rejects_unknown_backend_and_bad_npy(model_path, tmp_path, capsys):
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert main(["run", str(model_path), "--input", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o.npy")]) == 1
    assert "cannot read .npy" in capsys.readouterr().err
    assert main(["run", str(model_path), "--backend", "fpga9000", "--input", "x", "-o", "y"]) == 1
    assert "unknown backend 'fpga9000'" in capsys.readouterr().err


def test_verify_prints_table_and_passes(model_path, capsys):
    assert main(["verify", str(model_path), "--backend", "golden", "--images", "2", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "MAX_POOL_2D" in out and "0 mismatches: bit-exact" in out


def test_verify_detects_a_wrong_backend(model_path, capsys, monkeypatch):
    """A backend off by one LSB in one tensor must fail verification (the check can fail)."""
    loaded = get_backend("golden").load(model_path)
    real_run_all = type(loaded).run_all

    def off_by_one(self, inputs):
        values = real_run_all(self, inputs)
        last = self.graph.outputs[0]
        v = values[last].copy()
        v.flat[7] = np.int8(v.flat[7] ^ 1)
        values[last] = v
        return values

    monkeypatch.setattr(type(loaded), "run_all", off_by_one)
    assert main(["verify", str(model_path), "--images", "1"]) == 1  # a mismatch is a failure (2: usage errors)
    assert "1 mismatches" in capsys.readouterr().out


def test_backend_follows_the_file(model_path, tmp_path, capsys):
    """No --backend: a .tflite runs on the golden model, a compiled .onda on the emulator; both
    equal to TFLite's reference kernels."""
    assert main(["compile", str(model_path), "--engine", "icebreaker", "-o", str(tmp_path / "m.onda")]) == 0
    capsys.readouterr()
    assert main(["verify", str(model_path), "--images", "1"]) == 0
    assert "on backend 'golden'" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "m.onda"), "--images", "1"]) == 0
    out = capsys.readouterr().out
    assert "on backend 'emulator'" in out and "0 mismatches: bit-exact" in out
    x = np.random.default_rng(4).integers(-128, 128, size=(2, 32, 32, 3), dtype=np.int8)
    np.save(tmp_path / "in.npy", x)
    assert main(["run", str(tmp_path / "m.onda"), "--input", str(tmp_path / "in.npy"), "-o",
                 str(tmp_path / "out.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), ReferenceModel(model_path).run([x])[0])


def test_run_writes_every_output_to_npz(tmp_path):
    """A two-output model: ``-o x.npz`` holds both outputs by name, each equal to the reference;
    ``-o x.npy`` is refused with the names, and nothing is written."""
    import keras

    from onda.host.quantizer import quantize as q

    inp = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="left")(inp)
    b = keras.layers.Conv2D(2, 1, name="right")(inp)
    model = keras.Model(inp, [a, b])
    calib = [np.random.default_rng(i).normal(size=(1, 8, 8, 3)).astype(np.float32) for i in range(4)]
    path = tmp_path / "two.tflite"
    path.write_bytes(q(model, calib, progress=lambda s: None))
    ref = ReferenceModel(path)
    x = np.random.default_rng(5).integers(-128, 128, size=(2, 8, 8, 3), dtype=np.int8)
    np.save(tmp_path / "in.npy", x)
    assert main(["run", str(path), "--input", str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npy")]) == 1
    assert not (tmp_path / "o.npy").exists()
    assert main(["run", str(path), "--input", str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npz")]) == 0
    got = np.load(tmp_path / "o.npz")
    names = [t.name for t in get_backend("golden").load(path).outputs]
    assert sorted(got.files) == sorted(names) and len(names) == 2
    for name, want in zip(names, ref.run([x])):
        np.testing.assert_array_equal(got[name], want)


def test_help_lists_the_environment(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for var in ("ONDA_ENGINE", "ONDA_KERNELS", "ONDA_CACHE", "ONDA_RTL_SIM", "ONDA_WORKSPACE"):
        assert var in out


def test_quantize_imagenet_offline_fails_in_one_line(tmp_path):
    """No network: a clear one-line error, not a traceback or a hang."""
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "keras"), https_proxy="http://127.0.0.1:9",
               http_proxy="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    r = subprocess.run([sys.executable, "-m", "onda.host.cli", "quantize", "resnet50", "--weights", "imagenet",
                        "-o", str(tmp_path / "r.tflite")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("onda quantize: error:")]
    assert len(errors) == 1 and "cannot load ImageNet weights" in errors[0] and "--weights random" in errors[0]
    assert not (tmp_path / "r.tflite").exists()


def test_quantize_unknown_model(capsys, tmp_path):
    assert main(["quantize", "alexnet9", "-o", str(tmp_path / "x.tflite")]) == 1
    assert "neither a Keras model file" in capsys.readouterr().err
