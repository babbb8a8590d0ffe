"""The .onda container: damaged, cut-short and foreign files get clear errors; a program runs only
on the engine configuration it was compiled for."""

import struct

import numpy as np
import pytest

from onda.hw import container as ctr
from onda.host.compiler import compile_tflite
from onda.host.models import digits
from onda.host.runtime import BackendError
from onda.host.runtime.emulator import EmulatorBackend


@pytest.fixture(scope="module")
def onda_bytes():
    return compile_tflite(digits.TFLITE, "icebreaker").to_bytes()


def _section(data: bytes, name: str) -> tuple[int, int]:
    count = struct.unpack_from("<I", data, 12)[0]
    for i in range(count):
        raw, off, size, _ = struct.unpack_from("<8sQQI4x", data, 64 + 32 * i)
        if raw.rstrip(b"\0").decode() == name:
            return off, size
    raise KeyError(name)


def test_round_trip(onda_bytes, tmp_path):
    c = ctr.parse(onda_bytes)
    assert c.config["name"] == "icebreaker"
    assert c.source == digits.TFLITE.read_bytes()
    assert ctr.parse(c.to_bytes()).program == c.program
    p = tmp_path / "d.onda"
    p.write_bytes(onda_bytes)
    m = EmulatorBackend().load(p)
    x = np.zeros((2,) + m.inputs[0].shape[1:], dtype=np.int8)
    assert m.run([x])[0].shape[0] == 2


@pytest.mark.parametrize("section", ["PROGRAM", "WEIGHTS", "MEMMAP", "CONFIG", "SOURCE"])
def test_corrupted_section(onda_bytes, section):
    off, size = _section(onda_bytes, section)
    bad = bytearray(onda_bytes)
    bad[off + size // 2] ^= 0x40
    with pytest.raises(ctr.ContainerError, match=f"section {section} checksum mismatch"):
        ctr.parse(bytes(bad))


def test_corrupted_header(onda_bytes):
    bad = bytearray(onda_bytes)
    bad[64 + 8] ^= 1  # first section's offset
    with pytest.raises(ctr.ContainerError, match="header checksum mismatch"):
        ctr.parse(bytes(bad))


@pytest.mark.parametrize("cut", [10, 100, 0.5, -1])
def test_truncated(onda_bytes, cut):
    n = int(len(onda_bytes) * cut) if isinstance(cut, float) else cut % len(onda_bytes)
    with pytest.raises(ctr.ContainerError, match="truncated"):
        ctr.parse(onda_bytes[:n])


def test_wrong_version(onda_bytes):
    bad = bytearray(onda_bytes)
    struct.pack_into("<H", bad, 8, ctr.VERSION + 1)
    with pytest.raises(ctr.ContainerError, match=f"container version {ctr.VERSION + 1}, this onda reads version {ctr.VERSION}"):
        ctr.parse(bytes(bad))


def test_not_a_container(tmp_path):
    with pytest.raises(ctr.ContainerError, match="not an onda program"):
        ctr.parse(b"PK\x03\x04" + bytes(100))
    p = tmp_path / "x.bin"
    p.write_bytes(b"hello world, not a model")
    with pytest.raises(BackendError, match="neither a compiled .onda program nor a .tflite"):
        EmulatorBackend().load(p)


def test_refused_by_another_engine(onda_bytes, tmp_path):
    p = tmp_path / "d.onda"
    p.write_bytes(onda_bytes)
    with pytest.raises(ctr.ContainerError, match=r"compiled for engine 'icebreaker' .* this engine is 'ulx3s-85f'"):
        EmulatorBackend(engine="ulx3s-85f").load(p)
    assert EmulatorBackend(engine="icebreaker").load(p).config.name == "icebreaker"


def test_cli_reports_damage(onda_bytes, tmp_path, capsys):
    from onda.host.cli import main

    p = tmp_path / "d.onda"
    p.write_bytes(onda_bytes[: len(onda_bytes) // 3])
    status = main(["run", str(p), "--backend", "emulator", "--input", str(tmp_path / "none.npy"), "-o",
                   str(tmp_path / "o.npy")])
    assert status == 1
    assert "truncated" in capsys.readouterr().err


def test_cli_run_and_verify(onda_bytes, tmp_path, capsys):
    """`onda run model.onda --backend emulator` writes what the golden model computes; `onda verify`
    compares the embedded source's reference kernels with the emulator."""
    from onda.host.cli import main
    from onda.host.runtime.golden import GoldenBackend

    p = tmp_path / "d.onda"
    p.write_bytes(onda_bytes)
    golden = GoldenBackend().load(digits.TFLITE)
    x = np.random.default_rng(7).integers(-128, 128, (4,) + golden.inputs[0].shape[1:], dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(p), "--backend", "emulator", "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), golden.run([x])[0])
    assert main(["verify", str(p), "--backend", "emulator", "--images", "2"]) == 0
    assert "0 mismatches: bit-exact" in capsys.readouterr().out


def test_backend_compiles_tflite_at_load():
    """The serving path: the default backend takes a .tflite and compiles it for its engine once."""
    from onda.host.runtime import default_backend, get_backend
    from onda.host.runtime.golden import GoldenBackend

    assert default_backend() == "emulator"
    a = get_backend("emulator").load(digits.TFLITE)
    b = get_backend("emulator").load(digits.TFLITE)
    assert a.config.name == "ulx3s-85f" and a.container is b.container  # cached, not recompiled
    assert a.source_tflite == digits.TFLITE.read_bytes()
    x = np.random.default_rng(1).integers(-128, 128, (9,) + a.inputs[0].shape[1:], dtype=np.int8)
    np.testing.assert_array_equal(a.run([x])[0], GoldenBackend().load(digits.TFLITE).run([x])[0])
    assert a.producers() and a.tensor_names()
