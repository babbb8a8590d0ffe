"""A Ray cluster on this machine: a head and worker nodes, each a ``ray start --block`` process of its own.

For the tests and the bench, which need nodes that can be added and killed one by one: every node runs in its own
process group, so ``kill_node`` takes its raylet, object store and workers down at once, as a machine that loses
power would (``SIGKILL``, nothing shut down cleanly), and ``stop`` leaves no Ray process of this cluster behind.
Nothing here touches Ray processes it did not start (no ``ray stop``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def session_processes(sid: int) -> list[int]:
    """The processes of session ``sid`` (from /proc: Linux)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session
            pids.append(int(d.name))
    return pids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    resources: dict
    process: subprocess.Popen
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalCluster:
    """``LocalCluster()`` starts a head with no devices (``num_cpus`` CPUs for drivers' helpers);
    ``add_node({"emulator": 1})`` a worker whose custom resources say which devices it has.
    ``address`` is the GCS address (``HOST:PORT``) and ``client_address`` the Ray Client one (``ray://HOST:PORT``)."""

    def __init__(self, object_store_mb: int = 100, head_cpus: int = 1, start_timeout: float = 120.0):
        # Unix socket paths are limited to 107 bytes: a short directory of its own under /tmp.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="onda-ray-", dir="/tmp"))
        self.object_store_mb = object_store_mb
        self.start_timeout = start_timeout
        self.nodes: list[Node] = []
        self.port = free_port()
        self.client_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self._count = 0
        try:
            self._start("head", {}, head_cpus, ["--head", f"--port={self.port}",
                                                f"--ray-client-server-port={self.client_port}",
                                                "--include-dashboard=false", f"--temp-dir={self.temp_dir}"])
            self._wait_for_nodes(1)
        except BaseException:
            self.stop()
            raise

    def _ray(self) -> str:
        exe = Path(sys.executable).with_name("ray")
        return str(exe) if exe.is_file() else "ray"

    def _start(self, name: str, resources: dict, cpus: int, extra: list[str]) -> Node:
        log = self.temp_dir / f"{name}.log"
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_DISABLE_DOCKER_CPU_WARNING="1")
        if env.get("PYTHONPATH"):  # the actors import the same onda as this process, from any directory
            env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
        cmd = [self._ray(), "start", "--block", f"--num-cpus={cpus}", "--num-gpus=0", "--node-ip-address=127.0.0.1",
               f"--object-store-memory={self.object_store_mb * 1024 * 1024}", "--disable-usage-stats",
               f"--resources={json.dumps(resources)}", *extra]
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        node = Node(name, dict(resources), proc, log)
        self.nodes.append(node)
        return node

    def add_node(self, resources: dict, cpus: int = 1, wait: bool = True) -> Node:
        """A worker node with these custom resources (e.g. ``{"emulator": 1}``); waits until the head lists it."""
        self._count += 1
        alive = sum(n.alive for n in self.nodes)
        node = self._start(f"worker{self._count}", resources, cpus, [f"--address={self.address}"])
        if wait:
            self._wait_for_nodes(alive + 1)
        return node

    def kill_node(self, node: Node) -> None:
        """SIGKILL every process of the node: ``ray start``, its raylet and object store, and the workers and
        actors the raylet started (they have process groups of their own but stay in the node's session)."""
        if node.process.poll() is None:
            for pid in session_processes(node.process.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            node.process.wait(30)
        for pid in session_processes(node.process.pid):  # a worker forked as the rest died
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def alive_nodes(self) -> int:
        """Nodes the cluster counts as active (``ray status``; 0 while the head does not answer)."""
        out = subprocess.run([self._ray(), "status", f"--address={self.address}"], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
        if out.returncode != 0 or "Active:" not in out.stdout:
            return 0
        active = out.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
        return sum(1 for line in active.splitlines() if line.strip().startswith("1 node_"))

    def _wait_for_nodes(self, count: int) -> None:
        t_end = time.monotonic() + self.start_timeout
        while time.monotonic() < t_end:
            head = self.nodes[0]
            if not head.alive:
                raise RuntimeError(f"the Ray head exited: {head.log.read_text()[-2000:]}")
            if self.alive_nodes() >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"the local Ray cluster did not reach {count} node(s) in {self.start_timeout:.0f} s; "
                           f"logs in {self.temp_dir}")

    def stop(self) -> None:
        """Kill every node of this cluster (workers first, then the head) and remove its directory."""
        for node in reversed(self.nodes):
            self.kill_node(node)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
