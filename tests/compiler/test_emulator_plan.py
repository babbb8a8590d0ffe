"""The emulator's plan (sim/emulator/plan.py) against its instruction-by-instruction reference
(``Machine``/``execute``) and the golden model: every tensor, compiled nets on every engine and
hand-written programs with hazards; and the same refusals, with the same messages, for programs
that break the engine's rules."""

import copy

import numpy as np
import pytest

from onda.host.compiler import compile_tflite
from onda.host.frontend import read_tflite
from onda.host.models import digits
from onda.host.runtime.emulator import EmulatedModel
from onda.host.verify import random_inputs
from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.isa import Buffer, Opcode
from onda.sim.emulator.functional import EmulatorError, Machine, execute
from onda.sim.emulator.plan import BlockStore, ConvStep, PaddedRegion, VecStep, _gather, build_plan
from onda.sim.golden.model import GoldenModel

from ..numeric.nets import quantized_case

CASES = ["vgg_block", "residual_scales_1_to_50", "resnet_stem_pad_maxpool", "conv3x3_s2_valid_relu6",
         "gap_keepdims_flatten_dense", "avgpool3_s1_same"]
def _model(case, engine, tmp_path) -> tuple[EmulatedModel, object]:
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(quantized_case(case))
    return EmulatedModel(compile_tflite(path, engine), case), read_tflite(path)


@pytest.mark.parametrize("engine", ["icebreaker", "ulx3s-85f", "large"])
@pytest.mark.parametrize("case", CASES)
def test_plan_equals_stepping_and_golden(case, engine, tmp_path):
    model, graph = _model(case, engine, tmp_path)
    assert model.plan() is not None, model._plan_refused
    xs = random_inputs(model.inputs, 3, seed=5)
    planned = model.run_all(xs)
    stepped = model.run_all(xs, stepping=True)
    want = GoldenModel(graph).run_all(xs)
    assert planned.keys() == stepped.keys()
    for tid, v in stepped.items():
        np.testing.assert_array_equal(planned[tid], v, err_msg=f"plan vs stepping, tensor {tid}")
        np.testing.assert_array_equal(planned[tid], want[tid].reshape(v.shape), err_msg=f"plan vs golden, {tid}")


def test_conv_tiles_run_as_one_gemm_per_geometry():
    """The digits net's convolutions, tiled into many GEMM instructions, become few ConvSteps,
    and their results are stored by strided block copies."""
    model = EmulatedModel(compile_tflite(digits.TFLITE, "icebreaker"), "digits")
    plan = model.plan()
    gemms = sum(1 for i in model.program if i.opcode == Opcode.GEMM)
    convs = [s for g in plan.groups for s in g.computes if isinstance(s, ConvStep)]
    assert convs and len(convs) < gemms
    assert any(isinstance(s, BlockStore) for g in plan.groups for s in g.stores)
    x = random_inputs(model.inputs, 4, seed=6)
    np.testing.assert_array_equal(model.run(x)[0], model._batched(x, False, stepping=True)[model.output_ids[0]])


def test_elementwise_vec_tiles_run_as_one_step(tmp_path):
    """ResNet-style residual ADDs, tiled into many VEC instructions, become one step per layer."""
    model, _ = _model("residual_scales_1_to_50", "icebreaker", tmp_path)
    plan = model.plan()
    adds = sum(1 for i in model.program if i.opcode == Opcode.VEC and i.fields["func"] == isa.VecFunc.ADD)
    steps = [s for g in plan.groups for s in g.computes
             if isinstance(s, VecStep) and s.fields["func"] == isa.VecFunc.ADD]
    assert steps and len(steps) < adds
    x = random_inputs(model.inputs, 3, seed=8)
    np.testing.assert_array_equal(model.run(x)[0], model._batched(x, False, stepping=True)[model.output_ids[0]])


@pytest.mark.parametrize("region", [(0, 1, 3, 3, 0, 0, 2, 0, 5), (5, 3, 4, 9, 0, 0, 0, 0, 0), (5, 3, 4, 4, 0, 0, 0, 0, 0),
                                    (7, 4, 6, 10, 1, 1, 1, 1, -3), (0, 2, 3, 3, 2, 0, 0, 3, 127),
                                    (9, 5, 2, 7, 0, 3, 2, 0, -128)])
