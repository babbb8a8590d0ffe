"""A simulated board on a TCP socket: the engine RTL (Verilator) behind the link's reference device.

``BoardSim(cfg).serve()`` listens on 127.0.0.1 (a free port unless one is given) and answers the
host link's frames (``hw/boards/LINK.md``) arriving on one connection at a time, so a host reaches
it at ``socket://127.0.0.1:PORT`` exactly as it reaches a board at ``/dev/ttyUSB0``. While the engine
runs, it is clocked in slices between the bytes that arrive, so STATUS can be polled during a run.
The link's device end here is ``onda.sim.board.link_device`` (Python, the protocol's reference), not
the board top's gateware (that is ``onda.sim.board.gateware_sim``): what this simulates is the
engine and the protocol, fast.

    onda board sim --board icebreaker [--reference] [--port N]
"""

from __future__ import annotations

from onda.hw.boards.board_core import GATEWARE_VERSION
from onda.hw.config import EngineConfig
from onda.hw.engine.registers import STATUS_BITS

from .link_device import LinkDevice
from .socket_board import SocketBoard

__all__ = ["BoardSim", "GATEWARE_VERSION"]

SLICE_CYCLES = 20_000  # engine cycles between looks at the socket while a program runs (tens of ms)


class BoardSim(SocketBoard):
    frame_seconds = 0.1  # what a host should allow one frame's round trip (a fast simulated line)

    def __init__(self, cfg: EngineConfig, port: int = 0, engine=None, quiet: bool = True):
        if engine is None:
            from onda.sim.verilator.harness import VerilatorEngine

            engine = VerilatorEngine(cfg, quiet=quiet)
        self.cfg, self.engine = cfg, engine
        self.device = LinkDevice(engine, cfg.name, bytes.fromhex(cfg.fingerprint), GATEWARE_VERSION,
                                 cfg.mem_size_bytes)
        super().__init__(port)

    def _running(self) -> bool:
        return bool(self.engine.read_register("STATUS") >> STATUS_BITS["running"] & 1)

    def take(self, data: bytes) -> bytes:
        return self.device.feed(data)

    def quiet(self) -> bytes:  # 50 ms of silence is far more than GAP_BITS at any baud rate
        return self.device.line_idle()

    def step(self) -> tuple[bytes, bool]:
        running = self._running()
        if running:
            self.engine.run(SLICE_CYCLES)
        return b"", running

