"""Two stateless front ends on one real local Ray cluster (a head and two worker nodes, separate ``ray start``
processes, one emulator device each): the answers equal the single-host server's, both front ends share the
same two device actors, keys and health work as on one host, bad ``--cluster`` uses fail precisely, and a
front end that dies loses only its own requests while the other keeps serving from every device.

The short version that ``make test`` runs: one cluster for the module, reused by every test. The node faults
(a worker killed mid-stream, nodes added) are in ``test_cluster_faults.py`` (slow).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from .front_end import FrontEnd, child_env

# One cluster for the module: its tests stay on one pytest-xdist worker (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ray-cluster")

DEVICES = {"onda-device:emulator:0", "onda-device:emulator:1"}


@pytest.fixture(scope="module")
def cluster():
    from onda.host.cluster.local import LocalCluster

    c = LocalCluster()
    try:
        c.add_node({"emulator": 1})
        c.add_node({"emulator": 1})
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def front_ends(cluster, digits, shared, tmp_path_factory):
    """Two front ends on the same keys file, certificate and model zip: one on the head's GCS address, the
    other through Ray Client (``ray://``)."""
    workdir = tmp_path_factory.mktemp("front-ends")
    zip_path, _ = digits
    fes = [FrontEnd(workdir, zip_path, address, shared["tls"], shared["keys"], name)
           for name, address in (("gcs", cluster.address), ("client", cluster.client_address))]
    try:
        for fe in fes:
            fe.wait()
        yield fes
    finally:
        for fe in fes:
            fe.stop()


def _score_all(fe: FrontEnd, pngs, threads: int = 4):
    """Scores of every png through ``fe`` from ``threads`` concurrent clients, and the device of each answer."""
    clients = [fe.client(timeout=120) for _ in range(threads)]

    def one(i):
        c = clients[i % threads]
        with locks[i % threads]:
            scores = c.score_file(pngs[i][0])
            return scores, c.last.device

    locks = [threading.Lock() for _ in range(threads)]
    with ThreadPoolExecutor(threads) as ex:
        out = list(ex.map(one, range(len(pngs))))
    for c in clients:
        c.close()
    return np.stack([s for s, _ in out]), [d for _, d in out]


def _devices(cluster) -> dict:
    out = subprocess.run([sys.executable, "-m", "onda.host.cli", "cluster", "devices", "--cluster", cluster.address,
                          "--json"], capture_output=True, text=True, timeout=180, env=child_env())
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_two_front_ends_answer_as_the_single_host_server_from_shared_devices(cluster, front_ends, digits,
                                                                             single_host):
    _, pngs = digits
    seen = set()
    for fe in front_ends:
        scores, devices = _score_all(fe, pngs)
        np.testing.assert_array_equal(scores, single_host, err_msg=f"front end {fe.name}")
        assert set(devices) <= DEVICES, devices
        seen |= set(devices)
    assert seen == DEVICES  # the requests were spread over both devices
    report = _devices(cluster)
    names = {d["name"] for d in report["devices"]}
    assert names == DEVICES  # two front ends, two device actors: they share them
    assert all(d["state"] == "alive" and len(d["models"]) == 1 for d in report["devices"])
    nodes = {d["node"] for d in report["devices"]}
    assert len(nodes) == 2  # one on each worker node, none on the head (it has no emulator resource)
    assert sum(d["images"] for d in report["devices"]) >= 2 * len(pngs)


def test_keys_and_health_on_every_front_end(front_ends, digits):
    _, pngs = digits
    for fe in front_ends:
        assert fe.health("digits") == "SERVING"
        assert fe.health("tensorflow.serving.PredictionService") == "SERVING"
        assert fe.health("") == "SERVING"
        with fe.client(key="not-the-key") as c, pytest.raises(grpc.RpcError) as e:
            c.score_file(pngs[0][0])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with fe.client(key="cluster-test-secondary") as c:  # the keys file's second key, read by both
            assert c.score_file(pngs[0][0]).shape == (10,)


@pytest.mark.parametrize("args, message", [
    (["--cluster", "nowhere"], "expected ray://HOST:PORT (Ray Client), HOST:PORT (the head's GCS) or auto"),
    (["--cluster", "127.0.0.1:1"], "cannot connect to the Ray cluster at 127.0.0.1:1"),
    (["--cluster", "HEAD", "--devices", "2"], "--devices with --cluster: the cluster's resources say"),
    (["--cluster", "HEAD", "--backend", "golden"], "has no 'golden' device: start a device node with"),
    (["--cluster", "HEAD", "--backend", "board"], "name the boards' resource, --device-resource board_<engine>"),
])
def test_bad_cluster_uses_exit_1_with_a_precise_message(cluster, digits, args, message):
    zip_path, _ = digits
    args = [a.replace("HEAD", cluster.address) for a in args]
    out = subprocess.run([sys.executable, "-m", "onda.host.service", "--model", f"digits={zip_path}", *args],
                         capture_output=True, text=True, timeout=240, env=child_env())
    assert out.returncode == 1, out.stderr[-2000:]
    assert message in out.stderr, out.stderr[-2000:]


def test_a_front_end_that_dies_loses_only_its_own_requests(cluster, front_ends, digits, single_host):
    """Both front ends take a stream of requests; one is killed (SIGKILL) in the middle. The other answers every
    one of its requests, rightly, and still from both devices: the actors did not die with the front end."""
    _, pngs = digits
    victim, survivor = front_ends
    stop = threading.Event()
    results = {victim.name: [], survivor.name: []}

    def stream(fe, k):
        with fe.client(timeout=60) as c:
            i = k
            while not stop.is_set():
                try:
                    scores = c.score_file(pngs[i % len(pngs)][0])
                    results[fe.name].append((i % len(pngs), scores, c.last.device, None))
                except grpc.RpcError as e:
                    results[fe.name].append((i % len(pngs), None, None, e.code()))
                    if fe is victim:
                        return
                i += 2

    threads = [threading.Thread(target=stream, args=(fe, k)) for fe in front_ends for k in (0, 1)]
    for t in threads:
        t.start()
    try:
        from .front_end import wait_for

        wait_for(lambda: len(results[victim.name]) >= 6 and len(results[survivor.name]) >= 6, 120, "both streams")
        victim.kill()
        n_at_kill = len(results[survivor.name])
        wait_for(lambda: len(results[survivor.name]) >= n_at_kill + 16, 120, "the survivor's stream after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    good = results[survivor.name]
    assert all(code is None for *_, code in good), [code for *_, code in good if code]
    for i, scores, _, _ in good:
        np.testing.assert_array_equal(scores, single_host[i])
    assert {d for _, _, d, _ in good[n_at_kill:]} == DEVICES
    failed = [code for *_, code in results[victim.name] if code is not None]
    assert failed and set(failed) <= {grpc.StatusCode.UNAVAILABLE}  # what PredictionClient retries elsewhere
