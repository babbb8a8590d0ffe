"""The ISA-emulator backend: runs compiled engine programs (.onda) on the functional emulator.

The model itself is ``sim/emulator/model.py``'s (a program planned into vectorized steps at its
first run); this module makes it a backend: input checks, errors as BackendError, loading and
compiling ``.tflite`` files.

``EmulatorBackend(engine=None).load(path)`` takes a ``.onda`` container, or a ``.tflite`` model which
it compiles at load for ``engine`` (default ``config.DEFAULT_ENGINE``, ``ulx3s-85f``; compiled programs are cached in memory
by model content and engine). With ``engine`` given, a container compiled for another engine
configuration is refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from onda.hw import container as ctr
from onda.hw.config import DEFAULT_ENGINE, ConfigError, EngineConfig, load_config
from onda.sim.emulator import model
from onda.sim.emulator.functional import EmulatorError
from onda.sim.emulator.model import MAX_BATCH_PER_PASS, read_tensor  # noqa: F401 (the backend's API)

from .backend import BackendError, check_inputs
_COMPILED: dict[tuple[str, str], ctr.Container] = {}


class EmulatedModel(model.EmulatedModel):
    """A compiled program on the emulator, as a backend's loaded model: inputs checked against its
    specs, the emulator's refusals as BackendError."""

    def plan(self):
        try:
            return super().plan()
        except EmulatorError as e:
            raise BackendError(str(e)) from None

    def _batched(self, inputs: list[np.ndarray], capture: bool, stepping: bool = False) -> dict[int, np.ndarray]:
        inputs = check_inputs(self.inputs, inputs)
        try:
            return super()._batched(inputs, capture, stepping)
        except EmulatorError as e:
            raise BackendError(str(e)) from None


class EmulatorBackend:
    name = "emulator"

    def __init__(self, engine: str | None = None):
        self.engine = engine or os.environ.get("ONDA_ENGINE") or None

    def _config(self, name: str) -> EngineConfig:
        try:
            return load_config(name)
        except ConfigError as e:
            raise BackendError(str(e)) from None

    def load(self, path: str | Path) -> EmulatedModel:
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"{path}: no such file")
        data = path.read_bytes()
        if ctr.is_container(data):
            c = ctr.parse(data, str(path))
            if self.engine is not None:
                cfg = self._config(self.engine)
                ctr.check_engine(c, cfg.fingerprint, cfg.name)
            return EmulatedModel(c, str(path))
        if data[4:8] == b"TFL3":
            cfg = self._config(self.engine or DEFAULT_ENGINE)
            key = (hashlib.sha256(data).hexdigest(), cfg.fingerprint)
            if key not in _COMPILED:
                from onda.host.compiler import CompileError, compile_graph
                from onda.host.frontend import read_tflite
                try:
                    _COMPILED[key] = compile_graph(read_tflite(path), cfg, source=data)
                except CompileError as e:
                    raise BackendError(f"{path}: cannot compile for engine {cfg.name!r}: {e}") from None
            return EmulatedModel(_COMPILED[key], str(path))
        raise BackendError(f"{path}: neither a compiled .onda program nor a .tflite model")

    def describe(self) -> dict:
        return {"backend": self.name, "device": f"ISA emulator ({self.engine or 'engine of the program'})",
                "exact": True}
