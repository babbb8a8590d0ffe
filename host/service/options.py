"""Command-line options of a scoring server (shared by ``onda serve`` and ``python -m onda.host.service``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=[], metavar="[NAME[:VERSION]=]ZIP",
                   help="a pipeline zip to serve (repeat for several; the first is the default)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="gRPC port (default: a free one)")
    p.add_argument("--rest-port", type=int, default=None, metavar="PORT",
                   help="also answer TensorFlow Serving's REST API on this port (0: a free one; default: no REST)")
    p.add_argument("--health-port", type=int, default=None, metavar="PORT",
                   help="also serve gRPC health alone, in plaintext, on this port (0: a free one): for Kubernetes' "
                        "grpc probes, which speak no TLS (default: health only on the gRPC port)")
    p.add_argument("--backend", default=None, help="backend (default: the default backend)")
    p.add_argument("--devices", type=int, default=None, help="devices in the pool (default 1; with --cluster the "
                                                               "cluster's resources decide)")
    p.add_argument("--device", action="append", default=[], metavar="URL",
                   help="with --backend board: a board's serial port or socket://HOST:PORT (repeat for a pool of boards)")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the featurizer on a Ray cluster's device actors: ray://HOST:PORT (Ray Client), HOST:PORT "
                        "(the head's GCS) or auto; batching, queue limits, keys and health stay here "
                        "(host/service/README.md, 'Many hosts: a Ray cluster')")
    p.add_argument("--device-resource", metavar="NAME",
                   help="with --cluster: the custom resource the devices are placed by (default: the backend's name, "
                        "emulator/golden/rtl; boards: board_<engine>, e.g. board_ulx3s_85f)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-queue", type=int, default=256)
    p.add_argument("--tls-cert", help="PEM certificate chain")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--key", action="append", default=[], help="an accepted access key (repeatable)")
    p.add_argument("--keys-file", help="JSON file of keys (primary, secondary), re-read when it changes")
    p.add_argument("--port-file", help="write the bound gRPC port to this file once listening")
    p.add_argument("--rest-port-file", help="write the bound REST port to this file once listening")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to drain on shutdown")


def config_from_args(args):
    from ..runtime import default_backend
    from .server import ServerConfig

    models, versions = {}, {}
    for i, spec in enumerate(args.model):
        name, _, path = spec.rpartition("=")
        if not name:
            name = Path(path).stem
        name, _, version = name.partition(":")
        models[name] = path
        if version:
            versions[name] = int(version)
    if args.cluster and args.devices is not None:
        raise ValueError("--devices with --cluster: the cluster's resources say how many devices there are "
                         "(ray start --resources '{\"emulator\": N}')")
    return ServerConfig(models=models, backend=args.backend or default_backend(), host=args.host, port=args.port,
                        rest_port=args.rest_port, health_port=args.health_port,
                        tls_cert=args.tls_cert, tls_key=args.tls_key, keys=args.key, keys_file=args.keys_file,
                        devices=args.devices or 1, cluster=args.cluster, device_resource=args.device_resource,
                        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                        max_queue=args.max_queue, versions=versions, device_urls=list(args.device))
