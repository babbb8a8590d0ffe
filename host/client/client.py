"""``PredictionClient``: Brainwave's client, fixed.

Same constructor and methods as Brainwave's (``score_image``, ``score_file``, ``score_numpy_array``,
``score_tensor``), so a Brainwave script works with a changed import. Differences: the key is actually
sent (in the ``authorization`` metadata, on every call, with or without TLS: Brainwave built call credentials
and dropped them), a self-signed certificate can be passed as ``root_certificates`` (bytes or a path), and
retries (1, 2, 4, 8 s by default) happen on UNAVAILABLE and DEADLINE_EXCEEDED only.

The messages are those of ``protos/`` (``onda.host.service.contract``), so the client needs no TensorFlow;
``predict`` also takes a request built with ``tensorflow-serving-api``'s classes (the bytes are the same).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from ..service.contract import contract, serialize

RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
DT_FLOAT, DT_STRING = 1, 7  # tensorflow.DataType numbers (protos/tensorflow/core/framework/types.proto)
DTYPES = {"float32": DT_FLOAT, "string": DT_STRING}


@dataclass
class ScoreResult:
    """The last call's details: request id, round-trip latency, backend compute time and batch, attempts,
    and the time the request waited in the batching queue before its batch ran."""

    request_id: str | None
    latency_s: float
    compute_s: float | None
    batch_images: int | None
    attempts: int
    queued_s: float | None = None
    device: str | None = None  # the cluster device (Ray actor) that ran it (x-onda-device), when served by one


class PredictionClient:
    def __init__(self, address: str, port: int, use_ssl: bool = False, access_token: str = "",
                 root_certificates: bytes | str | Path | None = None, timeout: float = 30.0,
                 retry_delays: tuple[float, ...] = (1, 2, 4, 8), model_name: str = "",
                 server_name: str | None = None):
        self.address, self.port = address, int(port)
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self.model_name = model_name
        self.access_token = access_token or ""
        self.last: ScoreResult | None = None
        target = f"{address}:{port}"
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024),
                   # Reconnect soon after a service restarts (gRPC's default backoff starts at 1 s, grows to 120 s).
                   ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", 1000)]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if use_ssl or root_certificates is not None:
            roots = root_certificates
            if isinstance(roots, (str, Path)):
                roots = Path(roots).read_bytes()
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        c = contract()
        self._predict = self._channel.unary_unary(c.predict_path, request_serializer=serialize,
                                                  response_deserializer=c.PredictResponse.FromString)

    # -- Brainwave's methods ---------------------------------------------------------------------------
    def score_image(self, path: str | Path, timeout: float | None = None) -> np.ndarray:
        """Scores for one image file (shape: the model's output without the batch dimension)."""
        return self.score_file(Path(path).read_bytes(), timeout=timeout)

    def score_file(self, data: bytes, timeout: float | None = None) -> np.ndarray:
        return self.score_images([data], timeout=timeout)[0]

    def score_images(self, images: list[bytes], timeout: float | None = None) -> np.ndarray:
        """Scores for several encoded images in one request: [N, ...]."""
        return self.score_tensor(list(images), [len(images)], DT_STRING, timeout=timeout)

    def score_numpy_array(self, array: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """Scores for preprocessed float images [N,H,W,3] (a single [H,W,3] image is batched)."""
        array = np.asarray(array, np.float32)
        if array.ndim == 3:
            array = array[None]
        return self.score_tensor(array.tobytes(), list(array.shape), DT_FLOAT, timeout=timeout)

    def score_tensor(self, data, shape: list[int], dtype, timeout: float | None = None) -> np.ndarray:
        """A raw tensor: ``data`` is bytes (tensor_content, or one encoded image for DT_STRING) or a list of
        encoded images; ``dtype`` a TF DataType number or name."""
        c = contract()
        request = c.PredictRequest()
        if self.model_name:
            request.model_spec.name = self.model_name
        t = request.inputs["images"]
        if isinstance(dtype, str):
            dtype = DTYPES.get(dtype) or c.data_types.get(dtype)
            if dtype is None:
                raise ValueError("unknown dtype name; use a tensorflow.DataType name such as DT_FLOAT")
        t.dtype = int(dtype)
        for d in shape:
            t.tensor_shape.dim.add(size=int(d))
        if t.dtype == DT_STRING:
            t.string_val.extend([data] if isinstance(data, (bytes, bytearray)) else list(data))
        else:
            t.tensor_content = bytes(data)
        response = self.predict(request, timeout=timeout)
        return output_array(response)

    # -- the call ----------------------------------------------------------------------------------------
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.access_token}")] if self.access_token else []

    def predict(self, request, timeout: float | None = None):
        """One Predict call, retried with backoff on UNAVAILABLE and DEADLINE_EXCEEDED only."""
        timeout = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            attempt += 1
            t0 = time.perf_counter()
            try:
                response, call = self._predict.with_call(request, timeout=timeout, metadata=self.metadata())
            except grpc.RpcError as e:
                if e.code() in RETRY_CODES and attempt <= len(self.retry_delays):
                    time.sleep(self.retry_delays[attempt - 1])
                    continue
                raise
            latency = time.perf_counter() - t0
            initial = dict(call.initial_metadata() or ())
            trailing = dict(call.trailing_metadata() or ())
            compute = trailing.get("x-onda-compute-ms")
            batch = trailing.get("x-onda-batch")
            queued = trailing.get("x-onda-queue-ms")
            self.last = ScoreResult(initial.get("request_id"), latency,
                                    float(compute) / 1e3 if compute else None, int(batch) if batch else None, attempt,
                                    float(queued) / 1e3 if queued else None, trailing.get("x-onda-device"))
            return response

    def close(self) -> None:
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def output_array(response) -> np.ndarray:
    t = response.outputs["output_alias"]
    shape = [d.size for d in t.tensor_shape.dim]
    values = np.asarray(t.float_val, np.float32) if t.float_val else np.frombuffer(t.tensor_content, "<f4")
    return values.reshape(shape) if shape else values


def top_k(scores: np.ndarray, k: int = 5, labels: list[str] | None = None) -> list[tuple[int, str, float]]:
    """[(class index, label, score)] best first."""
    scores = np.asarray(scores).ravel()
    idx = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), labels[i] if labels and i < len(labels) else f"class {i}", float(scores[i])) for i in idx]
