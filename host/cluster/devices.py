"""A front end's view of the cluster's device actors, and the devices its pools run batches on.

Who creates the actors, and how a second front end finds them: the actors are *named* and *detached*, one per
unit of the device resource the cluster has (``onda-device:<resource>:<i>``, ``i`` below the cluster's total
of that resource, in the namespace ``onda``). Every front end asks for each such name with ``get_if_exists``:
the first creates the actor, the others get a handle on the same one, so all front ends share every device, and
no front end owns one. Detached actors outlive the front end that made them; ``max_restarts=-1`` has Ray
restart an actor whose process or node died, on any node with a free unit, so a device that comes back (a
node restarted, a node added) serves again. ``release`` kills them (``onda cluster release``).

Once a period (1 s) a reconciler thread: counts the resource's units (a node added adds slots), pings every actor
(its ``ping`` answers from its own concurrency group, so a busy device is alive, not late), has each live
actor load every model of this front end (the featurizer's bytes go through the object store once), adds the
loaded ones to the model's ``DevicePool`` and removes those whose ping failed or has been unanswered for
``ping_timeout_s``. A run on an actor that dies raises ``DeviceLost``: the pool drops the device at once and
runs the batch on another one (``batching.py``). The pools' callbacks set gRPC health from the device count.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field

from ..runtime import BackendError
from ..service.batching import DeviceLost
from .connect import NAMESPACE, ClusterError, connect
from .resources import device_resource

log = logging.getLogger("onda.cluster")

ACTOR_PREFIX = "onda-device"


def actor_name(resource: str, index: int) -> str:
    return f"{ACTOR_PREFIX}:{resource}:{index}"


class RemoteDevice:
    """A device of a pool that is an actor: ``run([x])`` runs model ``key`` there (loading it if the actor was
    restarted since), and raises ``DeviceLost`` if the actor or its node dies before answering."""

    def __init__(self, ray, handle, name: str, key: str, tflite_ref):
        self.ray, self.handle, self.name, self.key, self.ref = ray, handle, name, key, tflite_ref

    def run(self, inputs: list) -> list:
        ex = self.ray.exceptions
        try:
            return [self.ray.get(self.handle.run.remote(self.key, [self.ref], inputs[0]))]
        except ex.RayTaskError as e:  # the device answered: its backend failed on this batch
            cause = e.cause if getattr(e, "cause", None) is not None else e
            raise BackendError(f"device {self.name}: {type(cause).__name__}: {cause}") from None
        except (ex.RayActorError, ex.WorkerCrashedError, ex.NodeDiedError, ex.ObjectLostError,
                ex.RaySystemError) as e:
            raise DeviceLost(f"device {self.name} lost: {type(e).__name__}") from None


@dataclass
class _Model:
    name: str
    key: str
    ref: object  # ObjectRef of the featurizer's bytes (owned by this front end)
    pool: object = None  # its DevicePool, once serving
    loads: dict = field(default_factory=dict)  # actor name -> ObjectRef of a load in flight


class ClusterDevices:
    """The device actors of one resource kind, for every model of one front end."""

    def __init__(self, address: str, backend: str, resource: str | None = None, period_s: float = 1.0,
                 ping_timeout_s: float = 10.0, ready_timeout_s: float = 180.0):
        self.resource = device_resource(backend, resource)  # checked before connecting: a usage error is quick
        self.address = address
        self.backend = backend
        self.period_s = period_s
        self.ping_timeout_s = ping_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self.ray = connect(address)
        from .actor import DeviceActor

        self._actor_class = DeviceActor
        self.handles: dict[str, object] = {}
        self.live: dict[str, dict] = {}  # actor name -> its last ping
        self._pings: dict[str, tuple[object, float]] = {}  # actor name -> (ping in flight, when sent)
        self.models: dict[str, _Model] = {}
        self._loop = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the cluster has --------------------------------------------------------------------------
    def capacity(self) -> int:
        """Units of the resource on the cluster's live nodes: how many device actors it can hold."""
        return int(self.ray.cluster_resources().get(self.resource, 0))

    def describe(self) -> dict:
        return {"device": f"{len(self.live)} {self.resource} actor(s) on the Ray cluster at {self.address}"}

    def _discover(self) -> None:
        """A handle on every device actor: the cluster's slots (created if missing) and any other that exists."""
        prefix = f"{ACTOR_PREFIX}:{self.resource}:"
        names = {n for n in self.ray.util.list_named_actors() if n.startswith(prefix)}
        names |= {actor_name(self.resource, i) for i in range(self.capacity())}
        for n in sorted(names - set(self.handles)):
            self.handles[n] = self._actor_class.options(
                name=n, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, max_restarts=-1,
                max_task_retries=0, resources={self.resource: 1}).remote(self.backend, self.resource)

    # -- before serving: a model loaded on at least one device ------------------------------------------
    def prepare(self, name: str, tflite: bytes) -> tuple[list, list]:
        """Register model ``name`` (its int8 featurizer ``tflite``); wait until a device has loaded it; its
        input and output specs. Raises ``ClusterError`` when the cluster has no device of the kind or none
        answers in ``ready_timeout_s``."""
        ray = self.ray
        if self.capacity() == 0 and not self.handles:
            raise ClusterError(
                f"the Ray cluster at {self.address} has no {self.resource!r} device: start a device node with "
                f"ray start --address=HEAD:PORT --resources '{{\"{self.resource}\": 1}}'")
        model = _Model(name, hashlib.sha256(tflite).hexdigest()[:16], ray.put(tflite))
        self.models[name] = model
        self._discover()
        for n, h in self.handles.items():
            model.loads[n] = h.load.remote(model.key, [model.ref])
        pending = dict((ref, n) for n, ref in model.loads.items())
        t_end = time.monotonic() + self.ready_timeout_s
        errors = []
        while pending and time.monotonic() < t_end:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, t_end - time.monotonic()))
            for ref in ready:
                n = pending.pop(ref)
                try:
                    specs = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # the model cannot run on this kind of device
                    model.loads.pop(n, None)
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    raise ClusterError(f"model {name!r} cannot be loaded on {n}: {type(cause).__name__}: "
                                       f"{cause}") from None
                except ray.exceptions.RayError as e:
                    model.loads.pop(n, None)
                    errors.append(f"{n}: {type(e).__name__}")
                    continue
                return specs
        raise ClusterError(f"no {self.resource!r} device of the Ray cluster at {self.address} loaded model "
                           f"{name!r} in {self.ready_timeout_s:.0f} s ({len(self.handles)} actor(s)"
                           f"{'; ' + ', '.join(errors) if errors else ''})")

    # -- serving: the reconciler ---------------------------------------------------------------------------
    def start(self, loop, pools: dict) -> None:
        """Serve ``pools`` (model name -> its ``DevicePool``, started on ``loop``) from the cluster's devices."""
        self._loop = loop
        for name, pool in pools.items():
            self.models[name].pool = pool
        self._reconcile()
        self._thread = threading.Thread(target=self._run, name="onda-cluster", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self._reconcile()
            except Exception:  # noqa: BLE001 - a failed round (the head restarting) is tried again next period
                log.exception("cluster: reconciling the device actors failed; retrying")

    def _reconcile(self) -> None:
        ray = self.ray
        self._discover()
        now = time.monotonic()
        for n, h in self.handles.items():
            if n not in self._pings:
                self._pings[n] = (h.ping.remote(), now)
        refs = {ref: n for n, (ref, _) in self._pings.items()}
        ready = ray.wait(list(refs), num_returns=len(refs), timeout=min(self.period_s, 0.5))[0] if refs else []
        for ref in ready:
            n = refs[ref]
            del self._pings[n]
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as e:
                if self.live.pop(n, None) is not None:
                    log.warning("cluster: device %s is gone (%s)", n, type(e).__name__)
                if isinstance(e, ray.exceptions.ActorDiedError):  # for good: a new one is made if its slot is
                    self.handles.pop(n, None)
                continue
            if n not in self.live:
                log.info("cluster: device %s alive on node %s", n, info["node"][:12])
            self.live[n] = info
        for n, (_, sent) in self._pings.items():
            if now - sent > self.ping_timeout_s and self.live.pop(n, None) is not None:
                log.warning("cluster: device %s has not answered for %.0f s", n, now - sent)
        for model in self.models.values():
            if model.pool is not None:
                self._sync(model)

    def _sync(self, model: _Model) -> None:
        """Add the live devices that loaded the model to its pool; take out those no longer live."""
        ray = self.ray
        in_pool = set(model.pool.device_names)
        for n in in_pool - set(self.live):
            self._loop.call_soon_threadsafe(model.pool.remove_device, n)
        for n in set(self.live) - in_pool:
            if n not in model.loads and n in self.handles:
                model.loads[n] = self.handles[n].load.remote(model.key, [model.ref])
        done, _ = ray.wait(list(model.loads.values()), num_returns=len(model.loads), timeout=0) \
            if model.loads else ([], [])
        done = set(done)
        for n, ref in list(model.loads.items()):
            if ref not in done:
                continue
            del model.loads[n]
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                log.warning("cluster: device %s did not load model %r: %s", n, model.name, type(e).__name__)
                continue
            if n in self.live and n in self.handles:
                device = RemoteDevice(ray, self.handles[n], n, model.key, model.ref)
                self._loop.call_soon_threadsafe(model.pool.add_device, device, n)

    def stop(self) -> None:
        """Stop watching (the actors stay: they are the cluster's, not this front end's) and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.ray.shutdown()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass


def release(address: str, resource: str | None = None) -> list[str]:
    """Kill the cluster's device actors (of ``resource``, or all); their names."""
    ray = connect(address)
    prefix = f"{ACTOR_PREFIX}:{resource}:" if resource else f"{ACTOR_PREFIX}:"
    killed = []
    for n in ray.util.list_named_actors():
        if n.startswith(prefix):
            try:
                ray.kill(ray.get_actor(n, namespace=NAMESPACE), no_restart=True)
                killed.append(n)
            except ValueError:  # gone meanwhile
                pass
    return killed
