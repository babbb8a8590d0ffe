"""Vector unit against the golden model: residual ADD (real ResNet50 ADD parameters), max
pool, average pool (sum + divide-round) and MEAN (sum + requantizer), with stalls."""

import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from onda.hw.datapath.requantize import Requantizer
from onda.hw.datapath.vector import DivideRound, MaxPool, PoolBeatLayout, ResidualAdd, SumPool
from onda.hw.engine.vec_unit import add_ports, mul_ports, record_fields
from onda.sim.golden import fixedpoint as fp
from onda.sim.golden import kernels
from onda.sim.golden.params import RequantParams
from onda.sim.ir import Padding
from onda.sim.rtl.streams import stream_get, stream_put

DATA = np.load(Path(__file__).parent / "data" / "resnet50_layers.npz")


def run(dut, items, n_out, setup=None, seed=0, idle=0.3, stall=0.3):
    got = []

    async def producer(ctx):
        if setup:
            setup(ctx)
        await stream_put(ctx, dut.i, items, rng=random.Random(seed), idle=idle)

    async def consumer(ctx):
        got.extend(await stream_get(ctx, dut.o, n_out, rng=random.Random(seed + 1), stall=stall))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got


@pytest.mark.parametrize("row", [0, 5, 15])
def test_residual_add_resnet50_params(row):
    zp1, zp2, m1, s1, m2, s2, mo, so, out_zp, act_min, act_max = (int(v) for v in DATA["add"][row])
    rng = np.random.default_rng(row)
    n = 200
    a = rng.integers(-128, 128, n)
    b = rng.integers(-128, 128, n)
    a[:4], b[:4] = [-128, 127, -128, 127], [-128, 127, 127, -128]
    dut = ResidualAdd()

    # Programmed as the engine's vector unit programs it, from the ADD record's words in ISA order.
    ports = add_ports(record_fields("add", [zp1, zp2, m1, s1, m2, s2, mo, so, out_zp]), act_min, act_max)

    def setup(ctx):
        for port, v in ports.items():
            ctx.set(getattr(dut, port), v)

    got = run(dut, [dict(a=int(x), b=int(y)) for x, y in zip(a, b)], n, setup, seed=row)
    want = fp.add(a, zp1, b, zp2, (m1, s1, m2, s2, mo, so), out_zp, act_min, act_max)
    assert np.array_equal(np.array(got), want.astype(np.int64))


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_residual_add_rejects_the_serial_multiplier():
    """ADD advances every cycle; the serial multiplier needs a pipeline gated by a phase counter."""
    with pytest.raises(ValueError, match="ResidualAdd: mul_style='serial' needs a phase counter"):
        ResidualAdd("serial")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residual_add_as_mul(seed):
    """The ADD lane in its MUL mode, programmed from a MUL record as the vector unit programs it,
    against fixedpoint.mul: multipliers above and below 1, extreme operands and zero points."""
    rng = np.random.default_rng(seed)
    s1, s2, so = (float(np.float32(v)) for v in np.exp(rng.uniform(np.log(0.005), np.log(0.2), 3)))
    so /= 1 + 15 * seed  # seed 2: a multiplier well above 1 (a positive shift)
    mult, shift = fp.quantize_multiplier(float(np.float32(s1) * np.float32(s2) / np.float32(so)))
    zp1, zp2, ozp = [(-128, 127, 0), (127, -128, -128), tuple(int(v) for v in rng.integers(-128, 128, 3))][seed]
    lo, hi = [(-128, 127), (-20, 127), (-128, 60)][seed]
    n = 200
    a, b = rng.integers(-128, 128, n), rng.integers(-128, 128, n)
    a[:4], b[:4] = [-128, 127, -128, 127], [-128, 127, 127, -128]
    ports = mul_ports(record_fields("mul", [zp1, zp2, mult, shift, ozp]), lo, hi)
    dut = ResidualAdd()

    def setup(ctx):
        for port, v in ports.items():
            ctx.set(getattr(dut, port), v)
        ctx.set(dut.mul, 1)

    got = run(dut, [dict(a=int(x), b=int(y)) for x, y in zip(a, b)], n, setup, seed=seed)
    want = fp.mul(a, zp1, b, zp2, mult, shift, ozp, lo, hi)
    assert np.array_equal(np.array(got), want.astype(np.int64))


def windows(rng, lanes, count):
    """Random pooling windows [1, fh, fw, lanes], with ties and extremes among them."""
    out = []
    for j in range(count):
        fh, fw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        x = rng.integers(-128, 128, (1, fh, fw, lanes))
        if j % 4 == 1:
            x[...] = rng.choice([-128, 127])
        if j % 4 == 2:  # sums at exact halves: ties of round-half-away
            fh, fw = 1, 2
            x = np.stack([rng.integers(-60, 60, lanes), np.zeros(lanes, dtype=np.int64)])[None, :, :]
            x = x.reshape(1, 1, 2, lanes)
            x[0, 0, 1] = x[0, 0, 0] + rng.choice([-1, 1], lanes)
        out.append(x.astype(np.int8))
    return out


def taps(wins):
    beats = []
    for x in wins:
        flat = x.reshape(-1, x.shape[-1])
        for t, v in enumerate(flat):
            beats.append(dict(x=[int(e) for e in v], first=int(t == 0), last=int(t == len(flat) - 1)))
    return beats


