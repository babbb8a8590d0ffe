"""The ``.onda`` container: a compiled engine program with everything needed to run it.

Layout (all integers little-endian)::

    header   (64 B)  magic "ONDAPRG\\0", version u16, reserved u16, section count u32,
                     config fingerprint (32 B raw SHA-256), header CRC-32 u32 (over the header with
                     this field zero and the section table), reserved u32 x3
    table    (32 B per section)  name (8 B, NUL padded), offset u64, size u64, CRC-32 u32, reserved u32
    sections  CONFIG (JSON engine parameters), PROGRAM (32-byte instructions), WEIGHTS (the memory
              image at address 0: weights and parameter records), MEMMAP (JSON: tensors' addresses,
              layers' instruction ranges), SOURCE (the .tflite the program was compiled from)

Every read checks magic, version, bounds and checksums and raises :class:`ContainerError` saying
which check failed.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"ONDAPRG\0"
VERSION = 2  # 2: WGT pads every kernel-row segment of the weights to whole MAC beats (hw/ISA.md)
_HEADER = struct.Struct("<8sHHI32sI12x")
_ENTRY = struct.Struct("<8sQQI4x")
assert _HEADER.size == 64 and _ENTRY.size == 32

REQUIRED_SECTIONS = ("CONFIG", "PROGRAM", "WEIGHTS", "MEMMAP")


class ContainerError(ValueError):
    """A .onda file that cannot be used; the message says which check failed."""


@dataclass
class Container:
    config: dict  # EngineConfig.as_dict()
    fingerprint: str  # hex SHA-256 of the config
    program: bytes
    weights: bytes
    memmap: dict
    source: bytes | None = None
    extra: dict[str, bytes] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        sections = {"CONFIG": json.dumps(self.config, sort_keys=True).encode(), "PROGRAM": self.program,
                    "WEIGHTS": self.weights, "MEMMAP": json.dumps(self.memmap).encode()}
        if self.source is not None:
            sections["SOURCE"] = self.source
        sections.update(self.extra)
        offset = _HEADER.size + _ENTRY.size * len(sections)
        table, body = b"", []
        for name, data in sections.items():
            table += _ENTRY.pack(name.encode().ljust(8, b"\0"), offset, len(data), zlib.crc32(data))
            body.append(data)
            offset += len(data)
        fp = bytes.fromhex(self.fingerprint)
        header0 = _HEADER.pack(MAGIC, VERSION, 0, len(sections), fp, 0)
        crc = zlib.crc32(header0 + table)
        return _HEADER.pack(MAGIC, VERSION, 0, len(sections), fp, crc) + table + b"".join(body)

    def write(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())


def is_container(data: bytes) -> bool:
    return data[:8] == MAGIC


def parse(data: bytes, origin: str = "container") -> Container:
    if len(data) < 8 or data[:8] != MAGIC:
        raise ContainerError(f"{origin}: not an onda program (magic {data[:8]!r}, expected {MAGIC!r})")
    if len(data) < _HEADER.size:
        raise ContainerError(f"{origin}: truncated: {len(data)} bytes, the header alone is {_HEADER.size}")
    magic, version, _, count, fp, crc = _HEADER.unpack_from(data, 0)
    if version != VERSION:
        raise ContainerError(f"{origin}: container version {version}, this onda reads version {VERSION} "
                             f"(recompile the model with `onda compile`)")
    table_end = _HEADER.size + _ENTRY.size * count
    if len(data) < table_end:
        raise ContainerError(f"{origin}: truncated: section table ends at byte {table_end}, file has {len(data)}")
    header0 = _HEADER.pack(magic, version, 0, count, fp, 0)
    if zlib.crc32(header0 + data[_HEADER.size:table_end]) != crc:
        raise ContainerError(f"{origin}: header checksum mismatch (corrupted header or section table)")
    sections: dict[str, bytes] = {}
    for i in range(count):
        name, offset, size, scrc = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
        name = name.rstrip(b"\0").decode(errors="replace")
        if offset + size > len(data):
            raise ContainerError(f"{origin}: truncated: section {name} ends at byte {offset + size}, "
                                 f"file has {len(data)}")
        body = data[offset:offset + size]
        if zlib.crc32(body) != scrc:
            raise ContainerError(f"{origin}: section {name} checksum mismatch (corrupted)")
        sections[name] = body
    missing = [s for s in REQUIRED_SECTIONS if s not in sections]
    if missing:
        raise ContainerError(f"{origin}: missing section(s) {', '.join(missing)}")
    try:
        config = json.loads(sections.pop("CONFIG"))
        memmap = json.loads(sections.pop("MEMMAP"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContainerError(f"{origin}: unreadable CONFIG/MEMMAP section ({e})") from None
    return Container(config=config, fingerprint=fp.hex(), program=sections.pop("PROGRAM"),
                     weights=sections.pop("WEIGHTS"), memmap=memmap, source=sections.pop("SOURCE", None),
                     extra=sections)


def read(path: str | Path) -> Container:
    path = Path(path)
    if not path.is_file():
        raise ContainerError(f"{path}: no such file")
    return parse(path.read_bytes(), str(path))


def check_engine(container: Container, fingerprint: str, engine_name: str) -> None:
    """Refuse a program compiled for a different engine configuration."""
    if container.fingerprint != fingerprint:
        raise ContainerError(
            f"program was compiled for engine {container.config.get('name', '?')!r} "
            f"(config fingerprint {container.fingerprint[:12]}), this engine is {engine_name!r} "
            f"({fingerprint[:12]}): recompile with `onda compile --engine {engine_name}`")
