"""The workspace: models (versioned), services as real local processes, keys, status, logs; Brainwave's Python
API end to end; the CLI; a killed service process gives UNAVAILABLE and shows as down."""

from __future__ import annotations

import os
import signal
import time

import grpc
import numpy as np
import pytest

from onda.host.workspace import LocalWorkspace, WorkspaceError


def test_models_are_versioned_and_errors_are_clear(tmp_path, pipeline_zips):
    ws = LocalWorkspace(tmp_path / "ws")
    assert ws.register_model(pipeline_zips["tiny"], "tiny").version == 1
    assert ws.register_model(pipeline_zips["features"], "tiny", "second").version == 2
    assert [(m.name, m.version) for m in ws.models()] == [("tiny", 1), ("tiny", 2)]
    assert ws.get_model("tiny").version == 2 and ws.get_model("tiny", 1).description == ""
    with pytest.raises(WorkspaceError, match=r"no model tiny:3 .*registered: tiny:1, tiny:2"):
        ws.get_model("tiny", 3)
    with pytest.raises(WorkspaceError, match="invalid model name"):
        ws.register_model(pipeline_zips["tiny"], "../escape")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(WorkspaceError, match="not a valid zip"):
        ws.register_model(bad, "bad")
    with pytest.raises(WorkspaceError, match="no model nope"):
        ws.deploy("svc", "nope")
    ws.delete_model("tiny", 1)
    assert [(m.name, m.version) for m in ws.models()] == [("tiny", 2)]
    assert not (tmp_path / "ws" / "models" / "tiny" / "1").exists()
    assert LocalWorkspace(tmp_path / "ws").get_model("tiny").version == 2  # persisted in SQLite


