"""The whole engine as exported Verilog, under cocotb on Icarus and Verilator (``sim/cocotb/engine_bench.py``):
compiled programs equal to the ISA emulator on every tensor, bad programs stopped with their error code,
through the host's run protocol on the register bus and a memory with random stalls and latency.

This is a third way to run the engine beside the Verilator C++ harness and Amaranth's simulator: the
Verilog Amaranth emits, under two independent simulators (an event-driven 4-state one, Icarus, and
Verilator's cycle-based 2-state one), with a memory written once for all benches
(``memory_model.MemoryCore``) that checks every command and stream rule. A failing bench names its
log and waveform file (runs are traced only when one fails: the job runs again with tracing).
Each test prints the simulated clock cycles, wall time and cycles per second (``pytest -s``).

``test_restart_right_after_an_error`` is an expected failure: an RTL bug the bench found (an error
stop with a read burst still in flight; see its reason). The other benches wait for the memory to
drain before restarting, as the job's ``drain`` says.
"""

import pytest

from onda.host.compiler import compile_tflite
from onda.host.models import digits
from onda.host.runtime.emulator import EmulatedModel
from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.engine.engine import Engine
from onda.hw.isa import Module, Opcode
from onda.sim.cocotb.engine_job import bad_program_run, engine_job, program_runs, raw_run
from onda.sim.cocotb.harness import BenchFailure, have_simulator, run_bench
from onda.sim.engine.program_cases import BAD_PROGRAMS, random_inputs

from .test_engine_programs import compiled_random

BENCH = "onda.sim.cocotb.engine_bench"
TINY = isa.encode_program([isa.make(Opcode.NOP, module=Module.LOAD), isa.make(Opcode.FINISH)])  # a good program


def _sims():
    return [pytest.param(s, marks=pytest.mark.skipif(not have_simulator(s), reason=f"no {s}"))
            for s in ("icarus", "verilator")]


def _run(engine: str, runs: list[dict], sim: str, seed: int = 0, waves="on_failure", **job_kw) -> dict:
    """``runs`` on the exported engine of configuration ``engine`` (built once per simulator),
    without tracing; a failing job runs again with tracing, so the failure names its waveform.
    Prints and returns the bench's measurements."""
    cfg = load_config(engine)
    name = f"onda_engine_{engine.replace('-', '_')}"
    result = run_bench(lambda: Engine(cfg), name, BENCH, engine_job(cfg, runs, seed=seed, **job_kw), sim=sim,
                       waves=waves, tag=name, key=("Engine", cfg.fingerprint))
    for r in result["runs"]:
        print(f"{sim} {engine} {r['name']}: CYCLES {r['cycles']}, {r['bench_cycles']} clock cycles in "
              f"{r['seconds']:.2f} s ({r['bench_cycles'] / max(r['seconds'], 1e-9):.0f} cycles/s)")
    print(f"{sim} {engine}: {result['clock_cycles']} clock cycles in {result['seconds']:.1f} s, "
          f"{result['cycles_per_second']:.0f} cycles/s")
    assert not result["failures"], result["failures"]
    return result


def _program(seed: int, engine: str, images: int = 1):
    c = compiled_random(seed, engine)
    assert c is not None, f"seed {seed} does not compile for {engine}"
    return program_runs(c, random_inputs(EmulatedModel(c), images, seed), f"random{seed}")


@pytest.mark.sim
@pytest.mark.parametrize("sim", _sims())
def test_small_program_equals_the_emulator(sim):
    """Random-geometry seed 3 on the iCEBreaker engine (122 instructions: two convolutions, ADD, PAD,
    max pool, MEAN; about 4000 cycles): every layer's output, at the point the program completes it,
    and the final output, byte for byte the emulator's."""
    runs = _program(3, "icebreaker")
    result = _run("icebreaker", runs, sim, seed=3)
    (r,) = result["runs"]
    assert r["done"] and r["error"] == "NONE" and r["tensors_checked"] == 7
    assert r["owed_at_stop"] == []
    # The memory really did stall and vary its latency, and the engine's count is the bench's.
    assert result["jittered"] > 0 and r["cycles"] <= r["bench_cycles"] <= r["cycles"] + 8


