"""Whole-engine RTL simulation speed: the Verilator harness, cocotb on Verilator and Amaranth's
simulator on the same compiled program, in one run; and one ResNet50 image through the RTL.

    python -m onda.host.bench.rtl [--engines ulx3s-85f icebreaker] [--no-resnet50] [--model r50.tflite]

Every simulator runs the shipped digits classifier compiled for each engine, bit-exact (the
harness's and cocotb's runs are checked against the emulator; a fast wrong simulation does not
count). Speeds are engine clock cycles per simulated second of wall time, builds excluded:
the harness's run is timed around the run alone; cocotb's is the bench's own clock (its Python
memory and register driver included, as the benches run); Amaranth's is the difference between
two runs of different lengths, so elaboration drops out. The ResNet50 row is one image through
``--backend rtl`` (weights and program written once at load, not timed; the image in, every cycle
run, the output read), its cycles beside the cycle model's. Prints the table with the targets,
writes build/bench/rtl.json and build/bench/rtl.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path("build/bench")
TARGET_RESNET50_SECONDS = 180.0  # one image on 2 cores (the aim: 60)
TARGET_ULX3S_CYCLES_PER_SECOND = 300_000
AMARANTH_CYCLES = (2_000, 8_000)  # two run lengths: their difference times Amaranth's simulation alone


def _digits(engine: str):
    from ..compiler import compile_tflite
    from ..models import digits

    path = CACHE / f"digits-{engine}.onda"
    CACHE.mkdir(parents=True, exist_ok=True)
    compile_tflite(digits.TFLITE, engine).write(path)
    return path


def _inputs(model, seed: int = 0) -> list[np.ndarray]:
    from onda.sim.engine.program_cases import random_inputs

    return random_inputs(model, 1, seed)


def harness_speed(path: Path) -> dict:
    """The Verilator harness through the rtl backend: one image, checked against the emulator."""
    from ..runtime import get_backend

    rtl, emu = get_backend("rtl", simulator="verilator").load(path), get_backend("emulator").load(path)
    x = _inputs(emu)
    rtl.prepare()  # builds (or loads) the model and writes the weights: not timed
    t0 = time.perf_counter()
    got = rtl.run(x)
    seconds = time.perf_counter() - t0
    want = emu.run(x)
    assert all(np.array_equal(g, w) for g, w in zip(got, want)), "the Verilator harness disagrees with the emulator"
    return {"cycles": rtl.measured_cycles, "seconds": seconds, "model_cycles": emu.cycle_trace().total}


def cocotb_speed(path: Path, engine: str) -> dict:
    from onda.hw.config import load_config
    from onda.hw.engine.engine import Engine
    from onda.sim.cocotb.engine_job import engine_job, program_runs
    from onda.sim.cocotb.harness import run_bench

    from ..runtime.emulator import EmulatorBackend

    cfg = load_config(engine)
    emu = EmulatorBackend().load(path)
    runs = program_runs(emu.container, _inputs(emu), "digits")
    name = f"onda_engine_{engine.replace('-', '_')}"
    print(f"cocotb on Verilator, {engine} (the build takes minutes the first time)...", file=sys.stderr, flush=True)
    r = run_bench(lambda: Engine(cfg), name, "onda.sim.cocotb.engine_bench",
                  engine_job(cfg, runs, stall=0.0, jitter=0), sim="verilator", waves=False, tag=name,
                  key=("Engine", cfg.fingerprint))
    assert not r["failures"], r["failures"]
    return {"cycles": r["clock_cycles"], "seconds": r["seconds"]}


def amaranth_speed(path: Path) -> dict:
    from onda.sim.engine.engine_sim import AmaranthEngine
    from onda.sim.engine.program_run import RunTimeout, execute, program_image

    from ..runtime.emulator import EmulatorBackend

    model = EmulatorBackend().load(path)
    x = _inputs(model)
    timed = []
    for n in AMARANTH_CYCLES:
        image = program_image(model.container) + [
            (int(model.tensors[tid]["addr"]), np.ascontiguousarray(v[0]).tobytes())
            for tid, v in zip(model.memmap["inputs"], x)]
        t0 = time.perf_counter()
        try:
            execute(AmaranthEngine(model.config), image, int(model.memmap["program_base"]), len(model.program),
                    max_cycles=n)
        except RunTimeout:
            pass
        else:
            raise RuntimeError(f"the program ended within {n} cycles: a longer one is needed to time Amaranth")
        timed.append(time.perf_counter() - t0)
    return {"cycles": AMARANTH_CYCLES[1] - AMARANTH_CYCLES[0], "seconds": timed[1] - timed[0]}


def _stale(path: Path, tflite: Path, engine: str) -> bool:
    """A cached program is reused only if it is newer than its model and was built for this engine
    configuration as it is now (and in this container version)."""
    from onda.hw import container as ctr
    from onda.hw.config import load_config

    if not path.exists() or path.stat().st_mtime < tflite.stat().st_mtime:
        return True
    try:
        return ctr.read(path).fingerprint != load_config(engine).fingerprint
    except ctr.ContainerError:
        return True


def resnet50(model: Path | None, engine: str) -> dict:
    from ..compiler import compile_tflite
    from ..runtime import get_backend
    from .numeric import resnet50_model

    tflite = model or resnet50_model()
    path = CACHE / f"{tflite.stem}-{engine}.onda"
    if _stale(path, tflite, engine):
        compile_tflite(tflite, engine).write(path)
    rtl = get_backend("rtl", simulator="verilator").load(path)
    rtl.prepare()  # not timed: the model is built once per engine (cached), the weights written once per load
    x = _inputs(rtl)
    t0 = time.perf_counter()
    got = rtl.run(x)
    seconds = time.perf_counter() - t0
    want = get_backend("emulator").load(path).run(x)
    assert all(np.array_equal(g, w) for g, w in zip(got, want)), "ResNet50 on the RTL disagrees with the emulator"
    return {"cycles": rtl.measured_cycles, "seconds": seconds, "model_cycles": rtl.cycle_trace().total}


def _plot(rows: dict, engines: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    sims = list(rows)
    width = 0.8 / len(engines)
    for j, engine in enumerate(engines):
        values = [rows[s][engine]["cycles_per_second"] for s in sims]
        bars = ax.bar([i + j * width for i in range(len(sims))], values, width, label=engine)
        ax.bar_label(bars, labels=[f"{v / 1e3:,.1f}k" for v in values], fontsize=8)
    ax.axhline(TARGET_ULX3S_CYCLES_PER_SECOND, color="grey", ls="--", lw=1, label="target (ulx3s-85f)")
    ax.set_yscale("log")
    ax.set_xticks([i + width * (len(engines) - 1) / 2 for i in range(len(sims))], sims)
    ax.set_ylabel("engine cycles / s")
    ax.set_title("whole-engine RTL simulation speed (digits classifier)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", nargs="+", default=["ulx3s-85f", "icebreaker"])
    ap.add_argument("--no-resnet50", action="store_true", help="skip the ResNet50 image")
    ap.add_argument("--no-cocotb", action="store_true", help="skip cocotb (its Verilator build takes minutes once)")
    ap.add_argument("--model", type=Path, help="int8 ResNet50 .tflite (default: a seeded-random one, cached)")
    ap.add_argument("--json", type=Path, default=CACHE / "rtl.json")
    args = ap.parse_args(argv)

    sims = {"verilator harness": lambda p, e: harness_speed(p)}
    if not args.no_cocotb:
        sims["cocotb + verilator"] = cocotb_speed
    sims["amaranth sim"] = lambda p, e: amaranth_speed(p)
    rows: dict[str, dict[str, dict]] = {s: {} for s in sims}
    for engine in args.engines:
        path = _digits(engine)
        for name, fn in sims.items():
            print(f"{name}, {engine}...", file=sys.stderr, flush=True)
            r = fn(path, engine)
            r["cycles_per_second"] = r["cycles"] / r["seconds"]
            rows[name][engine] = r
    print("whole-engine RTL simulation speed: the digits classifier compiled per engine, engine cycles per "
          "second of wall time (builds excluded)")
    print(f"{'simulator':<20}" + "".join(f"{e:>14}" for e in args.engines) + "   harness / this")
    for name, per in rows.items():
        ratio = " ".join(f"{rows['verilator harness'][e]['cycles_per_second'] / per[e]['cycles_per_second']:>6.1f}x"
                         for e in args.engines)
        print(f"{name:<20}" + "".join(f"{per[e]['cycles_per_second']:>14,.0f}" for e in args.engines) + f"   {ratio}")
    h = rows["verilator harness"]
    if "ulx3s-85f" in h:
        v = h["ulx3s-85f"]["cycles_per_second"]
        print(f"target: at least {TARGET_ULX3S_CYCLES_PER_SECOND:,} cycles/s on ulx3s-85f: "
              f"{v:,.0f} ({v / TARGET_ULX3S_CYCLES_PER_SECOND:.2f}x the target)")
    report = {"speed": rows}
    if not args.no_resnet50:
        print("ResNet50, one image through the RTL (ulx3s-85f)...", file=sys.stderr, flush=True)
        r = resnet50(args.model, "ulx3s-85f")
        r["cycles_per_second"] = r["cycles"] / r["seconds"]
        report["resnet50"] = r
        print(f"ResNet50 featurizer, one image through the RTL (ulx3s-85f, Verilator harness): "
              f"{r['seconds']:.1f} s, {r['cycles']:,} cycles ({r['cycles_per_second']:,.0f} cycles/s); "
              f"cycle model {r['model_cycles']:,} (RTL / model {r['cycles'] / r['model_cycles']:.4f})")
        print(f"target: at most {TARGET_RESNET50_SECONDS:.0f} s (aim 60 s): "
              f"{r['seconds'] / TARGET_RESNET50_SECONDS:.2f}x the target time")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    _plot(rows, args.engines, args.json.with_suffix(".png"))
    print(f"wrote {args.json} and {args.json.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
