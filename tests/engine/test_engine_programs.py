"""Compiled programs on the whole engine RTL (Verilator harness; Amaranth sim for a short one): every
tensor equal to the ISA emulator's, as VTA runs one suite on its functional simulator and its RTL;
the RTL's cycle count within 2% of the cycle model's (``python -m onda.sim.engine.cycle_compare``
sets them side by side); bad programs stop with an error code, never hang."""

import os

import numpy as np
import pytest

from onda.host.compiler import CompileError, compile_graph
from onda.host.runtime.emulator import EmulatedModel
from onda.host.runtime.rtl import RtlModel
from onda.hw import container as ctr
from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.engine.errors import EngineError
from onda.hw.isa import Module, Opcode
from onda.sim.engine.program_cases import BAD_BASE, BAD_PROGRAMS, random_inputs
from onda.sim.engine.cycle_compare import MODEL_TOLERANCE
from onda.sim.engine.program_run import execute
from onda.sim.verilator.build import have_toolchain

from ..compiler.test_tiling_random import random_graph

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")


def compiled_random(seed: int, engine: str):
    """The random-geometry graph of ``seed`` compiled for ``engine`` (None: it does not fit)."""
    try:
        return compile_graph(random_graph(seed), load_config(engine))
    except CompileError:
        return None


def _check(c: ctr.Container, simulator="verilator", images=1, seed=0):
    emu = EmulatedModel(c, "emulator")
    rtl = RtlModel(c, "rtl", simulator)
    xs = random_inputs(emu, images, seed)
    want, got = emu.run_all(xs), rtl.run_all(xs)
    assert set(got) == set(want)
    for tid in want:
        np.testing.assert_array_equal(got[tid], want[tid], err_msg=f"tensor {tid} ({emu.tensors[tid]['name']})")
    return rtl


SEEDS = [0, 1, 2, 3, 5, 8]


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_geometry_programs_equal_the_emulator(seed, engine):
    c = compiled_random(seed, engine)
    if c is None:
        pytest.skip(f"seed {seed} does not fit {engine}")
    rtl = _check(c, images=2, seed=seed)
    assert abs(rtl.measured_cycles / rtl.cycle_trace().total - 1) <= MODEL_TOLERANCE, rtl.cycle_report()
    print(rtl.cycle_report())


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_random_wide_programs_split_on_the_rtl(seed):
    """Random long reductions and wide rows on the iCEBreaker engine: convolutions in passes over K
    (partial sums in the GemmUnit's ACC) and column tiles, every tensor equal to the emulator's and
    the cycle count within the model's tolerance."""
    g = random_graph(seed, wide=True)
    c = compile_graph(g, load_config("icebreaker"))
    tilings = [la["tiling"] for la in c.memmap["layers"]]
    assert any("passes" in t for t in tilings), tilings
    rtl = _check(c, images=1, seed=seed)
    assert abs(rtl.measured_cycles / rtl.cycle_trace().total - 1) <= MODEL_TOLERANCE, rtl.cycle_report()


def test_amaranth_simulator_runs_a_program():
    c = compiled_random(1, "icebreaker")
    _check(c, simulator="amaranth")


# -- bad programs: the engine stops with the code and the instruction's index ----------------------------------

def _run_raw(code: bytes, engine="icebreaker"):
    from onda.sim.verilator.harness import VerilatorEngine

    cfg = load_config(engine)
    dev = VerilatorEngine(cfg, quiet=True)
    return execute(dev, [(BAD_BASE, code)], BAD_BASE, len(code) // 32, max_cycles=200_000)


def _nop(mod, **kw):
    return isa.make(Opcode.NOP, module=mod, **kw)


@pytest.mark.parametrize("bad", BAD_PROGRAMS, ids=[b.what for b in BAD_PROGRAMS])
def test_bad_program_stops_with_its_error(bad):
    run = _run_raw(bad.code)
    assert not run.done and run.error == bad.error and run.error_index == bad.index, (run.error, run.error_index)


@pytest.mark.parametrize("stall", [0.0, 0.3, 0.5])
def test_engine_runs_again_after_an_error(stall):
    """Restarted as soon as STATUS shows the error, the engine runs the next program: the stop
    waits for the memory port to be quiet (a stalling memory is still streaming the bad program's
    instructions when the LOAD is refused), so no late beat of the old run is decoded as the new."""
    from onda.sim.verilator.harness import VerilatorEngine

    cfg = load_config("icebreaker")
    bad = BAD_PROGRAMS[0]
    good = isa.encode_program([_nop(Module.LOAD), isa.make(Opcode.FINISH)])
    for seed in range(4):
        dev = VerilatorEngine(cfg, quiet=True, stall=stall, seed=seed)
        first = execute(dev, [(BAD_BASE, bad.code)], BAD_BASE, len(bad.code) // isa.INSTRUCTION_BYTES)
        assert (first.error, first.error_index) == (bad.error, bad.index)
        run = execute(dev, [(0x9000, good)], 0x9000, 2)
        assert run.done and run.error == EngineError.NONE, (stall, seed, run.error.name, run.error_index)
        assert dev.read_register("ERROR_INDEX") == 0


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
def test_cycle_compare_accounts_for_every_layer(tmp_path, engine):
    """The per-layer and per-opcode accounts cover the run, and the memory sees the cycle model's
    commands: the same bursts in the same order, each within a few cycles of the model's."""
    from onda.sim.engine.cycle_compare import measure, report

    c = compiled_random(1, engine)
    r = measure(c)
    rtl_layers = sum(row["rtl"] for row in r["layers"])
    model_layers = sum(row["model"] for row in r["layers"])
    # The layers cover the run but for the final barrier and FINISH.
    assert 0.95 * r["rtl_total"] <= rtl_layers <= r["rtl_total"]
    assert 0.95 * r["model_total"] <= model_layers <= r["model_total"]
    assert all(i["rtl"] >= 0 and i["rtl_start"] >= 0 for i in r["instructions"])
    assert sum(v["count"] for v in r["opcodes"].values()) == len(r["instructions"])
    rtl_cmds, model_cmds = np.array(r["memory"]), np.array(r["model_memory"])
    assert rtl_cmds.shape == model_cmds.shape and len(rtl_cmds) > 50
    np.testing.assert_array_equal(rtl_cmds[:, 3:], model_cmds[:, 3:], err_msg="address, beats, write of each command")
    drift = np.abs(rtl_cmds[:, :3] - model_cmds[:, :3]).max()
    assert drift <= 0.02 * r["rtl_total"], f"a command's cycles drift {drift} from the model's"
    assert abs(r["rtl_total"] / r["model_total"] - 1) <= MODEL_TOLERANCE
    text = report(r, tmp_path)
    assert "total" in text and (tmp_path / "cycles.png").stat().st_size > 1000
