"""``DeviceActor``: one device (an emulator, an RTL harness or a board) in a Ray actor, serving any model.

An actor is a device, not a model on a device: a board runs one program at a time, so two models sharing a
board must share its actor. It loads a model the first time a front end names it (by the hash of the
featurizer's bytes, which travel through Ray's object store, so device nodes need no shared file system) and
keeps every model it loaded. Runs are serial (one at a time, the default concurrency group); ``ping`` answers
from a group of its own, so a front end sees a device is alive while it computes.

A board actor claims one of its node's boards: ``ONDA_DEVICES`` lists their URLs (``/dev/ttyUSB0,/dev/ttyUSB1``
or ``socket://...``) and the actor holds an exclusive ``flock`` on a lock file per URL for as long as it lives,
so two actors on one node never drive the same board and a restarted actor takes the board a dead one left.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from pathlib import Path

import ray

DEVICES_ENV = "ONDA_DEVICES"


def claim_device(lock_dir: str | Path | None = None) -> tuple[str, object]:
    """The first board URL of ``ONDA_DEVICES`` no other process holds, and the open lock file holding it."""
    urls = [u.strip() for u in os.environ.get(DEVICES_ENV, "").split(",") if u.strip()]
    if not urls:
        raise RuntimeError(f"a board actor needs its node's boards in {DEVICES_ENV} (e.g. /dev/ttyUSB0,/dev/ttyUSB1)")
    lock_dir = Path(lock_dir or Path(tempfile.gettempdir()) / "onda-devices")
    lock_dir.mkdir(parents=True, exist_ok=True)
    for url in urls:
        f = open(lock_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", url) + ".lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        return url, f
    raise RuntimeError(f"every board of {DEVICES_ENV}={','.join(urls)} is taken by another actor on this node "
                       f"(the node declares more board units than it has boards)")


@ray.remote(num_cpus=0, concurrency_groups={"control": 1})
class DeviceActor:
    """One device; ``run(key, [tflite_ref], x)`` gives the featurizer's int8 outputs for int8 inputs ``x``."""

    def __init__(self, backend: str, resource: str):
        from onda.host.runtime import get_backend

        self.backend_name = backend
        self.resource = resource
        self.url, self._lock = claim_device() if backend == "board" else (None, None)
        self.backend = get_backend(backend, **({"device": self.url} if self.url else {}))
        self.models: dict[str, object] = {}
        # Content-addressed (a model's file is named by the hash of its bytes), shared by the node's actors: a
        # restarted or SIGKILLed actor leaves nothing new behind.
        self.workdir = Path(tempfile.gettempdir()) / "onda-device-models"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.runs = 0
        self.images = 0
        self.started = time.time()

    def _model(self, key: str, tflite):
        model = self.models.get(key)
        if model is None:
            data = tflite[0] if isinstance(tflite, list) else tflite  # in a list: Ray passes the ref unresolved
            if isinstance(data, ray.ObjectRef):
                data = ray.get(data)
            path = self.workdir / f"{key}.tflite"
            if not path.is_file():
                tmp = path.with_suffix(f".{os.getpid()}.partial")
                tmp.write_bytes(bytes(data))
                tmp.replace(path)  # atomic: another actor of the node may write the same model now
            model = self.backend.load(path)
            getattr(model, "prepare", lambda: None)()  # a simulated engine is built and given its weights now
            self.models[key] = model
        return model

    def load(self, key: str, tflite) -> tuple[list, list]:
        """Load the model ``key`` (if not yet); its input and output specs."""
        model = self._model(key, tflite)
        return model.inputs, model.outputs

    def run(self, key: str, tflite, x):
        (y,) = self._model(key, tflite).run([x])
        self.runs += 1
        self.images += int(x.shape[0])
        return y

    @ray.method(concurrency_group="control")
    def ping(self) -> dict:
        """Who and where this device is, what it loaded and ran (answers while a run is in progress)."""
        return {"backend": self.backend_name, "resource": self.resource, "url": self.url,
                "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "models": sorted(self.models),
                "runs": self.runs, "images": self.images, "up_s": time.time() - self.started}
