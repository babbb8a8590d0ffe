"""`onda serve --backend board --device URL`: the digits pipeline served by a real gRPC server whose
device is a simulated board behind a fault shim; scores equal the emulator-backed service's; a cut
link answers UNAVAILABLE within the link's timeout and the service serves again once it returns."""

import time

import grpc
import numpy as np
import pytest

from onda.sim.board.link_shim import LinkShim
from onda.sim.verilator.build import have_toolchain

from .conftest import start_board

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")


def test_served_on_a_simulated_board(tmp_path):
    from onda.host.client import PredictionClient
    from onda.host.compiler import compile_tflite
    from onda.host.models import digits
    from onda.host.models.digits.pipeline import build_pipeline, held_out_pngs
    from onda.host.pipeline import ModelDefinition
    from onda.host.service import ServerConfig, ServerThread
    from onda.host.service.model import ServedModel

    onda = tmp_path / "digits.onda"
    compile_tflite(digits.TFLITE, "icebreaker").write(onda)
    sim = start_board("icebreaker", onda)
    shim = LinkShim("127.0.0.1", sim.port)
    zip_path = build_pipeline(tmp_path / "digits.zip")
    pngs = held_out_pngs(tmp_path / "png", 6)
    server = ServerThread(ServerConfig(models={"digits": zip_path}, backend="board", device_urls=[shim.url],
                                       keys=["k1"]))
    client = PredictionClient("127.0.0.1", server.port, access_token="k1", retry_delays=(), timeout=20)
    try:
        local = ServedModel("digits", ModelDefinition.load(zip_path), "emulator", tmp_path)
        for path, _ in pngs:
            got = client.score_image(path)
            want, _ = local.score_here([path.read_bytes()])
            np.testing.assert_array_equal(got, want[0])
        shim.cut()
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            client.score_image(pngs[0][0])
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE and "board at" in e.value.details()
        assert time.monotonic() - t0 < 15  # the link's timeout (0.5 s) x 9 tries, and a little
        shim.restore()
        got = client.score_image(pngs[1][0])
        want, _ = local.score_here([pngs[1][0].read_bytes()])
        np.testing.assert_array_equal(got, want[0])
    finally:
        client.close()
        server.stop()
        shim.close()
        sim.stop()
