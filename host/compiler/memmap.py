"""The container's memory map (``MEMMAP``): the engine memory's regions, the engine and host
tensors (address, shape, quantization, producer, space-to-depth layout), the host's ops and the
program's layers. Every runtime and bench reads tensors through it."""

from __future__ import annotations

from onda.sim.ir import Graph

from .memory import MemoryPlan
from .partition import Partition


def _producer(g: Graph, t: int, host: bool) -> str:
    producer = "input"
    for op in g.ops:
        if t in op.outputs:
            producer = f"#{op.index} {op.kind.value}" + (" (host)" if host else "")
            if host:
                break
    return producer


def tensor_entry(g: Graph, mem: MemoryPlan, t: int) -> dict:
    r = mem.root(t)
    return {**g.tensor(t).spec(), "addr": mem.dram(t), "alias_of": r if t in mem.alias else None,
            "producer": _producer(g, t, host=False), "space_to_depth": list(mem.s2d[t]) if t in mem.s2d else None,
            "pixel_stride": mem.pixel_stride(t) if mem.is_view(t) else None}


def host_tensor_entry(g: Graph, t: int) -> dict:
    return {**g.tensor(t).spec(), "addr": None, "alias_of": None, "producer": _producer(g, t, host=True)}


def build_memmap(g: Graph, part: Partition, mem: MemoryPlan, regions: dict, layers: list[dict]) -> dict:
    """``regions``: act/weights/program base and size."""
    engine = list(part.inputs) + [t for op in part.ops for t in op.outputs]
    host = [h[k] for h in part.host_ops for k in ("input", "output") if h[k] not in engine]
    return {
        **regions,
        "inputs": list(part.inputs), "outputs": list(part.outputs), "name": g.name,
        "host_inputs": list(g.inputs), "host_outputs": list(g.outputs), "host_ops": part.host_ops,
        "tensors": {str(t): tensor_entry(g, mem, t) for t in engine},
        "host_tensors": {str(t): host_tensor_entry(g, t) for t in host},
        "layers": layers,
    }
