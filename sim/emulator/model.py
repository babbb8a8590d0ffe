"""A compiled program (an ``.onda`` container) on the functional emulator: what the emulator
backend runs, and the oracle the RTL benches compare the engine with.

The program is compiled once, at its first run, into a plan of vectorized steps (``plan.py``); a
program the planner does not take runs instruction by instruction on ``Machine``. Engine memory is
read back through ``read_tensor``, which every backend and bench uses.
"""

from __future__ import annotations

import numpy as np

from onda.hw import container as ctr
from onda.hw import isa
from onda.hw.config import EngineConfig, config_from_dict
from onda.sim.golden import kernels as K
from onda.sim.golden.layout import depth_to_space
from onda.sim.ir import TensorSpec

from .cycles import CycleTrace, simulate
from .functional import EmulatorError, Machine, execute
from .plan import Plan, PlanUnsupported, build_plan

MAX_BATCH_PER_PASS = 32


def tensor_span(t: dict) -> int:
    """Bytes from a MEMMAP tensor's ``addr`` to the end of its last byte (what ``read_tensor`` reads)."""
    if t.get("space_to_depth"):
        hs, ws, c4 = t["space_to_depth"]
        return hs * ws * c4
    if t.get("pixel_stride"):
        pixels = int(np.prod(t["shape"][1:-1]))
        return (pixels - 1) * t["pixel_stride"] + int(t["shape"][-1])
    return int(np.prod(t["shape"]))


def read_tensor(mem: np.ndarray, t: dict) -> np.ndarray:
    """Tensor ``t`` (a MEMMAP tensor entry: ``addr``, ``shape``, optional ``space_to_depth`` or
    ``pixel_stride``) out of
    the activation memory ``mem`` ([images, bytes] int8), as an NHWC array of ``images`` images.
    Every backend and bench that reads results from engine memory decodes them here."""
    n = mem.shape[0]
    shape = (n,) + tuple(t["shape"][1:])
    if t.get("space_to_depth"):  # stored as [ceil(H/2), ceil(W/2), 4C] (sim/golden/layout.py): back to NHWC
        hs, ws, c4 = t["space_to_depth"]
        full = depth_to_space(mem[:, t["addr"]:t["addr"] + hs * ws * c4].reshape(n, hs, ws, c4))
        return np.ascontiguousarray(full[:, :shape[1], :shape[2]]).reshape(shape)
    if t.get("pixel_stride"):  # a channel slice of a concatenation: pixel_stride bytes from pixel to pixel
        c = shape[-1]
        pixels = int(np.prod(shape[1:-1]))
        index = t["addr"] + np.arange(pixels)[:, None] * t["pixel_stride"] + np.arange(c)
        return mem[:, index].reshape(shape)
    size = int(np.prod(t["shape"]))
    return mem[:, t["addr"]:t["addr"] + size].reshape(shape).copy()


