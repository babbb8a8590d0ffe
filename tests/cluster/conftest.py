"""Fixtures of the cluster tests: the shipped digits pipeline and held-out digits (no download), TLS material
and a keys file made at test time in a directory every front end reads, and the oracle: the same pipeline served
by a single-host server (no Ray) in this process."""

from __future__ import annotations

import numpy as np
import pytest

from .front_end import KEY


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """(pipeline zip, [(png bytes, true label)]) in a shared directory."""
    from onda.host.models.digits.pipeline import build_pipeline, held_out_pngs

    d = tmp_path_factory.mktemp("shared")
    zip_path = build_pipeline(d / "digits.zip")
    pngs = [(p.read_bytes(), label) for p, label in held_out_pngs(d / "pngs", 24)]
    return zip_path, pngs


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The path all front ends read: TLS certificate and key, the keys file."""
    from onda.host.service.keys import write_keys
    from onda.host.service.tls import write_self_signed

    d = tmp_path_factory.mktemp("secrets")
    cert, key = write_self_signed(d)
    write_keys(d / "keys.json", {"primary": KEY, "secondary": "cluster-test-secondary"})
    return {"dir": d, "tls": (cert, key), "keys": d / "keys.json"}


@pytest.fixture(scope="module")
def single_host(digits):
    """The oracle: scores of every held-out digit from a single-host server on the emulator (no cluster)."""
    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread

    zip_path, pngs = digits
    with ServerThread(ServerConfig(models={"digits": zip_path}, backend="emulator")) as server:
        with PredictionClient("127.0.0.1", server.port, retry_delays=()) as client:
            scores = np.stack([client.score_file(png) for png, _ in pngs])
    right = int((scores.argmax(1) == np.array([label for _, label in pngs])).sum())
    assert right >= 0.9 * len(pngs), f"the oracle itself is wrong: {right} of {len(pngs)} digits right"
    return scores
