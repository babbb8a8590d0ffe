"""Performance report of a compiled program: per-layer cycles, utilization and roofline, from the
emulator's cycle model.

For each layer: MACs, cycles (from the end of the previous layer to the end of this one, so the
layers add up to the total), MAC utilization ``MACs / (cycles * lanes * width)``, bytes moved over
the memory port, and the roofline bound ``max(MACs / array, bytes / bandwidth)``: a layer is
compute-bound when the first term is the larger.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from onda.hw.config import EngineConfig
from onda.sim.emulator.cycles import CycleTrace


@dataclass
class LayerPerf:
    index: int
    op: str
    name: str
    tiling: str
    macs: int
    cycles: int
    bytes: int
    compute_cycles: float  # MACs / array
    memory_cycles: float  # bytes / bandwidth
    instructions: int
    min_bytes: int = 0  # compulsory traffic (each input, output and weight byte once)

    @property
    def strict_roofline(self) -> float:
        """max(MACs / array, compulsory bytes / bandwidth): the bound with no re-loads at all."""
        return max(self.compute_cycles, self.min_bytes * self.memory_cycles / self.bytes if self.bytes else 0.0)

    @property
    def roofline(self) -> float:
        return max(self.compute_cycles, self.memory_cycles)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_cycles >= self.memory_cycles else "memory"

    @property
    def utilization(self) -> float:
        return self.compute_cycles / self.cycles if self.cycles else 0.0


@dataclass
class Report:
    model: str
    engine: str
    clock_mhz: float
    macs_per_cycle: int
    bytes_per_cycle: float
    layers: list[LayerPerf]
    total_cycles: int

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def roofline_cycles(self) -> float:
        return sum(layer.roofline for layer in self.layers)

    @property
    def strict_roofline_cycles(self) -> float:
        return sum(layer.strict_roofline for layer in self.layers)

    @property
    def roofline_ratio(self) -> float:
        return self.total_cycles / self.roofline_cycles if self.roofline_cycles else float("inf")

    @property
    def ms(self) -> float:
        return self.total_cycles / (self.clock_mhz * 1e3)

    @property
    def images_per_s(self) -> float:
        return 1e3 / self.ms if self.ms else 0.0

    @property
    def utilization(self) -> float:
        return self.total_macs / (self.total_cycles * self.macs_per_cycle) if self.total_cycles else 0.0

    @property
    def compute_bound_utilization(self) -> float:
        """MAC-weighted utilization over compute-bound layers."""
        cb = [layer for layer in self.layers if layer.macs and layer.bound == "compute"]
        cyc = sum(layer.cycles for layer in cb)
        return sum(layer.compute_cycles for layer in cb) / cyc if cyc else 0.0

    def summary(self) -> dict:
        return {"model": self.model, "engine": self.engine, "clock_mhz": self.clock_mhz,
                "macs_per_cycle": self.macs_per_cycle, "bytes_per_cycle": self.bytes_per_cycle,
                "total_cycles": self.total_cycles, "total_macs": self.total_macs,
                "roofline_cycles": round(self.roofline_cycles, 1), "roofline_ratio": round(self.roofline_ratio, 4),
                "compulsory_roofline_cycles": round(self.strict_roofline_cycles, 1),
                "compulsory_roofline_ratio": round(self.total_cycles / self.strict_roofline_cycles, 4)
                if self.strict_roofline_cycles else None,
                "ms": round(self.ms, 4), "images_per_s": round(self.images_per_s, 3),
                "mac_utilization": round(self.utilization, 4),
                "compute_bound_mac_utilization": round(self.compute_bound_utilization, 4),
                "bytes_moved": sum(layer.bytes for layer in self.layers)}

    def to_json(self) -> dict:
        rows = []
        for layer in self.layers:
            d = asdict(layer)
            d.update(roofline=layer.roofline, bound=layer.bound, utilization=round(layer.utilization, 4))
            rows.append(d)
        return {"summary": self.summary(), "layers": rows}


def build_report(memmap: dict, cfg: EngineConfig, trace: CycleTrace) -> Report:
    layers = []
    prev_end = 0
    for i, layer in enumerate(memmap["layers"]):
        lo, hi = layer["first"], layer["last"] + 1
        end = int(trace.end[lo:hi].max()) if hi > lo else prev_end
        nbytes = int(trace.bytes[lo:hi].sum())
        layers.append(LayerPerf(i, f"#{layer['op_index']} {layer['kind']}", layer["name"], layer["tiling"],
                                int(layer["macs"]), end - prev_end, nbytes, layer["macs"] / cfg.macs,
                                nbytes / cfg.mem_bytes_per_cycle, hi - lo, int(layer.get("min_bytes", 0))))
        prev_end = max(prev_end, end)
    return Report(memmap.get("name", "?"), cfg.name, cfg.clock_mhz, cfg.macs, cfg.mem_bytes_per_cycle, layers,
                  trace.total)


def _si(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def format_table(r: Report) -> str:
    head = (f"{'#':>3} {'op':<18} {'tiling':<28} {'MACs':>8} {'cycles':>9} {'util':>6} {'bytes':>8} "
            f"{'bound':<7} {'roofline':>9} {'ratio':>6}")
    lines = [f"{r.model} on {r.engine}: {r.macs_per_cycle} MACs/cycle, {r.bytes_per_cycle:g} B/cycle, "
             f"{r.clock_mhz:g} MHz", head, "-" * len(head)]
    for layer in r.layers:
        ratio = layer.cycles / layer.roofline if layer.roofline else float("nan")
        lines.append(f"{layer.index:>3} {layer.op:<18} {layer.tiling[:28]:<28} {_si(layer.macs):>8} {layer.cycles:>9} "
                     f"{layer.utilization:>6.1%} {_si(layer.bytes):>8} {layer.bound:<7} {layer.roofline:>9.0f} "
                     f"{ratio:>6.2f}")
    s = r.summary()
    lines.append("-" * len(head))
    lines.append(f"total: {r.total_cycles} cycles = {r.ms:.3f} ms at {r.clock_mhz:g} MHz = {r.images_per_s:.2f} images/s; "
                 f"{_si(r.total_macs)} MACs, {_si(s['bytes_moved'])}B moved")
    lines.append(f"roofline bound {r.roofline_cycles:.0f} cycles: total / roofline = {r.roofline_ratio:.3f} "
                 f"(target <= 1.25); MAC utilization {r.utilization:.1%} overall, "
                 f"{r.compute_bound_utilization:.1%} on compute-bound layers (target >= 85%)")
    if r.strict_roofline_cycles:
        lines.append(f"with compulsory traffic only (every byte moved once, {_si(sum(x.min_bytes for x in r.layers))}B): "
                     f"bound {r.strict_roofline_cycles:.0f} cycles, total / bound = "
                     f"{r.total_cycles / r.strict_roofline_cycles:.3f}")
    return "\n".join(lines)


def write_outputs(r: Report, out_dir: str | Path) -> list[Path]:
    """report.json, roofline.png and utilization.png in ``out_dir``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "roofline.png", out / "utilization.png"]
    paths[0].write_text(json.dumps(r.to_json(), indent=1))

    fig, ax = plt.subplots(figsize=(8, 5.5))
    pts = [(layer.macs / max(layer.bytes, 1), layer.macs / layer.cycles, layer.bound) for layer in r.layers
           if layer.macs and layer.cycles]
    if pts:
        lo = min(p[0] for p in pts) / 2
        hi = max(p[0] for p in pts) * 2
        ridge = r.macs_per_cycle / r.bytes_per_cycle
        xs = [lo, min(max(ridge, lo), hi), hi]
        ax.plot(xs, [min(r.macs_per_cycle, r.bytes_per_cycle * x) for x in xs], "k-", label="roofline")
        for bound, color in (("compute", "tab:blue"), ("memory", "tab:orange")):
            sel = [p for p in pts if p[2] == bound]
            if sel:
                ax.scatter([p[0] for p in sel], [p[1] for p in sel], c=color, s=18, label=f"{bound}-bound layers")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("operational intensity (MACs / byte moved)")
    ax.set_ylabel("achieved MACs / cycle")
    ax.set_title(f"{r.model} on {r.engine}: roofline ({r.macs_per_cycle} MACs/cycle, {r.bytes_per_cycle:g} B/cycle)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(8, len(r.layers) * 0.16), 4.5))
    colors = ["tab:blue" if layer.bound == "compute" else "tab:orange" for layer in r.layers]
    ax.bar(range(len(r.layers)), [layer.utilization * 100 for layer in r.layers], color=colors)
    ax.axhline(85, color="k", ls="--", lw=0.8, label="85% target (compute-bound)")
    ax.set_xlabel("layer (blue: compute-bound, orange: memory-bound)")
    ax.set_ylabel("MAC utilization (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{r.model} on {r.engine}: {r.total_cycles} cycles, roofline ratio {r.roofline_ratio:.3f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths


def report_for(model, out_dir: str | Path | None = None) -> Report:
    """Report of an ``EmulatedModel`` (runtime.emulator)."""
    r = build_report(model.memmap, model.config, model.cycle_trace())
    if out_dir is not None:
        write_outputs(r, out_dir)
    return r
