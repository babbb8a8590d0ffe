"""TensorFlow Serving's REST API on the server's second port, over TLS with keys, with a real HTTP client
(http.client): answers against the backend run directly and against the same request over gRPC, both body
formats, model status, every bad input the gRPC tests cover plus REST's own, and service after bad requests."""

from __future__ import annotations

import base64
import http.client
import io
import json
import ssl
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from PIL import Image
from tensorflow_serving.apis import prediction_service_pb2_grpc

from .conftest import CLASSES, FEATURES, KEYS
from .test_server import channel, jpeg, output, string_request


class Rest:
    """One keep-alive HTTPS connection to the server's REST port, trusting the test's self-signed certificate."""

    def __init__(self, server, tls_files):
        ctx = ssl.create_default_context(cafile=str(tls_files[0]))
        self.conn = http.client.HTTPSConnection("localhost", server.rest_port, context=ctx, timeout=60)

    def call(self, method: str, path: str, body=None, key: str | None = KEYS[0], raw: bytes | None = None):
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = key if key.startswith(("Bearer ", "bearer ")) or key in KEYS[1:] else \
                f"Bearer {key}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        payload = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(payload) if payload else None

    def close(self):
        self.conn.close()


@pytest.fixture
def rest(tls_server, tls_files):
    r = Rest(tls_server, tls_files)
    yield r
    r.close()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def over_grpc(server, tls_files, images: list[bytes], model: str | None = None) -> np.ndarray:
    with channel(server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        return output(stub.Predict(string_request(images, model=model), metadata=[("authorization", KEYS[0])],
                                   timeout=30))


# -- answers ----------------------------------------------------------------------------------------------
def test_row_format_b64_matches_backend_and_grpc(rest, tls_server, tls_files, photos, reference):
    images = list(photos.values())
    status, headers, doc = rest.call("POST", "/v1/models/tiny:predict", {"instances": [b64(i) for i in images]})
    assert status == 200, doc
    got = np.asarray(doc["predictions"], np.float32)
    assert got.shape == (len(images), CLASSES)
    np.testing.assert_allclose(got, reference.scores_images(images), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got, over_grpc(tls_server, tls_files, images))  # float32 exactly, via JSON
    assert len(headers["x-request-id"]) == 32 and float(headers["x-onda-compute-ms"]) > 0
    assert int(headers["x-onda-batch"]) >= 1 and headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("path, body, answer", [
    ("/v1/models/tiny/versions/1:predict", lambda im: {"instances": [b64(im)]}, "predictions"),
    ("/v1/models/tiny:predict", lambda im: {"instances": [{"images": b64(im)}], "signature_name": "serving_default"},
     "predictions"),
    ("/v1/models/tiny:predict", lambda im: {"inputs": [b64(im)]}, "outputs"),
    ("/v1/models/tiny:predict", lambda im: {"inputs": {"images": [b64(im)]}}, "outputs"),
    ("/v1/models/tiny:predict",  # URL-safe alphabet, no padding
     lambda im: {"instances": [{"b64": base64.urlsafe_b64encode(im).decode().rstrip("=")}]}, "predictions"),
])
def test_every_body_format_gives_the_same_scores(rest, photos, reference, path, body, answer):
    image = photos["chelsea.jpg"]
    status, _, doc = rest.call("POST", path, body(image))
    assert status == 200, doc
    assert set(doc) == {answer}
    np.testing.assert_allclose(np.asarray(doc[answer], np.float32), reference.scores_images([image]),
                               rtol=1e-5, atol=1e-6)


def test_preprocessed_floats_and_featurizer_only_model(rest, reference):
    x = np.round(np.random.default_rng(5).uniform(-120, 150, size=(2, 224, 224, 3)), 1).astype(np.float32)
    status, _, doc = rest.call("POST", "/v1/models/tiny:predict", {"instances": x.tolist()})
    assert status == 200, doc
    np.testing.assert_allclose(np.asarray(doc["predictions"], np.float32), reference.scores_float(x),
                               rtol=1e-5, atol=1e-6)
    status, _, doc = rest.call("POST", "/v1/models/features:predict", {"inputs": {"images": x.tolist()}})
    assert status == 200, doc
    features = np.asarray(doc["outputs"], np.float32)
    assert features.shape == (2, 1, 1, FEATURES)
    np.testing.assert_array_equal(features.reshape(2, FEATURES), reference.features(x))


def test_both_keys_and_both_key_forms(rest, photos):
    for key in (KEYS[0], f"Bearer {KEYS[1]}", KEYS[1]):
        status, _, doc = rest.call("POST", "/v1/models/tiny:predict", {"instances": [b64(photos["coffee.jpg"])]},
                                   key=key)
        assert status == 200 and np.asarray(doc["predictions"]).shape == (1, CLASSES), (key, doc)


@pytest.mark.parametrize("path, status, state", [
    ("/v1/models/tiny", 200, "AVAILABLE"),
    ("/v1/models/features/versions/1", 200, "AVAILABLE"),
    ("/v1/models/tiny/versions/3", 404, "has no version 3"),
    ("/v1/models/nope", 404, "unknown model 'nope'"),
])
def test_model_status_needs_no_key(rest, path, status, state):
    got, _, doc = rest.call("GET", path, key=None)
    assert got == status, doc
    if status == 200:
        assert doc == {"model_version_status": [{"version": "1", "state": state,
                                                 "status": {"error_code": "OK", "error_message": ""}}]}
    else:
        assert state in doc["error"] and set(doc) == {"error"}


# -- bad requests ---------------------------------------------------------------------------------------
def _bad_requests(photos):
    """name -> (method, path, body dict or raw bytes, key, HTTP status, message part). Mirrors the gRPC
    table in test_server (same cases, same messages) and adds REST's own (JSON, base64, paths, methods)."""
    good = photos["chelsea.jpg"]
    ico = io.BytesIO()
    Image.new("RGB", (32, 32)).save(ico, "ICO")
    nan = np.zeros((1, 224, 224, 3), np.float32).tolist()
    nan[0][0][0][0] = float("nan")
    p, k = "/v1/models/tiny:predict", KEYS[0]
    one = {"instances": [b64(good)]}
    return {
        "missing input": ("POST", p, {"instances": [{"x": b64(good)}]}, k, 400,
                          "missing input 'images' (inputs given: 'x')"),
        "wrong type": ("POST", p, {"instances": ["text"]}, k, 400, "instances[0]: an image is {\"b64\""),
        "booleans": ("POST", p, {"instances": [[[[True, False, True]]]]}, k, 400, "numbers only, got booleans"),
        "strings in arrays": ("POST", p, {"instances": [[[["a", "b", "c"]]]]}, k, 400, "numbers only, got strings"),
        "empty batch": ("POST", p, {"instances": []}, k, 400, "instances: empty batch"),
        "empty columnar batch": ("POST", p, {"inputs": {"images": []}}, k, 400, "empty batch"),
        "ragged arrays": ("POST", p, {"instances": [[[[1, 2, 3]]], [[[1, 2]]]]}, k, 400, "ragged"),
        "corrupt image": ("POST", p, {"instances": [b64(good), b64(good[: len(good) // 3] + b"\0" * 50)]}, k, 400,
                          "images[1]:"),
        "not an image": ("POST", p, {"instances": [b64(b"hello, this is text")]}, k, 400,
                         "images[0]: not a decodable image"),
        "empty image": ("POST", p, {"instances": [{"b64": ""}]}, k, 400, "images[0]: empty image"),
        "unsupported format": ("POST", p, {"instances": [b64(ico.getvalue())]}, k, 400,
                               "unsupported image format ICO"),
        "float wrong shape": ("POST", p, {"instances": np.zeros((1, 20, 20, 3)).tolist()}, k, 400,
                              "arrays must have shape [N,224,224,3], got [1, 20, 20, 3]"),
        "float NaN": ("POST", p, {"instances": nan}, k, 400, "NaN or infinity"),
        "bad base64": ("POST", p, {"instances": [{"b64": "not*base64!"}]}, k, 400, "instances[0]: bad base64"),
        "b64 not a string": ("POST", p, {"instances": [{"b64": 12}]}, k, 400, "'b64' must be a string"),
        "mixed batch": ("POST", p, {"instances": [b64(good), [[[0, 0, 0]]]]}, k, 400, "not both"),
        "instances not a list": ("POST", p, {"instances": b64(good)}, k, 400, "instances must be a list"),
        "malformed JSON": ("POST", p, b'{"instances": [', k, 400, "malformed JSON"),
        "not UTF-8": ("POST", p, b"\xff\xfe{}", k, 400, "malformed JSON"),
        "not an object": ("POST", p, b"[1, 2]", k, 400, "must be a JSON object"),
        "neither format": ("POST", p, {"signature_name": "serving_default"}, k, 400,
                           "missing 'instances' or 'inputs'"),
        "both formats": ("POST", p, {**one, "inputs": [b64(good)]}, k, 400, "not both"),
        "unknown model": ("POST", "/v1/models/nope:predict", one, k, 404, "unknown model 'nope'"),
        "unknown version": ("POST", "/v1/models/tiny/versions/7:predict", one, k, 404, "has no version 7"),
        "version not a number": ("POST", "/v1/models/tiny/versions/latest:predict", one, k, 400,
                                 "model version must be a number"),
        "version label": ("POST", "/v1/models/tiny/labels/stable:predict", one, k, 404, "no version label 'stable'"),
        "too many images": ("POST", p, {"instances": [b64(good)] * 17}, k, 429, "over the limit of 16 per request"),
        "body too large": ("POST", p, {"instances": [b64(b"\xff" * (7 * 1024 * 1024))]}, k, 413, "over the limit"),
        "missing key": ("POST", p, one, None, 401, "missing key"),
        "wrong key": ("POST", p, one, "not-a-key", 401, "invalid key in the 'Authorization' header"),
        "truncated key": ("POST", p, one, "Bearer " + KEYS[0][:-1], 401, "invalid key"),
        "classify": ("POST", "/v1/models/tiny:classify", one, k, 501, "onda serves :predict only"),
        "wrong method": ("GET", p, None, k, 405, "method GET is not allowed"),
        "unknown path": ("POST", "/v2/models/tiny:predict", one, k, 404, "no such endpoint"),
    }


def test_every_bad_input_gets_tf_serving_json_error(rest, photos):
    for name, (method, path, body, key, status, message) in _bad_requests(photos).items():
        raw = body if isinstance(body, bytes) else None
        got, headers, doc = rest.call(method, path, None if raw else body, key=key, raw=raw)
        assert got == status, f"{name}: {got} {doc}"
        assert set(doc) == {"error"} and message in doc["error"], f"{name}: {doc}"
        if status == 401:
            assert headers["www-authenticate"].startswith("Bearer"), name


def test_bad_requests_do_not_disturb_good_ones(tls_server, tls_files, photos, reference):
    bad = list(_bad_requests(photos).values())
    good = [jpeg(200 + i) for i in range(10)]
    expected = reference.scores_images(good)

    def call(i):
        r = Rest(tls_server, tls_files)
        try:
            if i % 2:
                method, path, body, key, status, _ = bad[(i // 2) % len(bad)]
                raw = body if isinstance(body, bytes) else None
                return status, r.call(method, path, None if raw else body, key=key, raw=raw)[0]
            status, _, doc = r.call("POST", "/v1/models/tiny:predict", {"instances": [b64(good[i // 2])]})
            return status, np.asarray(doc["predictions"], np.float32)
        finally:
            r.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(20)))
    for i in range(0, 20, 2):
        assert results[i][0] == 200
        np.testing.assert_allclose(results[i][1][0], expected[i // 2], rtol=1e-5, atol=1e-6)
    for want, got in results[1::2]:
        assert want == got


def test_draining_server_answers_503_and_unloading(pipeline_zips, photos):
    """Plaintext REST (no keys): while the server drains, :predict is UNAVAILABLE (503), status UNLOADING."""
    from onda.host.service import ServerConfig, ServerThread

    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, rest_port=0))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
        body = json.dumps({"instances": [b64(photos["rocket.jpg"])]})
        conn.request("POST", "/v1/models/tiny:predict", body=body)
        r = conn.getresponse()
        assert r.status == 200 and np.asarray(json.loads(r.read())["predictions"]).shape == (1, CLASSES)
        server.server.draining = True
        conn.request("POST", "/v1/models/tiny:predict", body=body)
        r = conn.getresponse()
        assert r.status == 503 and "shutting down" in json.loads(r.read())["error"]
        conn.request("GET", "/v1/models/tiny")
        r = conn.getresponse()
        assert json.loads(r.read())["model_version_status"][0]["state"] == "UNLOADING"
        conn.close()
    finally:
        server.stop()


def test_grpc_still_rejects_a_rest_style_key_mismatch(tls_server, tls_files, photos):
    """The REST port and the gRPC port share one key store: a key REST refuses, gRPC refuses too."""
    with channel(tls_server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(string_request([photos["coffee.jpg"]]), metadata=[("authorization", "not-a-key")], timeout=30)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
