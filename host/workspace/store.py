"""The local workspace: a directory holding an SQLite database, registered model zips and deployed services.

Layout::

    WORKSPACE/onda.db                          models and services
    WORKSPACE/models/NAME/VERSION/model.zip    registered pipelines (versions count up from 1)
    WORKSPACE/services/NAME/                   keys.json (0600), service.log, port

A deployed service is a local server process (``python -m onda.host.service``) in its own session,
on its own port, bound to a backend. The workspace supervises it: it records its pid, checks it is alive
and healthy (gRPC health), shows its log, restarts it on the same port, and stops it by SIGTERM (the
server drains in-flight requests) before SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..pipeline import ModelDefinition, PipelineError
from ..service.keys import KEY_NAMES, new_key, write_keys

ENV = "ONDA_WORKSPACE"
SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL, description TEXT, tags TEXT,
    created REAL NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY, model_name TEXT NOT NULL, model_version INTEGER NOT NULL, host TEXT NOT NULL,
    port INTEGER, pid INTEGER, backend TEXT NOT NULL, tls_cert TEXT, tls_key TEXT, options TEXT NOT NULL,
    created REAL NOT NULL);
"""


class WorkspaceError(RuntimeError):
    """A workspace operation failed; the message says why in one line."""


def default_workspace() -> Path:
    return Path(os.environ.get(ENV) or Path.home() / ".onda" / "workspace")


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: int
    path: Path
    description: str
    tags: dict
    created: float


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    model_name: str
    model_version: int
    host: str
    port: int | None
    pid: int | None
    backend: str
    tls_cert: str | None
    tls_key: str | None
    options: dict
    created: float

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def rest_port(self) -> int | None:
        """The REST port (TensorFlow Serving's API) once bound; 0 before the first start; None: no REST."""
        return self.options.get("rest_port")

    def rest_url(self) -> str | None:
        if self.rest_port is None:
            return None
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::") else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.rest_port}/v1/models/{self.model_name}:predict"


