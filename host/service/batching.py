"""A device pool with dynamic batching: concurrent requests share backend runs.

One worker per device (a loaded model on its own single-thread executor, so the event loop stays free).
A worker takes the requests at the head of the queue, up to ``max_batch`` images. It waits up to
``max_wait`` for more only while other requests are on their way (announced, still being decoded): a lone
request at concurrency 1 is never held back, and a burst fills batches.

Devices may come and go while the pool runs (``add_device``, ``remove_device``): the devices of a Ray cluster
(``onda.host.cluster``) do. A device whose run raises ``DeviceLost`` (its actor or its node died) leaves the
pool, and its batch goes back to the head of the queue for another device, up to ``max_attempts`` runs a
request; each request's future is set once, from the one run that answered, so nothing is lost or answered
twice. Any other failure fails the batch's requests, as before.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("onda.service")

class QueueFull(Exception):
    pass


class DeadlineExpired(Exception):
    pass


class PoolClosed(Exception):
    pass


class DeviceFailed(Exception):
    pass


class DeviceLost(DeviceFailed):
    """The device is gone (its actor or its node died) and the batch did not finish there: run it elsewhere."""


class NoDevice(Exception):
    """No device is left in the pool (UNAVAILABLE until one comes back)."""


@dataclass
class BatchInfo:
    """What a request's batch cost: backend compute time, its size, and time spent queued."""

    compute_s: float
    batch_images: int
    queued_s: float
    device: str = ""  # which device ran it, when the pool's devices have names (a cluster's)


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    deadline: float | None  # loop.time() by which the result is useless
    enqueued: float = field(default_factory=time.perf_counter)
    attempts: int = 0  # runs started on devices that were then lost

    @property
    def n(self) -> int:
        return self.x.shape[0]


class _Slot:
    """One device of the pool, its single-thread executor and its worker task."""

    def __init__(self, device, name: str):
        self.device = device
        self.name = name
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self.task: asyncio.Task | None = None
        self.removed = False


class DevicePool:
    """``devices``: objects with ``run([x]) -> [y]``; a device may carry a ``name`` (shown in ``BatchInfo``).
    ``dynamic=True`` lets the pool start empty (devices are added later); ``on_devices(count)`` is called on the
    event loop whenever the number of devices changes."""

    def __init__(self, devices: list, max_batch: int = 8, max_wait_s: float = 0.005, max_queue: int = 256,
                 name: str = "pool", max_attempts: int = 3, dynamic: bool = False, on_devices=None):
        if not devices and not dynamic:
            raise ValueError("a device pool needs at least one device")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self.name = name
        self.dynamic = dynamic
        self.on_devices = on_devices
        self._queue: collections.deque[_Item] = collections.deque()
        self._announced = 0
        self._wakeup: asyncio.Event | None = None
        self._slots: list[_Slot] = [_Slot(d, getattr(d, "name", f"{name}-dev{i}")) for i, d in enumerate(devices)]
        self._started = False
        self._closing = False
        self._count = len(self._slots)
        self.batches = 0
        self.images = 0
        self.retried = 0  # batches put back in the queue after their device was lost

    @property
    def devices(self) -> list:
        return [s.device for s in self._slots]

    @property
    def device_names(self) -> list[str]:
        return [s.name for s in self._slots]

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._started = True
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            slot.task = loop.create_task(self._worker(slot))

    @property
    def queued(self) -> int:
        return sum(it.n for it in self._queue)

    # -- devices coming and going (on the event loop's thread) ----------------------------------------------
    def add_device(self, device, name: str | None = None) -> None:
        """Serve from one more device (a no-op when a device of that name is already in the pool)."""
        name = name or getattr(device, "name", f"{self.name}-dev{len(self._slots)}")
        if self._closing or name in self.device_names:
            return
        slot = _Slot(device, name)
        self._slots.append(slot)
        if self._started:
            slot.task = asyncio.get_running_loop().create_task(self._worker(slot))
        self._changed()

    def remove_device(self, name: str) -> None:
        """Stop taking batches to the device ``name`` (a batch it is running finishes, or comes back if lost)."""
        for slot in list(self._slots):
            if slot.name == name:
                self._drop(slot)

    def _drop(self, slot: _Slot) -> None:
        if slot.removed:
            return
        slot.removed = True
        self._slots.remove(slot)
        slot.executor.shutdown(wait=False)
        if self._wakeup is not None:
            self._wakeup.set()  # the worker of a removed device exits once idle
        if not self._slots and self.dynamic:
            while self._queue:  # nobody left to run them: fail now, the clients retry (UNAVAILABLE)
                it = self._queue.popleft()
                if not it.future.done():
                    it.future.set_exception(NoDevice(f"no device of {self.name!r} is left"))
        self._changed()

    def _changed(self) -> None:
        if len(self._slots) != self._count:
            self._count = len(self._slots)
            if self.on_devices is not None:
                self.on_devices(self._count)

    # -- the request side ----------------------------------------------------------------------------
    def announce(self) -> "_Announcement":
        """Say a request is on its way (being decoded): workers wait for it while filling a batch."""
        if self._closing:
            raise PoolClosed("the server is shutting down")
        if not self._slots:
            raise NoDevice(f"no device of {self.name!r} is left; retry later")
        if len(self._queue) + self._announced >= self.max_queue:
            raise QueueFull(f"queue full: {len(self._queue) + self._announced} requests waiting "
                            f"(limit {self.max_queue}); retry later")
        return _Announcement(self)

    def submit(self, x: np.ndarray, deadline: float | None = None) -> asyncio.Future:
        """Queue int8 inputs [n, ...]; the future gives (outputs [n, ...], BatchInfo)."""
        if not self._started or self._closing:
            raise PoolClosed("the server is shutting down")
        if not self._slots:
            raise NoDevice(f"no device of {self.name!r} is left; retry later")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(x, fut, deadline))
        self._wakeup.set()
        return fut

    async def run(self, x: np.ndarray, deadline: float | None = None) -> tuple[np.ndarray, BatchInfo]:
        return await self.submit(x, deadline)

    # -- the device side -----------------------------------------------------------------------------
    async def _worker(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        device = slot.device
        while True:
            while not self._queue:
                if self._closing or slot.removed:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            if slot.removed:
                self._wakeup.set()  # pass the wake-up on to a device that stays
                return
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
                (out,) = await loop.run_in_executor(slot.executor, device.run, [batch])
            except DeviceLost as e:
                self._requeue(items, slot, e)
                return
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
                    it.future.set_result((out[start:start + it.n],
                                          BatchInfo(compute, n, t0 - it.enqueued, slot.name if self.dynamic else "")))
                start += it.n

    def _requeue(self, items: list[_Item], slot: _Slot, error: Exception) -> None:
        """The device was lost with ``items`` on it: it leaves the pool; they go back to the queue's head."""
        self.retried += 1
        back = []
        for it in items:
            it.attempts += 1
            if it.future.done():
                continue
            if it.attempts >= self.max_attempts:
                it.future.set_exception(DeviceFailed(f"{it.attempts} devices were lost running this request; "
                                                     f"the last: {error}"))
            else:
                back.append(it)
        self._queue.extendleft(reversed(back))  # first in, first out still
        log.warning("%s: device %s lost with %d request(s) on it (%s); %d retried on another device", self.name,
                    slot.name, len(items), error, len(back))
        self._drop(slot)
        if self._wakeup is not None:
            self._wakeup.set()

    async def close(self) -> None:
        """Finish what is queued, then stop the workers and their threads."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        tasks = [s.task for s in self._slots if s.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots:
            slot.task = None
            slot.executor.shutdown(wait=False)


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
