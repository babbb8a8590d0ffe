"""TensorFlow Serving's REST API on a second port, next to gRPC: same models, keys, TLS and device pools.

  POST /v1/models/NAME[/versions/N]:predict   body and answer as ``rest_json`` describes
  GET  /v1/models/NAME[/versions/N]           model status (``model_version_status``), without a key

A key goes in the ``Authorization`` header (``<key>`` or ``Bearer <key>``), checked whenever the server has keys,
as over gRPC. Errors are TensorFlow Serving's ``{"error": "..."}`` with the HTTP status TensorFlow Serving gives
the same gRPC code (``HTTP_STATUS``); a body over the limit gets 413. Answers carry ``x-request-id`` and what the
backend cost (``x-onda-compute-ms``, ``x-onda-batch``, ``x-onda-queue-ms``), as gRPC's metadata does.

Built on aiohttp: a maintained asyncio HTTP server, so REST shares the grpc.aio server's event loop, its
preprocessing thread pool and its batching device pools; no second process or thread of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
import uuid
from pathlib import Path

import grpc
from aiohttp import web

from .model import InputError
from .rest_json import parse_predict, predict_answer
from .server import RpcFailure

log = logging.getLogger("onda.service.rest")

# TensorFlow Serving's mapping of a gRPC status to HTTP (its http_server's ToHTTPStatusCode).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500, grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# JSON and base64 are larger than protobuf (a float as text takes 4 to 18 bytes): a REST body may be this many
# times the gRPC message limit.
BODY_FACTOR = 4
NAME = r"{name:[^/:]+}"
VERSION = r"{version:[^/:]+}"


def error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps({"error": message}).encode(), headers=headers,
                        content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler):
    """aiohttp's own refusals (no such path, wrong method, body too large) as TensorFlow Serving's JSON."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        message = {404: f"no such endpoint: {request.method} {request.path} (onda serves POST "
                        f"/v1/models/NAME[/versions/N]:predict and GET /v1/models/NAME[/versions/N])",
                   405: f"method {request.method} is not allowed on {request.path}"}.get(e.status, e.text or e.reason)
        return error(e.status, message, {k: v for k, v in e.headers.items() if k.lower() == "allow"})


class RestServer:
    """The REST endpoint of a ``PredictionServer`` (``server``): ``await start(host, port)``, ``await stop()``."""

    def __init__(self, server):
        self.s = server
        limit = BODY_FACTOR * server.config.max_message_mb * 1024 * 1024
        self.body_limit = limit
        self.app = web.Application(client_max_size=limit, middlewares=[json_errors])
        self.app.add_routes([
            web.post(f"/v1/models/{NAME}:predict", self.predict),
            web.post(f"/v1/models/{NAME}/versions/{VERSION}:predict", self.predict),
            web.post(f"/v1/models/{NAME}/labels/{{label:[^/:]+}}:predict", self.predict),
            web.post(f"/v1/models/{NAME}:{{verb:[A-Za-z]+}}", self.unimplemented),
            web.post(f"/v1/models/{NAME}/versions/{VERSION}:{{verb:[A-Za-z]+}}", self.unimplemented),
            web.get(f"/v1/models/{NAME}", self.status),
            web.get(f"/v1/models/{NAME}/versions/{VERSION}", self.status),
        ])
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.in_flight = 0

    async def start(self, host: str, port: int) -> int:
        c = self.s.config
        ctx = None
        if c.tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(Path(c.tls_cert), Path(c.tls_key))
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.SockSite(self.runner, sock, ssl_context=ctx).start()
        self.port = sock.getsockname()[1]
        return self.port

    async def stop(self, grace: float = 10.0) -> None:
        """Let requests in flight finish (up to ``grace`` s; new ones get 503 meanwhile), then close."""
        t_end = time.monotonic() + grace
        while self.in_flight and time.monotonic() < t_end:
            await asyncio.sleep(0.02)
        if self.runner is not None:
            await self.runner.cleanup()

    # -- handlers ------------------------------------------------------------------------------------
    def _version(self, request: web.Request) -> int | None:
        v = request.match_info.get("version")
        if v is None:
            return None
        if not v.isdigit():
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"model version must be a number, got {v!r}")
        return int(v)

    async def predict(self, request: web.Request) -> web.Response:
        rid = uuid.uuid4().hex
        self.in_flight += 1
        try:
            return await self._predict(request, rid)
        except RpcFailure as f:
            log.info("request %s: %s: %s", rid, f.code.name, f.message)
            headers = {"x-request-id": rid}
            if f.code == grpc.StatusCode.UNAUTHENTICATED:
                headers["WWW-Authenticate"] = 'Bearer realm="onda"'
            return error(HTTP_STATUS.get(f.code, 500), f.message, headers)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"request body over the limit of {self.body_limit} bytes", {"x-request-id": rid})
        except Exception as e:  # noqa: BLE001 - a bug fails this request, never the server
            log.exception("request %s: internal error", rid)
            return error(500, f"internal error ({type(e).__name__}); request {rid}", {"x-request-id": rid})
        finally:
            self.in_flight -= 1

    async def _predict(self, request: web.Request, rid: str) -> web.Response:
        s = self.s
        s.check_serving()
        s.authorize(request.headers.get("Authorization"), "the 'Authorization' header")
        model = s.resolve(request.match_info["name"], self._version(request), request.match_info.get("label"))
        body = await request.read()
        loop = asyncio.get_running_loop()
        try:  # JSON of a batch of arrays takes milliseconds: off the event loop, as image decoding is
            parsed = await loop.run_in_executor(s._pre, parse_predict, body, model.image_shape)
        except InputError as e:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        scores, info = await s.score(model, parsed.kind, parsed.payload, parsed.n)
        return web.Response(body=predict_answer(scores, parsed.columnar), content_type="application/json", headers={
            "x-request-id": rid, "x-onda-compute-ms": f"{info.compute_s * 1e3:.3f}",
            "x-onda-batch": str(info.batch_images), "x-onda-queue-ms": f"{info.queued_s * 1e3:.3f}"})

    async def unimplemented(self, request: web.Request) -> web.Response:
        verb = request.match_info["verb"]
        return error(501, f"onda serves :predict only, not :{verb}")

    async def status(self, request: web.Request) -> web.Response:
        """TensorFlow Serving's GetModelStatus answer: AVAILABLE while serving, UNLOADING while draining."""
        try:
            model = self.s.resolve(request.match_info["name"], self._version(request))
        except RpcFailure as f:
            return error(HTTP_STATUS.get(f.code, 500), f.message)
        state = "UNLOADING" if self.s.draining else "AVAILABLE"
        return web.json_response({"model_version_status": [
            {"version": str(model.version), "state": state, "status": {"error_code": "OK", "error_message": ""}}]})