def test_brainwave_style_script_end_to_end(tmp_path, tiny_tflite, tiny_classifier, tls_files, photos, reference):
    """What a Brainwave notebook did (stages, save, register, deploy with SSL, run, keys, delete), with the
    imports changed to onda's."""
    from onda.host.client import PredictionClient
    from onda.host.pipeline import BrainWaveStage, ImagePreprocessStage, KerasStage, ModelDefinition
    from onda.host.workspace import Model, Webservice, Workspace

    ws = Workspace.from_config(tmp_path / "workspace")
    model_def = ModelDefinition()
    model_def.pipeline.append(ImagePreprocessStage())
    model_def.pipeline.append(BrainWaveStage(tiny_tflite.read_bytes()))
    model_def.pipeline.append(KerasStage(tiny_classifier))
    model_def_path = model_def.save(tmp_path / "model_def.zip")

    registered_model = Model.register(ws, model_def_path, "tiny-bw", description="a small pipeline")
    cert, key = tls_files
    config = Webservice.deploy_configuration(ssl_enabled=True, ssl_cert_pem_file=str(cert), ssl_key_pem_file=str(key))
    service = Webservice.deploy_from_model(ws, "bw-service", [registered_model], None, config)
    try:
        service.wait_for_deployment(True)
        assert service.state == "running" and service.ssl_enabled
        cat = photos["chelsea.jpg"]
        expected = reference.scores_images([cat])[0]
        path = tmp_path / "cat.jpg"
        path.write_bytes(cat)
        np.testing.assert_allclose(service.run(str(path)), expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(service.run(cat), expected, rtol=1e-5, atol=1e-6)
        x = reference.pre(cat)[None]
        np.testing.assert_allclose(service.run(x), reference.scores_float(x), rtol=1e-5, atol=1e-6)

        primary, secondary = service.get_keys()
        assert primary != secondary and len(primary) >= 40
        client = PredictionClient(service.ipAddress, service.port, use_ssl=True, access_token=secondary,
                                  root_certificates=cert.read_bytes(), retry_delays=())
        np.testing.assert_allclose(client.score_image(path), expected, rtol=1e-5, atol=1e-6)
        service.regen_key("Secondary")
        with pytest.raises(grpc.RpcError) as e:
            client.score_image(path)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        new_secondary = service.get_keys()[1]
        assert new_secondary != secondary and service.get_keys()[0] == primary
        client = PredictionClient(service.ipAddress, service.port, use_ssl=True, access_token=new_secondary,
                                  root_certificates=cert.read_bytes(), retry_delays=())
        np.testing.assert_allclose(client.score_image(path), expected, rtol=1e-5, atol=1e-6)
        no_key = PredictionClient(service.ipAddress, service.port, use_ssl=True, root_certificates=cert.read_bytes(),
                                  retry_delays=())
        with pytest.raises(grpc.RpcError) as e:
            no_key.score_image(path)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "listening on" in service.get_logs()

        features_def = ModelDefinition()
        features_def.pipeline += [ImagePreprocessStage(), BrainWaveStage(tiny_tflite.read_bytes())]
        features_model = Model.register(ws, features_def.save(tmp_path / "features.zip"), "tiny-bw")
        assert features_model.version == 2
        port = service.port
        service.update(models=[features_model])  # same address, same keys, now featurizer-only
        assert service.port == port and service.state == "running"
        features = service.run(str(path))
        assert features.shape == (1, 1, 16)
        np.testing.assert_array_equal(features.reshape(1, 16), reference.features(reference.pre(cat)[None]))
        service.update(models=[registered_model])
        np.testing.assert_allclose(service.run(str(path)), expected, rtol=1e-5, atol=1e-6)
        features_model.delete()
        with pytest.raises(WorkspaceError, match="used by service"):
            registered_model.delete()
        assert [s.name for s in Webservice.list(ws)] == ["bw-service"]
    finally:
        service.delete()
    registered_model.delete()
    assert ws.services() == [] and ws.models() == []


def _rest_predict(port: int, image: bytes, key: str | None) -> tuple[int, dict]:
    import base64
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/v1/models/tiny:predict", json.dumps({"instances": [{"b64": base64.b64encode(
            image).decode()}]}), {"Authorization": f"Bearer {key}"} if key else {})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_cli_deploy_score_keys_kill_restart_delete(tmp_path, pipeline_zips, photos, reference, capsys):
    """The CLI over a plaintext service with REST too (keys still enforced on both); then the process is
    killed: clients get UNAVAILABLE, the workspace shows it down; a restart brings it back on the same ports."""
    from onda.host.cli import main
    from onda.host.client import PredictionClient

    ws_dir = str(tmp_path / "ws")
    image = tmp_path / "rocket.jpg"
    image.write_bytes(photos["rocket.jpg"])
    assert main(["deploy", "svc", "--model", str(pipeline_zips["tiny"]), "--rest-port", "0",
                 "--workspace", ws_dir]) == 0
    out = capsys.readouterr().out
    assert "service svc: running on 127.0.0.1:" in out and "(plaintext)" in out
    ws = LocalWorkspace(ws_dir)
    s = ws.get_service("svc")
    assert s.rest_port and s.rest_port != s.port
    assert f"REST: POST http://localhost:{s.rest_port}/v1/models/tiny:predict" in out
    primary = ws.keys("svc")["primary"]
    try:
        status, doc = _rest_predict(s.rest_port, photos["rocket.jpg"], primary)
        assert status == 200, doc
        np.testing.assert_allclose(doc["predictions"], reference.scores_images([photos["rocket.jpg"]]),
                                   rtol=1e-5, atol=1e-6)
        assert _rest_predict(s.rest_port, photos["rocket.jpg"], None) == (401, {"error": "missing key: send it "
                                                                               "in the 'Authorization' header "
                                                                               "('<key>' or 'Bearer <key>')"})
        assert main(["score", f"127.0.0.1:{s.port}", str(image), "--key", primary]) == 0
        out = capsys.readouterr().out
        assert f"{image}: " in out and " ms" in out
        assert len([ln for ln in out.splitlines() if "class " in ln]) == 5
        assert main(["score", f"127.0.0.1:{s.port}", str(image), "--retries", "0"]) == 1
        assert "UNAUTHENTICATED: missing key" in capsys.readouterr().err

        assert main(["keys", "svc", "--regen", "primary", "--workspace", ws_dir]) == 0
        new = ws.keys("svc")["primary"]
        assert new != primary and new in capsys.readouterr().out
        assert main(["score", f"127.0.0.1:{s.port}", str(image), "--key", primary, "--retries", "0"]) == 1
        assert "invalid key" in capsys.readouterr().err

        assert main(["services", "--workspace", ws_dir]) == 0
        listing = capsys.readouterr().out.splitlines()
        assert "REST" in listing[0] and "running" in listing[1] and f" {s.rest_port} " in listing[1]
        assert main(["services", "svc", "--workspace", ws_dir]) == 0
        out = capsys.readouterr().out
        assert f"grpc      127.0.0.1:{s.port} (plaintext) tensorflow.serving.PredictionService/Predict" in out
        assert f"rest      POST http://localhost:{s.rest_port}/v1/models/tiny:predict" in out

        os.kill(s.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while ws.status("svc")["state"] != "down" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ws.status("svc")["state"] == "down"
        client = PredictionClient("127.0.0.1", s.port, access_token=new, retry_delays=(0.05, 0.1))
        with pytest.raises(grpc.RpcError) as e:
            client.score_image(image, timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert main(["services", "svc", "--workspace", ws_dir]) == 0
        assert "down (process" in capsys.readouterr().out

        assert main(["services", "svc", "--restart", "--workspace", ws_dir]) == 0
        assert "state     running" in capsys.readouterr().out
        assert ws.get_service("svc").port == s.port and ws.get_service("svc").rest_port == s.rest_port
        assert _rest_predict(s.rest_port, photos["rocket.jpg"], new)[0] == 200
        client.retry_delays = (0.5, 1, 2)  # the same client reconnects (its reconnect backoff is at most 1 s)
        assert client.score_image(image).shape == (10,)
    finally:
        assert main(["delete", "svc", "--workspace", ws_dir]) == 0
    assert main(["services", "svc", "--workspace", ws_dir]) == 1
    assert "no service svc" in capsys.readouterr().err
    assert main(["delete", "tiny", "--model", "--workspace", ws_dir]) == 0


def test_onda_serve_foreground_answers_then_drains_on_sigterm(tmp_path, pipeline_zips, photos, reference):
    """`onda serve` in its own process: answers (also a call without a deadline), stops cleanly on SIGTERM."""
    import subprocess
    import sys

    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from .test_server import output, string_request

    port_file, rest_file = tmp_path / "port", tmp_path / "rest_port"
    proc = subprocess.Popen([sys.executable, "-m", "onda.host.cli", "serve", "--model", f"tiny={pipeline_zips['tiny']}",
                             "--key", "k", "--port-file", str(port_file), "--rest-port", "0",
                             "--rest-port-file", str(rest_file)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not port_file.is_file():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{int(port_file.read_text())}") as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            r = stub.Predict(string_request([photos["coffee.jpg"]]), metadata=[("authorization", "k")])
        np.testing.assert_allclose(output(r), reference.scores_images([photos["coffee.jpg"]]), rtol=1e-5, atol=1e-6)
        status, doc = _rest_predict(int(rest_file.read_text()), photos["coffee.jpg"], "k")
        assert status == 200
        np.testing.assert_array_equal(np.asarray(doc["predictions"], np.float32), output(r))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "keys travel in plaintext" in err and "draining" in err and "stopped" in err


def test_cli_deploy_update_serves_the_new_model_on_the_same_port_and_keys(tmp_path, pipeline_zips, photos,
                                                                          reference, capsys):
    """`onda deploy NAME --model ZIP --update`: the service now answers with the new model (the featurizer
    alone: 16 features, checked against the reference), on the same port with the same keys."""
    from onda.host.cli import main
    from onda.host.client import PredictionClient

    ws_dir = str(tmp_path / "ws")
    assert main(["deploy", "svc", "--model", str(pipeline_zips["tiny"]), "--workspace", ws_dir]) == 0
    ws = LocalWorkspace(ws_dir)
    before = ws.get_service("svc")
    key = ws.keys("svc")["primary"]
    try:
        client = PredictionClient("127.0.0.1", before.port, access_token=key, retry_delays=(0.5, 1, 2))
        assert client.score_file(photos["chelsea.jpg"]).shape == (10,)
        capsys.readouterr()
        assert main(["deploy", "svc", "--model", str(pipeline_zips["features"]), "--update",
                     "--workspace", ws_dir]) == 0
        out = capsys.readouterr().out
        after = ws.get_service("svc")
        assert after.port == before.port and ws.keys("svc")["primary"] == key and after.pid != before.pid
        assert f"model {after.model_name}:{after.model_version}" in out and after.model_name == "features"
        got = client.score_file(photos["chelsea.jpg"])
        x = reference.pre(photos["chelsea.jpg"])[None]
        np.testing.assert_array_equal(np.asarray(got).reshape(1, -1), reference.features(x))
    finally:
        assert main(["delete", "svc", "--workspace", ws_dir]) == 0
