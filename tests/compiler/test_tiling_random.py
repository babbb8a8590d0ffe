"""Random layer geometries on hand-built graphs, compiled for small and large engines: the emulator
equals the golden model. Odd sizes, strides, dilations, paddings and channel counts that are not
multiples of the lanes exercise the tiler's edges (many bands, many weight blocks, both loop orders)."""

import numpy as np
import pytest

from onda.host.compiler import CompileError, compile_graph
from onda.host.runtime.emulator import EmulatedModel
from onda.hw.config import load_config
from onda.sim.golden.model import GoldenModel
from onda.sim.golden.params import conv_output_size
from onda.sim.ir import (Activation, AddAttrs, Conv2DAttrs, Graph, MeanAttrs, Op, OpKind, PadAttrs, Padding,
                         Pool2DAttrs, Quant, Tensor)


def _q(rng, per_channel=0):
    if per_channel:
        return Quant(rng.uniform(0.002, 0.02, per_channel).astype(np.float32), np.zeros(per_channel, np.int64))
    return Quant(np.array([rng.uniform(0.01, 0.1)], np.float32), np.array([rng.integers(-20, 20)], np.int64))


def random_graph(seed: int, wide: bool = False) -> Graph:
    """Conv, a second 1x1 conv of the same input, ADD, PAD, pool and MEAN of random geometry; ``wide``:
    long reductions and wide rows (60-160 input channels, up to 60 columns), which the iCEBreaker
    runs only in passes over K and column tiles."""
    rng = np.random.default_rng(seed)
    if wide:
        h, w, c = int(rng.integers(1, 5)), int(rng.integers(8, 61)), int(rng.integers(60, 161))
    else:
        h, w, c = int(rng.integers(1, 14)), int(rng.integers(1, 14)), int(rng.integers(1, 24))
    kh, kw = (int(v) for v in rng.choice([3, 5] if wide else [1, 2, 3, 5], 2))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    dh, dw = (int(v) for v in rng.choice([1, 1, 2], 2))
    padding = Padding.SAME if rng.random() < 0.5 or h < (kh - 1) * dh + 1 or w < (kw - 1) * dw + 1 else Padding.VALID
    cout = int(rng.integers(1, 13 if wide else 40))
    oh, ow = conv_output_size(h, kh, sh, dh, padding), conv_output_size(w, kw, sw, dw, padding)
    act = Activation(rng.choice(["NONE", "RELU", "RELU6"]))
    T = {}

    def t(tid, shape, quant=None, data=None, dtype="int8"):
        T[tid] = Tensor(tid, f"t{tid}", tuple(shape), dtype, quant, data)
        return tid

    x = t(0, (1, h, w, c), _q(rng))
    wt = t(1, (cout, kh, kw, c), _q(rng, cout), rng.integers(-127, 128, (cout, kh, kw, c)).astype(np.int8))
    b = t(2, (cout,), None, rng.integers(-3000, 3000, cout).astype(np.int32), "int32")
    y = t(3, (1, oh, ow, cout), _q(rng))
    ops = [Op(0, OpKind.CONV_2D, (x, wt, b), (y,), Conv2DAttrs((sh, sw), (dh, dw), padding, act))]
    # a second conv on the same input: ADD of the two (residual), then pad, pool, mean
    wt2 = t(4, (cout, 1, 1, c), _q(rng, cout), rng.integers(-127, 128, (cout, 1, 1, c)).astype(np.int8))
    b2 = t(5, (cout,), None, rng.integers(-3000, 3000, cout).astype(np.int32), "int32")
    y2 = t(6, (1, oh, ow, cout), _q(rng))
    ops.append(Op(1, OpKind.CONV_2D, (x, wt2, b2), (y2,),
                  Conv2DAttrs((sh, sw), (1, 1), Padding.SAME if padding == Padding.SAME else Padding.VALID,
                              Activation.NONE)))
    if conv_output_size(h, 1, sh, 1, ops[1].attrs.padding) != oh or conv_output_size(w, 1, sw, 1, ops[1].attrs.padding) != ow:
        ops.pop()
        T.pop(6)
        y2 = y
    else:
        s = t(7, (1, oh, ow, cout), _q(rng))
        ops.append(Op(2, OpKind.ADD, (y, y2), (s,), AddAttrs(Activation(rng.choice(["NONE", "RELU"])))))
        y = s
    pt, pb, pl, pr = (int(v) for v in rng.integers(0, 3, 4))
    p = t(8, (1, oh + pt + pb, ow + pl + pr, cout), T[y].quant)
    ops.append(Op(3, OpKind.PAD, (y,), (p,), PadAttrs(((0, 0), (pt, pb), (pl, pr), (0, 0)))))
    fh, fw = (int(v) for v in rng.integers(1, 4, 2))
    ps = int(rng.integers(1, 3))
    ppad = Padding.SAME if rng.random() < 0.5 else Padding.VALID
    ph, pw = T[p].shape[1:3]
    if ppad == Padding.VALID and (ph < fh or pw < fw):
        ppad = Padding.SAME
    kind = OpKind.MAX_POOL_2D if rng.random() < 0.5 else OpKind.AVERAGE_POOL_2D
    po = t(9, (1, conv_output_size(ph, fh, ps, 1, ppad), conv_output_size(pw, fw, ps, 1, ppad), cout), T[p].quant)
    ops.append(Op(4, kind, (p,), (po,), Pool2DAttrs((fh, fw), (ps, ps), ppad, Activation.NONE)))
    m = t(10, (1, cout), _q(rng))
    ops.append(Op(5, OpKind.MEAN, (po, -1), (m,), MeanAttrs((1, 2), False)))
    for i, op in enumerate(ops):
        op.index = i
    return Graph(f"random{'-wide' if wide else ''}{seed}", T, ops, [x], [m])


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
@pytest.mark.parametrize("seed", range(30))
def test_random_layers(engine, seed):
    g = random_graph(seed)
    try:
        model = EmulatedModel(compile_graph(g, load_config(engine)), g.name)
    except CompileError as e:  # the iCEBreaker splits what does not fit: nothing is refused
        pytest.fail(f"seed {seed} refused for {engine}: {e}")
    x = np.random.default_rng(seed + 100).integers(-128, 128, (2,) + g.tensor(0).shape[1:], dtype=np.int8)
    got = model.run_all([x])
    want = GoldenModel(g).run_all([x])
    assert model.cycle_trace().total > 0  # the overlapped schedule is race-free (checked while timing)
    for tid, v in want.items():
        np.testing.assert_array_equal(got[tid], v, err_msg=f"seed {seed}, tensor {tid} ({g.tensor(tid).name})")


