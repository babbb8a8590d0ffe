"""A faulty cable: a TCP proxy in front of a simulated board that drops, corrupts, duplicates and
delays the bytes it forwards, and can be cut and restored.

``LinkShim("127.0.0.1", board_port, drop=0.02, corrupt=0.02, duplicate=0.02, delay_s=0.001)``
listens on its own port (``url``); each chunk of bytes forwarded in either direction loses one
byte with probability ``drop``, has one bit flipped with ``corrupt``, is sent twice with
``duplicate``, after ``delay_s``. :meth:`cut` swallows every byte from then on (a dead link) until
:meth:`restore`. ``faults`` counts what it did.
"""

from __future__ import annotations

import random
import socket
import threading
import time

__all__ = ["LinkShim"]


class LinkShim:
    def __init__(self, host: str, port: int, drop: float = 0.0, corrupt: float = 0.0, duplicate: float = 0.0,
                 delay_s: float = 0.0, seed: int = 0):
        self.target = (host, port)
        self.drop, self.corrupt, self.duplicate, self.delay_s = drop, corrupt, duplicate, delay_s
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults = {"dropped": 0, "corrupted": 0, "duplicated": 0, "swallowed": 0}
        self.dead = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.dead.set()

    def restore(self) -> None:
        self.dead.clear()

    def close(self) -> None:
        self._closed = True
        self.sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(self.target)
            except OSError:
                a.close()
                continue
            for s in (a, b):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
            threading.Thread(target=self._pump, args=(b, a), daemon=True).start()

    def _mangle(self, data: bytes) -> list[bytes]:
        with self.lock:
            if self.dead.is_set():
                self.faults["swallowed"] += len(data)
                return []
            data = bytearray(data)
            r = self.rng
            if data and r.random() < self.drop:
                del data[r.randrange(len(data))]
                self.faults["dropped"] += 1
            if data and r.random() < self.corrupt:
                data[r.randrange(len(data))] ^= 1 << r.randrange(8)
                self.faults["corrupted"] += 1
            out = [bytes(data)]
            if data and r.random() < self.duplicate:
                out.append(bytes(data))
                self.faults["duplicated"] += 1
            return out

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)
                for chunk in self._mangle(data):
                    dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
