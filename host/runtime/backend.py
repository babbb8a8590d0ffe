"""The backend interface: load a quantized model, run batches of int8 inputs, describe itself.

Backends register by name; ``get_backend("golden")`` returns one. A backend module is imported
only when asked for, so a host without, say, a board attached never touches its driver.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from onda.sim.ir import TensorSpec  # the backends' description of a model's inputs and outputs


class BackendError(RuntimeError):
    """A backend could not load or run a model; the message says which and why."""


class LoadedModel(Protocol):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs for a batch (any leading size) of inputs in the model's own dtypes."""

    def run_all(self, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
        """Every tensor the backend can expose, by the source model's tensor id."""


class Backend(Protocol):
    name: str

    def load(self, path: str | Path) -> LoadedModel: ...

    def describe(self) -> dict: ...


_BACKENDS = {
    "golden": "onda.host.runtime.golden:GoldenBackend",
    "emulator": "onda.host.runtime.emulator:EmulatorBackend",
    "rtl": "onda.host.runtime.rtl:RtlBackend",
    "board": "onda.host.runtime.board:BoardBackend",
}


# What serves when nobody names a backend: the ISA emulator once it is registered, else golden.
DEFAULT_PREFERENCE = ["emulator", "golden"]


def default_backend() -> str:
    return next(b for b in DEFAULT_PREFERENCE if b in _BACKENDS)


def backend_for(path: str | Path) -> str:
    """The backend a model file runs on when none is named: a compiled ``.onda`` program on the
    emulator (the engine it was compiled for), anything else (a ``.tflite``) on the golden model."""
    from onda.hw.container import is_container

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return "golden"  # the load reports the missing or unreadable file
    return default_backend() if is_container(head) else "golden"


def register_backend(name: str, target: str) -> None:
    """Make ``name`` resolvable to ``"module:Class"``."""
    _BACKENDS[name] = target


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str, **options) -> Backend:
    if name not in _BACKENDS:
        raise BackendError(f"unknown backend {name!r} (available: {', '.join(available_backends())})")
    module, cls = _BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)


def check_inputs(specs: list[TensorSpec], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Inputs as arrays of the right dtype and per-item shape, or a precise BackendError."""
    if len(inputs) != len(specs):
        raise BackendError(f"model takes {len(specs)} input(s), got {len(inputs)}")
    out = []
    for spec, x in zip(specs, inputs):
        x = np.asarray(x)
        if x.dtype != np.dtype(spec.dtype):
            raise BackendError(f"input {spec.name!r}: expected dtype {spec.dtype}, got {x.dtype}")
        if x.ndim != len(spec.shape) or tuple(x.shape[1:]) != tuple(spec.shape[1:]):
            want = "[N, " + ", ".join(map(str, spec.shape[1:])) + "]"
            raise BackendError(f"input {spec.name!r}: expected shape {want}, got {list(x.shape)}")
        if x.shape[0] == 0:
            raise BackendError(f"input {spec.name!r}: empty batch")
        out.append(x)
    return out
