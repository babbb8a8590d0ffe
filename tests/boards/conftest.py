"""Simulated boards for the board tests, on a loopback port: the engine RTL (Verilator,
profile-guided on the digits program) behind the link's reference device (``reference``), and
the board top's own gateware in Verilator, link, UART and memory included (``gateware``)."""

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.models import digits
from onda.hw import container as ctr
from onda.hw.config import load_config
from onda.sim.board.board_sim import BoardSim
from onda.sim.engine.program_cases import random_inputs
from onda.sim.engine.program_run import program_image


def start_board(name: str, path, kind: str = "reference"):
    """A running simulated ``name`` board: ``reference`` (its Verilator engine model trained on the
    program at ``path``) or ``gateware`` (the board top)."""
    if kind == "gateware":
        from onda.sim.board.gateware_sim import GatewareBoardSim

        sim = GatewareBoardSim(load_config(name))
        sim.start()
        return sim
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


# (board, simulation)
BOARD_KINDS = [("icebreaker", "reference"), ("ulx3s-85f", "reference"), ("icebreaker", "gateware"),
               ("ulx3s-85f", "gateware")]


@pytest.fixture(scope="module", params=BOARD_KINDS, ids=[f"{b}-{k}" for b, k in BOARD_KINDS])
def board(request, tmp_path_factory):
    """(compiled digits path, running simulated board) for one board and simulation."""
    name, kind = request.param
    path = tmp_path_factory.mktemp("board") / f"digits-{name}.onda"
    compile_tflite(digits.TFLITE, name).write(path)
    sim = start_board(name, path, kind)
    yield path, sim
    sim.stop()


