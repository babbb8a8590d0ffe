"""Cluster bench: throughput and p50/p99 at 32 clients through an ``onda serve --cluster`` front end on 1, 2 and 4
emulator device actors of a local Ray cluster, beside the single-host server with as many devices, measured in the
same run; and at 1 client, the cluster's own overhead per request (its latency minus the single host's).

Same server, model and image as the service bench (``python -m onda.host.bench.service``: the small int8 CNN on a
224x224 JPEG, TLS + key, max batch 8, max wait 5 ms). The cluster is a head and worker nodes on this machine
(``onda.host.cluster.local``); nodes are added between levels (1, then 1 more, then 2 more units of ``emulator``)
and the front end is restarted for each, then warmed until every device has answered. On one machine the actors
share its cores with the front end and with each other, so the ratio says what the cluster's path (Ray calls,
object transfer, one more process hop) costs, not what more machines would add. Writes build/bench/cluster.json
and build/bench/cluster.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .service import OUT, jpeg_224, run_level, small_pipeline, start_server  # noqa: E402


def _stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except Exception:  # noqa: BLE001
        proc.kill()


def _warm(port: int, cert: Path, key: str, data: bytes, devices: int, timeout: float = 180.0) -> set[str]:
    """Score from 2 x devices clients until ``devices`` distinct device actors have answered."""
    from concurrent.futures import ThreadPoolExecutor

    from ..client import PredictionClient

    clients = [PredictionClient("localhost", port, use_ssl=True, access_token=key, root_certificates=cert,
                                retry_delays=(1, 2), timeout=300) for _ in range(2 * devices)]
    seen: set[str] = set()
    t_end = time.monotonic() + timeout

    def one(c):
        c.score_file(data)
        return c.last.device

    with ThreadPoolExecutor(len(clients)) as ex:
        while len(seen) < devices:
            if time.monotonic() > t_end:
                raise SystemExit(f"bench: only {len(seen)} of {devices} device actors answered in {timeout:.0f} s")
            seen |= set(ex.map(one, clients))
    for c in clients:
        c.close()
    return seen


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({r["devices"] for r in rows})
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    for k, (kind, color) in enumerate((("single host", "tab:blue"), ("cluster", "tab:orange"))):
        sel = [next(r for r in rows if r["kind"] == kind and r["devices"] == n and r["concurrency"] == 32)
               for n in levels]
        xs = [i + (k - 0.5) * width for i in range(len(levels))]
        a.bar(xs, [r["throughput_per_s"] for r in sel], width, label=kind, color=color)
        b.bar(xs, [r["p50_ms"] for r in sel], width, color=color, label=f"{kind} p50")
        b.scatter(xs, [r["p99_ms"] for r in sel], color="black", marker="_", s=200, zorder=3)
    for ax, title in ((a, "images/s at 32 clients"), (b, "latency ms at 32 clients (bar p50, tick p99)")):
        ax.set_xticks(range(len(levels)), [f"{n} device(s)" for n in levels])
        ax.set_title(title)
    a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m onda.host.bench.cluster", description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="1,2,4", help="device counts (ascending; default 1,2,4)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=0, help="requests per level (default max(96, 3 x clients))")
    p.add_argument("--single-requests", type=int, default=48, help="requests at 1 client (overhead per request)")
    args = p.parse_args(argv)
    from ..cluster.local import LocalCluster

    levels = [int(x) for x in args.devices.split(",")]
    n_req = args.requests or max(96, 3 * args.clients)
    OUT.mkdir(parents=True, exist_ok=True)
    model_zip = small_pipeline(OUT / "small.zip")
    data = jpeg_224()
    rows: list[dict] = []

    def measure(kind: str, devices: int, extra: list[str], warm_devices: int = 0) -> None:
        proc, port, _, cert, key = start_server(model_zip, "emulator", OUT, extra, log_name=f"cluster-{kind[0]}.log")
        try:
            if warm_devices:
                _warm(port, cert, key, data, warm_devices)
            for clients, n in ((1, args.single_requests), (args.clients, n_req)):
                r = run_level(port, cert, key, data, clients, n)
                rows.append(dict(r, kind=kind, devices=devices))
                print(f"  {kind:<11} {devices} device(s) {clients:>3} client(s): {r['throughput_per_s']:7.1f} img/s, "
                      f"p50 {r['p50_ms']:7.2f} ms, p99 {r['p99_ms']:7.2f} ms", flush=True)
        finally:
            _stop(proc)

    print(f"cluster bench: {args.clients} clients, devices {levels}; single host first, then a local Ray cluster",
          flush=True)
    for n in levels:
        measure("single host", n, ["--devices", str(n)])
    with LocalCluster() as cluster:
        have = 0
        for n in levels:
            if n > have:
                cluster.add_node({"emulator": n - have})
                have = n
            measure("cluster", n, ["--cluster", cluster.address], warm_devices=n)

    def row(kind, n, c):
        return next(r for r in rows if r["kind"] == kind and r["devices"] == n and r["concurrency"] == c)

    title = ("cluster bench: small int8 CNN, 224x224 JPEG, TLS + key, max batch 8; emulator devices; local Ray "
             "cluster (head + worker nodes on this machine) vs the single-host server, same run")
    print("\n" + title)
    head = (f"{'devices':>7} {'clients':>7} {'single img/s':>12} {'cluster img/s':>13} {'ratio':>6} "
            f"{'single p50':>10} {'cluster p50':>11} {'single p99':>10} {'cluster p99':>11} {'+p50 ms':>8}")
    print(head)
    print("-" * len(head))
    table = []
    for n in levels:
        for c in (1, args.clients):
            s, k = row("single host", n, c), row("cluster", n, c)
            entry = {"devices": n, "clients": c, "single": s, "cluster": k,
                     "throughput_ratio": k["throughput_per_s"] / s["throughput_per_s"],
                     "p50_overhead_ms": k["p50_ms"] - s["p50_ms"]}
            table.append(entry)
            errors = s["errors"] + k["errors"]
            print(f"{n:>7} {c:>7} {s['throughput_per_s']:>12.1f} {k['throughput_per_s']:>13.1f} "
                  f"{entry['throughput_ratio']:>6.2f} {s['p50_ms']:>10.2f} {k['p50_ms']:>11.2f} {s['p99_ms']:>10.2f} "
                  f"{k['p99_ms']:>11.2f} {entry['p50_overhead_ms']:>+8.2f}" + (f"  ({errors} errors)" if errors else ""))
    one = [e["p50_overhead_ms"] for e in table if e["clients"] == 1]
    print(f"cluster overhead per request (p50 at 1 client, cluster - single host): "
          f"{', '.join(f'{v:+.2f}' for v in one)} ms at {', '.join(map(str, levels))} device(s)")
    report = {"title": title, "rows": rows, "table": table}
    (OUT / "cluster.json").write_text(json.dumps(report, indent=2))
    _plot(rows, OUT / "cluster.png")
    print(f"wrote {OUT / 'cluster.json'} and {OUT / 'cluster.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
