"""Scoring-service bench: p50/p99 latency and throughput at 1, 8 and 32 concurrent clients, backend compute apart;
REST beside gRPC at 1 client.

A real server process (TLS, keys on) on the default backend scores a 224x224 JPEG (a shipped sample photo)
sent by PredictionClient threads over gRPC; then one gRPC client and one keep-alive HTTPS client of TensorFlow
Serving's REST API (``{"instances": [{"b64": ...}]}``, the same image) take turns, so both see the same load. Each answer carries the backend's compute time for its batch
(``x-onda-compute-ms``), so the service's own overhead (decode, preprocess, quantize, queueing, RPC, TLS,
classifier) is latency minus compute. At concurrency 1 that overhead is the figure the target (<= 5 ms p50)
is about. ``--model small`` (default) is a small int8 CNN on the same 224x224x3 input, so the service, not
the simulated engine, dominates; ``--model resnet50`` uses the default ResNet50 pipeline (slow on a
simulated backend). Writes build/bench/service.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

OUT = Path("build") / "bench"


def small_pipeline(path: Path) -> Path:
    if path.is_file():
        return path
    import keras

    from ..pipeline import FeaturizerStage, ImagePreprocessing, ImagePreprocessStage, KerasStage, ModelDefinition
    from ..pipeline.resnet50 import calibration_set
    from ..quantizer import quantize

    keras.utils.set_random_seed(0)
    featurizer = keras.Sequential([keras.Input((224, 224, 3)), keras.layers.Conv2D(8, 3, strides=4, activation="relu"),
                                   keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
                                   keras.layers.GlobalAveragePooling2D()], name="small_featurizer")
    classifier = keras.Sequential([keras.Input((32,)), keras.layers.Dense(1000, activation="softmax")])
    md = ModelDefinition("small")
    md.pipeline += [ImagePreprocessStage(), FeaturizerStage(quantize(featurizer, calibration_set(
        ImagePreprocessing(), 2, 0), progress=lambda s: None)), KerasStage(classifier)]
    return md.save(path)


def jpeg_224() -> bytes:
    from PIL import Image

    from ..pipeline.resnet50 import sample_images

    im = Image.open(next(p for p in sample_images() if p.name == "chelsea.jpg")).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)).resize((224, 224), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def preprocess_alone(data: bytes, n: int = 200) -> float:
    from ..pipeline import ImagePreprocessing
    from ..pipeline.preprocess import QuantizedPreprocessing

    pre = QuantizedPreprocessing(ImagePreprocessing(), 0.9, -10)  # what the server runs
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pre(data)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def start_server(model_zip: Path, backend: str, workdir: Path, extra: list[str] = (),
                 log_name: str = "server.log") -> tuple[subprocess.Popen, int, int, Path, str]:
    """A server process (TLS, keys file) on free ports; ``extra`` arguments added (the cluster bench's
    ``--cluster ...``). Returns the process, gRPC and REST ports, certificate and key."""
    from ..service.keys import write_keys
    from ..service.tls import write_self_signed

    cert, key = write_self_signed(workdir / "tls")
    write_keys(workdir / "keys.json", {"primary": "bench-key", "secondary": "unused"})
    port_file, rest_file = workdir / "port", workdir / "rest_port"
    port_file.unlink(missing_ok=True)
    log = open(workdir / log_name, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "onda.host.service", "--model", f"bench={model_zip}",
                             "--backend", backend, "--tls-cert", str(cert), "--tls-key", str(key),
                             "--keys-file", str(workdir / "keys.json"), "--port-file", str(port_file),
                             "--rest-port", "0", "--rest-port-file", str(rest_file),
                             "--max-batch", "8", "--max-wait-ms", "5", *extra], stdout=log, stderr=subprocess.STDOUT)
    t_end = time.monotonic() + 300
    while not port_file.is_file():
        if proc.poll() is not None or time.monotonic() > t_end:
            raise SystemExit(f"bench: server did not start; see {workdir / log_name}")
        time.sleep(0.1)
    return proc, int(port_file.read_text()), int(rest_file.read_text()), cert, "bench-key"


def run_level(port: int, cert: Path, key: str, data: bytes, concurrency: int, requests: int) -> dict:
    from ..client import PredictionClient

    import grpc

    clients = [PredictionClient("localhost", port, use_ssl=True, access_token=key, root_certificates=cert,
                                retry_delays=(), timeout=900) for _ in range(concurrency)]
    for c in clients:  # warm-up: channels, TLS handshakes
        c.score_file(data)
    records: list[tuple[float, float, int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(c):
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            try:
                c.score_file(data)
            except grpc.RpcError as e:
                with lock:
                    errors.append(f"{e.code().name}: {e.details()}")
                continue
            with lock:
                records.append((c.last.latency_s, c.last.compute_s, c.last.batch_images, c.last.queued_s or 0.0))

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    if not records:
        raise SystemExit(f"bench: every request at concurrency {concurrency} failed: {errors[0]}")
    lat = np.array([r[0] for r in records]) * 1e3
    comp = np.array([r[1] for r in records]) * 1e3
    return {"concurrency": concurrency, "requests": len(records), "errors": len(errors), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "throughput_per_s": len(records) / wall,
            "compute_p50_ms": float(np.percentile(comp, 50)),
            "mean_batch": float(np.mean([r[2] for r in records])),
            "overhead_p50_ms": float(np.percentile(lat - comp, 50)),
            "queue_p50_ms": float(np.percentile([r[3] * 1e3 for r in records], 50))}


def _row(protocol: str, lat_ms: list[float], comp_ms: list[float], batch: list[int], errors: int) -> dict:
    lat, comp = np.array(lat_ms), np.array(comp_ms)
    return {"protocol": protocol, "concurrency": 1, "requests": len(lat), "errors": errors,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "throughput_per_s": float(len(lat) / (lat.sum() / 1e3)), "compute_p50_ms": float(np.percentile(comp, 50)),
            "mean_batch": float(np.mean(batch)), "overhead_p50_ms": float(np.percentile(lat - comp, 50))}


def rest_beside_grpc(port: int, rest_port: int, cert: Path, key: str, data: bytes, requests: int) -> list[dict]:
    """One client per protocol, taking turns (a gRPC call, then a REST call, ...) so that both see the same
    machine load: PredictionClient over gRPC, and a keep-alive HTTPS connection posting TensorFlow Serving's
    JSON (``{"instances": [{"b64": ...}]}``) over REST. The first call of each is a warm-up."""
    import base64
    import http.client
    import ssl

    from ..client import PredictionClient

    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn = http.client.HTTPSConnection("localhost", rest_port, timeout=900,
                                       context=ssl.create_default_context(cafile=str(cert)))
    client = PredictionClient("localhost", port, use_ssl=True, access_token=key, root_certificates=cert,
                              retry_delays=(), timeout=900)
    grpc_rec: tuple[list, list, list] = ([], [], [])
    rest_rec: tuple[list, list, list] = ([], [], [])
    rest_errors = 0
    for i in range(requests + 1):
        client.score_file(data)
        if i:
            for column, v in zip(grpc_rec, (client.last.latency_s * 1e3, client.last.compute_s * 1e3,
                                            client.last.batch_images)):
                column.append(v)
        t0 = time.perf_counter()
        conn.request("POST", "/v1/models/bench:predict", body=body, headers=headers)
        r = conn.getresponse()
        answer = r.read()
        t = time.perf_counter() - t0
        if r.status != 200:
            if i == 0:
                raise SystemExit(f"bench: REST answered {r.status}: {answer[:200]!r}")
            rest_errors += 1
        elif i:
            for column, v in zip(rest_rec, (t * 1e3, float(r.getheader("x-onda-compute-ms")),
                                            int(r.getheader("x-onda-batch")))):
                column.append(v)
    conn.close()
    client.close()
    return [_row("grpc", *grpc_rec, 0), _row("rest", *rest_rec, rest_errors)]


def main(argv: list[str] | None = None) -> int:
    from ..runtime import default_backend

    p = argparse.ArgumentParser(prog="python -m onda.host.bench.service", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["small", "resnet50"], default="small")
    p.add_argument("--backend", default=None)
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--requests", type=int, default=0, help="requests per level (default: max(32, 3 x concurrency))")
    args = p.parse_args(argv)
    backend = args.backend or default_backend()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.model == "small":
        model_zip = small_pipeline(OUT / "small.zip")
    else:
        from ..pipeline.resnet50 import build_resnet50

        model_zip, _ = build_resnet50(Path("build") / "demo" / "resnet50.zip", say=print)
    data = jpeg_224()
    pre_ms = preprocess_alone(data) * 1e3
    proc, port, rest_port, cert, key = start_server(model_zip, backend, OUT)
    rows, paired = [], []
    try:
        for c in [int(x) for x in args.levels.split(",")]:
            n = args.requests or max(32, 3 * c)
            rows.append(dict(run_level(port, cert, key, data, c, n), protocol="grpc"))
        paired = rest_beside_grpc(port, rest_port, cert, key, data, args.requests or 64)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    title = (f"scoring service: model {args.model}, backend {backend}, TLS + key, 224x224 JPEG "
             f"({len(data)} bytes), max batch 8, max wait 5 ms")
    print(title)
    print(f"preprocessing alone (decode, resize, crop, mean, quantize): {pre_ms:.2f} ms median")
    head = (f"{'protocol':<8} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>8} "
            f"{'backend p50 ms':>15} {'mean batch':>10} {'overhead p50 ms':>16} {'of it queued p50':>17}")

    def queued(r):
        return f"{r['queue_p50_ms']:.2f}" if "queue_p50_ms" in r else "-"

    def table(rows):
        print(head)
        print("-" * len(head))
        for r in rows:
            if r["errors"]:
                print(f"  ({r['errors']} failed requests at {r['concurrency']} clients)")
            print(f"{r['protocol']:<8} {r['concurrency']:>7} {r['requests']:>8} {r['p50_ms']:>8.2f} "
                  f"{r['p99_ms']:>8.2f} {r['throughput_per_s']:>8.2f} {r['compute_p50_ms']:>15.2f} "
                  f"{r['mean_batch']:>10.2f} {r['overhead_p50_ms']:>16.2f} {queued(r):>17}")

    table(rows)
    print("overhead = latency - backend compute of the request's batch (decode, preprocess, queue, RPC, TLS, "
          "classifier); target <= 5 ms p50 at 1 client; queued = waiting for a device (the batch before) and "
          "for the batch to fill")
    print("\nREST beside gRPC, 1 client each, taking turns (TensorFlow Serving's JSON with the image in base64):")
    table(paired)
    print(f"REST - gRPC at p50: {paired[1]['p50_ms'] - paired[0]['p50_ms']:+.2f} ms latency, "
          f"{paired[1]['overhead_p50_ms'] - paired[0]['overhead_p50_ms']:+.2f} ms overhead")
    report = {"title": title, "preprocess_ms": pre_ms, "rows": rows, "rest_beside_grpc": paired}
    (OUT / "service.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
