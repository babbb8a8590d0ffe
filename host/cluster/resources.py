"""The custom resource a device is placed by, named after its kind.

A node says which devices it has with Ray custom resources (``ray start --resources '{"board_ulx3s_85f": 2}'``);
a device actor asks for one unit of its kind, so Ray puts it where such a device is. The names:

| backend | resource | one unit is |
|---|---|---|
| ``emulator`` | ``emulator`` | one ISA emulator (a share of a CPU: give as many units as the node has cores to spare) |
| ``golden`` | ``golden`` | one golden-model runner |
| ``rtl`` | ``rtl`` | one Verilator engine harness |
| ``board`` | ``board_<engine>`` (``board_ulx3s_85f``, ``board_icebreaker``) | one board on this node, its URL in ``ONDA_DEVICES`` |

``<engine>`` is the engine configuration the board's bitstream was built with (``hw/configs/``), ``-`` written
``_`` (Ray's resource names are plain identifiers here).
"""

from __future__ import annotations

import re

PLAIN = ("emulator", "golden", "rtl")


def device_resource(backend: str, resource: str | None = None) -> str:
    """The resource a device of ``backend`` asks for: ``resource`` when given (checked), else the backend's name;
    a board needs its resource named (``board_<engine>``), as boards of different engines are different kinds."""
    if resource:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", resource) or resource in ("CPU", "GPU", "memory",
                                                                                 "object_store_memory"):
            raise ValueError(f"--device-resource {resource!r}: a custom resource name is a plain identifier "
                             f"(letters, digits, _), not one of Ray's own (CPU, GPU, memory)")
        return resource
    if backend in PLAIN:
        return backend
    if backend == "board":
        raise ValueError("--backend board with --cluster: name the boards' resource, --device-resource "
                         "board_<engine> (board_ulx3s_85f, board_icebreaker), as the device nodes declare it")
    raise ValueError(f"backend {backend!r} has no device resource; give --device-resource NAME")


def board_resource(engine: str) -> str:
    """``board_<engine>`` for an engine configuration name (``ulx3s-85f`` -> ``board_ulx3s_85f``)."""
    return "board_" + re.sub(r"[^A-Za-z0-9_]", "_", engine)
