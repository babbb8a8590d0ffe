"""Brainwave's (Azure ML's) Python API over the local workspace: a Brainwave script runs with changed imports.

    ws = Workspace.from_config()                        # or Workspace("path"), ONDA_WORKSPACE
    model = Model.register(ws, "model.zip", "resnet50")
    config = Webservice.deploy_configuration(ssl_enabled=True, ssl_cert_pem_file=..., ssl_key_pem_file=...)
    service = Webservice.deploy_from_model(ws, "my-service", [model], image_config=None, deployment_config=config)
    service.wait_for_deployment(True)
    scores = service.run("cat.jpg")
    primary, secondary = service.get_keys(); service.regen_key("Secondary")
    service.delete(); model.delete()

``num_replicas`` maps to devices in the service's pool (one local process per service).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .store import LocalWorkspace, WorkspaceError


class Workspace(LocalWorkspace):
    @classmethod
    def from_config(cls, path: str | Path | None = None) -> "Workspace":
        return cls(path)

    @classmethod
    def get(cls, name: str | Path, **_azure_arguments) -> "Workspace":
        """Azure's ``Workspace.get(name, subscription_id=..., resource_group=...)``: here a directory."""
        return cls(name)


class Model:
    def __init__(self, workspace: Workspace, name: str, version: int | None = None):
        self.workspace = workspace
        rec = workspace.get_model(name, version)
        self.name, self.version, self.path = rec.name, rec.version, rec.path
        self.description, self.tags = rec.description, rec.tags

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    @staticmethod
    def register(workspace: Workspace, model_path: str | Path, model_name: str, tags: dict | None = None,
                 description: str | None = None) -> "Model":
        rec = workspace.register_model(model_path, model_name, description or "", tags)
        return Model(workspace, rec.name, rec.version)

    @staticmethod
    def list(workspace: Workspace, name: str | None = None) -> list["Model"]:
        return [Model(workspace, m.name, m.version) for m in workspace.models(name)]

    def delete(self) -> None:
        self.workspace.delete_model(self.name, self.version)

    def __repr__(self) -> str:
        return f"Model({self.id})"


@dataclass
class DeploymentConfiguration:
    num_replicas: int = 1
    ssl_enabled: bool = False
    ssl_cert_pem_file: str | None = None
    ssl_key_pem_file: str | None = None
    port: int = 0
    rest_port: int | None = None  # also TensorFlow Serving's REST API on this port (0: a free one)
    host: str = "127.0.0.1"
    backend: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 5.0
    tags: dict | None = None
    description: str | None = None


class Webservice:
    def __init__(self, workspace: Workspace, name: str):
        self.workspace = workspace
        self.name = name
        self.workspace.get_service(name)
        self._client = None
        self._client_key = None

    @staticmethod
    def deploy_configuration(**kwargs) -> DeploymentConfiguration:
        return DeploymentConfiguration(**kwargs)

    @staticmethod
    def deploy_from_model(workspace: Workspace, name: str, models: list[Model], image_config=None,
                          deployment_config: DeploymentConfiguration | None = None) -> "Webservice":
        """Deploy ``models[0]`` (one pipeline per service); ``image_config`` is accepted and ignored."""
        if not models:
            raise WorkspaceError("deploy_from_model needs one model")
        if len(models) > 1:
            raise WorkspaceError(f"one model per service, got {len(models)}")
        c = deployment_config or DeploymentConfiguration()
        if c.ssl_enabled and not (c.ssl_cert_pem_file and c.ssl_key_pem_file):
            raise WorkspaceError("ssl_enabled needs ssl_cert_pem_file and ssl_key_pem_file")
        m = models[0]
        workspace.deploy(name, m.name, m.version, host=c.host, port=c.port, backend=c.backend,
                         tls_cert=c.ssl_cert_pem_file if c.ssl_enabled else None,
                         tls_key=c.ssl_key_pem_file if c.ssl_enabled else None, devices=c.num_replicas,
                         max_batch=c.max_batch, max_wait_ms=c.max_wait_ms, rest_port=c.rest_port)
        return Webservice(workspace, name)

    @staticmethod
    def list(workspace: Workspace) -> list["Webservice"]:
        return [Webservice(workspace, s.name) for s in workspace.services()]

    # -- properties Brainwave users read ------------------------------------------------------------------
    @property
    def _record(self):
        return self.workspace.get_service(self.name)

    @property
    def ipAddress(self) -> str:  # noqa: N802 - Azure's name
        h = self._record.host
        return "localhost" if h in ("127.0.0.1", "0.0.0.0", "::") else h

    @property
    def port(self) -> int:
        return self._record.port

    @property
    def ssl_enabled(self) -> bool:
        return self._record.tls

    @property
    def state(self) -> str:
        return self.workspace.status(self.name)["state"]

    @property
    def scoring_uri(self) -> str:
        return f"{self.ipAddress}:{self.port}"

    def wait_for_deployment(self, show_output: bool = False, timeout: float = 180.0) -> None:
        self.workspace.wait_for_deployment(self.name, timeout)
        if show_output:
            print(f"service {self.name}: {self.state} on {self.scoring_uri}")

    def update(self, models: list[Model] | None = None, **_ignored) -> None:
        """Serve ``models[0]`` instead (same address and keys); Azure's other update arguments are ignored."""
        if models:
            if len(models) > 1:
                raise WorkspaceError(f"one model per service, got {len(models)}")
            self.workspace.update(self.name, models[0].name, models[0].version)

    def get_keys(self) -> tuple[str, str]:
        k = self.workspace.keys(self.name)
        return k["primary"], k["secondary"]

    def regen_key(self, key: str) -> None:
        self.workspace.regen_key(self.name, key)

    def get_logs(self, tail: int | None = None) -> str:
        return self.workspace.logs(self.name, tail)

    def client(self):
        from ..client import PredictionClient

        key = self.get_keys()[0]
        if self._client is None or self._client_key != key:
            r = self._record
            self._client = PredictionClient(self.ipAddress, r.port, use_ssl=r.tls, access_token=key,
                                            root_certificates=Path(r.tls_cert).read_bytes() if r.tls else None,
                                            retry_delays=(0.5, 1), timeout=300)  # simulated engines are slow
            self._client_key = key
        return self._client

    def run(self, input_data) -> np.ndarray:
        """Scores for an image path, encoded image bytes, or a preprocessed float array [N,H,W,3]."""
        c = self.client()
        if isinstance(input_data, (str, Path)):
            return c.score_image(input_data)
        if isinstance(input_data, (bytes, bytearray)):
            return c.score_file(bytes(input_data))
        return c.score_numpy_array(np.asarray(input_data))

    def delete(self) -> None:
        if self._client is not None:
            self._client.close()
        self.workspace.delete_service(self.name)


__all__ = ["DeploymentConfiguration", "Model", "Webservice", "Workspace", "WorkspaceError"]
