"""The cycle model: durations from the configuration, overlap allowed by the tokens, races and
deadlocks detected when the tokens are wrong."""

import copy

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.models import digits
from onda.host.runtime.emulator import EmulatedModel
from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.isa import Opcode
from onda.hw.engine import load_dma
from onda.hw.engine.gemm_unit import gemm_fill_cycles
from onda.sim.emulator import cycles
from onda.sim.emulator.timeline import LOAD_ISSUE
from onda.sim.emulator.functional import EmulatorError, Machine, execute


@pytest.fixture(scope="module")
def digits_ulx3s():
    return EmulatedModel(compile_tflite(digits.TFLITE, "ulx3s-85f"), "digits")


def test_instruction_durations():
    """One instruction alone: the RTL sequencers' formulas (``hw/engine``), start and end included."""
    cfg = load_config("ulx3s-85f")
    assert cfg.drain_cycles == 17
    fill = gemm_fill_cycles(cfg)
    g = isa.make(Opcode.GEMM, out_rows=2, out_cols=5, out_channels=20, kh=3, kw=3, channels=12, dilation_w=1)
    # 10 pixels x 2 lane groups; a dot product of 3 kernel rows x ceil(36 / 8) = 15 beats is
    # shorter than the requantizer's drain of 16 lanes (17 cycles), so the drain sets the pace
    assert cycles.instruction_cycles(cfg, g) == 19 * 17 + 15 + fill + 1
    g = isa.make(Opcode.GEMM, out_rows=2, out_cols=5, out_channels=20, kh=3, kw=3, channels=16, dilation_w=1)
    assert cycles.instruction_cycles(cfg, g) == 19 * 18 + 18 + fill + 1
    # A LOAD: the range check, the arbiter, the memory's latency, then a 16-bit beat a cycle; a row
    # that does not continue the one before costs the memory's row overhead.
    ld = isa.make(Opcode.LOAD, y_size=4, x_size=100, dram_stride=100)
    base = cycles.instruction_cycles(cfg, ld) - 200 - cfg.mem_latency_cycles
    assert base == 2 + load_dma.CHECK_CYCLES + 1 + LOAD_ISSUE
    strided = isa.make(Opcode.LOAD, y_size=4, x_size=100, dram_stride=300)
    assert cycles.instruction_cycles(cfg, strided) == cycles.instruction_cycles(cfg, ld) + 3 * cfg.mem_row_overhead_cycles


def test_loads_overlap_compute(digits_ulx3s):
    tr = digits_ulx3s.cycle_trace()
    busy = sum(tr.busy(m) for m in isa.Module)
    assert tr.total < busy, "no overlap between the load, compute and store modules"
    for m in isa.Module:
        assert tr.busy(m) <= tr.total
    assert cycles.check_hazards(digits_ulx3s.program, tr) > 0


def _without(program, opcode_flag):
    prog = copy.deepcopy(program)
    for ins in prog:
        for module, flag in opcode_flag:
            if ins.module == module and ins.opcode != Opcode.NOP:
                setattr(ins, flag, False)
    return prog


def test_missing_slot_tokens_are_races(digits_ulx3s):
    """Loads that do not wait for compute to release a slot overwrite it while it is read."""
    prog = _without(digits_ulx3s.program, [(isa.Module.LOAD, "pop_next")])
    with pytest.raises(cycles.HazardError, match=r"starts at cycle \d+ before instruction \d+"):
        cycles.simulate(prog, digits_ulx3s.config)


def test_missing_drain_tokens_are_races(digits_ulx3s):
    """Computes that do not wait for the store to drain OUT overwrite results not yet stored."""
    prog = _without(digits_ulx3s.program, [(isa.Module.COMPUTE, "pop_next")])
    with pytest.raises(cycles.HazardError, match="OUT"):
        cycles.simulate(prog, digits_ulx3s.config)


def test_missing_push_deadlocks(digits_ulx3s):
    prog = _without(digits_ulx3s.program, [(isa.Module.STORE, "push_prev")])
    with pytest.raises(EmulatorError, match="deadlock"):
        cycles.simulate(prog, digits_ulx3s.config)
    # The functional emulator refuses the same program: a pop finds its queue empty.
    m = Machine(digits_ulx3s.config, digits_ulx3s.memmap, digits_ulx3s.container.weights, 1)
    with pytest.raises(EmulatorError, match="pops an empty s2c token queue"):
        execute(m, prog)


def test_out_of_range_access_is_refused(digits_ulx3s):
    cfg = digits_ulx3s.config
    m = Machine(cfg, digits_ulx3s.memmap, digits_ulx3s.container.weights, 1)
    with pytest.raises(EmulatorError, match="outside"):
        m.step(isa.make(Opcode.LOAD, buffer=isa.Buffer.ACT, sram_addr=cfg.act_bytes - 4, y_size=1, x_size=8,
                        dram_stride=8))
    with pytest.raises(EmulatorError, match="outside the activation region"):
        m.step(isa.make(Opcode.STORE, buffer=isa.Buffer.OUT, dram_addr=digits_ulx3s.memmap["act_size"], y_size=1,
                        x_size=8, dram_stride=8))


def test_batch_is_one_pass_and_matches_single_images(digits_ulx3s):
    x = np.random.default_rng(3).integers(-128, 128, (5,) + digits_ulx3s.inputs[0].shape[1:], dtype=np.int8)
    batch = digits_ulx3s.run([x])[0]
    singles = np.concatenate([digits_ulx3s.run([x[i:i + 1]])[0] for i in range(5)])
    np.testing.assert_array_equal(batch, singles)
