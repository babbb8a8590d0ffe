"""The training run of a profile-guided Verilator build: one program on the instrumented model.

    python -m onda.sim.verilator.train LIB JOB.npz

``JOB.npz`` (written by :func:`write_job`) holds the engine configuration, the program image and
the cycle budget. The run happens in its own process because the compiler's profile is written
when the instrumented library is unloaded, at that process's exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from onda.hw.config import EngineConfig, config_from_dict

__all__ = ["TRAIN_CYCLES", "TrainingImage", "write_job"]

TRAIN_CYCLES = 400_000
"""Cycles of the training run (a shorter program runs again until they are spent): enough for
every kind of instruction of a network to run many times, a few seconds on the instrumented model."""


class TrainingImage:
    """A program to train on: ``image`` ((address, bytes) pairs: weights, program, inputs), run
    from ``prog_addr`` for ``count`` instructions."""

    def __init__(self, image: list[tuple[int, bytes]], prog_addr: int, count: int):
        self.image, self.prog_addr, self.count = list(image), int(prog_addr), int(count)


def write_job(path: Path, cfg: EngineConfig, train: TrainingImage, cycles: int = TRAIN_CYCLES) -> None:
    arrays = {f"data{k}": np.frombuffer(bytes(d), dtype=np.uint8) for k, (_, d) in enumerate(train.image)}
    meta = {"config": cfg.as_dict(), "addrs": [int(a) for a, _ in train.image], "prog_addr": train.prog_addr,
            "count": train.count, "cycles": int(cycles)}
    np.savez(path, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)


def run(lib: Path, job: Path) -> int:
    """The training run of ``job`` on the model ``lib``; returns how many times the program ran."""
    from .harness import VerilatorEngine

    with np.load(job) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        image = [(a, z[f"data{k}"].tobytes()) for k, a in enumerate(meta["addrs"])]
    dev = VerilatorEngine(config_from_dict(meta["config"]), lib=Path(lib))
    for addr, data in image:
        dev.write_memory(addr, data)
    dev.write_register("PROG_ADDR", meta["prog_addr"])
    dev.write_register("PROG_COUNT", meta["count"])
    start, runs = dev.cycles, 0
    while dev.cycles - start < meta["cycles"]:  # a short program runs again until the budget is spent
        dev.write_register("CTRL", 1)
        dev.run(meta["cycles"] - (dev.cycles - start))
        runs += 1
    return runs


def main(argv=None) -> int:
    lib, job = (argv or sys.argv[1:])[:2]
    run(Path(lib), Path(job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
