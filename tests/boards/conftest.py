"""Simulated boards for the board tests: the engine RTL (Verilator, profile-guided on the digits
program) behind the link's reference device, on a loopback port."""

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.models import digits
from onda.hw import container as ctr
from onda.hw.config import load_config
from onda.sim.board.board_sim import BoardSim
from onda.sim.engine.program_cases import random_inputs
from onda.sim.engine.program_run import program_image


def start_board(name: str, path):
    """A running simulated ``name`` board, its Verilator model trained on the program at ``path``."""
    from onda.host.runtime.emulator import EmulatedModel
    from onda.sim.verilator.harness import VerilatorEngine
    from onda.sim.verilator.train import TrainingImage

    c = ctr.read(path)
    emu = EmulatedModel(c, "digits")
    image = program_image(c) + [(int(emu.tensors[t]["addr"]), np.ascontiguousarray(x[0]).tobytes())
                                for t, x in zip(emu.memmap["inputs"], random_inputs(emu, 1, 0))]
    cfg = load_config(name)
    engine = VerilatorEngine(cfg, train=TrainingImage(image, int(c.memmap["program_base"]), len(emu.program)))
    sim = BoardSim(cfg, engine=engine)
    sim.start()
    return sim


@pytest.fixture(scope="module", params=["icebreaker", "ulx3s-85f"])
def board(request, tmp_path_factory):
    """(compiled digits path, running simulated board) for one board."""
    path = tmp_path_factory.mktemp("board") / f"digits-{request.param}.onda"
    compile_tflite(digits.TFLITE, request.param).write(path)
    sim = start_board(request.param, path)
    yield path, sim
    sim.stop()


