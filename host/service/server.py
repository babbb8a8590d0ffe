"""The scoring service: TensorFlow Serving's ``PredictionService/Predict`` over gRPC (grpc.aio), as Brainwave's,
and on request TensorFlow Serving's REST API on a second port (``rest.py``), both on one asyncio loop.

Wire contract (Brainwave's): ``inputs["images"]`` is DT_STRING (encoded images, shape [N]) or DT_FLOAT
(preprocessed, [N,H,W,3]); the answer is ``outputs["output_alias"]``, float32 in ``float_val`` with a leading
batch dimension. ``model_spec`` is optional; its name selects one of the models served. Every answer carries
a ``request_id`` in its initial metadata and, in its trailing metadata, what the backend cost
(``x-onda-compute-ms``, ``x-onda-batch``, ``x-onda-queue-ms``).

Unlike Brainwave, keys are checked on every call whenever keys are configured, with or without TLS.
Also served: gRPC health checking (per model name too) and server reflection; both without a key, for load
balancers and tools.

The messages are the contract in ``protos/`` (``contract.py`` compiles it into its own descriptor pool), so the
server needs neither TensorFlow nor ``tensorflow-serving-api``; the method is registered by its full name.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ..errors import ClusterError  # noqa: E402
from ..pipeline import ModelDefinition, PipelineError  # noqa: E402
from ..runtime import BackendError, default_backend  # noqa: E402
from .batching import DeadlineExpired, DeviceFailed, NoDevice, PoolClosed, QueueFull  # noqa: E402
from .contract import SERVICE as SERVICE_NAME, contract  # noqa: E402
from .keys import KeyStore  # noqa: E402
from .model import InputError, ServedModel  # noqa: E402
from .options import add_server_arguments, config_from_args  # noqa: E402

log = logging.getLogger("onda.service")

INPUT_NAME = "images"
OUTPUT_NAME = "output_alias"


@dataclass
class ServerConfig:
    models: dict[str, str | Path]  # name -> pipeline zip; the first is the default
    backend: str = field(default_factory=default_backend)
    host: str = "127.0.0.1"
    port: int = 0
    rest_port: int | None = None  # TensorFlow Serving's REST API on this port (0: a free one); None: no REST
    health_port: int | None = None  # gRPC health alone, plaintext, on this port (Kubernetes' grpc probes: no TLS)
    tls_cert: str | Path | None = None  # PEM certificate chain
    tls_key: str | Path | None = None  # PEM private key
    keys: list[str] = field(default_factory=list)
    keys_file: str | Path | None = None
    devices: int = 1
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 256
    max_images: int = 64  # per request
    max_message_mb: int = 64
    versions: dict[str, int] = field(default_factory=dict)
    preprocess_threads: int = 2
    device_urls: list[str] = field(default_factory=list)  # backend board: one board per URL
    cluster: str | None = None  # ray://HOST:PORT, HOST:PORT or auto: the devices are a Ray cluster's actors
    device_resource: str | None = None  # with cluster: the custom resource of the devices (default: the backend's)


class RpcFailure(Exception):
    """A request refused, as a gRPC status and a precise message (REST maps the status to HTTP)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class PredictionServicer:
    """``Predict`` of ``tensorflow.serving.PredictionService``, registered by its full name (``handler``)."""

    def __init__(self, server: "PredictionServer"):
        self.s = server

    def handler(self) -> grpc.GenericRpcHandler:
        c = contract()
        service, method = c.predict_path.strip("/").split("/")
        return grpc.method_handlers_generic_handler(service, {method: grpc.unary_unary_rpc_method_handler(
            self.Predict, request_deserializer=c.PredictRequest.FromString,
            response_serializer=c.PredictResponse.SerializeToString)})

    async def Predict(self, request, context):  # noqa: N802 - the proto's name
        rid = uuid.uuid4().hex
        await context.send_initial_metadata((("request_id", rid),))
        t0 = time.perf_counter()
        try:
            response, info = await self.s.predict(request, context)
        except RpcFailure as f:
            log.info("request %s: %s: %s", rid, f.code.name, f.message)
            await context.abort(f.code, f.message)
        except Exception as e:  # noqa: BLE001 - a bug fails this request, never the server
            log.exception("request %s: internal error", rid)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error ({type(e).__name__}); request {rid}")
        trailer = [("x-onda-compute-ms", f"{info.compute_s * 1e3:.3f}"), ("x-onda-batch", str(info.batch_images)),
                   ("x-onda-queue-ms", f"{info.queued_s * 1e3:.3f}")]
        if info.device:  # a cluster's device actor
            trailer.append(("x-onda-device", info.device))
        context.set_trailing_metadata(tuple(trailer))
        log.debug("request %s: OK in %.1f ms", rid, (time.perf_counter() - t0) * 1e3)
        return response


