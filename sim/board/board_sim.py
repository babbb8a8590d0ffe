"""A simulated board on a TCP socket: the engine RTL (Verilator) behind the link's reference device.

``BoardSim(cfg).serve()`` listens on 127.0.0.1 (a free port unless one is given) and answers the
host link's frames (``hw/boards/LINK.md``) arriving on one connection at a time, so a host reaches
it at ``socket://127.0.0.1:PORT`` exactly as it reaches a board at ``/dev/ttyUSB0``. While the engine
runs, it is clocked in slices between the bytes that arrive, so STATUS can be polled during a run.
The link's device end here is ``onda.sim.board.link_device`` (Python, the protocol's reference), not
the board top's gateware (that is ``onda.sim.board.gateware_sim``): what this simulates is the
engine and the protocol, fast.

    python -m onda.sim.board.board_sim --board ulx3s-85f [--port N]
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import threading

from onda.hw.boards.board_core import GATEWARE_VERSION
from onda.hw.config import EngineConfig, load_config
from onda.hw.engine.registers import STATUS_BITS

from .link_device import LinkDevice

__all__ = ["BoardSim", "GATEWARE_VERSION"]

SLICE_CYCLES = 20_000  # engine cycles between looks at the socket while a program runs (tens of ms)


class BoardSim:
    frame_seconds = 0.1  # what a host should allow one frame's round trip (a fast simulated line)

    def __init__(self, cfg: EngineConfig, port: int = 0, engine=None, quiet: bool = True):
        if engine is None:
            from onda.sim.verilator.harness import VerilatorEngine

            engine = VerilatorEngine(cfg, quiet=quiet)
        self.cfg, self.engine = cfg, engine
        self.device = LinkDevice(engine, cfg.name, bytes.fromhex(cfg.fingerprint), GATEWARE_VERSION,
                                 cfg.mem_size_bytes)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _running(self) -> bool:
        return bool(self.engine.read_register("STATUS") >> STATUS_BITS["running"] & 1)

    def serve(self) -> None:
        """Answer connections until :meth:`stop`."""
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        conn = None
        while not self._stop.is_set():
            running = self._running()
            for key, _ in sel.select(timeout=0 if running else 0.05):
                if key.fileobj is self.sock:
                    new, _ = self.sock.accept()
                    if conn is not None:  # one host at a time: the newer connection wins
                        sel.unregister(conn)
                        conn.close()
                    conn = new
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn)
                    conn.close()
                    conn = None
                    continue
                answer = self.device.feed(data)
                if answer:
                    try:
                        conn.sendall(answer)
                    except OSError:
                        pass
            if running:
                self.engine.run(SLICE_CYCLES)
        if conn is not None:
            conn.close()
        sel.close()
        self.sock.close()

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests); returns it."""
        t = threading.Thread(target=self.serve, name=f"board-sim-{self.port}", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="onda board sim", description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", default="ulx3s-85f", help="engine configuration of the board (default ulx3s-85f)")
    ap.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    a = ap.parse_args(argv)
    sim = BoardSim(load_config(a.board), a.port, quiet=False)
    print(f"simulated {a.board} board (engine RTL, reference link) at {sim.url}", flush=True)
    try:
        sim.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
