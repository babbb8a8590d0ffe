"""ResNet50 int8: the golden model and the ISA emulator against LiteRT, in one run, at batch 1 and 8,
with 1 and 2 threads.

    python -m onda.host.bench.numeric [--runs 5] [--model r50.tflite] [--threads 1 2] [--batches 1 8]

Without --model, a seeded-random ResNet50 featurizer is quantized once and cached under build/bench/.
For each thread count (LiteRT's, and the golden kernels' through ``onda.sim.golden.threading``) and
batch, the runners are timed in interleaved rounds (XNNPACK, golden, emulator, XNNPACK, ...) so a
change in the machine's load hits all of them alike; each row is the best round, in ms per image
(LiteRT's model has batch 1: a batch of 8 is 8 invokes). LiteRT BUILTIN_REF (the bit-exact oracle)
runs at batch 1 only. The emulator runs the program compiled for ``--engine`` (a served request's
path). Prints the table with the targets and writes build/bench/numeric.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from onda.hw.config import DEFAULT_ENGINE

CACHE = Path("build/bench")
TARGET_GOLDEN_X_XNNPACK = 8.0  # at batch 1, 2 threads (the aim: 4)
TARGET_EMULATOR_X_GOLDEN = 1.2


def application_model(name: str) -> Path:
    """A keras.applications featurizer with seeded random weights, quantized once and cached."""
    path = CACHE / f"{name}_seed0_int8.tflite"
    if not path.exists():
        from ..quantizer import build_model, quantize, random_calibration

        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"quantizing a seeded-random {name} for the benchmark (once)...", file=sys.stderr)
        model, pre = build_model(name, "random", 0, False)
        path.write_bytes(quantize(model, random_calibration(model, pre, 4, 0)))
    return path


def resnet50_model() -> Path:
    return application_model("resnet50")


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def interleaved_best_ms(runners: dict, rounds: int) -> dict[str, float]:
    """Best wall time of each runner over ``rounds`` interleaved rounds, after one warm-up each."""
    for fn in runners.values():
        fn()
    best = dict.fromkeys(runners, float("inf"))
    for _ in range(rounds):
        for name, fn in runners.items():
            best[name] = min(best[name], _once(fn))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="interleaved rounds per configuration")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--engine", default=DEFAULT_ENGINE, help="engine the emulator's program is compiled for")
    args = ap.parse_args(argv)

    from onda.sim.golden import loops, threading

    from ..verify import ReferenceModel
    from ..runtime import get_backend

    path = args.model or resnet50_model()
    golden = get_backend("golden").load(path)
    t0 = time.perf_counter()
    emulator = get_backend("emulator", engine=args.engine).load(path)
    emulator.plan()
    load_s = time.perf_counter() - t0
    spec = golden.inputs[0]
    rng = np.random.default_rng(0)
    xs = {b: rng.integers(-128, 128, size=(b,) + spec.shape[1:], dtype=np.int8) for b in args.batches}
    from onda.sim.golden import exact_gemm, int8_gemm

    gemm = "native int8 GEMM (AVX-512 VNNI)" if exact_gemm.native() else f"BLAS GEMM ({int8_gemm.available()})"
    kernels = f"{gemm} + " + ("numba loops" if loops.enabled() else "NumPy (fallback)")
    print(f"ResNet50 int8 ({path.name}), best of {args.runs} interleaved rounds, ms per image; golden kernels: "
          f"{kernels}; emulator: program for {args.engine} (compile + plan {load_s:.1f} s, once per model)")
    head = (f"{'threads':>7} {'batch':>5} {'XNNPACK':>9} {'golden':>9} {'emulator':>9} {'BUILTIN_REF':>11} "
            f"{'golden/XNNPACK':>15} {'emulator/golden':>16}")
    print(head)
    print("-" * len(head))
    rows = []
    for th in args.threads:
        threading.set_threads(th)
        xnn = ReferenceModel(path, reference=False, preserve_all_tensors=False, threads=th)
        ref = ReferenceModel(path, reference=True, preserve_all_tensors=False, threads=th)
        for b in args.batches:
            x = xs[b]
            singles = [x[i:i + 1] for i in range(b)]

            def run_xnn(singles=singles):
                for s in singles:
                    xnn.invoke([s])
            best = interleaved_best_ms({"XNNPACK": run_xnn, "golden": lambda x=x: golden.run([x]),
                                        "emulator": lambda x=x: emulator.run([x])}, args.runs)
            per = {k: v / b for k, v in best.items()}
            if b == 1:
                rounds = max(1, args.runs // 3)
                per["BUILTIN_REF"] = interleaved_best_ms({"r": lambda x=x: ref.invoke([x])}, rounds)["r"]
            row = {"threads": th, "batch": b, "ms_per_image": per,
                   "golden_x_xnnpack": per["golden"] / per["XNNPACK"],
                   "emulator_x_golden": per["emulator"] / per["golden"]}
            rows.append(row)
            ref_s = f"{per['BUILTIN_REF']:>11.1f}" if "BUILTIN_REF" in per else f"{'':>11}"
            print(f"{th:>7} {b:>5} {per['XNNPACK']:>9.1f} {per['golden']:>9.1f} {per['emulator']:>9.1f} {ref_s} "
                  f"{row['golden_x_xnnpack']:>15.2f} {row['emulator_x_golden']:>16.2f}")
    key = next((r for r in rows if r["threads"] == 2 and r["batch"] == 1), rows[0])
    g, e = key["golden_x_xnnpack"], key["emulator_x_golden"]
    print(f"targets at batch {key['batch']}, {key['threads']} threads: golden <= {TARGET_GOLDEN_X_XNNPACK:g}x XNNPACK "
          f"(aim 4x): {'met' if g <= TARGET_GOLDEN_X_XNNPACK else 'MISSED'} ({g:.2f}x); emulator <= "
          f"{TARGET_EMULATOR_X_GOLDEN:g}x golden: {'met' if e <= TARGET_EMULATOR_X_GOLDEN else 'MISSED'} ({e:.2f}x)")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "numeric.json").write_text(json.dumps({"model": str(path), "runs": args.runs, "kernels": kernels,
                                                    "engine": args.engine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
