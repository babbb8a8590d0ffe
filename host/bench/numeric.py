"""ResNet50 batch-1 latency: the golden model against LiteRT (XNNPACK and reference kernels).

    python -m onda.host.bench.numeric [--runs 7] [--model r50.tflite]

Without --model, a seeded-random ResNet50 featurizer is quantized once and cached under
build/bench/. Prints a table and writes build/bench/numeric.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path("build/bench")


def resnet50_model() -> Path:
    path = CACHE / "resnet50_seed0_int8.tflite"
    if not path.exists():
        from ..quantize import build_model, quantize, random_calibration

        CACHE.mkdir(parents=True, exist_ok=True)
        print("quantizing a seeded-random ResNet50 for the benchmark (once)...", file=sys.stderr)
        model, pre = build_model("resnet50", "random", 0, False)
        path.write_bytes(quantize(model, random_calibration(model, pre, 4, 0)))
    return path


def median_ms(fn, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--threads", type=int, default=2, help="threads for LiteRT and for NumPy's BLAS alike")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from ..reference import ReferenceModel
    from ..runtime import get_backend

    threadpool_limits(args.threads)

    path = args.model or resnet50_model()
    golden = get_backend("golden").load(path)
    spec = golden.inputs[0]
    x = np.random.default_rng(0).integers(-128, 128, size=(1,) + spec.shape[1:], dtype=np.int8)

    xnn = ReferenceModel(path, reference=False, preserve_all_tensors=False, threads=args.threads)
    ref = ReferenceModel(path, reference=True, preserve_all_tensors=False, threads=args.threads)
    rows = {
        "LiteRT XNNPACK": median_ms(lambda: xnn.invoke([x]), args.runs, warmup=2),
        "golden model (NumPy)": median_ms(lambda: golden.run([x]), args.runs),
        "LiteRT BUILTIN_REF": median_ms(lambda: ref.invoke([x]), max(5, args.runs // 2)),
    }
    base = rows["LiteRT XNNPACK"]
    print(f"\nResNet50 int8, batch 1, median of {args.runs} runs, {args.threads} threads ({path.name})")
    print(f"{'runner':<24}{'ms':>10}{'x XNNPACK':>12}")
    for name, ms in rows.items():
        print(f"{name:<24}{ms:>10.1f}{ms / base:>12.2f}")
    g, r = rows["golden model (NumPy)"], rows["LiteRT BUILTIN_REF"]
    print(f"targets: golden <= 15x XNNPACK: {'met' if g <= 15 * base else 'MISSED'} ({g / base:.1f}x); "
          f"golden faster than BUILTIN_REF: {'met' if g < r else 'MISSED'} ({r / g:.1f}x faster)")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "numeric.json").write_text(json.dumps({"model": str(path), "runs": args.runs, "median_ms": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