def _check_name(kind: str, name: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name or ""):
        raise WorkspaceError(f"invalid {kind} name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


class LocalWorkspace:
    def __init__(self, path: str | Path | None = None):
        self.path = (Path(path) if path else default_workspace()).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self.db_path = self.path / "onda.db"
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    # -- models --------------------------------------------------------------------------------------
    def register_model(self, zip_path: str | Path, name: str, description: str = "",
                       tags: dict | None = None) -> ModelRecord:
        _check_name("model", name)
        try:
            ModelDefinition.load(zip_path)  # refuse what cannot be served
        except PipelineError as e:
            raise WorkspaceError(str(e)) from None
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            version = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?", (name,)).fetchone()[0]
            dest = self.path / "models" / name / str(version) / "model.zip"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(zip_path, dest)
            db.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?)",
                       (name, version, str(dest), description or "", json.dumps(tags or {}), time.time()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()
        return self.get_model(name, version)

    def models(self, name: str | None = None) -> list[ModelRecord]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM models WHERE (? IS NULL OR name = ?) ORDER BY name, version",
                              (name, name)).fetchall()
        return [self._model(r) for r in rows]

    def get_model(self, name: str, version: int | None = None) -> ModelRecord:
        with self._db() as db:
            if version is None:
                row = db.execute("SELECT * FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            else:
                row = db.execute("SELECT * FROM models WHERE name = ? AND version = ?", (name, version)).fetchone()
        if row is None:
            known = sorted({f"{m.name}:{m.version}" for m in self.models()})
            raise WorkspaceError(f"no model {name}{'' if version is None else f':{version}'} in {self.path} "
                                 f"(registered: {', '.join(known) or 'none'})")
        return self._model(row)

    def delete_model(self, name: str, version: int | None = None) -> list[ModelRecord]:
        doomed = [self.get_model(name, version)] if version is not None else self.models(name)
        if not doomed:
            raise WorkspaceError(f"no model {name} in {self.path}")
        for m in doomed:
            users = [s.name for s in self.services() if (s.model_name, s.model_version) == (m.name, m.version)]
            if users:
                raise WorkspaceError(f"model {m.name}:{m.version} is used by service(s) {', '.join(users)}; "
                                     "delete them first")
        with self._db() as db:
            for m in doomed:
                db.execute("DELETE FROM models WHERE name = ? AND version = ?", (m.name, m.version))
                shutil.rmtree(Path(m.path).parent, ignore_errors=True)
        return doomed

    @staticmethod
    def _model(r) -> ModelRecord:
        return ModelRecord(r["name"], r["version"], Path(r["path"]), r["description"], json.loads(r["tags"] or "{}"),
                           r["created"])

    # -- services ------------------------------------------------------------------------------------
    def service_dir(self, name: str) -> Path:
        return self.path / "services" / name

    def deploy(self, name: str, model_name: str, model_version: int | None = None, host: str = "127.0.0.1",
               port: int = 0, backend: str | None = None, tls_cert: str | Path | None = None,
               tls_key: str | Path | None = None, devices: int = 1, max_batch: int = 8, max_wait_ms: float = 5.0,
               wait: bool = True, timeout: float = 180.0, rest_port: int | None = None) -> ServiceRecord:
        from ..runtime import available_backends, default_backend

        _check_name("service", name)
        model = self.get_model(model_name, model_version)
        backend = backend or default_backend()
        if backend not in available_backends():
            raise WorkspaceError(f"unknown backend {backend!r} (available: {', '.join(available_backends())})")
        if bool(tls_cert) != bool(tls_key):
            raise WorkspaceError("TLS needs both a certificate chain (PEM) and its private key (PEM)")
        d = self.service_dir(name)
        with self._db() as db:
            if db.execute("SELECT 1 FROM services WHERE name = ?", (name,)).fetchone():
                raise WorkspaceError(f"service {name} already exists (delete it first, or pick another name)")
            d.mkdir(parents=True, exist_ok=True)
            if tls_cert:  # keep copies: the service must not depend on files the user may move
                shutil.copyfile(tls_cert, d / "tls.crt")
                shutil.copyfile(tls_key, d / "tls.key")
                os.chmod(d / "tls.key", 0o600)
                tls_cert, tls_key = str(d / "tls.crt"), str(d / "tls.key")
            write_keys(d / "keys.json", {k: new_key() for k in KEY_NAMES})
            options = {"devices": devices, "max_batch": max_batch, "max_wait_ms": max_wait_ms}
            if rest_port is not None:
                options["rest_port"] = rest_port
            db.execute("INSERT INTO services VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (name, model.name, model.version, host, port or None, None, backend, tls_cert, tls_key,
                        json.dumps(options), time.time()))
        try:
            self.start(name, wait=wait, timeout=timeout)
        except WorkspaceError:
            if wait:
                self.delete_service(name)
            raise
        return self.get_service(name)

    def start(self, name: str, wait: bool = True, timeout: float = 180.0) -> ServiceRecord:
        """Start (or restart) a service's process, on its recorded port once it has one."""
        s = self.get_service(name)
        if self._alive(s):
            raise WorkspaceError(f"service {name} is already running (pid {s.pid})")
        model = self.get_model(s.model_name, s.model_version)
        d = self.service_dir(name)
        port_file = d / "port"
        port_file.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "onda.host.service",
               "--model", f"{s.model_name}:{s.model_version}={model.path}", "--host", s.host,
               "--port", str(s.port or 0), "--backend", s.backend, "--keys-file", str(d / "keys.json"),
               "--port-file", str(port_file), "--devices", str(s.options["devices"]),
               "--max-batch", str(s.options["max_batch"]), "--max-wait-ms", str(s.options["max_wait_ms"])]
        if s.tls:
            cmd += ["--tls-cert", s.tls_cert, "--tls-key", s.tls_key]
        if s.rest_port is not None:
            (d / "rest_port").unlink(missing_ok=True)
            cmd += ["--rest-port", str(s.rest_port), "--rest-port-file", str(d / "rest_port")]
        with open(d / "service.log", "ab") as logf:
            logf.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=d)
        with self._db() as db:
            db.execute("UPDATE services SET pid = ? WHERE name = ?", (proc.pid, name))
        if wait:
            self.wait_for_deployment(name, timeout, proc)
        return self.get_service(name)

    def update(self, name: str, model_name: str, model_version: int | None = None, timeout: float = 180.0) -> ServiceRecord:
        """Serve another model (or version) on the same service: same port, same keys; the old process drains."""
        model = self.get_model(model_name, model_version)
        with self._db() as db:
            db.execute("UPDATE services SET model_name = ?, model_version = ? WHERE name = ?",
                       (model.name, model.version, self.get_service(name).name))
        self.stop(name)
        return self.start(name, timeout=timeout)

    def wait_for_deployment(self, name: str, timeout: float = 180.0, proc: subprocess.Popen | None = None) -> None:
        s = self.get_service(name)
        port_file = self.service_dir(name) / "port"
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            exited = proc.poll() is not None if proc is not None else not self._alive(s)
            if exited:
                raise WorkspaceError(f"service {name} exited while starting; log tail:\n{self.logs(name, 8)}")
            if port_file.is_file():
                port = int(port_file.read_text())
                rest_file = self.service_dir(name) / "rest_port"
                options = dict(s.options, rest_port=int(rest_file.read_text())) if rest_file.is_file() else s.options
                with self._db() as db:
                    db.execute("UPDATE services SET port = ?, options = ? WHERE name = ?",
                               (port, json.dumps(options), name))
                if self.health(self.get_service(name)) == "SERVING":
                    return
            time.sleep(0.1)
        raise WorkspaceError(f"service {name} did not become healthy within {timeout:.0f} s; log tail:\n"
                             f"{self.logs(name, 8)}")

    def services(self) -> list[ServiceRecord]:
        with self._db() as db:
            return [self._service(r) for r in db.execute("SELECT * FROM services ORDER BY name").fetchall()]

    def get_service(self, name: str) -> ServiceRecord:
        with self._db() as db:
            row = db.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [s.name for s in self.services()]
            raise WorkspaceError(f"no service {name} in {self.path} (services: {', '.join(known) or 'none'})")
        return self._service(row)

    @staticmethod
    def _service(r) -> ServiceRecord:
        return ServiceRecord(r["name"], r["model_name"], r["model_version"], r["host"], r["port"], r["pid"],
                             r["backend"], r["tls_cert"], r["tls_key"], json.loads(r["options"]), r["created"])

    def keys(self, name: str) -> dict[str, str]:
        self.get_service(name)
        return json.loads((self.service_dir(name) / "keys.json").read_text())

    def regen_key(self, name: str, which: str) -> dict[str, str]:
        which = which.lower()
        if which not in KEY_NAMES:
            raise WorkspaceError(f"key must be 'primary' or 'secondary', got {which!r}")
        keys = self.keys(name)
        keys[which] = new_key()
        write_keys(self.service_dir(name) / "keys.json", keys)
        return keys

    def logs(self, name: str, tail: int | None = None) -> str:
        p = self.service_dir(name) / "service.log"
        text = p.read_text(errors="replace") if p.is_file() else ""
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def status(self, name: str) -> dict:
        """{"state": "running" | "down" | "unhealthy", "detail": ...} with pid, port, health."""
        s = self.get_service(name)
        if not self._alive(s):
            return {"state": "down", "detail": f"process {s.pid} is not running" if s.pid else "never started",
                    "pid": s.pid, "port": s.port}
        h = self.health(s)
        return {"state": "running" if h == "SERVING" else "unhealthy", "detail": f"health: {h}", "pid": s.pid,
                "port": s.port}

    def health(self, s: ServiceRecord, timeout: float = 2.0) -> str:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        if not s.port:
            return "NO PORT"
        target = f"{'localhost' if s.host in ('127.0.0.1', '0.0.0.0', '::') else s.host}:{s.port}"
        if s.tls:
            creds = grpc.ssl_channel_credentials(Path(s.tls_cert).read_bytes())
            channel = grpc.secure_channel(target, creds)
        else:
            channel = grpc.insecure_channel(target)
        with channel:
            try:
                r = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
                return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
            except grpc.RpcError as e:
                return f"{e.code().name}"

    @staticmethod
    def _alive(s: ServiceRecord) -> bool:
        if not s.pid:
            return False
        try:  # reap it if it is our own child that died
            done, _ = os.waitpid(s.pid, os.WNOHANG)
            if done:
                return False
        except ChildProcessError:
            pass
        try:
            cmdline = Path(f"/proc/{s.pid}/cmdline").read_bytes()
            state = Path(f"/proc/{s.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and b"onda.host.service" in cmdline

    def stop(self, name: str, grace: float = 10.0) -> None:
        s = self.get_service(name)
        if not self._alive(s):
            return
        os.kill(s.pid, signal.SIGTERM)
        t_end = time.monotonic() + grace + 5
        while time.monotonic() < t_end and self._alive(s):
            time.sleep(0.05)
        if self._alive(s):
            os.kill(s.pid, signal.SIGKILL)
            while self._alive(s):
                time.sleep(0.05)

    def delete_service(self, name: str, grace: float = 10.0) -> None:
        self.stop(name, grace)
        with self._db() as db:
            db.execute("DELETE FROM services WHERE name = ?", (name,))
        shutil.rmtree(self.service_dir(name), ignore_errors=True)
