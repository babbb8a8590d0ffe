"""protos/ is TensorFlow Serving's wire contract: compiled with grpcio-tools, every message and field onda declares
has TensorFlow Serving's full name, number and type, and messages cross between the two both ways, field by field.

The oracle is ``tensorflow-serving-api`` (TensorFlow Serving's own generated code, in protobuf's default pool);
onda's side is the private pool compiled from protos/ (onda.host.service.contract)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2  # noqa: F401 (registers the service)

from onda.host.service.contract import PROTOS, contract, protoc

ONDA_MESSAGES = ["tensorflow.serving.PredictRequest", "tensorflow.serving.PredictResponse",
                 "tensorflow.serving.ModelSpec", "tensorflow.TensorProto", "tensorflow.TensorShapeProto",
                 "tensorflow.TensorShapeProto.Dim", "grpc.health.v1.HealthCheckRequest",
                 "grpc.health.v1.HealthCheckResponse"]


def _field_signature(f):
    """What decides a field's encoding: number, wire type, cardinality, packing, and the type it names."""
    target = f.message_type or f.enum_type
    return (f.number, f.type, f.is_repeated, f.is_packed, target.full_name if target else None,
            f.containing_oneof.name if f.containing_oneof else None)


@pytest.mark.parametrize("name", ONDA_MESSAGES)
def test_every_field_matches_tensorflow_serving(name):
    ours = contract().pool.FindMessageTypeByName(name)
    theirs = descriptor_pool.Default().FindMessageTypeByName(name)
    assert ours.fields, name
    for f in ours.fields:
        assert f.name in theirs.fields_by_name, f"{name}.{f.name} is not in TensorFlow Serving's {name}"
        assert _field_signature(f) == _field_signature(theirs.fields_by_name[f.name]), f"{name}.{f.name}"
    for nested in ours.nested_types:  # map entries: key and value types
        twin = theirs.nested_types_by_name[nested.name]
        assert [_field_signature(f) for f in nested.fields] == [_field_signature(f) for f in twin.fields]


def test_the_fields_onda_reads_and_writes_are_declared():
    c = contract()
    used = {"tensorflow.serving.PredictRequest": {"model_spec", "inputs"},
            "tensorflow.serving.PredictResponse": {"model_spec", "outputs"},
            "tensorflow.serving.ModelSpec": {"name", "version", "version_label", "signature_name"},
            "tensorflow.TensorProto": {"dtype", "tensor_shape", "tensor_content", "float_val", "string_val"},
            "tensorflow.TensorShapeProto": {"dim", "unknown_rank"}}
    for name, fields in used.items():
        assert fields <= set(c.pool.FindMessageTypeByName(name).fields_by_name), name


def test_data_types_and_service_names_match():
    c = contract()
    assert c.data_types, "no DataType values"
    for name, number in c.data_types.items():
        assert types_pb2.DataType.Value(name) == number, name
    assert {"DT_FLOAT", "DT_STRING", "DT_INT32", "DT_INT8", "DT_UINT8"} <= set(c.data_types)
    assert c.predict_path == "/tensorflow.serving.PredictionService/Predict"
    for service in ("tensorflow.serving.PredictionService", "grpc.health.v1.Health"):
        ours = c.pool.FindServiceByName(service)
        theirs = descriptor_pool.Default().FindServiceByName(service)
        for m in ours.methods:
            t = theirs.methods_by_name[m.name]
            assert (m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming) == \
                   (t.input_type.full_name, t.output_type.full_name, t.client_streaming, t.server_streaming)
    assert list(c.pool.FindServiceByName("tensorflow.serving.PredictionService").methods_by_name) == ["Predict"]


def _fill_request(req, x: np.ndarray) -> None:
    """Every request field onda reads: model spec (name, version, signature) and both input encodings."""
    req.model_spec.name = "resnet50"
    req.model_spec.version.value = 7
    req.model_spec.signature_name = "serving_default"
    images = req.inputs["images"]
    images.dtype = 7  # DT_STRING
    images.tensor_shape.dim.add(size=2, name="batch")
    images.string_val.extend([b"\xff\xd8\xff jpeg bytes", b"\x89PNG\r\n png bytes"])
    floats = req.inputs["floats"]
    floats.dtype = 1  # DT_FLOAT
    for d in x.shape:
        floats.tensor_shape.dim.add(size=d)
    floats.tensor_content = x.astype("<f4").tobytes()
    floats.float_val.extend(x.ravel().tolist())
    floats.version_number = 3
    unknown = req.inputs["unknown_rank"]
    unknown.dtype = 3  # DT_INT32
    unknown.tensor_shape.unknown_rank = True
    unknown.int_val.extend([1, -2, 3])


