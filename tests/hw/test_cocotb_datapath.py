"""cocotb benches of the exported Verilog of the datapath, on Icarus and Verilator.

A real ResNet50 3x3 convolution tile (conv2_block1_2_conv's weights, per-channel parameters and a
real input patch, ``data/resnet50_layers.npz``) through the MAC array and the requantizer, and
edge values (saturating clamps, rounding ties, wrapping biases and left shifts, extreme zero
points). Expected outputs come from ``onda.sim.golden.kernels.conv2d``. A failure names the
waveform file it wrote.
"""

from pathlib import Path

import numpy as np
import pytest

from onda.hw.datapath.conv_tile import ConvTile
from onda.sim.cocotb.conv_tile_job import conv_tile_job
from onda.sim.cocotb.harness import ECP5, run_bench
from onda.sim.golden import fixedpoint as fp
from onda.sim.golden.params import GemmParams
from onda.sim.ir import Padding

DATA = np.load(Path(__file__).parent / "data" / "resnet50_layers.npz")


def resnet50_tile_params(lanes: int) -> GemmParams:
    x_zp, out_zp, act_min, act_max = (int(v) for v in DATA["tile_zp"])
    return GemmParams(weights=DATA["tile_weights"][:lanes], weight_zero_point=0,
                      bias=DATA["tile_bias"][:lanes].astype(np.int64), in_zero_point=x_zp,
                      multiplier=DATA["tile_multiplier"][:lanes].astype(np.int64),
                      shift=DATA["tile_shift"][:lanes].astype(np.int64),
                      out_zero_point=out_zp, act_min=act_min, act_max=act_max)


def edge_params(rng, lanes: int, kh: int, cin: int, x_zp: int, out_zp: int, relu: bool) -> GemmParams:
    """Per-channel parameters chosen to hit the arithmetic's corners on every lane."""
    kinds = [l % 5 for l in range(lanes)]
    bias, mult, shift = [], [], []
    for kind in kinds:
        if kind == 0:    # clamp both ways: big gain
            b, mu, s = int(rng.integers(-2**20, 2**20)), 2**31 - 1, 0
        elif kind == 1:  # ties of the rounding right shift (M0 = 1/2, odd sums)
            b, mu, s = 1, 2**30, -1
        elif kind == 2:  # wrapping int32 bias
            b, mu, s = fp.INT32_MAX - int(rng.integers(0, 2**16)), 2**30, -24
        elif kind == 3:  # left shift that wraps int32
            b, mu, s = 0, int(rng.integers(2**30, 2**31)), 18
        else:            # the smallest multiplier and the largest right shift
            b, mu, s = int(rng.integers(-2**31, 2**31)), 2**30, -31
        bias.append(b); mult.append(mu); shift.append(s)
    w = np.where(rng.random((lanes, kh, kh, cin)) < 0.5, -127, 127).astype(np.int8)
    w[rng.random(w.shape) < 0.3] = 0
    act_min = out_zp if relu else -128
    return GemmParams(weights=w, weight_zero_point=0, bias=np.array(bias, dtype=np.int64),
                      in_zero_point=x_zp, multiplier=np.array(mult, dtype=np.int64),
                      shift=np.array(shift, dtype=np.int64), out_zero_point=out_zp,
                      act_min=max(act_min, -128), act_max=127)


SIMS = ["icarus", pytest.param("verilator", marks=pytest.mark.slow)]


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_resnet50_conv3x3_tile(sim):
    """8 output channels x 6x6 pixels of conv2_block1_2_conv (K = 576) on lanes=8, width=16."""
    lanes, width = 8, 16
    p = resnet50_tile_params(lanes)
    x = DATA["tile_input"][:, :6, :6, :]
    job = conv_tile_job(x, p, lanes, width, padding=Padding.SAME, seed=11)
    result = run_bench(ConvTile(lanes, width), "conv_tile_8x16", "onda.sim.cocotb.conv_tile_bench",
                       job, sim=sim)
    assert result["mismatches"] == 0 and result["outputs"] == len(job["expected"]) == 6 * 6 * 8


@pytest.mark.sim
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("x_zp,out_zp,relu", [(-128, 127, False), (127, -128, True), (0, 5, True)])
def test_conv_tile_edge_values(sim, x_zp, out_zp, relu):
    """Extreme activations and zero points against saturating, tie-rounding parameters."""
    rng = np.random.default_rng(x_zp + 300)
    lanes, width, kh, cin = 5, 4, 3, 3
    p = edge_params(rng, lanes, kh, cin, x_zp, out_zp, relu)
    x = rng.integers(-128, 128, (1, 4, 4, cin)).astype(np.int8)
    x[0, 0] = 127 if x_zp < 0 else -128     # |x - x_zp| = 255 at one pixel
    x[0, 1, 1] = x_zp                       # and 0 at another
    job = conv_tile_job(x, p, lanes, width, padding=Padding.SAME, seed=x_zp & 0xFF, idle=0.4, stall=0.4)
    run_bench(ConvTile(lanes, width), "conv_tile_5x4", "onda.sim.cocotb.conv_tile_bench", job,
              sim=sim, tag="conv_tile_5x4")
    expected = np.array(job["expected"])
    # The workload itself must reach the corners it is about.
    assert (expected == p.act_max).any() and (expected == p.act_min).any()


@pytest.mark.parametrize("lanes,width,mul_style", [(5, 4, "dsp"), (4, 2, "serial")])
def test_conv_tile_icarus_quick(lanes, width, mul_style):
    """The fast share for `make test`: a small tile on Icarus; 4x2 with the serial requantizer
    is the iCEBreaker's build."""
    rng = np.random.default_rng(5)
    p = edge_params(rng, lanes, 3, 3, -7, 9, True)
    x = rng.integers(-128, 128, (1, 3, 3, 3)).astype(np.int8)
    job = conv_tile_job(x, p, lanes, width, padding=Padding.SAME, seed=2, idle=0.3, stall=0.3)
    name = f"conv_tile_{lanes}x{width}_{mul_style}"
    result = run_bench(ConvTile(lanes, width, mul_style=mul_style), name,
                       "onda.sim.cocotb.conv_tile_bench", job, sim="icarus", tag=name)
    assert result["mismatches"] == 0 and result["outputs"] == 3 * 3 * lanes


@pytest.mark.parametrize("sim", SIMS)
def test_conv_tile_ecp5_primitives(sim):
    """The ECP5 elaboration (every multiplier a registered MULT18X18D instance, as synthesized
    for the ULX3S) computes the same real ResNet50 outputs, with the primitive's behavioural
    model from ``sim/rtl/models``: checks the instance's operand bits, signedness and latency."""
    lanes, width = 4, 8
    p = resnet50_tile_params(lanes)
    x = DATA["tile_input"][:, :3, :3, :]
    job = conv_tile_job(x, p, lanes, width, padding=Padding.SAME, seed=3, idle=0.3, stall=0.3)
    result = run_bench(ConvTile(lanes, width), "conv_tile_4x8_ecp5", "onda.sim.cocotb.conv_tile_bench",
                       job, sim=sim, platform=ECP5)
    assert result["mismatches"] == 0 and result["outputs"] == len(job["expected"]) == 3 * 3 * lanes
