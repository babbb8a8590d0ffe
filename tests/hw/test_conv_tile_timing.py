"""The emulator's GEMM timing rule against the RTL: a ConvTile fed without gaps and drained
without stalls accepts one dot product every ``max(beats, EngineConfig.drain_cycles)`` cycles,
the rule ``onda.sim.emulator.cycles.gemm_cycles`` charges per dot product."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from onda.hw.config import load_config
from onda.hw.datapath.conv_tile import ConvTile
from onda.hw.datapath.mbqm import SERIAL_PHASES
from onda.hw.datapath.requantize import Requantizer, mul_style_for
from onda.sim.emulator import cycles


def measured_interval(lanes: int, width: int, mul_style: str, beats: int, vectors: int = 24) -> int:
    dut = ConvTile(lanes, width, mul_style=mul_style)
    rng = np.random.default_rng(beats)
    lasts = []
    done = {}

    async def producer(ctx):
        t = 0
        for _ in range(vectors):
            for b in range(beats):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, {"x": rng.integers(-128, 128, width).tolist(),
                                        "w": rng.integers(-128, 128, (lanes, width)).tolist(),
                                        "first": b == 0, "last": b == beats - 1})
                while True:
                    _, _, ready = await ctx.tick().sample(dut.i.ready)
                    t += 1
                    if ready:
                        break
            lasts.append(t)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        got = 0
        while got < vectors * lanes:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            got += valid
        done["outputs"] = got

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert done["outputs"] == vectors * lanes
    steady = np.diff(lasts)[vectors // 2:]  # once the pipeline is full
    assert len(set(steady.tolist())) == 1, f"no steady rate: {lasts}"
    return int(steady[0])


@pytest.mark.parametrize("lanes,width,mul_style", [(4, 2, "dsp"), (4, 2, "serial"), (3, 1, "dsp")])
@pytest.mark.parametrize("beats", [1, 4, 5, 12, 27, 29, 33])
def test_gemm_rule_matches_rtl(lanes, width, mul_style, beats):
    cfg = dataclasses.replace(load_config("icebreaker"), lanes=lanes, width=width, requant_units=1,
                              requant_interval=SERIAL_PHASES if mul_style == "serial" else 1)
    # One pixel, one lane group, one kernel row of `beats * width` elements.
    model = cycles.gemm_cycles(cfg, 1, lanes, 1, 1, beats * width) - cfg.gemm_pipeline_cycles
    assert measured_interval(lanes, width, mul_style, beats) == model


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_board_config_describes_its_requantizer(board):
    """The configuration the cycle model reads names the requantizer the board's build uses."""
    cfg = load_config(board)
    assert Requantizer(mul_style_for(cfg)).cycles_per_result == cfg.requant_interval


def test_unbuilt_requantizer_refused():
    cfg = dataclasses.replace(load_config("ulx3s-85f"), requant_interval=3)
    with pytest.raises(ValueError, match="every 3 cycles"):
        mul_style_for(cfg)


@pytest.mark.parametrize("beats", [1, 16, 17, 18, 29])
def test_ulx3s_tile_drains_at_the_configured_rate(beats):
    """The ULX3S shape itself (16 lanes x 8, one DSP requantizer): a dot product shorter than the
    drain of 16 accumulators waits for it, a longer one sets the pace."""
    cfg = load_config("ulx3s-85f")
    measured = measured_interval(cfg.lanes, cfg.width, mul_style_for(cfg), beats)
    assert measured == max(beats, cfg.drain_cycles)
