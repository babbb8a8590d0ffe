"""VecUnit against the functional emulator: every VecFunc, random shapes (channels not multiples of
vector_lanes), pool windows / strides / paddings with edges, real-ish ADD / REQUANT / MEAN records,
both boards; ACT, PARAM and OUT start as random bytes, and after every instruction the whole OUT is
compared byte for byte with ``Machine.vec`` on the same buffers. Commands arrive after random idle
cycles. Error cases: refused with the right code, nothing written, no further command taken.

The unit runs against the real ByteBuffers (``act_buffer``, ``param_buffer``, ``out_buffer``) of the
configuration with its buffer sizes shrunk (so filling and reading them back stays fast); the range
checks are also run at the full sizes.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.engine.buffers import ByteBuffer, act_banks, out_banks
from onda.hw.engine.errors import EngineError
from onda.hw.engine.vec_unit import CHECK_CYCLES, MeanMultiplier, VecUnit, vec_cycles_bounds
from onda.hw.isa import Opcode, VecFunc
from onda.sim.emulator.functional import EmulatorError, Machine
from onda.sim.golden import fixedpoint as fp
from onda.sim.golden import kernels

BOARDS = ["icebreaker", "ulx3s-85f"]
SMALL = dict(act_bytes=1024, out_bytes=384, param_bytes=256)


def small_cfg(board: str):
    return dataclasses.replace(load_config(board), **SMALL)


class Harness(wiring.Component):
    """VecUnit wired to ACT, PARAM and OUT as the engine wires them (the engine's ports, plus
    bank-wide ``fill`` / ``check`` ports for the testbench to load and read back the buffers fast)."""

    def __init__(self, cfg, add_lanes=None):
        self.cfg = cfg
        self.vec = VecUnit(cfg, add_lanes)
        P = cfg.mem_port_bits // 8
        ab, ob = act_banks(cfg), out_banks(cfg)
        self.act = ByteBuffer(cfg.act_bytes, ab, read_ports={"gemm": cfg.width, "vec_a": cfg.vector_lanes,
                                                            "vec_b": cfg.vector_lanes, "store": P},
                              write_ports={"load": ab})
        self.param = ByteBuffer(cfg.param_bytes, 16, read_ports={"gemm": 12, "vec": 4},
                                write_ports={"load": P, "fill": 16})
        self.out = ByteBuffer(cfg.out_bytes, ob, read_ports={"store": P, "check": ob},
                              write_ports={"gemm": 1, "vec": cfg.vector_lanes, "fill": ob},
                              shared_writes=[["gemm", "vec"]])  # as out_buffer(cfg)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.vec, m.submodules.act = self.vec, self.act
        m.submodules.param, m.submodules.out = self.param, self.out
        wiring.connect(m, self.vec.r_vec_a, self.act.r_vec_a)
        wiring.connect(m, self.vec.r_vec_b, self.act.r_vec_b)
        wiring.connect(m, self.vec.r_vec, self.param.r_vec)
        wiring.connect(m, self.vec.w_vec, self.out.w_vec)
        return m


class Bare(wiring.Component):
    """The VecUnit alone with a testbench reset (refusals touch no buffer)."""

    def __init__(self, cfg):
        self.vec = VecUnit(cfg)
        self.rst = Signal()
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.vec = ResetInserter(self.rst)(self.vec)
        return m


def pack_vec(fields: dict) -> int:
    """The VEC body bits (above the header) as ``field_layout`` packs them; any field value."""
    value, pos = 0, 0
    for name, bits, _ in isa.LAYOUTS[Opcode.VEC]:
        value |= (int(fields.get(name, 0)) & ((1 << bits) - 1)) << pos
        pos += bits
    return value


def vec_fields(**kw) -> dict:
    base = dict(func=0, src_addr=0, src2_addr=0, dst_addr=0, param_addr=0, in_rows=1, in_cols=1, channels=1,
                out_rows=1, out_cols=1, kh=1, kw=1, stride_h=1, stride_w=1, pad_top=0, pad_left=0,
                act_min=-128, act_max=127)
    base.update(kw)
    return base


class _Raw:
    """An instruction the encoder refuses (unknown func): the fields as decode would give them."""

    opcode = Opcode.VEC

    def __init__(self, fields):
        self.fields = dict(fields)


def emulate(cfg, act, param, out, fields):
    """Machine.vec on copies of the buffers: the new OUT, or the exception it refused with."""
    mach = Machine(cfg, {"act_size": 1, "weights_base": 1}, b"", 1)
    mach.act[0, :] = act.astype(np.float32)
    mach.param[:] = param
    mach.out[0, :] = out
    try:
        try:
            ins = isa.make(Opcode.VEC, **fields)
        except Exception:
            ins = _Raw(fields)
        mach.vec(ins)
    except (EmulatorError, ValueError) as e:
        return e
    return mach.out[0].copy()


async def send(ctx, vec, fields, rng, idle, timeout=20000):
    """One command after random idle cycles; (error code, cycles from the transfer to done/error)."""
    while rng.random() < idle:
        await ctx.tick()
    ctx.set(vec.cmd.payload.as_value(), pack_vec(fields))
    ctx.set(vec.cmd.valid, 1)
    await ctx.tick().until(vec.cmd.ready)
    ctx.set(vec.cmd.valid, 0)
    cycles = 0
    while True:
        _, _, done, err = await ctx.tick().sample(vec.done, vec.error)
        cycles += 1
        if done:
            return 0, cycles
        if err:
            return int(err), cycles
        assert cycles < timeout, f"no done after {cycles} cycles: {fields}"


def run_unit(cfg, act, param, out, program, seed=0, idle=0.3, add_lanes=None):
    """Run ``program`` (a list of VEC field dicts) on the unit over buffers holding act / param /
    out; returns per instruction (OUT after it, error code, cycles from accept to done)."""
    dut = Harness(cfg, add_lanes)
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        ports = [(dut.act.w_load, act.view(np.uint8)), (dut.param.w_fill, param), (dut.out.w_fill, out.view(np.uint8))]
        n = max(len(blob) // len(port.mask) for port, blob in ports)
        for k in range(n):
            for port, blob in ports:
                w = len(port.mask)
                ctx.set(port.en, k * w < len(blob))
                ctx.set(port.addr, k * w)
                ctx.set(port.data.as_value(), int.from_bytes(bytes(blob[k * w:(k + 1) * w]), "little"))
                ctx.set(port.mask, (1 << w) - 1)
            await ctx.tick()
        for port, _ in ports:
            ctx.set(port.en, 0)
        for fields in program:
            code, cycles = await send(ctx, dut.vec, fields, rng, idle)
            assert code == 0, f"refused with {EngineError(code).name}: {fields}"
            got = bytearray()
            rs = dut.out.r_check
            w = len(rs.data.as_value()) // 8
            for k in range(-(-cfg.out_bytes // w)):
                ctx.set(rs.addr, k * w)
                ctx.set(rs.en, 1)
                await ctx.tick()
                got += ctx.get(rs.data.as_value()).to_bytes(w, "little")
            ctx.set(rs.en, 0)
            results.append((np.frombuffer(bytes(got[:cfg.out_bytes]), dtype=np.int8), code, cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def check_program(cfg, program, seed, add_lanes=None):
    """Random buffers; run ``program`` on the unit and on the emulator; OUT equal after each."""
    rng = np.random.default_rng(seed)
    act = rng.integers(-128, 128, cfg.act_bytes).astype(np.int8)
    out = rng.integers(-128, 128, cfg.out_bytes).astype(np.int8)
    param = rng.integers(0, 256, cfg.param_bytes).astype(np.uint8)
    at = 0
    for fields in program:  # each record its own bytes, at any alignment
        if "record" in fields:
            rec = np.array(fields.pop("record"), dtype="<i4").view(np.uint8)
            if fields.get("param_addr") == "end":
                fields["param_addr"] = cfg.param_bytes - rec.size
            else:
                fields["param_addr"] = at + int(rng.integers(0, 4))
                at = fields["param_addr"] + rec.size
            assert fields["param_addr"] + rec.size <= cfg.param_bytes
            param[fields["param_addr"]:fields["param_addr"] + rec.size] = rec
    results = run_unit(cfg, act, param, out, program, seed=seed, add_lanes=add_lanes)
    assert len(results) == len(program)
    cycles = []
    for fields, (got, code, cyc) in zip(program, results):
        want = emulate(cfg, act, param, out, fields)
        assert not isinstance(want, Exception), f"emulator refused a valid case: {want}: {fields}"
        assert code == 0, f"refused with {EngineError(code).name}: {fields}"
        diff = np.flatnonzero(got != want)
        assert diff.size == 0, (f"{VecFunc(fields['func']).name}: {diff.size} bytes differ, first at {diff[:8]}: "
                                f"got {got[diff[:8]]}, want {want[diff[:8]]}; {fields}")
        lo, hi = vec_cycles_bounds(cfg, fields, add_lanes)  # no stalls but the command's: exact but serial MEAN
        assert lo <= cyc <= hi, f"{VecFunc(fields['func']).name}: {cyc} cycles, vec_cycles says {lo}..{hi}: {fields}"
        out = want
        cycles.append(cyc)
    return cycles


# ---- random instructions -----------------------------------------------------------------------

def _place(rng, size, limit):
    return int(rng.integers(0, limit - size + 1))


def _channels(rng, vl):
    c = int(rng.integers(1, 3 * vl + 2))
    if c % vl == 0:
        c += 1
    return c


def gen_copy(rng, cfg):
    vl = cfg.vector_lanes
    c = _channels(rng, vl)
    ir, ic = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    while ir * ic * c > cfg.out_bytes:
        ir = max(1, ir - 1); c = max(1, c // 2)
    n = ir * ic * c
    return vec_fields(func=VecFunc.COPY, src_addr=_place(rng, n, cfg.act_bytes), dst_addr=_place(rng, n, cfg.out_bytes),
                      in_rows=ir, in_cols=ic, channels=c, out_rows=ir, out_cols=ic)


def gen_s2d(rng, cfg):
    vl = cfg.vector_lanes
    c = _channels(rng, vl)
    orow, ocol = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    while orow * ocol * 4 * c > cfg.out_bytes:
        c = max(1, c // 2)
    n = orow * ocol * 4 * c
    return vec_fields(func=VecFunc.SPACE_TO_DEPTH, src_addr=_place(rng, n, cfg.act_bytes),
                      dst_addr=_place(rng, n, cfg.out_bytes), in_rows=2 * orow, in_cols=2 * ocol, channels=c,
                      out_rows=orow, out_cols=ocol)


def _scale(rng):
    return float(np.float32(np.exp(rng.uniform(np.log(0.005), np.log(0.2)))))


def gen_add(rng, cfg):
    f = gen_copy(rng, cfg)
    n = f["in_rows"] * f["in_cols"] * f["channels"]
    s1, s2, so = _scale(rng), _scale(rng), _scale(rng)
    m1, sh1, m2, sh2, mo, sho = fp.add_params(s1, s2, so)
    zp1, zp2, ozp = (int(v) for v in rng.integers(-128, 128, 3))
    lo = int(rng.choice([-128, ozp if -128 <= ozp <= 127 else -128, -20]))
    hi = int(rng.choice([127, 100]))
    paddr = _place(rng, 36, cfg.param_bytes)
    f.update(func=VecFunc.ADD, src2_addr=_place(rng, n, cfg.act_bytes), param_addr=paddr, act_min=lo, act_max=hi,
             record=[zp1, zp2, m1, sh1, m2, sh2, mo, sho, ozp])
    return f


def gen_mul(rng, cfg):
    f = gen_copy(rng, cfg)
    n = f["in_rows"] * f["in_cols"] * f["channels"]
    s1, s2, so = _scale(rng), _scale(rng), _scale(rng) / 8  # multipliers above and below 1
    mult, shift = fp.quantize_multiplier(float(np.float32(s1) * np.float32(s2) / np.float32(so)))
    zp1, zp2, ozp = (int(v) for v in rng.integers(-128, 128, 3))
    f.update(func=VecFunc.MUL, src2_addr=_place(rng, n, cfg.act_bytes), param_addr=_place(rng, 20, cfg.param_bytes),
             act_min=int(rng.choice([-128, -30])), act_max=int(rng.choice([127, 90])),
             record=[zp1, zp2, mult, shift, ozp])
    return f


def _rescale_record(rng):
    ratio = float(np.float32(_scale(rng))) / float(np.float32(_scale(rng)))
    mult, shift = fp.quantize_multiplier(ratio)
    izp, ozp = (int(v) for v in rng.integers(-128, 128, 2))
    return [izp, mult, shift, ozp]


def gen_requant(rng, cfg):
    f = gen_copy(rng, cfg)
    f.update(func=VecFunc.REQUANT, param_addr=_place(rng, 16, cfg.param_bytes), record=_rescale_record(rng),
             act_min=int(rng.integers(-128, 0)), act_max=int(rng.integers(0, 128)))  # REQUANT clamps to them too
    return f


def gen_mean(rng, cfg, big=False):
    vl = cfg.vector_lanes
    c = _channels(rng, vl)
    ir, ic = (7, 7) if big else (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    while ir * ic * c > cfg.act_bytes:
        c = max(1, c // 2)
    return vec_fields(func=VecFunc.MEAN, src_addr=_place(rng, ir * ic * c, cfg.act_bytes),
                      dst_addr=_place(rng, c, cfg.out_bytes), param_addr=_place(rng, 16, cfg.param_bytes),
                      in_rows=ir, in_cols=ic, channels=c, out_rows=1, out_cols=1, kh=ir, kw=ic,
                      record=_rescale_record(rng))


def gen_pool(rng, cfg, func, empty=False):
    vl = cfg.vector_lanes
    c = _channels(rng, vl)
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    ir, ic = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    pt, pl = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    if empty:  # windows that miss the band entirely (pad beyond the window, outputs past the end)
        pt, pl = kh + int(rng.integers(0, 2)), int(rng.integers(0, kw + 2))
    orow = max(1, (ir + pt - kh) // sh + 1 + int(rng.integers(0, 2)) + (2 if empty else 0))
    ocol = max(1, (ic + pl - kw) // sw + 1 + int(rng.integers(0, 2)))
    while orow * ocol * c > cfg.out_bytes or ir * ic * c > cfg.act_bytes:
        c = max(1, c // 2)
        orow = max(1, orow - 1)
    lo, hi = int(rng.choice([-128, -30, 0])), int(rng.choice([127, 90]))
    return vec_fields(func=func, src_addr=_place(rng, ir * ic * c, cfg.act_bytes),
                      dst_addr=_place(rng, orow * ocol * c, cfg.out_bytes), in_rows=ir, in_cols=ic, channels=c,
                      out_rows=orow, out_cols=ocol, kh=kh, kw=kw, stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl,
                      act_min=lo, act_max=hi)


GENERATORS = {
    VecFunc.COPY: gen_copy,
    VecFunc.SPACE_TO_DEPTH: gen_s2d,
    VecFunc.ADD: gen_add,
    VecFunc.MUL: gen_mul,
    VecFunc.REQUANT: gen_requant,
    VecFunc.MEAN: gen_mean,
    VecFunc.MAX_POOL: lambda rng, cfg: gen_pool(rng, cfg, VecFunc.MAX_POOL),
    VecFunc.AVG_POOL: lambda rng, cfg: gen_pool(rng, cfg, VecFunc.AVG_POOL),
}


GROUPS = {"move": (VecFunc.COPY, VecFunc.SPACE_TO_DEPTH),
          "arith": (VecFunc.ADD, VecFunc.REQUANT, VecFunc.MEAN),
          "mul": (VecFunc.MUL, VecFunc.ADD),
          "pool": (VecFunc.MAX_POOL, VecFunc.AVG_POOL)}


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("group", list(GROUPS))
def test_random(board, group):
    """Three random instructions of each function of the group, in one run (interleaved)."""
    cfg = small_cfg(board)
    seed = 1000 * BOARDS.index(board) + list(GROUPS).index(group)
    rng = np.random.default_rng(seed)
    prog = [GENERATORS[func](rng, cfg) for _ in range(3) for func in GROUPS[group]]
    check_program(cfg, prog, seed)


@pytest.mark.parametrize("board,add_lanes", [("ulx3s-85f", 4), ("ulx3s-85f", 1), ("icebreaker", 1)])
def test_add_lanes(board, add_lanes):
    """ADD, MUL and REQUANT through fewer ResidualAdd lanes than vector_lanes (a beat in chunks)."""
    cfg = small_cfg(board)
    seed = 77 + add_lanes
    rng = np.random.default_rng(seed)
    prog = [GENERATORS[func](rng, cfg) for _ in range(3) for func in (VecFunc.ADD, VecFunc.MUL, VecFunc.REQUANT)]
    check_program(cfg, prog, seed, add_lanes)


# Table: edges the random draws may miss.
def _table(cfg):
    vl = cfg.vector_lanes
    rec = [-5, 1 << 30, -3, 7]
    return [
        # one channel; exactly vector_lanes channels; a single byte; a tensor ending at the buffer's end
        vec_fields(func=VecFunc.COPY, in_rows=1, in_cols=1, channels=1, out_rows=1, out_cols=1, dst_addr=cfg.out_bytes - 1),
        vec_fields(func=VecFunc.COPY, in_rows=2, in_cols=3, channels=vl, out_rows=3, out_cols=2,
                   src_addr=cfg.act_bytes - 6 * vl, dst_addr=3),
        # zero channels: nothing written
        vec_fields(func=VecFunc.COPY, in_rows=2, in_cols=2, channels=0, out_rows=2, out_cols=2),
        vec_fields(func=VecFunc.MAX_POOL, in_rows=2, in_cols=2, channels=0, out_rows=2, out_cols=2, kh=2, kw=2),
        # global 3x3 max / average pool as one window; 1x1 pools with stride (subsampling)
        vec_fields(func=VecFunc.MAX_POOL, in_rows=3, in_cols=3, channels=vl + 1, out_rows=1, out_cols=1, kh=3, kw=3,
                   act_min=-10, act_max=10),
        vec_fields(func=VecFunc.AVG_POOL, in_rows=3, in_cols=3, channels=vl + 1, out_rows=1, out_cols=1, kh=3, kw=3,
                   dst_addr=40),
        vec_fields(func=VecFunc.AVG_POOL, in_rows=4, in_cols=5, channels=3, out_rows=2, out_cols=3, kh=1, kw=1,
                   stride_h=2, stride_w=2),
        # ResNet50's stem pool shape in small: 3x3 stride 2, SAME padding (pad 1 before)
        vec_fields(func=VecFunc.MAX_POOL, in_rows=5, in_cols=5, channels=3, out_rows=3, out_cols=3, kh=3, kw=3,
                   stride_h=2, stride_w=2, pad_top=1, pad_left=1),
        # windows entirely in the padding / past the band
        vec_fields(func=VecFunc.MAX_POOL, in_rows=2, in_cols=2, channels=2, out_rows=4, out_cols=4, kh=2, kw=2,
                   stride_h=1, stride_w=1, pad_top=3, pad_left=3, act_min=-100, act_max=50),
        vec_fields(func=VecFunc.AVG_POOL, in_rows=2, in_cols=2, channels=2, out_rows=4, out_cols=4, kh=2, kw=2,
                   stride_h=1, stride_w=1, pad_top=3, pad_left=3, act_min=5, act_max=50, dst_addr=64),
        # MEAN over one pixel; REQUANT with a x1 multiplier
        vec_fields(func=VecFunc.MEAN, in_rows=1, in_cols=1, channels=vl + 2, record=rec, param_addr=8),
        vec_fields(func=VecFunc.REQUANT, in_rows=1, in_cols=3, channels=vl + 1, out_rows=1, out_cols=3,
                   record=rec, param_addr="end"),
        # S2D of one block
        vec_fields(func=VecFunc.SPACE_TO_DEPTH, in_rows=2, in_cols=2, channels=1, out_rows=1, out_cols=1),
    ]


@pytest.mark.parametrize("board", BOARDS)
def test_table(board):
    """The table, pools whose windows miss the band, and ResNet50's 7x7 global mean."""
    cfg = small_cfg(board)
    rng = np.random.default_rng(55)
    prog = _table(cfg)
    prog += [gen_pool(rng, cfg, f, empty=True) for f in (VecFunc.MAX_POOL, VecFunc.AVG_POOL)]
    prog += [gen_mean(rng, cfg, big=True)]
    check_program(cfg, prog, seed=7)


