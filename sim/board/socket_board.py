"""What every simulated board shares: a TCP socket on 127.0.0.1 standing in for the board's
USB-UART, one host connection at a time (the newer wins), and the loop that carries bytes
between the host and the simulation while clocking it in slices.

A subclass says what to do with bytes from the host (:meth:`SocketBoard.take`: returns bytes to
send back at once) and how to advance the simulation (:meth:`SocketBoard.step`: bytes for the
host and whether it is still busy; while busy the socket is polled without waiting), and may say
what to do when the line has been silent a while (:meth:`SocketBoard.quiet`).
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading

__all__ = ["SocketBoard"]


class SocketBoard:
    frame_seconds = 0.1  # what a host should allow one frame's round trip

    def __init__(self, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.error: str | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def take(self, data: bytes) -> bytes:
        raise NotImplementedError

    def step(self) -> tuple[bytes, bool]:
        raise NotImplementedError

    def quiet(self) -> bytes:
        """The line has been silent a while (50 ms) and nothing runs: bytes for the host."""
        return b""

    def serve(self) -> None:
        """Carry bytes until :meth:`stop`; a RuntimeError of the simulation (its memory model saw
        a violation) ends it, kept in ``error`` and printed."""
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        conn, busy = None, False

        def send(out: bytes) -> None:
            if out and conn is not None:
                try:
                    conn.sendall(out)
                except OSError:
                    pass

        try:
            while not self._stop.is_set():
                events = sel.select(timeout=0 if busy else 0.05)
                if not events and not busy:
                    send(self.quiet())
                for key, _ in events:
                    if key.fileobj is self.sock:
                        new, _ = self.sock.accept()
                        if conn is not None:
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
                    send(self.take(data))
                    busy = True
                if busy:
                    out, busy = self.step()
                    send(out)
        except RuntimeError as e:
            self.error = str(e)
            print(f"onda board sim: {e}", file=sys.stderr, flush=True)
        finally:
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