def test_padded_region_is_recognised_from_its_codes(region):
    """A read of strided rows with constant padding (what a padded LOAD leaves) is found from its
    provenance codes alone and read with the same bytes a gather gives."""
    r = PaddedRegion(*region)
    src = r.codes().reshape(-1)
    found = PaddedRegion.matching(src)
    assert found is not None
    np.testing.assert_array_equal(found.codes().reshape(-1), src)
    mem = np.random.default_rng(9).integers(-128, 128, (2, 128)).astype(np.int8)
    np.testing.assert_array_equal(found(mem).reshape(2, -1), _gather(mem, src))


def test_padded_region_refuses_what_is_not_one():
    src = np.array([0, 1, 2, 5, 6, 9, 10, 11])  # rows of unequal length
    assert PaddedRegion.matching(src) is None
    src = np.array([3, 4, -1 - (0 + 128), 5, 6, -1 - (1 + 128)])  # two different pad values
    assert PaddedRegion.matching(src) is None


def _machine_and_plan(program, n=2, seed=7):
    cfg = load_config("ulx3s-85f")
    memmap = {"act_size": 4096, "weights_base": 8192}
    weights = np.random.default_rng(seed).integers(-127, 128, 2048).astype(np.int8).tobytes()
    mem = np.random.default_rng(seed + 1).integers(-128, 128, (n, 4096)).astype(np.int8)
    m = Machine(cfg, memmap, weights, n)
    m.act_mem[:] = mem
    execute(m, program)
    plan = build_plan(program, cfg, memmap, weights)
    got = mem.copy()
    plan.run(got)
    return m.act_mem, got, plan


def test_store_then_load_of_the_same_bytes_is_ordered():
    """A LOAD of bytes a STORE just wrote (read after write through memory) starts a new group;
    a STORE over bytes an earlier LOAD read (write after read) does not disturb that read."""
    L, S = Opcode.LOAD, Opcode.STORE
    prog = [
        isa.make(L, buffer=Buffer.ACT, sram_addr=0, dram_addr=100, y_size=4, x_size=16, dram_stride=32,
                 pad_top=1, pad_left=2, pad_value=-3),
        isa.make(S, buffer=Buffer.ACT, sram_addr=0, dram_addr=100, y_size=5, x_size=18, dram_stride=18),  # WAR
        isa.make(L, buffer=Buffer.ACT, sram_addr=512, dram_addr=100, y_size=5, x_size=18, dram_stride=18),  # RAW
        isa.make(S, buffer=Buffer.ACT, sram_addr=512, dram_addr=1000, y_size=3, x_size=30, dram_stride=40),
        isa.make(Opcode.FINISH),
    ]
    want, got, plan = _machine_and_plan(prog)
    np.testing.assert_array_equal(got, want)
    assert len(plan.groups) == 2


