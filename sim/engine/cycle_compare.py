"""The engine RTL's cycles against the cycle model's, per layer and per opcode: where they differ.

    python -m onda.sim.engine.cycle_compare M.onda [--out DIR]

Runs one image of a compiled program on the Verilator engine with the retirement trace on, and
sets each layer's RTL end (the last retirement of its instructions) beside the cycle model's
(``onda.sim.emulator.cycles.simulate``). Prints a table, writes ``cycles.json`` and
``cycles.png`` (per-layer bars) to ``--out``. The cycle model is the performance claim of
``onda report``; this is how it is held to the hardware.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from onda.hw import container as ctr
from onda.hw.isa import Opcode

MODEL_TOLERANCE = 0.02
"""How far the RTL's cycle count of a program may be from the cycle model's (``onda report``'s
claim): 2%. Today they agree to a few cycles in ten thousand, or exactly (see the tests)."""


def measure(c: ctr.Container, seed: int = 0) -> dict:
    from onda.sim.emulator.model import EmulatedModel
    from onda.sim.engine.program_run import execute
    from onda.sim.verilator.harness import VerilatorEngine

    from onda.sim.emulator.timeline import timeline

    emu = EmulatedModel(c, "model")
    trace = emu.cycle_trace()
    model_memory = timeline(emu.program, emu.config, int(emu.memmap["program_base"]), commands=True).commands
    dev = VerilatorEngine(emu.config)
    rng = np.random.default_rng(seed)
    image = [(int(emu.memmap["weights_base"]), c.weights), (int(emu.memmap["program_base"]), c.program)]
    for tid in emu.memmap["inputs"]:
        t = emu.tensors[tid]
        image.append((int(t["addr"]), rng.integers(-128, 128, int(np.prod(t["shape"])), dtype=np.int8).tobytes()))
    dev.trace(True)
    t0 = dev.cycles
    wall = time.perf_counter()
    run = execute(dev, image, int(emu.memmap["program_base"]), len(emu.program))
    wall = time.perf_counter() - wall
    if not run.done:
        raise RuntimeError(f"engine stopped with {run.error.name} at instruction {run.error_index}")
    ev = dev.events()
    mev = dev.memory_events()
    end = np.full(len(emu.program), -1, dtype=np.int64)
    start = np.full(len(emu.program), -1, dtype=np.int64)
    ret, st = ev[ev[:, 1] == 0], ev[ev[:, 1] == 1]
    end[ret[:, 3]] = ret[:, 0] - t0
    start[st[:, 3]] = st[:, 0] - t0
    # The run's cycle 0 is the cycle after CTRL was written; align the RTL's ends to it.
    offset = int(end.max()) - run.cycles
    end -= offset
    start -= offset
    if len(mev):
        mev[:, :3] -= t0 + offset
    layers = []
    prev_m = prev_r = 0
    for layer in emu.layers:
        lo, hi = layer["first"], layer["last"]
        m_end, r_end = int(trace.end[lo:hi + 1].max()), int(end[lo:hi + 1].max())
        layers.append({"name": f"{layer['kind']} #{layer['op_index']}", "model": m_end - prev_m, "rtl": r_end - prev_r})
        prev_m, prev_r = max(prev_m, m_end), max(prev_r, r_end)
    ops = {}
    for op in Opcode:
        sel = [i for i, ins in enumerate(emu.program) if ins.opcode == op]
        if sel:
            ops[op.name] = {"count": len(sel), "model_cycles": int(trace.cycles[sel].sum()),
                            "rtl_cycles": int((end[sel] - start[sel]).sum())}
    per_ins = [{"index": i, "op": ins.opcode.name, "model": int(trace.cycles[i]), "rtl": int(end[i] - start[i]),
                "model_start": int(trace.start[i]), "rtl_start": int(start[i])} for i, ins in enumerate(emu.program)]
    return {"model_total": trace.total, "rtl_total": run.cycles, "layers": layers, "opcodes": ops,
            "counters": run.counters, "instructions": per_ins, "sim_seconds": wall,
            "memory": mev.tolist(), "model_memory": model_memory.tolist()}


def report(result: dict, out: Path | None) -> str:
    lines = [f"{'layer':<40}{'model':>12}{'rtl':>12}{'rtl/model':>11}"]
    for row in result["layers"]:
        ratio = row["rtl"] / row["model"] if row["model"] else float("nan")
        lines.append(f"{row['name'][:39]:<40}{row['model']:>12}{row['rtl']:>12}{ratio:>11.4f}")
    m, r = result["model_total"], result["rtl_total"]
    lines.append(f"{'total':<40}{m:>12}{r:>12}{r / m:>11.4f}")
    sec = result["sim_seconds"]
    lines.append(f"simulated {r} engine cycles in {sec:.2f} s on Verilator ({r / sec:,.0f} cycles/s, with the trace on)")
    lines.append(f"{'opcode':<10}{'count':>8}{'model cycles':>14}{'rtl cycles':>12}")
    for op, row in result["opcodes"].items():
        lines.append(f"{op:<10}{row['count']:>8}{row['model_cycles']:>14}{row['rtl_cycles']:>12}")
    lines.append("counters: " + ", ".join(f"{k} {v}" for k, v in result["counters"].items()))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "cycles.json").write_text(json.dumps(result, indent=2))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [row["name"][-24:] for row in result["layers"]]
        x = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(names)), 4))
        ax.bar(x - 0.2, [row["model"] for row in result["layers"]], 0.4, label="cycle model")
        ax.bar(x + 0.2, [row["rtl"] for row in result["layers"]], 0.4, label="RTL (Verilator)")
        ax.set_xticks(x, names, rotation=90, fontsize=6)
        ax.set_ylabel("cycles")
        ax.set_title(f"cycles per layer: RTL {r} vs model {m} ({r / m:.4f})")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "cycles.png", dpi=120)
        plt.close(fig)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="a compiled .onda program")
    ap.add_argument("--out", type=Path, default=Path("build/cycles"))
    args = ap.parse_args(argv)
    c = ctr.parse(args.model.read_bytes(), str(args.model))
    print(report(measure(c), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
