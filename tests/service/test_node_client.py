"""The Node.js client (host/client/node/score.js: @grpc/grpc-js, protos/ loaded at run time) against a real
server over TLS with a key: its top 5 are the backend's, with either way of trusting the self-signed
certificate; a wrong key or an untrusted certificate fails the way gRPC says."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .conftest import CLASSES, KEYS

CLIENT = Path(__file__).resolve().parents[2] / "host" / "client" / "node"
LINE = re.compile(r"^\s+(\d+\.\d{6})\s+(\d+)\s+(\S.*)$")


def run_node(args: list[str], env_extra: dict | None = None) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if node is None or not (CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node client needs nodejs and its npm packages: run `make setup`")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    env.update(env_extra or {})
    return subprocess.run([node, str(CLIENT / "score.js"), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def top5(stdout: str) -> list[list[tuple[int, str, float]]]:
    """Per image, the printed (class, label, score) lines, best first."""
    blocks = []
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            blocks[-1].append((int(m.group(2)), m.group(3), float(m.group(1))))
        elif line.strip():
            blocks.append([])
    return blocks


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("labels") / "labels.txt"
    p.write_text("\n".join(f"label-{i}" for i in range(CLASSES)) + "\n")
    return p


@pytest.mark.parametrize("trust", ["--ca", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"])
def test_node_client_top5_matches_backend(tls_server, tls_files, reference, labels_file, trust):
    from onda.host.pipeline.resnet50 import sample_images

    paths = sorted(sample_images())[:3]
    args = [f"localhost:{tls_server.port}", *map(str, paths), "--key", KEYS[0], "--labels", str(labels_file)]
    env = None
    if trust == "--ca":
        args += ["--ca", str(tls_files[0])]
    else:
        env = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(tls_files[0])}
    r = run_node(args, env)
    assert r.returncode == 0, r.stderr
    blocks = top5(r.stdout)
    assert len(blocks) == len(paths), r.stdout
    expected = reference.scores_images([p.read_bytes() for p in paths])
    for path, block, want in zip(paths, blocks, expected):
        assert len(block) == 5, (path, r.stdout)
        assert [c for c, _, _ in block] == list(np.argsort(-want, kind="stable")[:5]), (path, r.stdout)
        assert [label for _, label, _ in block] == [f"label-{c}" for c, _, _ in block]
        np.testing.assert_allclose([s for _, _, s in block], want[[c for c, _, _ in block]], atol=1.5e-6)
    assert re.search(r"\(request [0-9a-f]{32}\), model tiny:1, output \[1,10\]", r.stdout), r.stdout


@pytest.mark.parametrize("args, code", [
    (["--key", "not-a-key"], "UNAUTHENTICATED: invalid key"),
    ([], "UNAUTHENTICATED: missing key"),
    (["--model", "nope"], "NOT_FOUND: unknown model 'nope'"),
])
def test_node_client_reports_grpc_errors(tls_server, tls_files, photos, args, code):
    from onda.host.pipeline.resnet50 import sample_images

    path = sorted(sample_images())[0]
    if "--key" not in args and "--model" in args:
        args = [*args, "--key", KEYS[1]]
    r = run_node([f"localhost:{tls_server.port}", str(path), "--ca", str(tls_files[0]), *args])
    assert r.returncode == 1 and code in r.stderr, (r.returncode, r.stderr)


def test_node_client_refuses_an_untrusted_certificate(tls_server):
    from onda.host.pipeline.resnet50 import sample_images

    r = run_node([f"localhost:{tls_server.port}", str(sorted(sample_images())[0]), "--key", KEYS[0],
                  "--timeout", "10"])
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr, (r.returncode, r.stderr)


def test_node_client_plaintext_sends_the_key_per_call(pipeline_zips, photos, reference, tmp_path):
    """Without TLS there are no call credentials: --plaintext puts the key in each call's metadata."""
    from onda.host.service import ServerConfig, ServerThread

    image = tmp_path / "coffee.jpg"
    image.write_bytes(photos["coffee.jpg"])
    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, keys=["plain-key"]))
    try:
        r = run_node([f"127.0.0.1:{server.port}", str(image), "--plaintext", "--key", "plain-key"])
        assert r.returncode == 0, r.stderr
        (block,) = top5(r.stdout)
        want = reference.scores_images([photos["coffee.jpg"]])[0]
        assert [c for c, _, _ in block] == list(np.argsort(-want, kind="stable")[:5])
        r = run_node([f"127.0.0.1:{server.port}", str(image), "--plaintext"])
        assert r.returncode == 1 and "UNAUTHENTICATED: missing key" in r.stderr
    finally:
        server.stop()