class EmulatedModel:
    """A compiled program ready to run on the emulator (any batch size, one vectorized pass per
    up to ``MAX_BATCH_PER_PASS`` images)."""

    def __init__(self, container: ctr.Container, origin: str = ""):
        self.container = container
        self.origin = origin
        self.config: EngineConfig = config_from_dict(container.config)
        if self.config.fingerprint != container.fingerprint:
            raise ctr.ContainerError(f"{origin}: embedded engine config does not match the header fingerprint")
        self.memmap = container.memmap
        try:
            self.program = isa.decode_program(container.program)
        except isa.ISAError as e:
            raise ctr.ContainerError(f"{origin}: bad program: {e}") from None
        self.tensors = {int(k): v for k, v in self.memmap["tensors"].items()}
        self.tensors.update({int(k): v for k, v in self.memmap.get("host_tensors", {}).items()})
        self.host_ops = self.memmap.get("host_ops", [])
        self.input_ids = self.memmap.get("host_inputs", self.memmap["inputs"])
        self.output_ids = self.memmap.get("host_outputs", self.memmap["outputs"])
        self.inputs = [self._spec(t) for t in self.input_ids]
        self.outputs = [self._spec(t) for t in self.output_ids]
        self.layers = self.memmap["layers"]
        self._trace: CycleTrace | None = None
        self._plan: Plan | None = None
        self._plan_refused: str | None = None

    def _spec(self, tid: int) -> TensorSpec:
        return TensorSpec.of(self.tensors[tid])

    @property
    def source_tflite(self) -> bytes | None:
        return self.container.source

    def producers(self) -> dict[int, str]:
        return {tid: t["producer"] for tid, t in self.tensors.items()}

    def tensor_names(self) -> dict[int, str]:
        return {tid: t["name"] for tid, t in self.tensors.items()}

    def cycle_trace(self) -> CycleTrace:
        """The cycle model's run of the program (data independent, computed once)."""
        if self._trace is None:
            self._trace = simulate(self.program, self.config, program_addr=int(self.memmap["program_base"]))
        return self._trace

    def plan(self) -> Plan | None:
        """The program compiled into vectorized steps (``sim/emulator/plan.py``), built once: data
        independent, so the engine's rule checks run here. ``None`` if the planner does not take
        this program; it then runs instruction by instruction."""
        if self._plan is None and self._plan_refused is None:
            cuts = {layer["last"] for layer in self.layers}
            try:
                self._plan = build_plan(self.program, self.config, self.memmap, self.container.weights, cuts)
            except PlanUnsupported as e:
                self._plan_refused = str(e)
            except EmulatorError as e:
                raise EmulatorError(f"{self.origin}: emulator: {e}") from None
        return self._plan

    def _read(self, mem: np.ndarray, tid: int) -> np.ndarray:
        return read_tensor(mem, self.tensors[tid])

    def _run_pass(self, inputs: list[np.ndarray], capture: bool, stepping: bool = False) -> dict[int, np.ndarray]:
        """One pass of the program over a batch: by its plan, or (``stepping``, or a program the
        planner refuses) instruction by instruction on ``Machine``."""
        n = inputs[0].shape[0]
        plan = None if stepping else self.plan()
        m = None
        if plan is None:
            m = Machine(self.config, self.memmap, self.container.weights, n)
            mem = m.act_mem
        else:
            mem = np.zeros((n, max(int(self.memmap["act_size"]), 1)), dtype=np.int8)
        for tid, x in zip(self.memmap["inputs"], inputs):
            t = self.tensors[tid]
            mem[:, t["addr"]:t["addr"] + x[0].size] = x.reshape(n, -1)
        values: dict[int, np.ndarray] = {}
        on_ins = None
        if capture:
            values.update({tid: np.asarray(x) for tid, x in zip(self.memmap["inputs"], inputs)})
            at_end: dict[int, list[int]] = {}
            aliases: dict[int, list[int]] = {}
            for tid, t in self.tensors.items():
                if t["alias_of"] is not None:
                    aliases.setdefault(t["alias_of"], []).append(tid)
            for layer in self.layers:
                at_end.setdefault(layer["last"], []).append(layer["output"])

            def on_ins(i: int) -> None:
                for tid in at_end.get(i, ()):
                    for t in [tid] + aliases.get(tid, []):
                        values[t] = self._read(mem, t)
        try:
            if plan is None:
                execute(m, self.program, on_ins)
            else:
                plan.run(mem, on_ins)
        except EmulatorError as e:
            raise EmulatorError(f"{self.origin}: emulator: {e}") from None
        for tid in self.memmap["outputs"]:
            values[tid] = self._read(mem, tid)
        return values

    def _batched(self, inputs: list[np.ndarray], capture: bool, stepping: bool = False) -> dict[int, np.ndarray]:
        host = dict(zip(self.input_ids, inputs))
        for h in self.host_ops:  # float -> int8 on the host, before the engine
            if h["stage"] == "pre":
                host[h["output"]] = K.quantize(host[h["input"]], h["scale"], h["zero_point"])
        engine_in = [host[t] for t in self.memmap["inputs"]]
        n = engine_in[0].shape[0]
        parts = [self._run_pass([x[i:i + MAX_BATCH_PER_PASS] for x in engine_in], capture, stepping)
                 for i in range(0, n, MAX_BATCH_PER_PASS)]
        values = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        for h in self.host_ops:  # int8 -> float on the host, after the engine
            if h["stage"] == "post":
                values[h["output"]] = K.dequantize(values[h["input"]], h["scale"], h["zero_point"])
        if capture:
            values.update(host)
        return values

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        values = self._batched(inputs, capture=False)
        return [values[t] for t in self.output_ids]

    def run_all(self, inputs: list[np.ndarray], stepping: bool = False) -> dict[int, np.ndarray]:
        """Inputs and every tensor a layer of the program writes, by the source model's tensor id;
        ``stepping``: instruction by instruction (the reference the plan is tested against)."""
        return self._batched(inputs, capture=True, stepping=stepping)