def test_max_pool_matches_golden():
    lanes = 4
    rng = np.random.default_rng(1)
    wins = windows(rng, lanes, 30)
    act_min, act_max = -20, 100
    dut = MaxPool(lanes)

    def setup(ctx):
        ctx.set(dut.act_min, act_min)
        ctx.set(dut.act_max, act_max)

    got = [[int(v) for v in o] for o in run(dut, taps(wins), len(wins), setup, seed=3)]
    want = [kernels.max_pool(x, x.shape[1:3], (1, 1), Padding.VALID, act_min, act_max).reshape(-1).tolist()
            for x in wins]
    assert got == want


class AvgPoolHarness(wiring.Component):
    """SumPool -> DivideRound: AVERAGE_POOL_2D over whole windows."""

    def __init__(self, lanes):
        self.lanes = lanes
        super().__init__({"i": In(stream.Signature(PoolBeatLayout(lanes))),
                          "o": Out(stream.Signature(data.ArrayLayout(signed(8), lanes))),
                          "act_min": In(signed(8)), "act_max": In(signed(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.sum = s = SumPool(self.lanes)
        m.submodules.div = d = DivideRound(self.lanes)
        wiring.connect(m, wiring.flipped(self.i), s.i)
        wiring.connect(m, s.o, d.i)
        wiring.connect(m, d.o, wiring.flipped(self.o))
        m.d.comb += [d.act_min.eq(self.act_min), d.act_max.eq(self.act_max)]
        return m


@pytest.mark.parametrize("act_min,act_max", [(-128, 127), (-3, 90)])
def test_average_pool_matches_golden(act_min, act_max):
    lanes = 3
    rng = np.random.default_rng(act_min + 200)
    wins = windows(rng, lanes, 30)
    dut = AvgPoolHarness(lanes)

    def setup(ctx):
        ctx.set(dut.act_min, act_min)
        ctx.set(dut.act_max, act_max)

    got = [[int(v) for v in o] for o in run(dut, taps(wins), len(wins), setup, seed=5)]
    want = [kernels.average_pool(x, x.shape[1:3], (1, 1), Padding.VALID, act_min, act_max).reshape(-1).tolist()
            for x in wins]
    assert got == want


def test_divide_round_large_sums():
    """Sums far outside int8 (MEAN's keep_dims path divides rescaled int32 values)."""
    lanes = 4
    rng = np.random.default_rng(9)
    sums = rng.integers(-3000, 3000, (40, lanes))
    sums[:2] = [[fp.INT32_MIN, fp.INT32_MAX, -2**20, 2**20], [255, -255, 256, -257]]
    counts = rng.integers(1, 40, 40)
    counts[:2] = [65535, 2]
    dut = DivideRound(lanes)

    def setup(ctx):
        ctx.set(dut.act_min, -128)
        ctx.set(dut.act_max, 127)

    items = [dict(sum=[int(v) for v in s], count=int(c)) for s, c in zip(sums, counts)]
    got = np.array([[int(v) for v in o] for o in run(dut, items, len(items), setup, seed=11)])
    want = fp.clamp(fp.divide_round_half_away(sums, counts[:, None]), -128, 127)
    assert np.array_equal(got, want)


class MeanHarness(wiring.Component):
    """SumPool (1 lane) -> Requantizer: TFLite's MEAN over H, W without keep_dims
    (QuantizedMeanOrSum), the path ResNet50's global average pool takes."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(PoolBeatLayout(1))),
                          "o": Out(stream.Signature(signed(8))),
                          "in_zp": In(signed(8)), "out_zp": In(signed(8)),
                          "multiplier": In(signed(32)), "shift": In(signed(6))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.sum = s = SumPool(1)
        m.submodules.rq = rq = Requantizer()
        wiring.connect(m, wiring.flipped(self.i), s.i)
        m.d.comb += [rq.i.valid.eq(s.o.valid), s.o.ready.eq(rq.i.ready),
                     rq.i.payload.acc.eq(s.o.payload.sum[0]),
                     rq.i.payload.bias.eq(-self.in_zp * s.o.payload.count),
                     rq.i.payload.multiplier.eq(self.multiplier), rq.i.payload.shift.eq(self.shift),
                     rq.out_zero_point.eq(self.out_zp), rq.act_min.eq(-128), rq.act_max.eq(127)]
        wiring.connect(m, rq.o, wiring.flipped(self.o))
        return m


def test_mean_matches_golden():
    rng = np.random.default_rng(4)
    hw_ = 7
    x = rng.integers(-128, 128, (1, hw_, hw_, 6)).astype(np.int8)
    in_scale, out_scale = 0.0412, 0.0173
    m0, s0 = fp.quantize_multiplier(float(np.float32(in_scale)) / float(np.float32(out_scale)))
    p = RequantParams(in_zero_point=-9, multiplier=m0, shift=s0, out_zero_point=4)
    want = kernels.mean(x, (1, 2), False, p).reshape(-1)
    # The hardware is programmed as QuantizedMeanOrSum: 1/count folded into the multiplier
    # (the golden model's own mean_multiplier), -zp*count as the bias.
    multiplier, shift = kernels.mean_multiplier(p.multiplier, p.shift, hw_ * hw_)
    dut = MeanHarness()

    def setup(ctx):
        ctx.set(dut.in_zp, p.in_zero_point)
        ctx.set(dut.out_zp, p.out_zero_point)
        ctx.set(dut.multiplier, multiplier)
        ctx.set(dut.shift, shift)

    wins = [x[:, :, :, c:c + 1] for c in range(x.shape[-1])]
    got = run(dut, taps(wins), len(wins), setup, seed=8)
    assert np.array_equal(np.array(got), want.astype(np.int64))
