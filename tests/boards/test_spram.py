"""The iCEBreaker's SPRAM memory on the engine's port: random masked traffic with stalls served
exactly as a bytearray mirror, across the four blocks; sequential reads and writes one beat a
clock; the read latency the icebreaker configuration states."""

import random

import pytest
from amaranth.sim import Simulator

from onda.hw.boards.spram import SPRAM_BYTES, SpramMemory
from onda.hw.config import load_config
from onda.sim.board.port_traffic import port_client
from onda.sim.board.sdram_bench import Burst, expected_reads


def _run(bursts, stall=0.0, seed=0):
    dut = SpramMemory()
    result = {}
    sim = Simulator(dut)
    sim.add_clock(1e-6 / 24)
    sim.add_testbench(port_client(dut.port, bursts, result, stall=stall, seed=seed))
    sim.run()
    return result


def _random_bursts(rng, n):
    out = []
    for _ in range(n):
        beats = rng.randint(1, 64)
        # Near the blocks' boundaries (every 32 KiB) as often as anywhere else.
        base = rng.choice([rng.randrange(0, SPRAM_BYTES), rng.randrange(4) * 32768 - rng.randrange(64)])
        addr = max(0, min(base, SPRAM_BYTES - 2 * beats)) & ~1
        if rng.random() < 0.5:
            out.append(Burst(addr, beats, True, bytes(rng.randrange(256) for _ in range(2 * beats)),
                             tuple(rng.randrange(4) for _ in range(beats))))
        else:
            out.append(Burst(addr, beats))
    return out


@pytest.mark.parametrize("stall,seed", [(0.0, 1), (0.3, 2), (0.6, 3)])
def test_random_traffic_matches_a_bytearray(stall, seed):
    rng = random.Random(seed)
    fill = bytes(rng.randrange(256) for _ in range(SPRAM_BYTES))
    init = [Burst(a, 64, True, fill[a:a + 128]) for a in range(0, SPRAM_BYTES, 128) if a % 32768 < 1024]
    bursts = init + _random_bursts(rng, 60)
    mirror = bytearray(SPRAM_BYTES)
    want = expected_reads(mirror, bursts)
    assert _run(bursts, stall, seed)["reads"] == want


def test_streams_one_beat_a_clock_with_the_configured_latency():
    n = 64 * 16
    data = bytes(i * 7 & 0xFF for i in range(2 * n))
    writes = [Burst(k * 128, 64, True, data[k * 128:(k + 1) * 128]) for k in range(16)]
    reads = [Burst(k * 128, 64) for k in range(16)]
    w, r = _run(writes), _run(writes + reads)
    assert w["cycles"] <= n + 16, f"{n} write beats took {w['cycles']} cycles"
    assert r["reads"] == [data[k * 128:(k + 1) * 128] for k in range(16)]
    assert r["cycles"] - w["cycles"] <= n + 16 + r["latency"], f"reads took {r['cycles'] - w['cycles']} cycles"
    assert r["latency"] == load_config("icebreaker").mem_latency_cycles
