"""MAC array against the golden GEMM (``kernels.conv_accumulators``): random dot products of
random lengths, extreme zero points, stalls on both sides."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from onda.hw.datapath.gemm import MacArray
from onda.sim.golden import kernels
from onda.sim.golden.params import GemmParams
from onda.sim.ir import Padding
from onda.sim.rtl.streams import stream_get, stream_put


def golden_acc(x_rows: np.ndarray, w: np.ndarray, x_zp: int) -> np.ndarray:
    """``sum((x - x_zp) * w)`` per row and channel, from the golden conv (1x1, bias 0)."""
    cout, k = w.shape
    p = GemmParams(weights=w.reshape(cout, 1, 1, k).astype(np.int8), weight_zero_point=0,
                   bias=np.zeros(cout, dtype=np.int64), in_zero_point=x_zp,
                   multiplier=np.zeros(cout, np.int64), shift=np.zeros(cout, np.int64),
                   out_zero_point=0, act_min=-128, act_max=127)
    acc = kernels.conv_accumulators(x_rows.reshape(-1, 1, 1, k).astype(np.int8), p, (1, 1), (1, 1),
                                    Padding.VALID)
    return acc.reshape(-1, cout)


def beats_of(x_row: np.ndarray, w: np.ndarray, width: int) -> list[dict]:
    """Split one dot product (K = len(x_row), padded with x_zp-free zeros) into beats."""
    k = len(x_row)
    n = -(-k // width)
    beats = []
    for b in range(n):
        sl = slice(b * width, (b + 1) * width)
        xs = list(x_row[sl]) + [0] * (width - len(x_row[sl]))
        ws = [list(row[sl]) + [0] * (width - len(row[sl])) for row in w]
        beats.append(dict(x=[int(v) for v in xs], w=[[int(v) for v in r] for r in ws],
                          first=int(b == 0), last=int(b == n - 1)))
    return beats


def run_mac(lanes, width, x_zp, jobs, seed, idle=0.3, stall=0.3, lut_lanes=0):
    dut = MacArray(lanes=lanes, width=width, lut_lanes=lut_lanes)
    beats = [b for x_row, w in jobs for b in beats_of(x_row, w, width)]
    got = []

    async def producer(ctx):
        ctx.set(dut.x_zp, x_zp)
        await stream_put(ctx, dut.i, beats, rng=random.Random(seed), idle=idle)

    async def consumer(ctx):
        out = await stream_get(ctx, dut.o, len(jobs), rng=random.Random(seed + 7), stall=stall)
        got.extend([[int(v) for v in o] for o in out])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return np.array(got, dtype=np.int64)


@pytest.mark.parametrize("lanes,width,x_zp,lut_lanes", [(4, 8, 17, 0), (3, 5, -128, 0), (2, 1, 127, 0),
                                                       (8, 16, -5, 0), (4, 2, -128, 2), (2, 3, 127, 2)])
def test_mac_array_matches_golden(lanes, width, x_zp, lut_lanes):
    rng = np.random.default_rng(lanes * 100 + width)
    jobs = []
    for j in range(12):
        k = int(rng.integers(1, 4 * width + 1))
        if j == 0:  # extremes: x = -128 against x_zp = 127 gives -255; weights at +-127
            x_row = np.full(k, -128 if x_zp >= 0 else 127)
            w = np.where(rng.random((lanes, k)) < 0.5, -127, 127)
        else:
            x_row = rng.integers(-128, 128, k)
            w = rng.integers(-127, 128, (lanes, k))
        # zero-padding of partial beats must use x = x_zp so it contributes nothing; here the
        # padding weight is 0 instead, which is also exact.
        jobs.append((x_row, w))
    got = run_mac(lanes, width, x_zp, jobs, seed=lanes + width, lut_lanes=lut_lanes)
    want = np.stack([golden_acc(x[None, :], w, x_zp)[0] for x, w in jobs])
    assert np.array_equal(got, want), (got, want)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_mac_array_rejects_bad_parameters():
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        MacArray(lanes=0, width=4)
    with pytest.raises(ValueError, match="acc_width must be an integer >= 17"):
        MacArray(lanes=1, width=4, acc_width=16)


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f", "large"])
@pytest.mark.parametrize("x_zp", [0, 127])
def test_accumulator_at_the_longest_k(board, x_zp):
    """The longest dot product a configuration can hold (K filling a weight slot for ``lanes``
    channels), every product at its extreme: the int32 accumulators stay exact (``x_zp = 0`` is
    the engine's, which folds the zero point into the bias; 127 gives the MAC array's largest
    operand, ``-128 - 127``). Two lanes of the board's width: K, not the lane count, is the point."""
    from onda.hw.config import load_config

    cfg = load_config(board)
    k = cfg.slot("wgt") // cfg.lanes
    x_row = np.full(k, -128)
    jobs = [(x_row, np.stack([np.full(k, -127), np.full(k, 127)])),  # the largest sums of both signs
            (x_row, np.stack([np.full(k, 127), np.tile([127, -127], k // 2)]))]
    got = run_mac(2, cfg.width, x_zp, jobs, seed=k, idle=0.0, stall=0.0)
    want = np.stack([golden_acc(x[None, :], w, x_zp)[0] for x, w in jobs])
    assert np.abs(want).max() == k * (128 + x_zp) * 127  # the extreme the test means to reach
    assert np.array_equal(got, want), (got, want)
