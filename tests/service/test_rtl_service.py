"""`onda serve --backend rtl`: the scoring service with every request run by the engine RTL (its Verilator
model), over TLS with a key, answers equal to the reference path's (preprocessing, the default backend on the
int8 featurizer, the classifier) for real photos."""

from __future__ import annotations

import numpy as np
import pytest

from onda.sim.verilator.build import have_toolchain

from .conftest import KEYS

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")


def test_service_on_the_rtl_backend(pipeline_zips, tls_files, reference, photos):
    from onda.host.client import PredictionClient
    from onda.host.service import ServerConfig, ServerThread

    cert, key = tls_files
    server = ServerThread(ServerConfig(models={"tiny": pipeline_zips["tiny"]}, backend="rtl", tls_cert=cert,
                                       tls_key=key, keys=list(KEYS)))
    try:
        client = PredictionClient("localhost", server.port, use_ssl=True, access_token=KEYS[0],
                                  root_certificates=cert, timeout=900, retry_delays=())
        names = sorted(photos)[:2]
        got = client.score_images([photos[n] for n in names])  # one request, a batch of two
        client.close()
    finally:
        server.stop()
    np.testing.assert_allclose(got, reference.scores_images([photos[n] for n in names]), rtol=1e-5, atol=1e-7)
