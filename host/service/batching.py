"""A device pool with dynamic batching: concurrent requests share backend runs.

One worker per device (a loaded model on its own single-thread executor, so the event loop stays free).
A worker takes the requests at the head of the queue, up to ``max_batch`` images. It waits up to
``max_wait`` for more only while other requests are on their way (announced, still being decoded): a lone
request at concurrency 1 is never held back, and a burst fills batches.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


class QueueFull(Exception):
    pass


class DeadlineExpired(Exception):
    pass


class PoolClosed(Exception):
    pass


class DeviceFailed(Exception):
    pass


@dataclass
class BatchInfo:
    """What a request's batch cost: backend compute time, its size, and time spent queued."""

    compute_s: float
    batch_images: int
    queued_s: float


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    deadline: float | None  # loop.time() by which the result is useless
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def n(self) -> int:
        return self.x.shape[0]


class DevicePool:
    def __init__(self, devices: list, max_batch: int = 8, max_wait_s: float = 0.005, max_queue: int = 256,
                 name: str = "pool"):
        if not devices:
            raise ValueError("a device pool needs at least one device")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.devices = devices
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.name = name
        self._queue: collections.deque[_Item] = collections.deque()
        self._announced = 0
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix=f"{name}-dev{i}") for i in range(len(devices))]
        self._closing = False
        self.batches = 0
        self.images = 0

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker(i)) for i in range(len(self.devices))]

    @property
    def queued(self) -> int:
        return sum(it.n for it in self._queue)

    # -- the request side ----------------------------------------------------------------------------
    def announce(self) -> "_Announcement":
        """Say a request is on its way (being decoded): workers wait for it while filling a batch."""
        if self._closing:
            raise PoolClosed("the server is shutting down")
        if len(self._queue) + self._announced >= self.max_queue:
            raise QueueFull(f"queue full: {len(self._queue) + self._announced} requests waiting "
                            f"(limit {self.max_queue}); retry later")
        return _Announcement(self)

    def submit(self, x: np.ndarray, deadline: float | None = None) -> asyncio.Future:
        """Queue int8 inputs [n, ...]; the future gives (outputs [n, ...], BatchInfo)."""
        if not self._tasks:
            raise PoolClosed("the server is shutting down")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(x, fut, deadline))
        self._wakeup.set()
        return fut

    async def run(self, x: np.ndarray, deadline: float | None = None) -> tuple[np.ndarray, BatchInfo]:
        return await self.submit(x, deadline)

    # -- the device side -----------------------------------------------------------------------------
    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        device = self.devices[index]
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            t_end = loop.time() + self.max_wait_s
            while self.queued < self.max_batch and self._announced > 0 and not self._closing:
                remaining = t_end - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            items, n = [], 0
            while self._queue and (n == 0 or n + self._queue[0].n <= self.max_batch):
                it = self._queue.popleft()
                if it.future.done():  # cancelled by its caller
                    continue
                if it.deadline is not None and loop.time() >= it.deadline:
                    it.future.set_exception(DeadlineExpired(
                        f"deadline expired after {(time.perf_counter() - it.enqueued) * 1e3:.0f} ms in the queue"))
                    continue
                items.append(it)
                n += it.n
            if not items:
                continue
            if self._queue:
                self._wakeup.set()  # let another idle device take what is left
            batch = items[0].x if len(items) == 1 else np.concatenate([it.x for it in items])
            t0 = time.perf_counter()
            try:
                (out,) = await loop.run_in_executor(self._executors[index], device.run, [batch])
            except Exception as e:  # noqa: BLE001 - a device failure fails this batch, not the server
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(DeviceFailed(f"{type(e).__name__}: {e}"))
                continue
            compute = time.perf_counter() - t0
            self.batches += 1
            self.images += n
            start = 0
            for it in items:
                if not it.future.done():
                    it.future.set_result((out[start:start + it.n], BatchInfo(compute, n, t0 - it.enqueued)))
                start += it.n

    async def close(self) -> None:
        """Finish what is queued, then stop the workers and their threads."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for ex in self._executors:
            ex.shutdown(wait=False)


class _Announcement:
    def __init__(self, pool: DevicePool):
        self.pool = pool
        self.active = True
        pool._announced += 1

    def done(self) -> None:
        if self.active:
            self.active = False
            self.pool._announced -= 1
            if self.pool._wakeup is not None:
                self.pool._wakeup.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.done()
