"""Devices spread over many machines: Ray actors, each owning one device, behind stateless onda front ends.

``onda serve --cluster ray://HOST:PORT`` (or ``HOST:PORT``, ``auto``) keeps the whole service (TLS, keys, TF
Serving's API, health, dynamic batching, queue limits, status codes) in the front end and sends only the
featurizer's device runs to the cluster. This package is imported only then: a server without ``--cluster``
never imports Ray.

- ``resources``: the custom resource a device kind is placed by (``emulator``, ``board_ulx3s_85f``, ...).
- ``connect``: ``--cluster`` parsed and checked, Ray imported and connected, with precise errors.
- ``actor``: ``DeviceActor``, one device (an emulator, an RTL harness or a board) in a Ray actor.
- ``devices``: a front end's view of the cluster's device actors: finds or creates them, pings them, adds
  them to and removes them from each model's ``DevicePool``; ``RemoteDevice`` turns an actor's death into
  ``DeviceLost`` (the batch is retried on another device).
- ``local``: a head and worker nodes on this machine, for the tests and the bench.
"""
