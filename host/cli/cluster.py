"""`onda cluster devices|release`: the device actors a Ray cluster holds for onda front ends.

The actors are detached (they outlive the front ends, which share them), so someone has to be able to see
and remove them: ``devices`` pings each one (name, node, backend, board URL, models loaded, runs, images),
``release`` kills them (front ends still running recreate them within a second, from the cluster's resources).
Ray is imported only when one of these commands runs.
"""

from __future__ import annotations

import json


def cmd_devices(args) -> int:
    from ..cluster.connect import connect
    from ..cluster.devices import ACTOR_PREFIX

    ray = connect(args.cluster)
    names = sorted(n for n in ray.util.list_named_actors() if n.startswith(f"{ACTOR_PREFIX}:"))
    rows = []
    for n in names:
        try:
            info = ray.get(ray.get_actor(n).ping.remote(), timeout=args.timeout)
            rows.append(dict(info, name=n, state="alive"))
        except Exception as e:  # noqa: BLE001 - restarting, pending placement, dead: say which
            rows.append({"name": n, "state": type(e).__name__})
    resources = ray.cluster_resources()
    ray.shutdown()
    if args.json:
        print(json.dumps({"devices": rows, "resources": resources}, indent=2, default=str))
        return 0
    print(f"{'device':<32} {'state':<22} {'node':<14} {'url':<16} {'models':>6} {'runs':>7} {'images':>7}")
    for r in rows:
        print(f"{r['name']:<32} {r['state']:<22} {r.get('node', '-')[:12]:<14} {str(r.get('url') or '-'):<16} "
              f"{len(r.get('models', [])):>6} {r.get('runs', '-'):>7} {r.get('images', '-'):>7}")
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory", "object_store_memory")
              and not k.startswith("node:")}
    print("device resources of the live nodes: " + (", ".join(f"{k}={v:g}" for k, v in sorted(custom.items()))
                                                  or "none"))
    return 0


def cmd_release(args) -> int:
    from ..cluster.devices import release

    for n in release(args.cluster, args.device_resource):
        print(f"released {n}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("cluster", help="the device actors of a Ray cluster (onda serve --cluster): list, release")
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    d = csub.add_parser("devices", help="list the device actors: state, node, models loaded, runs")
    d.add_argument("--cluster", required=True, metavar="ADDRESS", help="ray://HOST:PORT, HOST:PORT or auto")
    d.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each device's answer")
    d.add_argument("--json", action="store_true", help="JSON instead of a table")
    d.set_defaults(func=cmd_devices)
    r = csub.add_parser("release", help="kill the device actors (all, or those of --device-resource)")
    r.add_argument("--cluster", required=True, metavar="ADDRESS", help="ray://HOST:PORT, HOST:PORT or auto")
    r.add_argument("--device-resource", metavar="NAME", help="only the actors of this resource (e.g. emulator)")
    r.set_defaults(func=cmd_release)
