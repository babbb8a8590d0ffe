"""Engine configurations: the parameters one engine design is built with, from ``hw/configs/*.yaml``.

``load_config("ulx3s-85f")`` or ``load_config("path/to/my.yaml")`` returns a validated
:class:`EngineConfig`; a configuration that cannot work is refused with :class:`ConfigError`
naming the violated constraint. ``fingerprint`` identifies a configuration in compiled programs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .isa import GEMM_PARAM_WORDS, LAYOUTS, Opcode, field_range

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_ENGINE = "ulx3s-85f"  # the board a .tflite is compiled for when no engine is named
SUPPORTED_WIDTHS = (1, 2, 4, 8, 16, 32, 64, 128)


class ConfigError(ValueError):
    """An engine configuration that cannot work; the message names the constraint."""


@dataclass(frozen=True)
class EngineConfig:
    """One engine build.

    Parameters
    ----------
    lanes, width:
        The MAC array: ``lanes`` output channels in parallel, each taking ``width`` int8
        products per cycle along the reduction (K) axis.
    act_bytes, wgt_bytes, out_bytes, param_bytes:
        On-chip buffer sizes; each is split into two equal slots so loads overlap compute.
    acc_bytes:
        The accumulator buffer (one slot, only the GEMM reads and writes it): int32 partial sums
        of a GEMM split over K; 0 builds none, and a layer whose weights do not fit is refused.
    mem_bytes_per_cycle, mem_latency_cycles, mem_row_overhead_cycles:
        The memory port as the cycle model sees it.
    add_lanes:
        The vector unit's ADD/MUL/REQUANT lanes (each a ResidualAdd with its multipliers); 0
        means ``vector_lanes``, fewer take ``vector_lanes / add_lanes`` cycles a beat and save
        the device's DSPs.
    lut_mac_lanes:
        MAC-array lanes whose multipliers are LUT trees rather than DSP blocks (the same
        registers and latency): what a device whose DSPs the MACs and the address arithmetic
        outnumber gives up in LUTs.
    """

    name: str
    description: str
    clock_mhz: float
    lanes: int
    width: int
    acc_bits: int
    vector_lanes: int
    act_bytes: int
    wgt_bytes: int
    out_bytes: int
    param_bytes: int
    ram_kind: str
    ram_block_bytes: int
    ram_blocks: int
    mem_kind: str
    mem_port_bits: int
    mem_bytes_per_cycle: float
    mem_latency_cycles: int
    mem_row_overhead_cycles: int
    mem_size_bytes: int
    gemm_pipeline_cycles: int
    vec_pipeline_cycles: int
    requant_units: int = 1
    requant_interval: int = 1
    acc_bytes: int = 0
    add_lanes: int = 0
    lut_mac_lanes: int = 0

    @property
    def drain_cycles(self) -> int:
        """Cycles the convolution tile needs to requantize one vector of ``lanes`` accumulators:
        ``requant_units`` requantizers, each taking one accumulator every ``requant_interval``
        cycles, fed by a serializer that takes the next vector the cycle after its last lane
        leaves (``onda.hw.datapath.conv_tile``). A dot product shorter than this stalls the MAC
        array."""
        groups = math.ceil(self.lanes / self.requant_units)
        k = self.requant_interval
        return k * math.ceil(((groups - 1) * k + 2) / k)

    @property
    def adders(self) -> int:
        """The vector unit's ADD lanes (``add_lanes``, or ``vector_lanes`` when 0)."""
        return self.add_lanes or self.vector_lanes

    @property
    def macs(self) -> int:
        return self.lanes * self.width

    def slot(self, buffer: str) -> int:
        """Bytes in one of the two slots of ``buffer`` ("act", "wgt", "out", "param")."""
        return getattr(self, f"{buffer}_bytes") // 2

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical parameters: a program runs only on the engine it was built for."""
        canon = json.dumps({k: v for k, v in self.as_dict().items() if k != "description"}, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    def validate(self) -> "EngineConfig":
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"engine config {self.name!r}: {msg}")

        need(self.lanes >= 1, f"lanes must be >= 1 (got {self.lanes})")
        need(self.width in SUPPORTED_WIDTHS,
             f"width {self.width} is not supported (the MAC array takes one of {list(SUPPORTED_WIDTHS)})")
        need(self.acc_bits == 32, f"acc_bits must be 32 (TFLite's int32 accumulator), got {self.acc_bits}")
        need(self.vector_lanes >= 1, "vector_lanes must be >= 1")
        need(self.requant_units >= 1, "pipeline.requant_units must be >= 1")
        need(self.requant_interval >= 1, "pipeline.requant_interval must be >= 1")
        need(self.clock_mhz > 0, "clock_mhz must be > 0")
        need(self.add_lanes >= 0 and (self.add_lanes == 0 or self.vector_lanes % self.add_lanes == 0),
             f"pipeline.add_lanes ({self.add_lanes}) must divide vector_lanes ({self.vector_lanes}), or be 0 "
             f"(as many as vector_lanes)")
        need(0 <= self.lut_mac_lanes <= self.lanes,
             f"pipeline.lut_mac_lanes ({self.lut_mac_lanes}) must be in 0..lanes ({self.lanes})")
        for buf in ("act", "wgt", "out", "param"):
            size = getattr(self, f"{buf}_bytes")
            need(size > 0 and size % 2 == 0, f"buffers.{buf} must be a positive even number of bytes (two slots)")
        _, max_addr = field_range(Opcode.GEMM, "act_addr")
        for buf in ("act", "wgt", "out"):
            need(getattr(self, f"{buf}_bytes") <= max_addr + 1,
                 f"buffers.{buf} exceeds the ISA's 24-bit buffer address range")
        need(self.param_bytes <= field_range(Opcode.GEMM, "param_addr")[1] + 1,
             "buffers.param exceeds the ISA's 20-bit parameter address range")
        need(self.slot("wgt") >= self.lanes * self.width,
             f"a weight slot ({self.slot('wgt')} B) must hold one lanes x width tile ({self.macs} B)")
        need(self.lanes & (self.lanes - 1) == 0,
             f"lanes must be a power of two (got {self.lanes}): WGT is built of lanes x width byte-wide banks "
             f"and one MAC beat reads all of them")
        need(self.slot("wgt") % self.macs == 0,
             f"a weight slot ({self.slot('wgt')} B) must be a multiple of lanes x width ({self.macs}): weights are "
             f"stored lane-interleaved in whole MAC beats, [groups, K', lanes], from a beat-aligned address")
        need(self.slot("param") >= self.lanes * GEMM_PARAM_WORDS * 4,
             f"a parameter slot ({self.slot('param')} B) must hold one lane group's (bias, multiplier, shift) "
             f"records ({self.lanes * GEMM_PARAM_WORDS * 4} B)")
        need(self.slot("out") >= self.lanes, f"an output slot must hold one pixel of {self.lanes} lanes")
        need(self.acc_bytes >= 0 and self.acc_bytes % (self.lanes * 4) == 0,
             f"buffers.acc ({self.acc_bytes} B) must be a whole number of {self.lanes}-lane int32 vectors")
        need(self.acc_bytes <= field_range(Opcode.GEMM, "acc_addr")[1] + 1,
             "buffers.acc exceeds the ISA's 20-bit accumulator address range")
        blocks = sum(-(-getattr(self, f"{b}_bytes") // self.ram_block_bytes)
                     for b in ("act", "wgt", "out", "param", "acc"))
        need(blocks <= self.ram_blocks,
             f"buffers need {blocks} {self.ram_kind} blocks of {self.ram_block_bytes} B, the device has {self.ram_blocks}")
        need(self.mem_bytes_per_cycle > 0, "memory.bytes_per_cycle must be > 0")
        need(self.mem_bytes_per_cycle <= self.mem_port_bits / 8 * 2,
             f"memory.bytes_per_cycle {self.mem_bytes_per_cycle} exceeds what a {self.mem_port_bits}-bit port "
             f"moves per cycle (even double data rate gives {self.mem_port_bits / 4:g})")
        need(0 < self.mem_size_bytes <= 1 << 32, "memory.size_bytes must be in 1..2^32 (32-bit DMA addresses)")
        need(LAYOUTS[Opcode.GEMM] is not None, "ISA has no GEMM")
        return self


def _from_dict(d: dict, origin: str) -> EngineConfig:
    try:
        b, r, m, p = d["buffers"], d["ram"], d["memory"], d.get("pipeline", {})
        cfg = EngineConfig(
            name=str(d["name"]), description=str(d.get("description", "")), clock_mhz=float(d["clock_mhz"]),
            lanes=int(d["lanes"]), width=int(d["width"]), acc_bits=int(d.get("acc_bits", 32)),
            vector_lanes=int(d.get("vector_lanes", d["lanes"])),
            act_bytes=int(b["act"]), wgt_bytes=int(b["wgt"]), out_bytes=int(b["out"]), param_bytes=int(b["param"]),
            ram_kind=str(r["kind"]), ram_block_bytes=int(r["block_bytes"]), ram_blocks=int(r["blocks"]),
            mem_kind=str(m["kind"]), mem_port_bits=int(m["port_bits"]),
            mem_bytes_per_cycle=float(m["bytes_per_cycle"]), mem_latency_cycles=int(m.get("latency_cycles", 0)),
            mem_row_overhead_cycles=int(m.get("row_overhead_cycles", 0)), mem_size_bytes=int(m["size_bytes"]),
            gemm_pipeline_cycles=int(p.get("gemm_cycles", 0)), vec_pipeline_cycles=int(p.get("vec_cycles", 0)),
            requant_units=int(p.get("requant_units", 1)), requant_interval=int(p.get("requant_interval", 1)),
            acc_bytes=int(b.get("acc", 0)), add_lanes=int(p.get("add_lanes", 0)),
            lut_mac_lanes=int(p.get("lut_mac_lanes", 0)))
    except KeyError as e:
        raise ConfigError(f"{origin}: missing key {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{origin}: bad value ({e})") from None
    return cfg.validate()


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> EngineConfig:
    """A named configuration from ``hw/configs`` or a YAML file, validated."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown engine config {str(name_or_path)!r} "
                              f"(available: {', '.join(available_configs())}, or a .yaml path)")
    elif not path.is_file():
        raise ConfigError(f"{path}: no such engine config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of engine parameters")
    return _from_dict(data, str(path))


def config_from_dict(d: dict) -> EngineConfig:
    """Rebuild a config from ``EngineConfig.as_dict()`` (as embedded in a compiled program)."""
    try:
        return EngineConfig(**d).validate()
    except TypeError as e:
        raise ConfigError(f"embedded engine config: {e}") from None
