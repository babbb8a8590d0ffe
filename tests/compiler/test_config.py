"""Engine configurations: the shipped ones load; impossible ones are refused naming the constraint."""

from pathlib import Path

import pytest
import yaml

from onda.hw.config import CONFIG_DIR, ConfigError, load_config


@pytest.mark.parametrize("name,macs", [("icebreaker", 8), ("ulx3s-85f", 128), ("large", 4096)])
def test_shipped_configs(name, macs):
    cfg = load_config(name)
    assert cfg.name == name and cfg.macs == macs
    assert cfg.fingerprint == load_config(CONFIG_DIR / f"{name}.yaml").fingerprint


def test_ulx3s_fits_the_ecp5_85f():
    cfg = load_config("ulx3s-85f")
    assert cfg.ram_kind == "DP16KD" and cfg.ram_blocks == 208
    blocks = sum(getattr(cfg, f"{b}_bytes") for b in ("act", "wgt", "out", "param")) / 2048
    assert blocks <= 208
    assert cfg.mem_port_bits == 16 and cfg.mem_bytes_per_cycle == 2.0


def _variant(tmp_path: Path, **changes) -> Path:
    d = yaml.safe_load((CONFIG_DIR / "ulx3s-85f.yaml").read_text())
    for key, value in changes.items():
        node = d
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.mark.parametrize("changes,message", [
    ({"width": 3}, r"width 3 is not supported"),
    ({"lanes": 0}, r"lanes must be >= 1"),
    ({"buffers.act": 400000}, r"buffers need \d+ DP16KD blocks of 2048 B, the device has 208"),
    ({"buffers.wgt": 100}, r"weight slot \(50 B\) must hold one lanes x width tile"),
    ({"buffers.param": 200}, r"parameter slot"),
    ({"memory.bytes_per_cycle": 8.0}, r"exceeds what a 16-bit port"),
    ({"acc_bits": 24}, r"acc_bits must be 32"),
])
def test_impossible_configs_are_refused(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_variant(tmp_path, **changes))


def test_unknown_config_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown engine config 'nope' \(available: icebreaker, large, ulx3s-85f"):
        load_config("nope")


def test_missing_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nlanes: 4\n")
    with pytest.raises(ConfigError, match="missing key"):
        load_config(path)
