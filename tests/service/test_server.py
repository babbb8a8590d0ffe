"""The scoring server on a loopback port, over TLS with keys: answers, keys, every bad input, concurrency,
health, reflection, the official TF Serving stubs (the independent client: the server speaks protos/)."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from PIL import Image
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from .conftest import CLASSES, FEATURES, KEYS


def jpeg(seed: int, size=(240, 200)) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def channel(server, tls_files):
    creds = grpc.ssl_channel_credentials(root_certificates=tls_files[0].read_bytes())
    return grpc.secure_channel(f"localhost:{server.port}", creds)


def string_request(images: list[bytes], shape=None, model: str | None = None) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    if model is not None:
        req.model_spec.name = model
    t = req.inputs["images"]
    t.dtype = types_pb2.DT_STRING
    for d in (shape if shape is not None else [len(images)]):
        t.tensor_shape.dim.add(size=d)
    t.string_val.extend(images)
    return req


def float_request(x: np.ndarray, shape=None, as_content=True) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    t = req.inputs["images"]
    t.dtype = types_pb2.DT_FLOAT
    for d in (shape if shape is not None else x.shape):
        t.tensor_shape.dim.add(size=d)
    if as_content:
        t.tensor_content = np.asarray(x, "<f4").tobytes()
    else:
        t.float_val.extend(np.asarray(x, np.float32).ravel().tolist())
    return req


def output(response) -> np.ndarray:
    t = response.outputs["output_alias"]
    assert t.dtype == types_pb2.DT_FLOAT and len(t.float_val) > 0  # Brainwave's C# client reads only float_val
    return np.asarray(t.float_val, np.float32).reshape([d.size for d in t.tensor_shape.dim])


# -- correct answers -------------------------------------------------------------------------------------
def test_prediction_client_over_tls_with_key_matches_backend(client_factory, photos, reference):
    client = client_factory()
    for name, data in photos.items():
        scores = client.score_file(data)
        np.testing.assert_allclose(scores, reference.scores_images([data])[0], rtol=1e-5, atol=1e-6, err_msg=name)
        assert scores.shape == (CLASSES,)
        assert len(client.last.request_id) == 32 and client.last.compute_s > 0 and client.last.batch_images >= 1


def test_official_tf_serving_stubs_over_tls_with_raw_key(tls_server, tls_files, photos, reference):
    images = list(photos.values())
    with channel(tls_server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        response, call = stub.Predict.with_call(string_request(images), metadata=[("authorization", KEYS[1])],
                                                timeout=30)
        initial = dict(call.initial_metadata())
    scores = output(response)
    assert scores.shape == (len(images), CLASSES)
    np.testing.assert_allclose(scores, reference.scores_images(images), rtol=1e-5, atol=1e-6)
    assert len(initial["request_id"]) == 32
    assert response.model_spec.name == "tiny"


def test_prediction_client_sends_a_tf_serving_request_unchanged(client_factory, photos, reference):
    """PredictionClient speaks protos/' classes, and takes a request built with tensorflow-serving-api's."""
    response = client_factory().predict(string_request([photos["rocket.jpg"]]))
    np.testing.assert_allclose(output(response), reference.scores_images([photos["rocket.jpg"]]), rtol=1e-5,
                               atol=1e-6)
    assert response.DESCRIPTOR.full_name == "tensorflow.serving.PredictResponse"
    assert type(response) is not predict_pb2.PredictResponse  # onda's own class, from protos/


def test_float_input_and_featurizer_only_model(client_factory, reference):
    rng = np.random.default_rng(3)
    x = rng.uniform(-120, 150, size=(3, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(client_factory().score_numpy_array(x), reference.scores_float(x), rtol=1e-5, atol=1e-6)
    features = client_factory(model_name="features").score_numpy_array(x)
    assert features.shape == (3, 1, 1, FEATURES)  # Brainwave's wire shape for featurizer-only output
    np.testing.assert_array_equal(features.reshape(3, FEATURES), reference.features(x))


def test_float_val_input_is_accepted(tls_server, tls_files, reference):
    x = np.random.default_rng(4).uniform(-100, 100, size=(1, 224, 224, 3)).astype(np.float32)
    with channel(tls_server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        r = stub.Predict(float_request(x, as_content=False), metadata=[("authorization", KEYS[0])], timeout=30)
    np.testing.assert_allclose(output(r), reference.scores_float(x), rtol=1e-5, atol=1e-6)


def test_concurrent_requests_all_correct(client_factory, reference):
    images = [jpeg(seed) for seed in range(40)]
    expected = reference.scores_images(images)
    clients = [client_factory() for _ in range(8)]

    def score(i):
        return clients[i % len(clients)].score_file(images[i])

    with ThreadPoolExecutor(40) as pool:
        got = list(pool.map(score, range(len(images))))
    for i, scores in enumerate(got):
        np.testing.assert_allclose(scores, expected[i], rtol=1e-5, atol=1e-6, err_msg=f"image {i}")


# -- keys -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metadata, why", [
    ([], "missing key"),
    ([("authorization", "not-a-key")], "invalid key"),
    ([("authorization", "Bearer " + KEYS[0][:-1])], "invalid key"),
])
def test_wrong_or_missing_key_is_unauthenticated(tls_server, tls_files, photos, metadata, why):
    with channel(tls_server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(string_request([photos["chelsea.jpg"]]), metadata=metadata, timeout=30)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert why in e.value.details()


def test_both_key_forms_and_both_keys_accepted(tls_server, tls_files, photos):
    with channel(tls_server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        for auth in (KEYS[0], f"Bearer {KEYS[0]}", f"bearer {KEYS[1]}"):
            r = stub.Predict(string_request([photos["coffee.jpg"]]), metadata=[("authorization", auth)], timeout=30)
            assert output(r).shape == (1, CLASSES)


def test_regenerated_key_from_keys_file(pipeline_zips, tmp_path, photos):
    """Plaintext with keys: keys are still checked, a warning says so, and a regenerated key takes effect."""
    import logging

    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread
    from onda.host.service.keys import write_keys

    keys_file = tmp_path / "keys.json"
    write_keys(keys_file, {"primary": "old-primary", "secondary": "old-secondary"})
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("onda.service").addHandler(handler)
    try:
        server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, keys_file=keys_file))
    finally:
        logging.getLogger("onda.service").removeHandler(handler)
    try:
        assert any("plaintext" in r.getMessage() for r in records)
        old = PredictionClient("127.0.0.1", server.port, access_token="old-primary", retry_delays=())
        assert old.score_file(photos["rocket.jpg"]).shape == (CLASSES,)
        with pytest.raises(grpc.RpcError) as e:
            PredictionClient("127.0.0.1", server.port, retry_delays=()).score_file(photos["rocket.jpg"])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        write_keys(keys_file, {"primary": "new-primary", "secondary": "old-secondary"})
        with pytest.raises(grpc.RpcError) as e:
            old.score_file(photos["rocket.jpg"])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        new = PredictionClient("127.0.0.1", server.port, access_token="new-primary", retry_delays=())
        assert new.score_file(photos["rocket.jpg"]).shape == (CLASSES,)
    finally:
        server.stop()


# -- bad requests ---------------------------------------------------------------------------------------
def _bad_requests(photos):
    good = photos["chelsea.jpg"]
    no_input = predict_pb2.PredictRequest()
    no_input.inputs["x"].dtype = types_pb2.DT_STRING
    int_input = predict_pb2.PredictRequest()
    int_input.inputs["images"].dtype = types_pb2.DT_INT32
    int_input.inputs["images"].int_val.extend([1, 2])
    ico = io.BytesIO()
    Image.new("RGB", (32, 32)).save(ico, "ICO")
    x = np.zeros((1, 224, 224, 3), np.float32)
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    ok, bad, big, missing = (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             grpc.StatusCode.NOT_FOUND)
    versioned = string_request([good])
    versioned.model_spec.version.value = 7
    labelled = string_request([good])
    labelled.model_spec.version_label = "stable"
    return {
        "missing input": (no_input, bad, "missing input 'images' (inputs given: 'x')"),
        "wrong dtype": (int_input, bad, "unsupported dtype DT_INT32"),
        "empty string batch": (string_request([]), bad, "empty batch"),
        "string shape mismatch": (string_request([good], shape=[2]), bad, "must have shape [N] matching its 1"),
        "corrupt image": (string_request([good, good[: len(good) // 3] + b"\0" * 50]), bad, "images[1]:"),
        "not an image": (string_request([b"hello, this is text"]), bad, "images[0]: not a decodable image"),
        "empty image": (string_request([b""]), bad, "images[0]: empty image"),
        "unsupported format": (string_request([ico.getvalue()]), bad, "unsupported image format ICO"),
        "float wrong shape": (float_request(np.zeros((1, 200, 200, 3), np.float32)), bad,
                              "DT_FLOAT must have shape [N,224,224,3], got [1, 200, 200, 3]"),
        "float empty batch": (float_request(np.zeros((0, 224, 224, 3), np.float32)), bad, "empty batch"),
        "float short content": (float_request(x[:, :100], shape=[1, 224, 224, 3]), bad, "tensor_content has"),
        "float NaN": (float_request(nan), bad, "NaN or infinity"),
        "unknown model": (string_request([good], model="nope"), missing, "unknown model 'nope'"),
        "unknown version": (versioned, missing, "has no version 7"),
        "version label": (labelled, missing, "has no version label 'stable'"),
        "too many images": (string_request([good] * 17), big, "over the limit of 16 per request"),
        "message too large": (string_request([b"\xff" * (3 * 1024 * 1024)]), big, ""),
    }


def test_every_bad_input_gets_a_precise_status(tls_server, tls_files, photos):
    with channel(tls_server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        for name, (request, code, message) in _bad_requests(photos).items():
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(request, metadata=[("authorization", KEYS[0])], timeout=30)
            assert e.value.code() == code, f"{name}: {e.value.code()} {e.value.details()}"
            assert message in e.value.details(), f"{name}: {e.value.details()}"


def test_bad_requests_do_not_disturb_good_ones(tls_server, tls_files, photos, reference):
    bad = [r for r, _, _ in _bad_requests(photos).values()]
    good = [jpeg(100 + i) for i in range(12)]
    expected = reference.scores_images(good)
    with channel(tls_server, tls_files) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        md = [("authorization", KEYS[0])]

        def call(i):
            if i % 2:
                try:
                    stub.Predict(bad[(i // 2) % len(bad)], metadata=md, timeout=30)
                except grpc.RpcError as e:
                    return e.code()
                return "unexpected success"
            return output(stub.Predict(string_request([good[i // 2]]), metadata=md, timeout=30))

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(24)))
    for i in range(0, 24, 2):
        np.testing.assert_allclose(results[i][0], expected[i // 2], rtol=1e-5, atol=1e-6)
    assert all(isinstance(r, grpc.StatusCode) and r != grpc.StatusCode.OK for r in results[1::2])


# -- health, reflection ---------------------------------------------------------------------------------
def test_health_and_reflection(tls_server, tls_files):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with channel(tls_server, tls_files) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "tensorflow.serving.PredictionService", "tiny", "features"):
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert r.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as e:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        (answer,) = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in answer.list_services_response.service}
        assert {"tensorflow.serving.PredictionService", "grpc.health.v1.Health"} <= names
        # A tool (grpcurl) asks for the file of the service: it gets protos/' descriptors, imports included.
        from google.protobuf import descriptor_pb2

        ask = reflection_pb2.ServerReflectionRequest(file_containing_symbol="tensorflow.serving.PredictionService")
        (answer,) = refl.ServerReflectionInfo(iter([ask]))
        files = {f.name: f for f in map(descriptor_pb2.FileDescriptorProto.FromString,
                                         answer.file_descriptor_response.file_descriptor_proto)}
        service = files["tensorflow_serving/apis/prediction_service.proto"].service[0]
        assert service.name == "PredictionService" and [m.name for m in service.method] == ["Predict"]
        assert service.method[0].input_type == ".tensorflow.serving.PredictRequest"


def test_client_retries_only_unavailable(photos):
    from onda.host.client import PredictionClient

    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    sleeps = []
    client = PredictionClient("127.0.0.1", port, retry_delays=(0.01, 0.02, 0.04))
    import onda.host.client.client as mod
    real = mod.time.sleep
    mod.time.sleep = lambda t: (sleeps.append(t), real(t))
    try:
        with pytest.raises(grpc.RpcError) as e:
            client.score_file(photos["coffee.jpg"], timeout=2)
    finally:
        mod.time.sleep = real
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert sleeps == [0.01, 0.02, 0.04]


def test_client_does_not_retry_invalid_argument(client_factory):
    import onda.host.client.client as mod

    client = client_factory(retry_delays=(0.01, 0.02))
    sleeps = []
    real = mod.time.sleep
    mod.time.sleep = lambda t: (sleeps.append(t), real(t))
    try:
        with pytest.raises(grpc.RpcError) as e:
            client.score_file(b"definitely not an image")
    finally:
        mod.time.sleep = real
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and sleeps == []


def test_pipeline_with_tensorflow_preprocessing_is_served(tmp_path, tiny_tflite, tiny_classifier, photos, reference):
    from onda.host.client import PredictionClient
    from onda.host.pipeline import FeaturizerStage, KerasStage, ModelDefinition, TensorflowStage, brainwave_preprocessing
    from onda.host.service import ServerConfig, ServerThread

    md = ModelDefinition("tfpre")
    md.pipeline += [TensorflowStage(brainwave_preprocessing()), FeaturizerStage(tiny_tflite.read_bytes()),
                    KerasStage(tiny_classifier)]
    server = ServerThread(ServerConfig(models={"tfpre": md.save(tmp_path / "tfpre.zip")}))
    try:
        client = PredictionClient("127.0.0.1", server.port, retry_delays=())
        tf_pre = TensorflowStage(brainwave_preprocessing())
        for data in photos.values():
            expected = reference.scores_float(tf_pre(data)[None])[0]
            np.testing.assert_allclose(client.score_file(data), expected, rtol=1e-5, atol=1e-6)
        with pytest.raises(grpc.RpcError) as e:
            client.score_file(b"garbage bytes")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "images[0]: preprocessing failed" in e.value.details()
    finally:
        server.stop()
