"""host/deploy's manifests, checked offline (any network use fails the test):

- front-end.yaml (Deployment, Service, PersistentVolumeClaim) against the Kubernetes 1.37 JSON schemas that
  ``kubernetes-validate`` bundles, strictly (an unknown field is an error);
- raycluster.yaml against ``raycluster.schema.json`` (written from KubeRay's ray.io/v1 API types: a CRD has no
  schema in Kubernetes' own set), and each of its pod templates against Kubernetes' PodTemplate schema;
- what no schema knows: the front end's arguments parse with onda's own command line, the probes ask the plaintext
  health port for the right services, the files onda reads are the Secrets' mounts (no subPath, which the kubelet
  never updates), and the device nodes' resources follow onda's naming with one mounted device file per board unit.
"""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import jsonschema
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "host" / "deploy"
K8S = "1.37.0"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network use during validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def _validate_k8s(doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S, strict=True)


def _by_kind(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def test_front_end_manifests_match_the_kubernetes_schemas():
    import kubernetes_validate

    docs = _docs("front-end.yaml")
    assert sorted(d["kind"] for d in docs) == ["Deployment", "PersistentVolumeClaim", "Service"]
    for doc in docs:
        _validate_k8s(doc)
    bad = copy.deepcopy(_by_kind(docs, "Deployment"))  # the validator can fail: a misspelt and a mistyped field
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["prot"] = 8501
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_k8s(bad)
    bad = copy.deepcopy(_by_kind(docs, "Deployment"))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_k8s(bad)


def _options(args: list[str]):
    from onda.host.cli import build_parser
    from onda.host.service.options import config_from_args

    parsed = build_parser().parse_args(args)
    assert parsed.command == "serve"
    return config_from_args(parsed)


def test_front_end_runs_onda_serve_with_probes_secrets_and_the_cluster():
    from onda.host.service.contract import SERVICE

    docs = _docs("front-end.yaml")
    pod = _by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    config = _options(c["args"])
    assert config.cluster.startswith("ray://onda-devices-head-svc:")  # KubeRay's head service of raycluster.yaml
    assert _docs("raycluster.yaml")[0]["metadata"]["name"] + "-head-svc" == config.cluster[6:].split(":")[0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": config.port, "health": config.health_port}
    assert c["livenessProbe"]["grpc"] == {"port": config.health_port}  # "" : the process answers
    assert c["readinessProbe"]["grpc"] == {"port": config.health_port, "service": SERVICE}
    assert c["startupProbe"]["grpc"]["port"] == config.health_port
    assert config.tls_cert and config.tls_key and config.keys_file
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path, secret in ((config.tls_cert, "onda-tls"), (config.tls_key, "onda-tls"),
                         (config.keys_file, "onda-keys")):
        mount = next(m for m in mounts.values() if str(path).startswith(m["mountPath"] + "/"))
        assert "subPath" not in mount  # a subPath mount is never updated: the keys would not follow the Secret
        assert volumes[mount["name"]]["secret"]["secretName"] == secret
    keys_items = volumes[mounts["keys"]["name"]]["secret"]["items"]
    assert {"key": "keys.json", "path": Path(config.keys_file).name} in keys_items
    for zip_path in config.models.values():
        mount = next(m for m in mounts.values() if str(zip_path).startswith(m["mountPath"] + "/"))
        assert mount["readOnly"] and "persistentVolumeClaim" in volumes[mount["name"]]
    claim = volumes[mounts["models"]["name"]]["persistentVolumeClaim"]["claimName"]
    pvc = _by_kind(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    service = _by_kind(docs, "Service")
    assert service["spec"]["selector"] == _by_kind(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["grpc"]
    assert pod["terminationGracePeriodSeconds"] > config.max_batch and "--grace=20" in c["args"]


def _ray_resources(params: dict) -> dict:
    """KubeRay passes rayStartParams' values to ``ray start`` as written: resources is a quoted JSON string."""
    value = params.get("resources")
    return json.loads(json.loads(value)) if value else {}


def test_raycluster_matches_kuberay_types_and_its_pods_the_kubernetes_schema():
    (doc,) = _docs("raycluster.yaml")
    schema = json.loads((DEPLOY / "raycluster.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    groups = [doc["spec"]["headGroupSpec"], *doc["spec"]["workerGroupSpecs"]]
    for group in groups:
        _validate_k8s({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                       "template": group["template"]})
    bad = copy.deepcopy(doc)  # the schema can fail: a misspelt group field, a missing template
    bad["spec"]["workerGroupSpecs"][0]["maxReplica"] = 8
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    del bad["spec"]["workerGroupSpecs"][0]["maxReplica"], bad["spec"]["headGroupSpec"]["template"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_device_nodes_declare_onda_resources_and_mount_their_boards():
    import ray

    from onda.host.cluster.resources import board_resource, device_resource

    (doc,) = _docs("raycluster.yaml")
    assert doc["spec"]["rayVersion"] == ray.__version__  # the front ends' Ray must be the cluster's
    head = doc["spec"]["headGroupSpec"]
    assert _ray_resources(head["rayStartParams"]) == {} and head["rayStartParams"]["num-cpus"] == "0"
    workers = {g["groupName"]: g for g in doc["spec"]["workerGroupSpecs"]}
    boards = workers["ulx3s"]
    units = _ray_resources(boards["rayStartParams"])
    assert units == {board_resource("ulx3s-85f"): 2} and board_resource("ulx3s-85f") == "board_ulx3s_85f"
    assert device_resource("board", "board_ulx3s_85f") == "board_ulx3s_85f"
    pod = boards["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    urls = env["ONDA_DEVICES"].split(",")
    assert len(urls) == units["board_ulx3s_85f"]  # one board file per unit: each actor claims one
    mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for url in urls:
        assert volumes[mounted[url]]["hostPath"] == {"path": url, "type": "CharDevice"}
    assert _ray_resources(workers["emulator"]["rayStartParams"]) == {device_resource("emulator"): 2}
