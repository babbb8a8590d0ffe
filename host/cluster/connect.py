"""``--cluster``: the address checked, Ray imported and connected, each failure a precise message.

Accepted: ``ray://HOST:PORT`` (Ray Client, the head's client server, port 10001 by default: for a front end
outside the cluster's network), ``HOST:PORT`` (the head's GCS, port 6379 by default: a front end that is a node's
neighbour) and ``auto`` (the cluster this machine's ``ray start`` joined). Every front end joins the namespace
``onda``, where the device actors live.
"""

from __future__ import annotations

import logging
import os
import re
import time

from ..errors import ClusterError

NAMESPACE = "onda"
RAY_PIN = "ray[client]==2.60.0"
INLINE_BYTES = 8 << 20  # batches up to this size go inside the actor call (Ray's task_rpc_inlined_bytes_limit: 10 MB)
__all__ = ["ClusterError", "NAMESPACE", "check_address", "connect", "import_ray"]


def check_address(address: str) -> str:
    if address == "auto":
        return address
    m = re.fullmatch(r"(ray://)?([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(\d{1,5})", address)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise ClusterError(f"--cluster {address!r}: expected ray://HOST:PORT (Ray Client), HOST:PORT (the head's "
                           f"GCS) or auto")
    return address


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise ClusterError(f"--cluster needs Ray, which is not installed here ({e}): pip install '{RAY_PIN}'") \
            from None
    return ray


def connect(address: str, timeout_s: float = 30.0):
    """Connect this process to the cluster (once); returns the ``ray`` module."""
    address = check_address(address)
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if not address.startswith("ray://") and address != "auto":
        _check_reachable(address, timeout_s)
    # A batch travels inside the call to the actor, not through the object store: Ray inlines arguments up to
    # 100 KB by default, and one 224x224x3 int8 image is 150 KB. Measured on a local cluster (1 image / 8
    # images a call): 11.9 / 17.1 ms a round trip through the store, 3.3 / 7.9 ms inline. Read by this
    # process's Ray core worker at ray.init (a Ray Client's calls are made by its server on the head instead).
    os.environ.setdefault("RAY_max_direct_call_object_size", str(INLINE_BYTES))
    # Ray Client's server starts a driver process per client; on a loaded head that start can time out
    # ("Initialization failure from server"): such a failure is tried again, twice, before it counts.
    attempts = 3 if address.startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False,
                     configure_logging=False)
            return ray
        except Exception as e:  # noqa: BLE001 - ConnectionError, TimeoutError, RuntimeError, ValueError: "cannot"
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if attempt < attempts and isinstance(e, ConnectionError):
                logging.getLogger("onda.cluster").warning("connecting to %s failed (%s: %s); again", address,
                                                          type(e).__name__, first)
                time.sleep(2.0 * attempt)
                continue
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {type(e).__name__}: {first}") \
                from None
    return ray


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail at once on a GCS address nobody listens on (Ray itself retries for a minute before saying so)."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout_s, 5.0)).close()
    except OSError as e:
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {e.strerror or e} (is the head "
                           f"running? ray start --head --port={port})") from None