def test_gemm_and_vec_tiles_by_hand():
    """A 3x3 conv over two padded bands (one weight block each way) and a residual ADD of two loads."""
    L, S, G, V = Opcode.LOAD, Opcode.STORE, Opcode.GEMM, Opcode.VEC
    c, w, ct = 4, 6, 5
    k = 9 * c
    prm = np.stack([np.arange(ct) * 100 - 200, np.full(ct, 1 << 30) + np.arange(ct) * 12345,
                    -np.arange(ct) % 6 - 1], axis=1).astype("<i4").tobytes()
    cfg = load_config("ulx3s-85f")
    memmap = {"act_size": 4096, "weights_base": 8192}
    wimg = np.random.default_rng(1).integers(-127, 128, 1024).astype(np.int8).tobytes()
    wimg = wimg[:512] + prm + wimg[512 + len(prm):]
    prog = []
    for t, (r0, y, pt, pb) in enumerate([(0, 3, 1, 0), (1, 3, 0, 1)]):  # output rows 0-1 and 2-3 of a 4x6 input
        if t == 0:
            prog += [isa.make(L, buffer=Buffer.WGT, sram_addr=0, dram_addr=8192, y_size=1, x_size=ct * k,
                              dram_stride=ct * k),
                     isa.make(L, buffer=Buffer.PARAM, sram_addr=0, dram_addr=8192 + 512, y_size=1, x_size=len(prm),
                              dram_stride=len(prm))]
        prog += [isa.make(L, buffer=Buffer.ACT, sram_addr=t * 1024, dram_addr=r0 * w * c, y_size=y, x_size=w * c,
                          dram_stride=w * c, pad_top=pt, pad_bottom=pb, pad_left=c, pad_right=c, pad_value=-7),
                 isa.make(G, act_addr=t * 1024, wgt_addr=0, param_addr=0, out_addr=t * 512, in_rows=4,
                          in_cols=w + 2, channels=c, out_rows=2, out_cols=w, out_channels=ct, kh=3, kw=3,
                          stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, out_zp=3, act_min=-128, act_max=127),
                 isa.make(S, buffer=Buffer.OUT, sram_addr=t * 512, dram_addr=2000 + t * 2 * w * ct, y_size=2 * w,
                          x_size=ct, dram_stride=ct)]
    add_rec = np.array([1, -2, 1 << 30, 0, 1 << 30, 0, 1 << 30, -1, 4], "<i4").tobytes()
    wimg = wimg[:768] + add_rec + wimg[768 + len(add_rec):]
    prog += [isa.make(L, buffer=Buffer.PARAM, sram_addr=4096, dram_addr=8192 + 768, y_size=1, x_size=36,
                      dram_stride=36),
             isa.make(L, buffer=Buffer.ACT, sram_addr=3000, dram_addr=300, y_size=2, x_size=10, dram_stride=20),
             isa.make(L, buffer=Buffer.ACT, sram_addr=3100, dram_addr=600, y_size=2, x_size=10, dram_stride=10),
             isa.make(V, func=isa.VecFunc.ADD, src_addr=3000, src2_addr=3100, dst_addr=4000, param_addr=4096,
                      in_rows=2, in_cols=5, channels=2, out_rows=2, out_cols=5, act_min=-128, act_max=127),
             isa.make(S, buffer=Buffer.OUT, sram_addr=4000, dram_addr=3500, y_size=4, x_size=5, dram_stride=7),
             isa.make(Opcode.FINISH)]
    n = 3
    mem = np.random.default_rng(2).integers(-128, 128, (n, 4096)).astype(np.int8)
    m = Machine(cfg, memmap, wimg, n)
    m.act_mem[:] = mem
    execute(m, prog)
    plan = build_plan(prog, cfg, memmap, wimg)
    assert any(isinstance(s, ConvStep) for g in plan.groups for s in g.computes)
    got = mem.copy()
    plan.run(got)
    np.testing.assert_array_equal(got, m.act_mem)


def _without(program, module, flag):
    prog = copy.deepcopy(program)
    for ins in prog:
        if ins.module == module and ins.opcode != Opcode.NOP:
            setattr(ins, flag, False)
    return prog


@pytest.fixture(scope="module")
def digits_ulx3s():
    return EmulatedModel(compile_tflite(digits.TFLITE, "ulx3s-85f"), "digits")


def test_plan_refuses_what_execute_refuses(digits_ulx3s):
    d = digits_ulx3s
    args = (d.config, d.memmap, d.container.weights)
    prog = _without(d.program, isa.Module.STORE, "push_prev")
    with pytest.raises(EmulatorError, match="pops an empty s2c token queue"):
        build_plan(prog, *args)
    with pytest.raises(EmulatorError, match="pops an empty s2c token queue"):
        execute(Machine(*args, 1), prog)
    with pytest.raises(EmulatorError, match="without FINISH"):
        build_plan([i for i in d.program if i.opcode != Opcode.FINISH], *args)
    cfg = d.config
    bad = [isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=cfg.act_bytes - 4, y_size=1, x_size=8, dram_stride=8)]
    with pytest.raises(EmulatorError, match="LOAD ACT: buffer access .* outside"):
        build_plan(bad, *args)
    bad = [isa.make(Opcode.STORE, buffer=Buffer.OUT, dram_addr=d.memmap["act_size"], y_size=1, x_size=8,
                    dram_stride=8)]
    with pytest.raises(EmulatorError, match="outside the activation region"):
        build_plan(bad, *args)
    bad = [isa.make(Opcode.GEMM, kh=0, kw=1, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1)]
    with pytest.raises(EmulatorError, match="kernel, stride and dilation"):
        build_plan(bad, *args)