def test_every_random_layer_fits_the_icebreaker():
    """Passes over K and column tiles: no seed above is refused for the smallest engine."""
    for seed in range(30):
        compile_graph(random_graph(seed), load_config("icebreaker"))


def _splits(model) -> list[str]:
    return [la["tiling"] for la in model.layers if "passes" in la["tiling"] or "column" in la["tiling"]]


def test_wide_layers_split_on_the_icebreaker():
    """The wide seeds below do exercise both splits on the iCEBreaker."""
    tilings = [t for seed in range(8) for t in _splits(EmulatedModel(
        compile_graph(random_graph(seed, wide=True), load_config("icebreaker")), "wide"))]
    assert sum("passes" in t for t in tilings) >= 6 and sum("column" in t for t in tilings) >= 4, tilings


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f"])
@pytest.mark.parametrize("seed", range(8))
def test_random_wide_layers_split(engine, seed):
    """Long reductions and wide rows: on the iCEBreaker every such graph compiles, its convolutions
    split into passes over K (partial sums in ACC) and column tiles, and the emulator equals the
    golden model on every tensor."""
    g = random_graph(seed, wide=True)
    model = EmulatedModel(compile_graph(g, load_config(engine)), g.name)
    x = np.random.default_rng(seed + 100).integers(-128, 128, (2,) + g.tensor(0).shape[1:], dtype=np.int8)
    got = model.run_all([x])
    want = GoldenModel(g).run_all([x])
    assert model.cycle_trace().total > 0
    for tid, v in want.items():
        np.testing.assert_array_equal(got[tid], v, err_msg=f"seed {seed}, tensor {tid} ({g.tensor(tid).name})")


@pytest.mark.parametrize("size,k,c,pad", [(17, 7, 3, 3), (16, 7, 3, 3), (15, 5, 2, 2), (12, 3, 4, 1), (9, 4, 1, 0)])
def test_space_to_depth_stem(size, k, c, pad):
    """PAD -> stride-2 VALID conv with few channels: where it takes fewer GEMM cycles (the large engine)
    the padded tensor is stored as 2x2 blocks (odd sizes rounded up with fill) and runs a stride-1
    conv; results equal the golden model either way."""
    rng = np.random.default_rng(size * 100 + k)
    cout = 20
    hp = size + 2 * pad
    oh = (hp - k) // 2 + 1
    T = {
        0: Tensor(0, "x", (1, size, size, c), "int8", _q(rng)),
        1: Tensor(1, "p", (1, hp, hp, c), "int8", None),
        2: Tensor(2, "w", (cout, k, k, c), "int8", _q(rng, cout),
                  rng.integers(-127, 128, (cout, k, k, c)).astype(np.int8)),
        3: Tensor(3, "b", (cout,), "int32", None, rng.integers(-5000, 5000, cout).astype(np.int32)),
        4: Tensor(4, "y", (1, oh, oh, cout), "int8", _q(rng)),
    }
    T[1].quant = T[0].quant
    ops = [Op(0, OpKind.PAD, (0,), (1,), PadAttrs(((0, 0), (pad, pad), (pad, pad), (0, 0)))),
           Op(1, OpKind.CONV_2D, (1, 2, 3), (4,), Conv2DAttrs((2, 2), (1, 1), Padding.VALID, Activation.RELU))]
    g = Graph("stem", T, ops, [0], [4])
    x = rng.integers(-128, 128, (3, size, size, c), dtype=np.int8)
    want = GoldenModel(g).run_all([x])
    for engine in ("large", "ulx3s-85f", "icebreaker"):
        cfg = load_config(engine)
        k2 = -(-k // 2)
        # Fewer cycles per pixel, where no faster than the requantizers drain a vector of lanes.
        packed = (max(k2 * -(-(k2 * 4 * c) // cfg.width), cfg.drain_cycles)
                  < max(k * -(-(k * c) // cfg.width), cfg.drain_cycles))
        model = EmulatedModel(compile_graph(g, cfg), "stem")
        assert ("space-to-depth" in model.layers[1]["tiling"]) == packed, (engine, model.layers[1]["tiling"])
        got = model.run_all([x])
        assert model.cycle_trace().total > 0
        for tid in (1, 4):
            np.testing.assert_array_equal(got[tid], want[tid], err_msg=f"{engine} tensor {tid}")
