"""An ``onda serve --cluster`` front end in a process of its own (as a load balancer's backends are), and the
clients and checks the cluster tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

KEY = "cluster-test-primary-key"


def child_env() -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", TF_CPP_MIN_LOG_LEVEL="2")
    if env.get("PYTHONPATH"):  # absolute: the child may resolve onda from another directory
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    return env


class FrontEnd:
    """``python -m onda.host.service --cluster ADDRESS`` with TLS and a keys file, on a free loopback port."""

    def __init__(self, workdir: Path, model_zip: Path, cluster: str, tls: tuple[Path, Path], keys_file: Path,
                 name: str, extra: list[str] = ()):
        self.workdir, self.name = Path(workdir), name
        self.port_file = self.workdir / f"{name}.port"
        self.log = self.workdir / f"{name}.log"
        self.port_file.unlink(missing_ok=True)
        cert, key = tls
        self.cert = cert
        self.cmd = [sys.executable, "-m", "onda.host.service", "--model", f"digits={model_zip}", "--cluster", cluster,
                    "--tls-cert", str(cert), "--tls-key", str(key), "--keys-file", str(keys_file),
                    "--port-file", str(self.port_file), "--grace", "2", *extra]
        with open(self.log, "wb") as f:
            self.process = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT, env=child_env())
        self.port: int | None = None

    def wait(self, timeout: float = 240.0) -> "FrontEnd":
        t_end = time.monotonic() + timeout
        while not self.port_file.is_file():
            if self.process.poll() is not None:
                raise RuntimeError(f"front end {self.name} exited {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > t_end:
                raise TimeoutError(f"front end {self.name} not listening after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.2)
        self.port = int(self.port_file.read_text())
        return self

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.is_file() else ""

    def client(self, key: str = KEY, **kw):
        from onda.host.client import PredictionClient

        kw.setdefault("retry_delays", ())
        return PredictionClient("localhost", self.port, use_ssl=True, access_token=key, root_certificates=self.cert,
                                **kw)

    def health(self, service: str = "digits") -> str:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        creds = grpc.ssl_channel_credentials(self.cert.read_bytes())
        with grpc.secure_channel(f"localhost:{self.port}", creds) as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def kill(self) -> None:
        """SIGKILL: a front end that dies, not one that drains."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    t_end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > t_end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