# ---- refusals ----------------------------------------------------------------------------------

def _errors(cfg):
    A, O, Pm = cfg.act_bytes, cfg.out_bytes, cfg.param_bytes
    R, F = EngineError.BUFFER_RANGE, EngineError.BAD_FIELD
    return [
        (R, vec_fields(func=VecFunc.COPY, src_addr=A - 5, in_rows=1, in_cols=2, channels=3, out_rows=1, out_cols=2)),
        (R, vec_fields(func=VecFunc.COPY, dst_addr=O - 5, in_rows=1, in_cols=2, channels=3, out_rows=1, out_cols=2)),
        (R, vec_fields(func=VecFunc.COPY, src_addr=A + 1, channels=0)),
        (R, vec_fields(func=VecFunc.ADD, src2_addr=A - 2, channels=3)),
        (R, vec_fields(func=VecFunc.ADD, param_addr=Pm - 35, channels=3)),
        (R, vec_fields(func=VecFunc.REQUANT, param_addr=Pm - 15, channels=3)),
        (R, vec_fields(func=VecFunc.MEAN, param_addr=Pm - 12, in_rows=2, in_cols=2, channels=3)),
        (R, vec_fields(func=VecFunc.MAX_POOL, dst_addr=O - 3, in_rows=2, in_cols=2, channels=2, out_rows=2,
                       out_cols=1, kh=2, kw=1)),
        (R, vec_fields(func=VecFunc.SPACE_TO_DEPTH, dst_addr=O - 15, in_rows=2, in_cols=2, channels=4)),
        (F, vec_fields(func=VecFunc.SPACE_TO_DEPTH, in_rows=3, in_cols=2, channels=2, out_rows=1, out_cols=1)),
        (F, vec_fields(func=VecFunc.SPACE_TO_DEPTH, in_rows=2, in_cols=4, channels=2, out_rows=1, out_cols=1)),
        (F, vec_fields(func=VecFunc.MAX_POOL, kh=0, in_rows=2, in_cols=2, channels=2)),
        (F, vec_fields(func=VecFunc.MAX_POOL, stride_w=0, in_rows=2, in_cols=2, channels=2)),
        (F, vec_fields(func=VecFunc.AVG_POOL, kw=0, in_rows=2, in_cols=2, channels=2)),
        (F, vec_fields(func=VecFunc.AVG_POOL, stride_h=0, in_rows=2, in_cols=2, channels=2)),
        (F, vec_fields(func=max(VecFunc) + 1, in_rows=2, in_cols=2, channels=2)),
        (F, vec_fields(func=15)),
        (F, vec_fields(func=VecFunc.COPY, in_rows=2, in_cols=2, channels=2, out_rows=1, out_cols=2)),
        (F, vec_fields(func=VecFunc.MEAN, in_rows=2, in_cols=2, channels=2, out_rows=2, out_cols=1)),
        (F, vec_fields(func=VecFunc.MEAN, in_rows=0, in_cols=2, channels=2)),
    ]


