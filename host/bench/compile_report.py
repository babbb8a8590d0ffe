"""ResNet50 on the engine configurations: cycles, roofline ratio, MAC utilization, emulator speed;
then Brainwave's other featurizers (ResNet152, DenseNet-121) on the same engines.

    python -m onda.host.bench.compile_report [--model r50.tflite] [--engines ulx3s-85f large] [--runs 3]
        [--catalogue resnet152 densenet121]

For each engine: compile, run the cycle model, print total cycles, ms and images/s at the clock,
the ratio of total cycles to the roofline bound (sum over layers of max(MACs / array, bytes moved
/ bandwidth); target <= 1.25) and the MAC utilization of compute-bound layers (target >= 85%).
Then the functional emulator's time against the golden model's on the same batch (target: at
most 3x), as CPU time (robust on a shared machine) and wall time, both with single-threaded BLAS
(set OPENBLAS_NUM_THREADS to change that). Writes build/bench/compile_report.json.
"""

from __future__ import annotations

import os

# Both models are timed with single-threaded BLAS unless the caller says otherwise: on a shared
# machine, threads spinning on many small GEMMs measure the machine's load, not the emulator.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from .numeric import CACHE, application_model, resnet50_model


def _best(fn, runs: int) -> tuple[float, float]:
    """(min CPU seconds, min wall seconds) over ``runs`` calls after one warm-up."""
    fn()
    cpu, wall = [], []
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--engines", nargs="+", default=["ulx3s-85f", "large"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--catalogue", nargs="*", default=["resnet152", "densenet121"],
                    help="further keras.applications featurizers (seeded random weights) for the engine table")
    args = ap.parse_args(argv)

    from onda.hw.config import load_config

    from ..compiler import CompileError, compile_tflite
    from ..compiler.report import build_report
    from ..runtime.emulator import EmulatedModel
    from ..runtime.golden import GoldenBackend

    from onda.sim.golden import threading as golden_threads

    golden_threads.set_threads(int(os.environ["OPENBLAS_NUM_THREADS"]))  # the golden kernels' threads too
    path = args.model or resnet50_model()
    results = {"model": str(path), "engines": {}}
    print(f"{'engine':<12} {'MACs':>5} {'cycles':>10} {'ms':>9} {'img/s':>8} {'roofline':>10} {'ratio':>6} "
          f"{'CB util':>8} {'util':>6}  targets")
    models = {}
    for name in args.engines:
        cfg = load_config(name)
        t0 = time.perf_counter()
        model = EmulatedModel(compile_tflite(path, cfg), f"{path} for {name}")
        compile_s = time.perf_counter() - t0
        models[name] = model
        r = build_report(model.memmap, cfg, model.cycle_trace())
        s = r.summary()
        ok = ("ratio OK" if r.roofline_ratio <= 1.25 else "ratio MISSED") + ", " + \
             ("util OK" if r.compute_bound_utilization >= 0.85 else "util MISSED")
        print(f"{name:<12} {cfg.macs:>5} {r.total_cycles:>10} {r.ms:>9.3f} {r.images_per_s:>8.2f} "
              f"{r.roofline_cycles:>10.0f} {r.roofline_ratio:>6.3f} {r.compute_bound_utilization:>8.1%} "
              f"{r.utilization:>6.1%}  {ok}")
        s["compile_s"] = round(compile_s, 2)
        results["engines"][name] = s

    golden = GoldenBackend().load(path)
    x = np.random.default_rng(0).integers(-128, 128, size=(args.batch,) + golden.inputs[0].shape[1:], dtype=np.int8)
    g_cpu, g_wall = _best(lambda: golden.run([x]), args.runs)
    print(f"\nfunctional speed, ResNet50 batch {args.batch} (best of {args.runs}): golden {g_cpu:.2f} s CPU / "
          f"{g_wall:.2f} s wall")
    results["golden_s"] = {"cpu": round(g_cpu, 3), "wall": round(g_wall, 3)}
    for name, model in models.items():
        e_cpu, e_wall = _best(lambda: model.run([x]), args.runs)
        ratio = e_cpu / g_cpu
        print(f"  emulator ({name}): {e_cpu:.2f} s CPU / {e_wall:.2f} s wall = {ratio:.2f}x golden CPU "
              f"({'OK' if ratio <= 3 else 'MISSED'}: target <= 3x)")
        results["engines"][name]["emulator_s"] = {"cpu": round(e_cpu, 3), "wall": round(e_wall, 3),
                                                  "x_golden_cpu": round(ratio, 3)}
    if args.catalogue:
        print(f"\n{'model':<12} {'engine':<12} {'GMACs':>6} {'cycles':>10} {'ms':>9} {'img/s':>8} {'ratio':>6} "
              f"{'CB util':>8} {'util':>6}")
    results["catalogue"] = {}
    for app in args.catalogue:
        mpath = application_model(app)
        for name in args.engines:
            cfg = load_config(name)
            try:
                model = EmulatedModel(compile_tflite(mpath, cfg), f"{mpath} for {name}")
            except CompileError as e:  # e.g. ResNet152's 59 MB of weights on the ULX3S's 32 MB
                print(f"{app:<12} {name:<12} does not compile: {e}")
                results["catalogue"].setdefault(app, {})[name] = {"error": str(e)}
                continue
            r = build_report(model.memmap, cfg, model.cycle_trace())
            print(f"{app:<12} {name:<12} {r.total_macs / 1e9:>6.2f} {r.total_cycles:>10} {r.ms:>9.3f} {r.images_per_s:>8.2f} "
                  f"{r.roofline_ratio:>6.3f} {r.compute_bound_utilization:>8.1%} {r.utilization:>6.1%}")
            results["catalogue"].setdefault(app, {})[name] = r.summary()
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "compile_report.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {CACHE / 'compile_report.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
