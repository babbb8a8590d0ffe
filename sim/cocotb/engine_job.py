"""Jobs for the whole-engine cocotb bench (``onda.sim.cocotb.engine_bench``): what to put in memory,
what to run, and what every output must be.

A job is a list of runs on one engine, one after another (the engine restarts on each ``CTRL``
write; memory and buffers carry over, as on a board). A run of a compiled program carries its
memory image (``program_run.program_image`` and the input), the tensors to check at each capture
point (``program_run.capture_points``: where a layer's output is complete in memory) and at the
end, each with the ISA emulator's bytes (``EmulatedModel.run_all``, the independent oracle the
Verilator tests use too); a run of a bad program carries the error code and index it must stop
with. Tensors are decoded from memory by ``emulator.read_tensor`` on both sides.
"""

from __future__ import annotations

import numpy as np

from onda.hw.config import EngineConfig
from onda.sim.engine.program_cases import BAD_BASE, BadProgram
from onda.sim.engine.program_run import capture_points, program_image

__all__ = ["bad_program_run", "engine_job", "program_runs", "raw_run"]


def _chunk(addr: int, data: bytes) -> list:
    return [int(addr), bytes(data).hex()]


def _tensor(model, tid: int, value: np.ndarray) -> dict:
    t = model.tensors[tid]
    return {"tid": tid, "name": t["name"], "addr": int(t["addr"]), "shape": [1, *t["shape"][1:]],
            "space_to_depth": t.get("space_to_depth"), "pixel_stride": t.get("pixel_stride"),
            "expected": np.ascontiguousarray(value).tobytes().hex()}


def program_runs(container, inputs: list[np.ndarray], name: str = "program", max_cycles: int | None = None) -> list[dict]:
    """One run per image of ``inputs`` (engine inputs of ``container``, [images, ...] each): the
    expected value of every tensor a layer writes comes from the ISA emulator."""
    from onda.sim.emulator.model import EmulatedModel

    emu = EmulatedModel(container, name)
    want = emu.run_all(inputs)
    capture = capture_points(emu.program, emu.layers)
    aliases: dict[int, list[int]] = {}
    for tid, t in emu.tensors.items():
        if t["alias_of"] is not None:
            aliases.setdefault(t["alias_of"], []).append(tid)
    limit = max_cycles or 20 * emu.cycle_trace().total + 20_000
    memmap = container.memmap
    runs = []
    for b in range(inputs[0].shape[0]):
        image = [_chunk(a, d) for a, d in program_image(container)]
        image += [_chunk(emu.tensors[tid]["addr"], np.ascontiguousarray(want[tid][b]).tobytes())
                  for tid in memmap["inputs"]]
        at: dict[int, list[dict]] = {}
        for tid, index in capture.items():
            at.setdefault(index, []).extend(_tensor(emu, t, want[t][b]) for t in [tid] + aliases.get(tid, []))
        runs.append({
            "name": f"{name}[{b}]", "image": image, "prog_addr": int(memmap["program_base"]),
            "prog_count": len(emu.program), "act_size": int(memmap["act_size"]), "max_cycles": int(limit),
            "captures": [{"index": i, "tensors": at[i]} for i in sorted(at)],
            "outputs": [_tensor(emu, tid, want[tid][b]) for tid in memmap["outputs"]],
            "expect_error": None,
        })
    return runs


def raw_run(name: str, code: bytes, error=None, index: int = 0, max_cycles: int = 20_000) -> dict:
    """A run of the program ``code`` (instruction bytes) at ``BAD_BASE``, nothing to compare: it
    must complete, or with ``error`` (an ``EngineError``) stop with that code at ``index``."""
    expect = None if error is None else {"code": int(error), "name": error.name, "index": index}
    return {"name": name, "image": [_chunk(BAD_BASE, code)], "prog_addr": BAD_BASE,
            "prog_count": len(code) // 32, "act_size": 0, "max_cycles": max_cycles, "captures": [],
            "outputs": [], "expect_error": expect}


def bad_program_run(bad: BadProgram, max_cycles: int = 20_000) -> dict:
    """A run of ``bad``: it must stop with ``bad.error`` at ``bad.index``."""
    return raw_run(bad.what, bad.code, bad.error, bad.index, max_cycles)


def engine_job(cfg: EngineConfig, runs: list[dict], *, seed: int = 0, stall: float = 0.2, jitter: int = 3,
               drain: bool = True) -> dict:
    """The job file of ``runs`` on engine ``cfg``: the memory's size, beat and latency are the
    configuration's; ``stall`` (probability of a refused handshake each cycle: ``cmd.ready`` /
    ``wdata.ready`` low, a read beat held back) and ``jitter`` (up to that many extra cycles of
    latency per command) are seeded by ``seed``.

    ``drain``: after a run stops, start the next only once the memory has served every command
    the engine issued. An engine stopped on an error can still have a read burst in flight (fetch
    reads ahead); a ``CTRL`` restart forgets it, and its late beats are taken as the next program's
    instructions. ``drain=False`` restarts as soon as the registers are read, as
    ``program_run.execute`` does."""
    return {"config": cfg.name, "P": cfg.mem_port_bits // 8, "mem_size": cfg.mem_size_bytes,
            "latency": max(1, cfg.mem_latency_cycles), "seed": seed, "stall": stall, "jitter": jitter,
            "drain": drain, "runs": runs}