@pytest.mark.parametrize("board", BOARDS)
def test_refusals(board):
    """At the full buffer sizes: each case refused with its code within CHECK_CYCLES + 1 cycles,
    nothing read or written, no command taken after it (until reset); the emulator refuses it too
    (AVG_POOL with a zero kernel or stride it computes as 0 / 0: the engine refuses it)."""
    cfg = load_config(board)
    cases = _errors(cfg)
    for code, fields in cases:
        act = np.zeros(cfg.act_bytes, dtype=np.int8)
        out = np.zeros(cfg.out_bytes, dtype=np.int8)
        param = np.zeros(cfg.param_bytes, dtype=np.uint8)
        want = emulate(cfg, act, param, out, dict(fields))
        if not (code == EngineError.BAD_FIELD and fields["func"] == VecFunc.AVG_POOL):
            assert isinstance(want, Exception), f"emulator accepts {fields}"
    dut = Bare(cfg)
    vec = dut.vec
    rng = random.Random(1)

    async def bench(ctx):
        for code, fields in cases:
            ctx.set(dut.rst, 1)
            await ctx.tick()
            ctx.set(dut.rst, 0)
            ok, _ = await send(ctx, vec, vec_fields(func=VecFunc.COPY, channels=0), rng, 0)
            assert ok == 0
            got, cycles = await send(ctx, vec, fields, rng, 0.3)
            assert got == code, f"{EngineError(got).name}, want {code.name}: {fields}"
            assert cycles <= CHECK_CYCLES + 1, f"refusal took {cycles} cycles"
            for _ in range(4):
                _, _, rd, wr, pr, rdy = await ctx.tick().sample(vec.r_vec_a.en, vec.w_vec.en, vec.r_vec.en,
                                                                vec.cmd.ready)
                assert not (rd or wr or pr or rdy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


# ---- MEAN's multiplier ---------------------------------------------------------------------------

def test_mean_multiplier():
    """The divider against kernels.mean_multiplier: counts 1 .. 2**24 - 1, real multipliers, shifts
    that limit the fold (31 + shift < log2(count))."""
    rng = np.random.default_rng(12)
    cases = [(1 << 30, -1, 1), ((1 << 31) - 1, 0, 49), (0, 0, 7), (1 << 30, -28, 1 << 20),
             ((1 << 31) - 1, -31, 3), (1518500250, 5, (1 << 24) - 1)]
    for _ in range(20):
        mult, shift = fp.quantize_multiplier(float(rng.uniform(0.001, 4.0)))
        cases.append((mult, shift, int(rng.integers(1, 1 << int(rng.integers(1, 24))))))
    dut = MeanMultiplier(24)
    got = []

    async def bench(ctx):
        for mult, shift, count in cases:
            ctx.set(dut.multiplier, mult)
            ctx.set(dut.shift, shift)
            ctx.set(dut.count, count)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            n = 0
            while not ctx.get(dut.ready):
                await ctx.tick()
                n += 1
            assert n == 32
            got.append((ctx.get(dut.out_multiplier), ctx.get(dut.out_shift)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for (mult, shift, count), g in zip(cases, got):
        assert g == kernels.mean_multiplier(mult, shift, count), (mult, shift, count)


def test_constructor_messages():
    cfg = load_config("icebreaker")
    with pytest.raises(ValueError, match="vector_lanes must be a positive int"):
        VecUnit(dataclasses.replace(cfg, vector_lanes=0))
    with pytest.raises(ValueError, match="cfg.out_bytes must be a positive int"):
        VecUnit(dataclasses.replace(cfg, out_bytes=0))
    with pytest.raises(ValueError, match=r"add_lanes must be a positive divisor of vector_lanes \(2\), got 3"):
        VecUnit(cfg, add_lanes=3)
    with pytest.raises(ValueError, match="count_bits must be 1..32"):
        MeanMultiplier(0)