@pytest.mark.sim
@pytest.mark.skipif(not have_simulator("icarus"), reason="no icarus")
def test_a_wrong_byte_is_named():
    """The bench's comparison itself: one expected byte of the final output changed, the bench must
    fail, naming the tensor, the index and both values, and the waveform of its rerun with tracing."""
    runs = _program(3, "icebreaker")
    out = runs[0]["outputs"][0]
    wrong = bytearray.fromhex(out["expected"])
    wrong[2] ^= 0x40
    out["expected"] = wrong.hex()
    with pytest.raises(BenchFailure, match=r"waveform \S+\.fst") as e:
        _run("icebreaker", runs, "icarus", seed=3)
    (failure,) = e.value.result["failures"]
    got, want = (int.from_bytes([b], "little", signed=True) for b in (wrong[2] ^ 0x40, wrong[2]))
    assert failure == (f"random3[0]: tensor {out['name']} (id {out['tid']}) at the end: 1 of {len(wrong)} bytes "
                       f"differ, the first at index 2 (0, 2): got {got}, expected {want}")


@pytest.mark.sim
@pytest.mark.parametrize("sim", _sims())
def test_bad_programs_stop_with_their_error(sim):
    """Every bad program of ``program_cases.BAD_PROGRAMS`` (buffer and memory ranges, a STORE from
    WGT, token underflows, no FINISH, an illegal opcode, a reserved bit), one after another on one
    engine: each stops with its code at its instruction's index, and a good program runs after them."""
    runs = [bad_program_run(b) for b in BAD_PROGRAMS] + [raw_run("good after the bad", TINY)]
    result = _run("icebreaker", runs, sim, seed=1)
    got = [(r["name"], r["error"], r["error_index"]) for r in result["runs"][:-1]]
    assert got == [(b.what, b.error.name, b.index) for b in BAD_PROGRAMS]
    assert result["runs"][-1]["done"] and result["runs"][-1]["error"] == "NONE"


@pytest.mark.sim
@pytest.mark.parametrize("sim", _sims())
def test_restart_right_after_an_error(sim):
    """A host that restarts the engine as soon as it has read the error (``program_run.execute``'s
    order, no wait for the memory): the next program runs. Seeded so the memory is still streaming
    the bad program's instructions when the error happens (it is 32 beats long, and the memory
    refuses half its handshakes): the engine shows the error only once its port is quiet, so no
    late beat of the stopped run reaches the next one. (No rerun with tracing: on Verilator that
    would be a second build.)"""
    runs = [bad_program_run(BAD_PROGRAMS[0]), raw_run("good right after", TINY)]
    result = _run("icebreaker", runs, sim, seed=1, stall=0.5, drain=False, waves=False)
    first, second = result["runs"]
    assert first["error"] == "BUFFER_RANGE" and not first["owed_at_stop"]
    assert second["done"] and second["error"] == "NONE"


# -- make sim / make test-slow ------------------------------------------------------------------------------

SLOW_SEEDS = [0, 1, 2, 5, 8]


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("sim", _sims())
def test_random_geometry_programs_equal_the_emulator(sim):
    """Five more random-geometry programs on the iCEBreaker engine (about 110k cycles in all), one
    job: every layer output equal to the emulator's."""
    runs = [r for seed in SLOW_SEEDS for r in _program(seed, "icebreaker")]
    result = _run("icebreaker", runs, sim, seed=7)
    assert [r["name"] for r in result["runs"]] == [f"random{s}[0]" for s in SLOW_SEEDS]
    assert all(r["done"] and r["tensors_checked"] > 0 for r in result["runs"])


@pytest.mark.sim
@pytest.mark.slow
def test_digits_and_random_programs_on_ulx3s_verilator():
    """The ULX3S engine (16 x 8 MAC array, memory latency 12): the shipped digits classifier on one
    image (every layer output) and two random-geometry programs, on Verilator."""
    if not have_simulator("verilator"):
        pytest.skip("no verilator")
    c = compile_tflite(digits.TFLITE, "ulx3s-85f")
    runs = program_runs(c, random_inputs(EmulatedModel(c), 1, 0), "digits")
    runs += [r for seed in (1, 2) for r in _program(seed, "ulx3s-85f")]
    result = _run("ulx3s-85f", runs, "verilator", seed=11)
    assert [r["name"] for r in result["runs"]] == ["digits[0]", "random1[0]", "random2[0]"]
    assert all(r["done"] for r in result["runs"]) and result["runs"][0]["tensors_checked"] > 10
