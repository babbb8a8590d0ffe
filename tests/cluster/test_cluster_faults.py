"""Node faults on a real local Ray cluster (slow: nodes are started and killed one by one, seconds each):
a worker node killed (SIGKILL of its raylet, object store and actors) during a stream of requests loses none and
answers none wrongly, with no retry by the client (the front end ran the lost batches on the other device);
nodes added bring a restarted device back and add a new one; health says NOT_SERVING only once no device is left,
and SERVING again when one comes back.

The tests run in order on one cluster (each leaves the next its starting point).
"""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from .front_end import FrontEnd, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-cluster-faults")]  # one cluster, one worker


@pytest.fixture(scope="module")
def cluster():
    from onda.host.cluster.local import LocalCluster

    c = LocalCluster()
    try:
        c.workers = [c.add_node({"emulator": 1}), c.add_node({"emulator": 1})]
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def front_end(cluster, digits, shared, tmp_path_factory):
    fe = FrontEnd(tmp_path_factory.mktemp("front-end"), digits[0], cluster.address, shared["tls"], shared["keys"],
                  "fe").wait()
    yield fe
    fe.stop()


class Stream:
    """``threads`` clients scoring held-out digits round robin until stopped, with no client-side retry; every
    answer recorded with the image it was for and the device that ran it."""

    def __init__(self, fe: FrontEnd, pngs, threads: int = 4):
        self.fe, self.pngs = fe, pngs
        self.answers: list[tuple[int, np.ndarray, str]] = []
        self.errors: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k, threads)) for k in range(threads)]

    def _run(self, k: int, step: int) -> None:
        with self.fe.client(timeout=120) as c:
            i = k
            while not self._stop.is_set():
                with self._lock:
                    self.sent += 1
                try:
                    scores = c.score_file(self.pngs[i % len(self.pngs)][0])
                    with self._lock:
                        self.answers.append((i % len(self.pngs), scores, c.last.device))
                except grpc.RpcError as e:
                    with self._lock:
                        self.errors.append(f"{e.code().name}: {e.details()}")
                i += step

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(180)

    def count(self) -> int:
        return len(self.answers)


def _check(stream: Stream, single_host) -> None:
    assert not stream.errors, stream.errors[:5]
    assert len(stream.answers) == stream.sent  # every request sent was answered, once
    for i, scores, _ in stream.answers:
        np.testing.assert_array_equal(scores, single_host[i])  # its own answer, not another request's


def test_a_worker_node_killed_mid_stream_loses_no_request(cluster, front_end, digits, single_host):
    with Stream(front_end, digits[1]) as s:
        wait_for(lambda: {d for *_, d in s.answers} == {"onda-device:emulator:0", "onda-device:emulator:1"}
                 and s.count() >= 16, 120, "answers from both devices")
        cluster.kill_node(cluster.workers[0])  # 4 clients on 2 devices: it holds a batch when it dies
        at_kill = s.count()
        wait_for(lambda: s.count() >= at_kill + 40, 180, "answers after the node died")
    _check(s, single_host)
    after = {d for *_, d in s.answers[at_kill + 8:]}
    assert len(after) == 1  # only the device on the surviving node serves now
    assert "retried on another device" in front_end.tail(20000)  # a batch was on the node when it died
    assert front_end.health("digits") == "SERVING"


def test_nodes_added_bring_a_device_back_and_add_one(cluster, front_end, digits, single_host):
    """Node 3 takes the killed node's actor (Ray restarts it where a unit is free): 2 devices again; node 4 is a
    new unit of the resource: a third device actor, created by the front end within a period."""
    with Stream(front_end, digits[1]) as s:
        cluster.workers.append(cluster.add_node({"emulator": 1}))
        wait_for(lambda: len({d for *_, d in s.answers[-40:]}) == 2, 180, "a second device after node 3")
        cluster.workers.append(cluster.add_node({"emulator": 1}))
        wait_for(lambda: {d for *_, d in s.answers} >= {f"onda-device:emulator:{i}" for i in range(3)}, 180,
                 "a third device after node 4")
    _check(s, single_host)


def test_not_serving_only_when_no_device_is_left_and_serving_again(cluster, front_end, digits, single_host):
    png = digits[1][0][0]
    alive = [w for w in cluster.workers if w.alive]
    assert len(alive) == 3
    for w in alive[:-1]:
        cluster.kill_node(w)
    with front_end.client(timeout=120) as c:
        np.testing.assert_array_equal(c.score_file(png), single_host[0])  # one device left: still serving
    assert front_end.health("digits") == "SERVING"
    cluster.kill_node(alive[-1])
    wait_for(lambda: front_end.health("digits") == "NOT_SERVING", 60, "NOT_SERVING with no device")
    assert front_end.health("tensorflow.serving.PredictionService") == "NOT_SERVING"
    assert front_end.health("") == "SERVING"  # the front end itself is alive (liveness), just not ready
    with front_end.client(timeout=30) as c, pytest.raises(grpc.RpcError) as e:
        c.score_file(png)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "no device of 'digits' is left" in e.value.details()
    cluster.workers.append(cluster.add_node({"emulator": 1}))
    wait_for(lambda: front_end.health("digits") == "SERVING", 180, "SERVING once a node is back")
    with front_end.client(timeout=120) as c:
        np.testing.assert_array_equal(c.score_file(png), single_host[0])
