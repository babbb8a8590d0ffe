"""The board backend: compiled programs run by an engine on a board, driven over the host link
(``onda.host.runtime.link``, ``hw/boards/LINK.md``).

``BoardBackend(device="socket://127.0.0.1:PORT")`` (or ``/dev/ttyUSB0``) loads a ``.onda``
container (or a ``.tflite``, compiled at load for the board's engine): it checks that the board's
engine is the one the program was compiled for (the configuration fingerprint IDENTIFY reports),
then writes the weight image and the program once. Each image writes its inputs, RUNs, polls
STATUS until done (or an engine error, reported with its code and instruction), and reads the
outputs. A link that goes silent raises BackendError within the link's timeout budget; the next
call opens it again, so the backend recovers when the link returns.
"""

from __future__ import annotations

import time

import numpy as np

from onda.hw.engine.errors import EngineError
from onda.sim.emulator.model import tensor_span
from onda.sim.engine.program_run import program_image

from .backend import BackendError
from .emulator import EmulatedModel, EmulatorBackend
from .link import Link, LinkError

POLL_S = 0.002  # between STATUS polls while the engine runs


class BoardModel(EmulatedModel):
    def __init__(self, container, origin: str, device: str, link_options: dict):
        super().__init__(container, origin)
        self.device = device
        self.link = Link(device, **link_options)
        self.loaded = False  # the board holds this model's weights and program
        self.measured_cycles: int | None = None

    def _connect(self) -> None:
        if self.loaded:
            return
        try:
            ident = self.link.open()
        except LinkError as e:
            raise BackendError(f"{self.origin}: {e}") from None
        want = self.container.fingerprint
        if ident.fingerprint != want:
            self.link.close()
            raise BackendError(f"{self.origin}: board at {self.device} runs engine {ident.board!r} (fingerprint "
                               f"{ident.fingerprint[:12]}), the program was compiled for {self.config.name!r} "
                               f"({want[:12]})")
        for addr, data in program_image(self.container):
            self.link.write_memory(addr, data)
        self.loaded = True

    def prepare(self) -> None:
        self._connect()

    def _run_pass(self, inputs: list[np.ndarray], capture: bool, stepping: bool = False) -> dict[int, np.ndarray]:
        try:
            return self._run_images(inputs)
        except LinkError as e:
            self.loaded = False  # reconnect (and reload) on the next call
            self.link.close()
            raise BackendError(f"{self.origin}: {e}") from None

    def _run_images(self, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
        self._connect()
        n = inputs[0].shape[0]
        clock_hz = self.config.clock_mhz * 1e6
        deadline_s = 10 + 20 * self.cycle_trace().total / clock_hz  # generous: a simulated board is slower
        per_image = []
        for b in range(n):
            for tid, x in zip(self.memmap["inputs"], inputs):
                self.link.write_memory(int(self.tensors[tid]["addr"]), np.ascontiguousarray(x[b]).tobytes())
            self.link.run(int(self.memmap["program_base"]), len(self.program))
            t0 = time.monotonic()
            while True:
                st = self.link.status()
                if st.done or st.error:
                    break
                if time.monotonic() - t0 > deadline_s:
                    raise BackendError(f"{self.origin}: board at {self.device}: engine still running after "
                                       f"{deadline_s:.0f} s")
                time.sleep(POLL_S)
            if st.error:
                ins = self.program[st.error_index] if st.error_index < len(self.program) else None
                raise BackendError(f"{self.origin}: board at {self.device}: engine stopped with "
                                   f"{EngineError(st.error).name} at instruction {st.error_index}"
                                   + (f" ({ins})" if ins else ""))
            self.measured_cycles = st.cycles
            values = {}
            for tid in self.memmap["outputs"]:
                t = self.tensors[tid]
                raw = self.link.read_memory(int(t["addr"]), tensor_span(t))
                values[tid] = self._read(_region(t, raw), tid)
            per_image.append(values)
        return {k: np.concatenate([v[k] for v in per_image]) for k in per_image[0]}


def _region(t: dict, raw: bytes) -> np.ndarray:
    """The bytes of one tensor as ``EmulatedModel._read`` reads memory: placed at the tensor's address."""
    buf = np.zeros((1, int(t["addr"]) + len(raw)), dtype=np.int8)
    buf[0, int(t["addr"]):] = np.frombuffer(raw, dtype=np.int8)
    return buf


class BoardBackend(EmulatorBackend):
    name = "board"

    def __init__(self, device: str | None = None, engine: str | None = None, timeout: float = 0.5,
                 retries: int = 8, baudrate: int = 3_000_000):
        super().__init__(engine)
        if not device:
            raise BackendError("backend 'board' needs --device (a serial port such as /dev/ttyUSB0, or "
                               "socket://HOST:PORT for `onda board sim`)")
        self.device = device
        self.link_options = dict(timeout=timeout, retries=retries, baudrate=baudrate)

    def load(self, path):
        from pathlib import Path

        from onda.hw.container import is_container

        p = Path(path)
        tflite = p.is_file() and not is_container(p.read_bytes()[:64])
        if self.engine is None and tflite:  # a .tflite is compiled for the engine the board says it has
            from onda.hw.config import available_configs

            try:
                with Link(self.device, **self.link_options) as link:
                    board = link.identity.board
            except LinkError as e:
                raise BackendError(str(e)) from None
            if board in available_configs():
                self.engine = board
        model = super().load(path)
        return BoardModel(model.container, model.origin, self.device, self.link_options)

    def describe(self) -> dict:
        return {"backend": self.name, "device": f"board at {self.device}", "exact": True}