def _fill_response(resp, scores: np.ndarray) -> None:
    resp.model_spec.name = "resnet50"
    resp.model_spec.version.value = 2
    out = resp.outputs["output_alias"]
    out.dtype = 1
    for d in scores.shape:
        out.tensor_shape.dim.add(size=d)
    out.float_val.extend(scores.ravel().tolist())


def _fields(message) -> dict:
    """A message as plain Python values, from its descriptor, so messages of two classes compare."""
    out = {}
    for f, value in message.ListFields():
        if f.message_type and f.message_type.GetOptions().map_entry:
            out[f.name] = {k: _fields(v) if hasattr(v, "ListFields") else v for k, v in value.items()}
        elif f.message_type:
            out[f.name] = [_fields(v) for v in value] if f.is_repeated else _fields(value)
        else:
            out[f.name] = list(value) if f.is_repeated else value
    return out


CASES = {
    "request": (lambda: contract().PredictRequest(), predict_pb2.PredictRequest, _fill_request,
                np.random.default_rng(0).uniform(-120, 150, (1, 4, 4, 3)).astype(np.float32)),
    "response": (lambda: contract().PredictResponse(), predict_pb2.PredictResponse, _fill_response,
                 np.random.default_rng(1).random((2, 10)).astype(np.float32)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("direction", ["onda->tf-serving", "tf-serving->onda"])
def test_messages_cross_both_ways(case, direction):
    make_ours, theirs_cls, fill, data = CASES[case]
    ours, theirs = make_ours(), theirs_cls()
    fill(ours, data)
    fill(theirs, data)
    source, target_cls = (ours, theirs_cls) if direction == "onda->tf-serving" else (theirs, type(ours))
    parsed = target_cls.FromString(source.SerializeToString())
    # Every field of the source is a known field of the target (ListFields lists known fields only).
    assert _fields(parsed) == _fields(source) == _fields(theirs if source is ours else ours)
    assert parsed.SerializeToString(deterministic=True) == source.SerializeToString(deterministic=True)


def test_model_spec_version_label_crosses():
    ours = contract().ModelSpec(name="m", version_label="stable")
    theirs = model_pb2.ModelSpec.FromString(ours.SerializeToString())
    assert theirs.WhichOneof("version_choice") == "version_label" and theirs.version_label == "stable"
    back = contract().ModelSpec.FromString(model_pb2.ModelSpec(name="m", version={"value": 4}).SerializeToString())
    assert back.WhichOneof("version_choice") == "version" and back.version.value == 4


def test_health_messages_cross():
    from google.protobuf import message_factory

    pool = contract().pool
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest"))
    response = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse"))
    theirs = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
    assert response.FromString(theirs.SerializeToString()).status == 2
    ours = request(service="tensorflow.serving.PredictionService")
    assert health_pb2.HealthCheckRequest.FromString(ours.SerializeToString()).service == ours.service


def test_protos_compile_to_python_stubs_that_speak_tf_serving(tmp_path):
    """grpcio-tools turns protos/ into *_pb2 and *_pb2_grpc modules; in a process without TensorFlow they
    serialize a request that TensorFlow Serving's own classes parse."""
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    assert len(files) == 7, files
    protoc([f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", *files])
    stub = (tmp_path / "tensorflow_serving/apis/prediction_service_pb2_grpc.py").read_text()
    assert "/tensorflow.serving.PredictionService/Predict" in stub
    for package in ("tensorflow", "tensorflow/core", "tensorflow/core/framework", "tensorflow_serving",
                    "tensorflow_serving/apis"):  # regular packages, so they shadow the installed ones
        (tmp_path / package / "__init__.py").touch()
    script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc\n"
              "assert predict_pb2.__file__.startswith(sys.argv[1]), predict_pb2.__file__\n"
              "r = predict_pb2.PredictRequest(); r.model_spec.name = 'tiny'; t = r.inputs['images']\n"
              "t.dtype = 7; t.tensor_shape.dim.add(size=1); t.string_val.append(b'\\xff\\xd8image')\n"
              "sys.stdout.buffer.write(r.SerializeToString())\n")
    data = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, check=True,
                          cwd=tmp_path).stdout
    parsed = predict_pb2.PredictRequest.FromString(data)
    assert parsed.model_spec.name == "tiny"
    assert parsed.inputs["images"].dtype == types_pb2.DT_STRING
    assert list(parsed.inputs["images"].string_val) == [b"\xff\xd8image"]
    assert [d.size for d in parsed.inputs["images"].tensor_shape.dim] == [1]
