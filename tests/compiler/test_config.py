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


def test_ram_blocks_as_yosys_maps_them():
    """The buffers' block RAMs counted from the RAMs the engine builds (one copy per physical read
    port, the cheapest block shape); ULX3S: the 200 DP16KD Yosys mapped (with one more of the board
    top's), iCE40UP5K: more EBR than the device has, refused by name."""
    from onda.hw.engine.ram_use import blocks_for, engine_ram_blocks, ram_shortfall

    assert [blocks_for("DP16KD", 8, d) for d in (512, 2048, 2049, 4096)] == [1, 1, 2, 2]
    assert [blocks_for("DP16KD", b, 512) for b in (32, 36, 37, 128)] == [1, 1, 2, 4]
    assert blocks_for("DP16KD", 128, 1536) == 12 and blocks_for("EBR", 8, 768) == 2
    assert [blocks_for("EBR", b, 256) for b in (8, 16, 32)] == [1, 1, 2]
    ulx3s = load_config("ulx3s-85f")
    assert engine_ram_blocks(ulx3s) == {"act": 48, "wgt": 96, "param": 16, "out": 32, "acc": 8}
    assert ram_shortfall(ulx3s, extra=1) is None and "needs 210 DP16KD" in ram_shortfall(ulx3s, extra=10)
    assert engine_ram_blocks(load_config("icebreaker"))["fetch"] == 70  # Yosys synth_ice40 of Fetch alone: 70
    assert "needs 140 EBR blocks" in ram_shortfall(load_config("icebreaker"))


def test_add_lanes_and_lut_lanes_default_to_none_saved():
    cfg = load_config("icebreaker")
    assert (cfg.add_lanes, cfg.adders, cfg.lut_mac_lanes) == (0, cfg.vector_lanes, 0)
    assert load_config("ulx3s-85f").adders == 1


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
    ({"pipeline.add_lanes": 3}, r"pipeline.add_lanes \(3\) must divide vector_lanes \(4\)"),
    ({"pipeline.lut_mac_lanes": 17}, r"pipeline.lut_mac_lanes \(17\) must be in 0..lanes \(16\)"),
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
