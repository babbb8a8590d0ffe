"""Without ``--cluster`` nothing changes and Ray is not imported: a server is started, loaded and asked for a
score in a fresh process, and that process's ``sys.modules`` has no ``ray``; the command line's parser too."""

from __future__ import annotations

import subprocess
import sys

from .front_end import child_env

PROGRAM = r"""
import sys
from onda.host.cli import build_parser
build_parser().parse_args(["serve", "--model", "x.zip"])
from onda.host.client import PredictionClient
from onda.host.service import ServerConfig, ServerThread
import onda.host.service.batching, onda.host.service.model, onda.host.service.options, onda.host.service.keys
with ServerThread(ServerConfig(models={"digits": sys.argv[1]}, backend="emulator")) as server:
    with PredictionClient("127.0.0.1", server.port, retry_delays=()) as c:
        scores = c.score_file(open(sys.argv[2], "rb").read())
        assert c.last.device is None, c.last.device  # no x-onda-device trailer on one host
print("scores", scores.shape, "ray imported:", any(m == "ray" or m.startswith("ray.") for m in sys.modules))
"""


def test_a_server_without_cluster_never_imports_ray(digits, tmp_path):
    zip_path, pngs = digits
    png = tmp_path / "digit.png"
    png.write_bytes(pngs[0][0])
    out = subprocess.run([sys.executable, "-c", PROGRAM, str(zip_path), str(png)], capture_output=True, text=True,
                         timeout=300, env=child_env())
    assert out.returncode == 0, out.stderr[-3000:]
    assert "scores (10,) ray imported: False" in out.stdout, out.stdout + out.stderr[-2000:]
