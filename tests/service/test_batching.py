"""The device pool (dynamic batching, queue limit, deadlines, device failure) and what the server makes of it:
UNAVAILABLE when the backend fails, RESOURCE_EXHAUSTED when the queue is full, draining on shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest

from onda.host.runtime import backend as backend_module
from onda.host.service.batching import (DeadlineExpired, DeviceFailed, DeviceLost, DevicePool, NoDevice,
                                        QueueFull)


class FakeDevice:
    """Doubles its int8 input after ``delay`` seconds; records the batch sizes it ran."""

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.delay, self.fail, self.batches = delay, fail, []

    def run(self, inputs):
        (x,) = inputs
        self.batches.append(x.shape[0])
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("device not responding")
        return [x * 2]


def run_async(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_a_batch_and_get_their_own_rows():
    async def main():
        dev = FakeDevice(delay=0.5)
        pool = DevicePool([dev], max_batch=8, max_wait_s=0.01)
        pool.start()
        xs = [np.full((1, 3), i, np.int8) for i in range(9)]
        first = pool.submit(xs[0])
        while not dev.batches:  # the device is busy with the first request while eight more arrive
            await asyncio.sleep(0.001)
        rest = [pool.submit(x) for x in xs[1:]]
        results = await asyncio.gather(first, *rest)
        await pool.close()
        return dev, results

    dev, results = run_async(main())
    assert dev.batches == [1, 8]
    for i, (out, info) in enumerate(results):
        np.testing.assert_array_equal(out, np.full((1, 3), 2 * i, np.int8))
        assert info.batch_images == (1 if i == 0 else 8) and info.compute_s >= 0.5


def test_a_lone_request_is_not_held_back_by_max_wait():
    async def main():
        pool = DevicePool([FakeDevice()], max_batch=8, max_wait_s=30.0)
        pool.start()
        t0 = time.perf_counter()
        await pool.run(np.zeros((1, 3), np.int8))
        elapsed = time.perf_counter() - t0
        await pool.close()
        return elapsed

    assert run_async(main()) < 10  # far below max_wait however loaded the machine


def test_announced_requests_are_waited_for():
    async def main():
        dev = FakeDevice()
        pool = DevicePool([dev], max_batch=4, max_wait_s=30.0)
        pool.start()
        announcements = [pool.announce() for _ in range(3)]
        futures = []
        for a in announcements:  # three requests "decoding", arriving 10 ms apart
            futures.append(pool.submit(np.zeros((1, 2), np.int8)))
            a.done()
            await asyncio.sleep(0.01)
        await asyncio.gather(*futures)
        await pool.close()
        return dev.batches

    assert run_async(main()) == [3]


def test_queue_full_deadline_and_device_failure():
    async def main():
        dev = FakeDevice(delay=0.5)
        pool = DevicePool([dev], max_batch=1, max_wait_s=0.0, max_queue=2)
        pool.start()
        a = pool.submit(np.zeros((1, 1), np.int8))
        while not dev.batches:
            await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        b = pool.submit(np.zeros((1, 1), np.int8), deadline=loop.time() + 0.05)  # expires while a runs
        c = pool.submit(np.zeros((1, 1), np.int8))
        with pytest.raises(QueueFull, match="queue full: 2 requests waiting"):
            pool.announce()
        await a
        with pytest.raises(DeadlineExpired, match="deadline expired after"):
            await b
        await c
        await pool.close()
        broken = DevicePool([FakeDevice(fail=True)])
        broken.start()
        with pytest.raises(DeviceFailed, match="device not responding"):
            await broken.run(np.zeros((1, 1), np.int8))
        await broken.close()

    run_async(main())


class LosableDevice(FakeDevice):
    """A FakeDevice that is lost (raises DeviceLost) on its ``lose_on``-th run, after holding the batch a while."""

    def __init__(self, name: str, lose_on: int | None = None, delay: float = 0.0):
        super().__init__(delay=delay)
        self.name, self.lose_on = name, lose_on

    def run(self, inputs):
        if self.lose_on is not None and len(self.batches) + 1 >= self.lose_on:
            self.batches.append(inputs[0].shape[0])
            time.sleep(self.delay)
            raise DeviceLost(f"{self.name} lost")
        return super().run(inputs)


def test_a_lost_device_leaves_and_its_batch_is_answered_once_by_another():
    """Every request answered once, with its own rows (x * 2), though a device died holding some of them;
    the lost device leaves the pool, the count callback follows, and a device added later serves."""
    async def main():
        lost = LosableDevice("a", lose_on=1, delay=0.05)
        good = LosableDevice("b", delay=0.05)
        counts = []
        pool = DevicePool([lost, good], max_batch=4, max_wait_s=0.0, dynamic=True, on_devices=counts.append)
        pool.start()
        xs = [np.full((1, 3), i, np.int8) for i in range(12)]
        results = await asyncio.gather(*[pool.submit(x) for x in xs])
        for x, (y, info) in zip(xs, results):
            np.testing.assert_array_equal(y, x * 2)
            assert info.device == "b"
        assert sum(good.batches) == len(xs)  # each image ran once on the device that answered
        assert sum(lost.batches) >= 1 and pool.retried == 1
        assert pool.device_names == ["b"] and counts == [1]
        late = LosableDevice("c", delay=0.0)
        pool.add_device(late)
        pool.add_device(LosableDevice("c"))  # a second device of the same name is the same device: ignored
        assert pool.device_names == ["b", "c"] and counts == [1, 2]
        pool.remove_device("b")
        (y, info), = await asyncio.gather(pool.submit(xs[5]))
        assert info.device == "c" and counts == [1, 2, 1]
        await pool.close()

    run_async(main())


def test_requests_fail_when_every_device_is_lost_or_too_many_are():
    async def main():
        pool = DevicePool([LosableDevice("a", lose_on=1), LosableDevice("b", lose_on=1)], max_attempts=3,
                          dynamic=True)
        pool.start()
        with pytest.raises(NoDevice, match="no device of 'pool' is left"):  # lost twice, nobody left
            await pool.run(np.zeros((1, 1), np.int8))
        with pytest.raises(NoDevice):
            pool.announce()
        with pytest.raises(NoDevice):
            pool.submit(np.zeros((1, 1), np.int8))
        await pool.close()
        devices = [LosableDevice(n, lose_on=1) for n in "abc"] + [LosableDevice("d")]
        pool = DevicePool(devices, max_attempts=3, dynamic=True, max_wait_s=0.0)
        pool.start()
        pool.remove_device("d")  # keep d out until the three others are lost
        with pytest.raises(DeviceFailed, match="3 devices were lost running this request"):
            await pool.run(np.zeros((1, 1), np.int8))
        await pool.close()

    run_async(main())


def test_pool_rejects_bad_parameters():
    with pytest.raises(ValueError, match="at least one device"):
        DevicePool([])
    assert DevicePool([], dynamic=True).devices == []  # a cluster's pool starts empty
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        DevicePool([FakeDevice()], max_batch=0)


# -- the server over backends that fail or are slow ---------------------------------------------------------
class SlowBackend:
    """The default backend, each run taking at least 0.4 s longer (requests stay in flight)."""

    name = "test-slow"
    delay = 0.4
    started = 0  # images that have reached a run

    def load(self, path):
        from onda.host.runtime import default_backend, get_backend

        inner = get_backend(default_backend()).load(path)
        delay = self.delay

        class Slow:
            inputs, outputs = inner.inputs, inner.outputs

            def run(self, xs):
                SlowBackend.started += len(xs[0])
                time.sleep(delay)
                return inner.run(xs)

        return Slow()

    def describe(self):
        return {"backend": self.name}


class BrokenBackend(SlowBackend):
    name = "test-broken"

    def load(self, path):
        model = super().load(path)

        def run(xs):
            raise backend_module.BackendError("board did not answer (link down)")

        model.run = run
        return model


class WrongShapeBackend(SlowBackend):
    """Answers with an output of the wrong shape: the classifier fails (a bug, not the request's fault)."""

    name = "test-wrong-shape"
    delay = 0.0

    def load(self, path):
        model = super().load(path)
        model.run = lambda xs: [np.zeros((xs[0].shape[0], 3), np.int8)]
        return model


@pytest.fixture
def fake_backends(monkeypatch):
    monkeypatch.setitem(backend_module._BACKENDS, "test-slow", f"{__name__}:SlowBackend")
    monkeypatch.setitem(backend_module._BACKENDS, "test-broken", f"{__name__}:BrokenBackend")
    monkeypatch.setitem(backend_module._BACKENDS, "test-wrong-shape", f"{__name__}:WrongShapeBackend")


def test_internal_error_fails_the_request_only(fake_backends, pipeline_zips, photos):
    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread

    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, backend="test-wrong-shape"))
    try:
        client = PredictionClient("127.0.0.1", server.port, retry_delays=())
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as e:
                client.score_file(photos["coffee.jpg"])
            assert e.value.code() == grpc.StatusCode.INTERNAL and "internal error (ValueError)" in e.value.details()
    finally:
        server.stop()


