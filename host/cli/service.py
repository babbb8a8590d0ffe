"""`onda` subcommands of the scoring service: pipeline, register, models, deploy, services, keys, delete, serve,
score, demo."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import CommandError


def _workspace(args):
    from ..workspace import LocalWorkspace

    return LocalWorkspace(args.workspace)


def _ws_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", default=None,
                   help="workspace directory (default: $ONDA_WORKSPACE, else ~/.onda/workspace)")


def _model_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition(":")
    try:
        return name, int(version) if version else None
    except ValueError:
        raise CommandError(f"model version must be a number: {ref!r}") from None


def _guard(fn):
    """Turn workspace/pipeline/backend errors into one clean line."""
    def run(args):
        from ..pipeline import PipelineError
        from ..runtime import BackendError
        from ..workspace import WorkspaceError

        try:
            return fn(args)
        except (WorkspaceError, PipelineError, BackendError, FileNotFoundError) as e:
            raise CommandError(str(e)) from None
    return run


# -- pipelines and models --------------------------------------------------------------------------------
@_guard
def cmd_pipeline(args) -> int:
    from ..pipeline.resnet50 import build_resnet50
    from ..quantizer import QuantizeError

    try:
        path, weights = build_resnet50(args.output, weights=args.weights, seed=args.seed,
                                       say=lambda s: print(s, file=sys.stderr))
    except QuantizeError as e:
        raise CommandError(str(e)) from None
    print(f"{path} ({weights} weights)")
    return 0


@_guard
def cmd_register(args) -> int:
    m = _workspace(args).register_model(args.zip, args.name, args.description or "")
    print(f"registered {m.name}:{m.version} ({m.path})")
    return 0


@_guard
def cmd_models(args) -> int:
    _table([("MODEL", "<24"), ("VERSION", ">7"), ("REGISTERED", "<19"), ("DESCRIPTION", "")],
           [(m.name, m.version, time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(m.created)), m.description)
            for m in _workspace(args).models(args.name)])
    return 0


def _table(columns: list[tuple[str, str]], rows) -> None:
    """A header and one line per row; ``columns``: (title, format spec), the last one unpadded."""
    for row in [[title for title, _ in columns], *rows]:
        print(" ".join(f"{v!s:{spec}}" for v, (_, spec) in zip(row, columns)).rstrip())


# -- services --------------------------------------------------------------------------------------------
@_guard
def cmd_deploy(args) -> int:
    ws = _workspace(args)
    if args.model.endswith(".zip") and Path(args.model).is_file():
        m = ws.register_model(args.model, Path(args.model).stem)
        name, version = m.name, m.version
        print(f"registered {name}:{version}", file=sys.stderr)
    else:
        name, version = _model_ref(args.model)
    if args.update:
        s = ws.update(args.name, name, version, timeout=args.timeout)
    else:
        s = ws.deploy(args.name, name, version, host=args.host, port=args.port, backend=args.backend,
                      tls_cert=args.tls_cert, tls_key=args.tls_key, devices=args.devices, max_batch=args.max_batch,
                      max_wait_ms=args.max_wait_ms, timeout=args.timeout, rest_port=args.rest_port)
    keys = ws.keys(s.name)
    print(f"service {s.name}: running on {s.host}:{s.port} ({'TLS' if s.tls else 'plaintext'}), model "
          f"{s.model_name}:{s.model_version}, backend {s.backend}, pid {s.pid}")
    if s.rest_url():
        print(f"REST: POST {s.rest_url()}")
    print(f"primary key: {keys['primary']}")
    return 0


@_guard
def cmd_services(args) -> int:
    ws = _workspace(args)
    if args.name:
        s = ws.get_service(args.name)
        if args.restart:
            ws.start(s.name)
        st = ws.status(s.name)
        rest = f"POST {s.rest_url()}" if s.rest_url() else "off (deploy with --rest-port)"
        print(f"service   {s.name}\nstate     {st['state']} ({st['detail']})\ngrpc      {s.host}:{s.port} "
              f"({'TLS' if s.tls else 'plaintext'}) tensorflow.serving.PredictionService/Predict\nrest      {rest}\n"
              f"model     {s.model_name}:{s.model_version}\nbackend   {s.backend}\npid       {s.pid}\n"
              f"options   {s.options}\nlog       {ws.service_dir(s.name) / 'service.log'}")
        if args.logs:
            print("--- log (tail) ---")
            print(ws.logs(s.name, args.logs))
        return 0
    _table([("SERVICE", "<20"), ("STATE", "<10"), ("GRPC ADDRESS", "<22"), ("REST", "<6"), ("TLS", "<4"),
            ("MODEL", "<24"), ("BACKEND", "")],
           [(s.name, ws.status(s.name)["state"], f"{s.host}:{s.port}",
             s.rest_port if s.rest_port is not None else "-", "yes" if s.tls else "no",
             f"{s.model_name}:{s.model_version}", s.backend) for s in ws.services()])
    return 0


@_guard
def cmd_keys(args) -> int:
    ws = _workspace(args)
    keys = ws.regen_key(args.name, args.regen) if args.regen else ws.keys(args.name)
    for k, v in keys.items():
        print(f"{k:<10} {v}")
    return 0


@_guard
def cmd_delete(args) -> int:
    ws = _workspace(args)
    if args.model:
        name, version = _model_ref(args.name)
        for m in ws.delete_model(name, version):
            print(f"deleted model {m.name}:{m.version}")
    else:
        ws.delete_service(args.name)
        print(f"deleted service {args.name}")
    return 0


# -- serving and scoring ---------------------------------------------------------------------------------
def cmd_serve(args) -> int:
    if not args.model:
        raise CommandError("give at least one --model ZIP")
    from ..service import server

    return server.run(args)


def _print_scores(scores: np.ndarray, labels: list[str] | None) -> list[str] | None:
    from ..client import top_k

    if scores.ndim == 1 and scores.size > 1:
        if labels is None and scores.size == 1000:
            from ..pipeline.resnet50 import imagenet_labels
            labels = imagenet_labels()
        for i, label, p in top_k(scores, 5, labels):
            print(f"  {p:8.4f}  {i:5d}  {label}")
    else:
        print(f"  output shape {list(scores.shape)}")
    return labels


def _score_here(args) -> int:
    """``onda score PIPELINE.zip IMAGE...``: the pipeline loaded in this process, on ``--backend``."""
    import tempfile

    from ..pipeline import ModelDefinition, PipelineError
    from ..runtime import BackendError, default_backend
    from ..service.model import InputError, ServedModel

    backend = args.backend or default_backend()
    try:
        definition = ModelDefinition.load(args.target)
    except (PipelineError, OSError) as e:
        raise CommandError(f"{args.target}: {e}") from None
    with tempfile.TemporaryDirectory(prefix="onda-score-") as work:
        try:
            model = ServedModel(definition.name, definition, backend, work)
        except (BackendError, ValueError) as e:
            raise CommandError(f"{args.target}: {e}") from None
        labels = Path(args.labels).read_text().splitlines() if args.labels else model.labels
        status = 0
        for image in args.images:
            try:
                data = Path(image).read_bytes()
            except OSError as e:
                print(f"{image}: cannot read: {e.strerror or e}", file=sys.stderr)
                status = 1
                continue
            t0 = time.perf_counter()
            try:
                scores, compute_s = model.score_here([data])
            except (InputError, BackendError) as e:
                print(f"{image}: {e}", file=sys.stderr)
                status = 1
                continue
            print(f"{image}: {(time.perf_counter() - t0) * 1e3:.1f} ms here on {backend}, backend "
                  f"{compute_s * 1e3:.1f} ms")
            labels = _print_scores(scores[0], labels)
    return status


def cmd_score(args) -> int:
    import grpc

    from ..client import PredictionClient

    if args.target.endswith(".zip") or Path(args.target).is_file():
        return _score_here(args)
    if args.backend:
        raise CommandError("--backend is for scoring a pipeline zip here; a service uses its own backend")
    host, _, port = args.target.rpartition(":")
    if not host or not port.isdigit():
        raise CommandError(f"target must be HOST:PORT, got {args.target!r}")
    labels = Path(args.labels).read_text().splitlines() if args.labels else None
    client = PredictionClient(host, int(port), use_ssl=bool(args.tls_ca or args.tls), access_token=args.key or "",
                              root_certificates=args.tls_ca, timeout=args.timeout,
                              retry_delays=(1, 2, 4, 8)[:args.retries], model_name=args.model or "")
    status = 0
    with client:
        for image in args.images:
            try:
                scores = client.score_image(image)
            except FileNotFoundError:
                print(f"{image}: no such file", file=sys.stderr)
                status = 1
                continue
            except grpc.RpcError as e:
                raise CommandError(f"{image}: {e.code().name}: {e.details()}") from None
            r = client.last
            compute = f", backend {r.compute_s * 1e3:.1f} ms" if r.compute_s is not None else ""
            print(f"{image}: {r.latency_s * 1e3:.1f} ms{compute} (request {r.request_id})")
            labels = _print_scores(scores, labels)
    return status


def cmd_demo(args) -> int:
    from ..demo import main

    return main(workspace=args.workspace, weights=args.weights)


def add_commands(sub) -> None:
    p = sub.add_parser("pipeline", help="build the default ResNet50 pipeline zip (preprocess, int8 featurizer, "
                                        "ImageNet head)")
    p.add_argument("output", help="the .zip to write")
    p.add_argument("--weights", choices=["auto", "imagenet", "random"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser("register", help="register a pipeline zip as a new version of a model")
    p.add_argument("zip")
    p.add_argument("--name", required=True)
    p.add_argument("--description")
    _ws_arg(p)
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("models", help="list registered models")
    p.add_argument("name", nargs="?")
    _ws_arg(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("deploy", help="deploy a model as a local scoring service (its own process and port)")
    p.add_argument("name", help="service name")
    p.add_argument("--model", required=True, help="MODEL[:VERSION] registered, or a pipeline .zip to register")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="gRPC port (default: a free one)")
    p.add_argument("--rest-port", type=int, default=None, metavar="PORT",
                   help="also answer TensorFlow Serving's REST API on this port (0: a free one; default: no REST)")
    p.add_argument("--backend")
    p.add_argument("--tls-cert", help="PEM certificate chain")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the service to be healthy")
    p.add_argument("--update", action="store_true",
                   help="serve this model on an existing service instead (same port and keys)")
    _ws_arg(p)
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("services", help="list services, or inspect one (state, gRPC and REST endpoints, logs)")
    p.add_argument("name", nargs="?")
    p.add_argument("--logs", type=int, nargs="?", const=20, default=0, metavar="N", help="show the last N log lines")
    p.add_argument("--restart", action="store_true", help="start the service's process again (same port)")
    _ws_arg(p)
    p.set_defaults(func=cmd_services)

    p = sub.add_parser("keys", help="show a service's keys, or regenerate one")
    p.add_argument("name")
    p.add_argument("--regen", choices=["primary", "secondary"])
    _ws_arg(p)
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("delete", help="delete a service (stops its process), or a model with --model")
    p.add_argument("name", help="service name, or MODEL[:VERSION] with --model")
    p.add_argument("--model", action="store_true")
    _ws_arg(p)
    p.set_defaults(func=cmd_delete)

    from ..service.options import add_server_arguments

    p = sub.add_parser("serve", help="run a scoring server in the foreground (Ctrl-C drains and stops)")
    add_server_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("score", help="score images on a running service, or here with a pipeline zip: top-5 and "
                                     "latency")
    p.add_argument("target", metavar="HOST:PORT|PIPELINE.zip",
                   help="a service's address, or a pipeline zip to load and score in this process")
    p.add_argument("--backend", help="with a pipeline zip: golden | emulator | rtl (default: the service's default, "
                                     "the emulator)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--key", help="access key (sent as 'authorization: Bearer KEY')")
    p.add_argument("--tls-ca", help="PEM root certificate(s) to trust (e.g. the service's self-signed certificate)")
    p.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    p.add_argument("--model", help="model name (model_spec); default: the server's default model")
    p.add_argument("--labels", help="a text file of class labels, one a line (default for 1000 classes: ImageNet's)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--retries", type=int, default=4, choices=range(0, 5))
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo", help="build, deploy and score the default ResNet50 pipeline over TLS with a key")
    p.add_argument("--weights", choices=["auto", "imagenet", "random"], default="auto")
    _ws_arg(p)
    p.set_defaults(func=cmd_demo)