class PredictionServer:
    """Owns the gRPC server (and the REST one, if asked), the loaded models and their device pools.
    ``await start()`` returns the gRPC port; ``rest_port`` is the REST one."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.keys = KeyStore(config.keys, config.keys_file)
        self.models: dict[str, ServedModel] = {}
        self.default_model: str | None = None
        self.draining = False
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.rest = None  # rest.RestServer when config.rest_port is not None
        self.health_server: grpc.aio.Server | None = None  # config.health_port: health alone, in plaintext
        self.health_port: int | None = None
        self.tls = bool(config.tls_cert)
        self._workdir = tempfile.mkdtemp(prefix="onda-serve-")
        self._pre = None
        self.cluster = None  # onda.host.cluster.devices.ClusterDevices with config.cluster

    def load(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        c = self.config
        if not c.models:
            raise ValueError("no model to serve")
        definitions = {name: ModelDefinition.load(path) for name, path in c.models.items()}
        if c.cluster:  # imported only here: a server without a cluster never imports Ray
            from ..cluster.devices import ClusterDevices

            if c.device_urls:
                raise ValueError("--device URL is for boards attached to this host; with --cluster, each device "
                                 "node lists its boards in ONDA_DEVICES")
            self.cluster = ClusterDevices(c.cluster, c.backend, c.device_resource)
        for name, definition in definitions.items():
            self.models[name] = ServedModel(name, definition, c.backend, self._workdir,
                                            version=c.versions.get(name, 1), devices=c.devices,
                                            max_batch=c.max_batch, max_wait_s=c.max_wait_ms / 1e3,
                                            max_queue=c.max_queue, device_urls=c.device_urls, cluster=self.cluster)
        self.default_model = next(iter(self.models))
        self._pre = ThreadPoolExecutor(c.preprocess_threads, thread_name_prefix="preprocess")

    async def start(self) -> int:
        c = self.config
        if not self.models:
            self.load()
        for m in self.models.values():
            m.pool.start()
        if self.cluster is not None:
            for m in self.models.values():
                m.pool.on_devices = self._health_follower(m.name)
            self.cluster.start(asyncio.get_running_loop(), {n: m.pool for n, m in self.models.items()})
        limit = c.max_message_mb * 1024 * 1024
        self.server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                               ("grpc.max_send_message_length", limit),
                                               ("grpc.so_reuseport", 0)])
        self.server.add_generic_rpc_handlers((PredictionServicer(self).handler(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                             reflection.SERVICE_NAME], self.server, pool=contract().pool)
        address = f"{c.host}:{c.port}"
        if c.tls_cert:
            if not c.tls_key:
                raise ValueError("TLS needs both a certificate chain and a private key")
            creds = grpc.ssl_server_credentials([(Path(c.tls_key).read_bytes(), Path(c.tls_cert).read_bytes())])
            self.port = self.server.add_secure_port(address, creds)
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot listen on {address}")
        await self.server.start()
        if c.rest_port is not None:
            from .rest import RestServer

            self.rest = RestServer(self)
            try:
                await self.rest.start(c.host, c.rest_port)
            except OSError as e:
                await self.server.stop(0)
                raise OSError(f"cannot serve REST on {c.host}:{c.rest_port}: {e.strerror or e}") from None
        if c.health_port is not None:
            # Kubernetes' grpc probes speak no TLS: the health service (keyless anyway) alone on a plaintext
            # port, so the probes need no exec helper. Predict is never served there.
            self.health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            self.health_port = self.health_server.add_insecure_port(f"{c.host}:{c.health_port}")
            if not self.health_port:
                await self.server.stop(0)
                raise OSError(f"cannot serve health on {c.host}:{c.health_port}")
            await self.health_server.start()
        for name in ["", SERVICE_NAME, *self.models]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.keys.enabled and not self.tls:
            log.warning("keys are configured but TLS is not: keys travel in plaintext; deploy with a certificate "
                        "(--tls-cert/--tls-key) anywhere but loopback")
        if not self.keys.enabled:
            log.warning("no keys configured: anyone who can reach %s can score", address)
        return self.port

    def _health_follower(self, name: str):
        """With a cluster: model ``name`` is NOT_SERVING while it has no device, and the prediction service while
        no model has one ("" stays SERVING while this front end runs: it is the liveness, not the readiness)."""
        def changed(count: int) -> None:
            if self.draining:
                return
            status = health_pb2.HealthCheckResponse
            any_device = any(m.pool.devices for m in self.models.values())
            asyncio.ensure_future(self.health.set(name, status.SERVING if count else status.NOT_SERVING))
            asyncio.ensure_future(self.health.set(SERVICE_NAME, status.SERVING if any_device else status.NOT_SERVING))
            log.info("model %s: %d device(s)", name, count)
        return changed

    @property
    def rest_port(self) -> int | None:
        return self.rest.port if self.rest is not None else None

    async def stop(self, grace: float = 10.0) -> None:
        """Drain: refuse new calls (UNAVAILABLE), finish the ones in flight, then close."""
        self.draining = True
        await self.health.enter_graceful_shutdown()
        closing = [self.server.stop(grace)] if self.server is not None else []
        if self.rest is not None:
            closing.append(self.rest.stop(grace))
        if self.health_server is not None:
            closing.append(self.health_server.stop(grace))
        await asyncio.gather(*closing)
        for m in self.models.values():
            await m.pool.close()
        if self.cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.cluster.stop)
        if self._pre is not None:
            self._pre.shutdown(wait=False)
        shutil.rmtree(self._workdir, ignore_errors=True)

    # -- one request: the steps both protocols take -------------------------------------------------------
    def check_serving(self) -> None:
        if self.draining:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another replica")

    def authorize(self, authorization: str | bytes | None, where: str = "the 'authorization' metadata") -> None:
        """Raise UNAUTHENTICATED unless keys are off or ``authorization`` holds one ('<key>' or 'Bearer <key>')."""
        if not self.keys.enabled:
            return
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        why = self.keys.check(authorization)
        if why:
            raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, why.replace("the 'authorization' metadata", where))

    def resolve(self, name: str | None, version: int | None = None, label: str | None = None) -> ServedModel:
        """The model a request names (the default one for an empty name); NOT_FOUND for anything else."""
        name = name or self.default_model
        model = self.models.get(name)
        if model is None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND,
                             f"unknown model {name!r} (this server serves: {', '.join(self.models)})")
        if version is not None and version != model.version:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND,
                             f"model {name!r} has no version {version} (serving version {model.version})")
        if label is not None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND,
                             f"model {name!r} has no version label {label!r} (onda serves no labels; version "
                             f"{model.version} is served)")
        return model

    async def score(self, model: ServedModel, kind: str, payload, n: int,
                    remaining_s: float | None = None) -> tuple[np.ndarray, object]:
        """Scores [n, ...] of ``payload`` (``kind`` "string": encoded images; "float": [n,H,W,3]) and the batch
        info; preprocessing in the thread pool, the featurizer on the device pool, then the classifier."""
        if n > self.config.max_images:
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"batch of {n} images is over the limit of {self.config.max_images} per request")
        loop = asyncio.get_running_loop()
        try:
            with model.pool.announce() as announcement:
                prepare = model.from_images if kind == "string" else model.from_floats
                x = await loop.run_in_executor(self._pre, prepare, payload)
                deadline = loop.time() + remaining_s if remaining_s is not None else None
                future = model.pool.submit(x, deadline)
                announcement.done()
            out, info = await future
        except InputError as e:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        except QueueFull as e:
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from None
        except (PoolClosed, NoDevice) as e:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        except DeadlineExpired as e:
            raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, str(e)) from None
        except (DeviceFailed, BackendError) as e:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE,
                             f"backend {self.config.backend} failed: {e}") from None
        return model.postprocess(out), info

    # -- one gRPC request ----------------------------------------------------------------------------
    async def predict(self, request, context):
        self.check_serving()
        auth = next((v for k, v in context.invocation_metadata() if k == "authorization"), None)
        self.authorize(auth)
        model = self._model(request.model_spec)
        if INPUT_NAME not in request.inputs:
            got = ", ".join(repr(k) for k in request.inputs) or "none"
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"missing input {INPUT_NAME!r} (inputs given: {got})")
        kind, payload, n = self._parse(model, request.inputs[INPUT_NAME])
        scores, info = await self.score(model, kind, payload, n, context.time_remaining())
        c = contract()
        response = c.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        tensor = response.outputs[OUTPUT_NAME]
        tensor.dtype = c.data_types["DT_FLOAT"]
        for d in scores.shape:
            tensor.tensor_shape.dim.add(size=int(d))
        tensor.float_val.extend(scores.ravel().tolist())
        return response, info

    def _model(self, spec) -> ServedModel:
        choice = spec.WhichOneof("version_choice")
        return self.resolve(spec.name, spec.version.value if choice == "version" else None,
                            spec.version_label if choice == "version_label" else None)

    def _parse(self, model: ServedModel, t) -> tuple[str, object, int]:
        dims = [d.size for d in t.tensor_shape.dim]
        bad = grpc.StatusCode.INVALID_ARGUMENT
        types = contract().data_types
        if t.dtype == types["DT_STRING"]:
            images = list(t.string_val)
            if t.tensor_shape.unknown_rank or (not dims and len(images) == 1):
                dims = [len(images)]
            if len(dims) != 1 or dims[0] != len(images):
                raise RpcFailure(bad, f"inputs['images']: DT_STRING must have shape [N] matching its {len(images)} "
                                      f"value(s), got shape {dims}")
            if not images:
                raise RpcFailure(bad, "inputs['images']: empty batch (no images)")
            return "string", images, len(images)
        if t.dtype == types["DT_FLOAT"]:
            want = list(model.image_shape)
            if len(dims) != 4 or dims[1:] != want:
                raise RpcFailure(bad, f"inputs['images']: DT_FLOAT must have shape [N,{','.join(map(str, want))}], "
                                      f"got {dims}")
            if dims[0] == 0:
                raise RpcFailure(bad, "inputs['images']: empty batch (N = 0)")
            count = int(np.prod(dims))
            if t.tensor_content:
                if len(t.tensor_content) != 4 * count:
                    raise RpcFailure(bad, f"inputs['images']: tensor_content has {len(t.tensor_content)} bytes, "
                                          f"shape {dims} needs {4 * count}")
                x = np.frombuffer(t.tensor_content, "<f4")
            else:
                if len(t.float_val) != count:
                    raise RpcFailure(bad, f"inputs['images']: {len(t.float_val)} float_val values for shape {dims} "
                                          f"(needs {count})")
                x = np.asarray(t.float_val, np.float32)
            return "float", x.reshape(dims).astype(np.float32), dims[0]
        name = contract().dtype_name(t.dtype)
        raise RpcFailure(bad, f"inputs['images']: unsupported dtype {name}; send DT_STRING (encoded images, [N]) "
                              f"or DT_FLOAT (preprocessed, [N,{','.join(map(str, model.image_shape))}])")


# -- running it ------------------------------------------------------------------------------------------
class ServerThread:
    """A server on its own event loop in a background thread (tests, benches, notebooks)."""

    def __init__(self, config: ServerConfig):
        self.server = PredictionServer(config)
        self.server.load()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="onda-server", daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(60)
        self.rest_port = self.server.rest_port

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, grace: float = 5.0) -> None:
        if self._loop.is_closed():
            return
        self.call(self.server.stop(grace), timeout=grace + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _write_port(path: str | None, port: int) -> None:
    if path:
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(path)


async def serve(config: ServerConfig, port_file: str | None = None, grace: float = 10.0,
                rest_port_file: str | None = None) -> None:
    server = PredictionServer(config)
    server.load()
    port = await server.start()
    mode = "TLS" if server.tls else "plaintext"
    device = next(iter(server.models.values())).backend.describe()
    log.info("listening on %s:%d (%s), models %s, backend %s (%s), %s, keys %s", config.host, port, mode,
             ", ".join(server.models), config.backend, device.get("device", "?"),
             f"{config.devices} device(s)" if not config.cluster else f"cluster {config.cluster}",
             "on" if server.keys.enabled else "off")
    if server.rest is not None:
        log.info("REST (TensorFlow Serving's API) on %s://%s:%d/v1/models/%s:predict", "https" if server.tls else
                 "http", config.host, server.rest_port, server.default_model)
        _write_port(rest_port_file, server.rest_port)  # before the gRPC port file, which says "ready"
    _write_port(port_file, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining (up to %.0f s)", grace)
    await server.stop(grace)
    log.info("stopped")


def run(args) -> int:
    """Serve in the foreground until SIGTERM/SIGINT (then drain); ``args`` from ``add_server_arguments``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(serve(config_from_args(args), args.port_file, args.grace, args.rest_port_file))
    except (PipelineError, BackendError, ValueError, OSError) as e:
        log.error("%s", e)
        return 1
    except ClusterError as e:
        log.error("%s", e)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m onda.host.service", description=__doc__.splitlines()[0])
    add_server_arguments(p)
    args = p.parse_args(argv)
    if not args.model:
        p.error("give at least one --model ZIP")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