def test_backend_failure_is_unavailable_and_server_lives_on(fake_backends, pipeline_zips, photos):
    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread

    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, backend="test-broken"))
    try:
        client = PredictionClient("127.0.0.1", server.port, retry_delays=())
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as e:
                client.score_file(photos["coffee.jpg"])
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "backend test-broken failed: BackendError: board did not answer (link down)" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:  # bad input still answered precisely
            client.score_file(b"junk")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop()


def test_deadline_exceeded_and_the_server_answers_on(fake_backends, pipeline_zips, photos):
    """A deadline far shorter than the device's run (0.4 s against 0.05 s: not a race on a loaded
    machine) is DEADLINE_EXCEEDED; the next call with time enough is answered."""
    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread

    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, backend="test-slow"))
    try:
        client = PredictionClient("127.0.0.1", server.port, retry_delays=())
        with pytest.raises(grpc.RpcError) as e:
            client.score_file(photos["astronaut.jpg"], timeout=0.05)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert client.score_file(photos["astronaut.jpg"], timeout=60).size > 0
    finally:
        server.stop()


def test_queue_full_is_resource_exhausted(fake_backends, pipeline_zips, photos):
    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread

    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, backend="test-slow", max_batch=1,
                                       max_queue=2))
    try:
        client = PredictionClient("127.0.0.1", server.port, retry_delays=())

        def call(_):
            try:
                client.score_file(photos["chelsea.jpg"])
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                return e.code(), e.details()

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(call, range(6)))
        codes = [c for c, _ in results]
        assert codes.count(grpc.StatusCode.OK) >= 2
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
        assert all("queue full" in d for c, d in results if c == grpc.StatusCode.RESOURCE_EXHAUSTED)
    finally:
        server.stop()


def test_shutdown_drains_in_flight_requests(fake_backends, pipeline_zips, photos, reference):
    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread

    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, backend="test-slow", max_batch=8))
    client = PredictionClient("127.0.0.1", server.port, retry_delays=())
    data = photos["astronaut.jpg"]
    with ThreadPoolExecutor(4) as pool:
        SlowBackend.started = 0
        futures = [pool.submit(client.score_file, data) for _ in range(4)]
        pool_of = server.server.models["tiny"].pool
        deadline = time.monotonic() + 60  # all four accepted (running or queued): no race with a slow machine
        while SlowBackend.started + pool_of.queued < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10})
        stopper.start()
        results = [f.result(30) for f in futures]
        stopper.join(30)
    expected = reference.scores_images([data])[0]
    for r in results:
        np.testing.assert_allclose(r, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(grpc.RpcError) as e:
        client.score_file(data, timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
