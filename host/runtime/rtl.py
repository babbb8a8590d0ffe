"""The RTL backend: compiled programs (.onda) executed by the engine's own hardware description, in
simulation.

``RtlBackend(engine=None, simulator=None).load(path)`` takes what the emulator backend takes (a
``.onda`` container, or a ``.tflite`` compiled at load). Each image runs on the Amaranth engine
(``onda.hw.engine.Engine``) built by Verilator into a C++ model with a flat memory
(``onda.sim.verilator``), or, where no C++ toolchain is available, on Amaranth's own simulator
(slow: small programs only), with a one-line notice. The weight image and the program are written
into the simulated memory once per loaded model; each image writes only its input.

Every layer output is read from memory at the instruction where the program completes that layer
(the engine is paused there), so ``run_all`` gives ``onda verify`` the same per-tensor table as
the emulator. ``measured_cycles`` holds the engine's cycle count of the last image beside the
cycle model's (``cycle_trace().total``).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from onda.sim.engine.program_run import RunTimeout, capture_points, execute, program_image

from .backend import BackendError
from .emulator import EmulatedModel, EmulatorBackend

SIMULATORS = ("verilator", "amaranth")


def _snapshot(act: bytes) -> np.ndarray:
    """The activation region of one image, as ``EmulatedModel._read`` reads memory: [1, bytes]."""
    return np.frombuffer(act, dtype=np.int8).reshape(1, -1)


class RtlModel(EmulatedModel):
    def __init__(self, container, origin: str, simulator: str):
        super().__init__(container, origin)
        self.simulator = simulator
        self._device = None
        self.measured_cycles: int | None = None
        self.counters: dict[str, int] = {}
        # Where each layer's output is complete in memory (a compute instruction's completion).
        self._capture: dict[int, int] = capture_points(self.program, self.layers)

    def prepare(self) -> None:
        """Build (or take from the cache) the simulated engine and write the weights and the program
        into its memory, so the first image does not wait for them."""
        if self.simulator == "verilator" and self._device is None:
            self._device = self._new_device()
            for addr, data in program_image(self.container):
                self._device.write_memory(addr, data)

    def _new_device(self):
        if self.simulator == "verilator":
            from onda.sim.engine.program_cases import random_inputs
            from onda.sim.verilator.harness import VerilatorEngine
            from onda.sim.verilator.train import TrainingImage

            # Built profile-guided on this program (once per engine and sources: cached).
            image = program_image(self.container) + [
                (int(self.tensors[tid]["addr"]), np.ascontiguousarray(x[0]).tobytes())
                for tid, x in zip(self.memmap["inputs"], random_inputs(self, 1, 0))]
            return VerilatorEngine(self.config, train=TrainingImage(image, int(self.memmap["program_base"]),
                                                                    len(self.program)))
        from onda.sim.engine.engine_sim import AmaranthEngine

        return AmaranthEngine(self.config)

    def _run_pass(self, inputs: list[np.ndarray], capture: bool, stepping: bool = False) -> dict[int, np.ndarray]:
        n = inputs[0].shape[0]
        per_image = []
        for b in range(n):
            if self._device is None or self.simulator == "amaranth":
                self._device = self._new_device()
                image = program_image(self.container)
            else:
                image = []  # a Verilator device holds the weights and program from its first image (or prepare)
            for tid, x in zip(self.memmap["inputs"], inputs):
                image.append((int(self.tensors[tid]["addr"]), np.ascontiguousarray(x[b]).tobytes()))
            at = sorted(set(self._capture.values())) if capture else []
            act = (0, int(self.memmap["act_size"]))
            limit = int(os.environ.get("ONDA_RTL_MAX_CYCLES", 0)) or 20 * self.cycle_trace().total + 100_000
            try:
                run = execute(self._device, image, int(self.memmap["program_base"]), len(self.program),
                              capture_at=at, capture_range=act, max_cycles=limit)
            except RunTimeout as e:
                self._device = None
                raise BackendError(f"{self.origin}: rtl: {e}") from None
            if not run.done:
                self._device = None
                ins = self.program[run.error_index] if run.error_index < len(self.program) else None
                raise BackendError(f"{self.origin}: rtl: engine stopped with {run.error.name} at instruction "
                                   f"{run.error_index}" + (f" ({ins})" if ins else ""))
            self.measured_cycles, self.counters = run.cycles, run.counters
            final = _snapshot(bytes(self._device.read_memory(*act)))
            values: dict[int, np.ndarray] = {}
            if capture:
                values.update({tid: np.asarray(x[b:b + 1]) for tid, x in zip(self.memmap["inputs"], inputs)})
                aliases: dict[int, list[int]] = {}
                for tid, t in self.tensors.items():
                    if t["alias_of"] is not None:
                        aliases.setdefault(t["alias_of"], []).append(tid)
                for tid, index in self._capture.items():
                    snap = _snapshot(run.captures[index])
                    for t in [tid] + aliases.get(tid, []):
                        values[t] = self._read(snap, t)
            for tid in self.memmap["outputs"]:
                values[tid] = self._read(final, tid)
            per_image.append(values)
        return {k: np.concatenate([v[k] for v in per_image]) for k in per_image[0]}

    def cycle_report(self) -> str:
        model = self.cycle_trace().total
        if self.measured_cycles is None:
            return f"cycle model {model} cycles; the RTL has not run"
        ratio = self.measured_cycles / model if model else float("nan")
        return (f"cycles: RTL {self.measured_cycles} ({self.simulator}), cycle model {model}, "
                f"RTL / model {ratio:.4f}")


class RtlBackend(EmulatorBackend):
    name = "rtl"

    def __init__(self, engine: str | None = None, simulator: str | None = None):
        super().__init__(engine)
        simulator = simulator or os.environ.get("ONDA_RTL_SIM")
        if simulator is None:
            from onda.sim.verilator.build import have_toolchain

            why = have_toolchain()
            simulator = "verilator" if why is None else "amaranth"
            if why is not None:
                print(f"onda: rtl backend on Amaranth's simulator (slow): no Verilator build here ({why})",
                      file=sys.stderr)
        if simulator not in SIMULATORS:
            raise BackendError(f"unknown RTL simulator {simulator!r} (choose from {', '.join(SIMULATORS)})")
        self.simulator = simulator

    def load(self, path):
        model = super().load(path)
        return RtlModel(model.container, model.origin, self.simulator)

    def describe(self) -> dict:
        return {"backend": self.name, "device": f"engine RTL on {self.simulator} ({self.engine or 'engine of the program'})",
                "exact": True}
