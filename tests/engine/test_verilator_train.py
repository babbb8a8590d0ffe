"""The training run of a profile-guided Verilator build (``onda.sim.verilator.train``): the job file round-trips
the configuration and the program image, and a program shorter than the budget runs again until it is spent."""

import pytest

from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.isa import Module, Opcode
from onda.sim.engine.program_cases import BAD_BASE
from onda.sim.verilator.build import build, have_toolchain
from onda.sim.verilator.train import TrainingImage, run, write_job

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")


def test_a_short_program_runs_until_the_budget_is_spent(tmp_path):
    cfg = load_config("icebreaker")
    code = isa.encode_program([isa.make(Opcode.NOP, module=Module.LOAD), isa.make(Opcode.FINISH)])
    job = tmp_path / "train.npz"
    write_job(job, cfg, TrainingImage([(BAD_BASE, code)], BAD_BASE, len(code) // 32), cycles=3000)
    runs = run(build(cfg, quiet=True), job)
    assert 10 < runs < 3000  # tens of cycles a run, each restarted by CTRL
