"""Compiled programs on the whole engine RTL (Verilator harness; Amaranth sim for a short one): every
tensor equal to the ISA emulator's, as VTA runs one suite on its functional simulator and its RTL;
the RTL's cycle count beside the cycle model's (printed; the model does not yet match the RTL: see
``python -m onda.sim.engine.cycle_compare``); bad programs stop with an error code, never hang."""

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
from onda.hw.isa import Buffer, Module, Opcode
from onda.sim.engine.program_run import execute
from onda.sim.engine.cycle_compare import MODEL_TOLERANCE
from onda.sim.verilator.build import have_toolchain

from ..compiler.test_tiling_random import random_graph

pytestmark = pytest.mark.skipif(have_toolchain() is not None, reason=f"no Verilator build: {have_toolchain()}")


def _compiled(seed: int, engine: str):
    try:
        return compile_graph(random_graph(seed), load_config(engine))
    except CompileError:
        return None


def _inputs(model, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=(n,) + s.shape[1:], dtype=np.int8) for s in model.inputs]


def _check(c: ctr.Container, simulator="verilator", images=1, seed=0):
    emu = EmulatedModel(c, "emulator")
    rtl = RtlModel(c, "rtl", simulator)
    xs = _inputs(emu, images, seed)
    want, got = emu.run_all(xs), rtl.run_all(xs)
    assert set(got) == set(want)
    for tid in want:
        np.testing.assert_array_equal(got[tid], want[tid], err_msg=f"tensor {tid} ({emu.tensors[tid]['name']})")
    return rtl


SEEDS = [0, 1, 2, 3, 5, 8]


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_geometry_programs_equal_the_emulator(seed, engine):
    c = _compiled(seed, engine)
    if c is None:
        pytest.skip(f"seed {seed} does not fit {engine}")
    rtl = _check(c, images=2, seed=seed)
    assert abs(rtl.measured_cycles / rtl.cycle_trace().total - 1) <= MODEL_TOLERANCE, rtl.cycle_report()
    print(rtl.cycle_report())


def test_amaranth_simulator_runs_a_program():
    c = _compiled(1, "icebreaker")
    _check(c, simulator="amaranth")


# -- bad programs: the engine stops with the code and the instruction's index ----------------------------------

def _run_raw(program: list[isa.Instruction], engine="icebreaker", raw: bytes | None = None, image=()):
    from onda.sim.verilator.harness import VerilatorEngine

    cfg = load_config(engine)
    dev = VerilatorEngine(cfg, quiet=True)
    code = raw if raw is not None else isa.encode_program(program)
    base = 0x8000
    return execute(dev, [(base, code), *image], base, len(code) // 32, max_cycles=200_000)


def _nop(mod, **kw):
    return isa.make(Opcode.NOP, module=mod, **kw)


BAD = [
    ("LOAD past ACT", [isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=0, y_size=1, x_size=8192,
                                dram_stride=8192), isa.make(Opcode.FINISH)], EngineError.BUFFER_RANGE, 0),
    ("LOAD past memory", [isa.make(Opcode.LOAD, buffer=Buffer.ACT, dram_addr=(1 << 32) - 4, y_size=1, x_size=8,
                                   dram_stride=8), isa.make(Opcode.FINISH)], EngineError.MEMORY_RANGE, 0),
    ("STORE from WGT", [isa.make(Opcode.STORE, buffer=Buffer.WGT, y_size=1, x_size=4, dram_stride=4),
                        isa.make(Opcode.FINISH)], EngineError.BAD_BUFFER, 0),
    ("pop never pushed", [_nop(Module.COMPUTE), _nop(Module.STORE, pop_prev=True), isa.make(Opcode.FINISH)],
     EngineError.TOKEN_UNDERFLOW, 1),
    ("tokens left at FINISH", [_nop(Module.COMPUTE, push_next=True), isa.make(Opcode.FINISH)],
     EngineError.TOKEN_UNDERFLOW, 1),
    ("no FINISH", [_nop(Module.LOAD), _nop(Module.STORE)], EngineError.NO_FINISH, 2),
]


@pytest.mark.parametrize("what,program,code,index", BAD, ids=[b[0] for b in BAD])
def test_bad_program_stops_with_its_error(what, program, code, index):
    run = _run_raw(program)
    assert not run.done and run.error == code and run.error_index == index, (run.error, run.error_index)


def test_illegal_opcode_and_reserved_bits():
    good = isa.encode_program([_nop(Module.LOAD), _nop(Module.LOAD), isa.make(Opcode.FINISH)])
    bad = bytearray(good)
    bad[32] = 0x0E  # opcode 14
    run = _run_raw([], raw=bytes(bad))
    assert run.error == EngineError.ILLEGAL_OPCODE and run.error_index == 1
    bad = bytearray(good)
    bad[31 + 64] = 0x40  # a reserved bit of FINISH
    run = _run_raw([], raw=bytes(bad))
    assert run.error == EngineError.RESERVED_BITS and run.error_index == 2


def test_engine_runs_again_after_an_error():
    from onda.sim.verilator.harness import VerilatorEngine

    cfg = load_config("icebreaker")
    dev = VerilatorEngine(cfg, quiet=True)
    bad = isa.encode_program([_nop(Module.STORE, pop_prev=True), isa.make(Opcode.FINISH)])
    good = isa.encode_program([_nop(Module.LOAD), isa.make(Opcode.FINISH)])
    assert execute(dev, [(0x8000, bad)], 0x8000, 2).error == EngineError.TOKEN_UNDERFLOW
    run = execute(dev, [(0x9000, good)], 0x9000, 2)
    assert run.done and run.error == EngineError.NONE


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
def test_cycle_compare_accounts_for_every_layer(tmp_path, engine):
    """The per-layer and per-opcode accounts cover the run, and the memory sees the cycle model's
    commands: the same bursts in the same order, each within a few cycles of the model's."""
    from onda.sim.engine.cycle_compare import measure, report

    c = _compiled(1, engine)
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
