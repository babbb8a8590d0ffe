"""GemmUnit against the functional emulator's ``Machine.gemm``: table-driven and random GEMM
instructions on the real engine buffers (``hw/engine/buffers.py``), both epilogues, both board
configurations; OUT compared byte for byte (around the tile too: nothing else written), cycles
compared with ``cycles.gemm_cycles``, refused instructions checked for their error code."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from onda.hw import isa
from onda.hw.config import load_config
from onda.hw.engine.buffers import act_buffer, out_buffer, param_buffer, wgt_buffer
from onda.hw.engine.errors import EngineError
from onda.hw.engine.gemm_unit import GemmUnit, gemm_unit_cycles
from onda.hw.isa import Epilogue, Opcode
from onda.sim.emulator.functional import EmulatorError, Machine
from onda.sim.golden import fixedpoint as fp

CONFIGS = ("icebreaker", "ulx3s-85f")
MARGIN = 24  # OUT bytes checked on either side of the tile (nothing may be written there)
# What the RTL takes for a GEMM, command taken to done: gemm_unit.gemm_unit_cycles,
#     (N - 1) * max(beats, d) + beats + FILL
# for N = pixels * groups dot products of `beats` beats, d = EngineConfig.drain_cycles (the last dot
# product's drain is in the fill); with the serial requantizer (iCEBreaker) rounded up to its grid
# of 7 cycles from the instruction's start. The tests hold every case to it exactly.


@dataclass
class Case:
    fields: dict
    seed: int


class Bench:
    """A GemmUnit on the engine's ACT, WGT, PARAM and OUT buffers, with a NumPy mirror of the
    buffers' contents that the emulator runs on."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.dut = GemmUnit(cfg)
        self.bufs = {"act": act_buffer(cfg), "wgt": wgt_buffer(cfg), "param": param_buffer(cfg),
                     "out": out_buffer(cfg)}
        m = Module()
        m.submodules.gemm = self.dut
        for name, buf in self.bufs.items():
            m.submodules[name] = buf
        wiring.connect(m, self.dut.act_r, self.bufs["act"].r_gemm)
        wiring.connect(m, self.dut.wgt_r, self.bufs["wgt"].r_gemm)
        wiring.connect(m, self.dut.param_r, self.bufs["param"].r_gemm)
        wiring.connect(m, self.dut.out_w, self.bufs["out"].w_gemm)
        self.top = m
        self.mirror = {name: np.zeros(getattr(cfg, f"{name}_bytes"), dtype=np.uint8) for name in (*self.bufs, "acc")}

    def emulate(self, fields: dict) -> np.ndarray | None:
        """OUT after ``Machine.gemm`` on the mirror (None: the emulator refuses the instruction)."""
        mach = Machine(self.cfg, {"act_size": 0, "weights_base": 0}, b"", 1)
        mach.act[0] = self.mirror["act"].view(np.int8)
        mach.wgt[:] = self.mirror["wgt"].view(np.int8)
        mach.param[:] = self.mirror["param"]
        mach.out[0] = self.mirror["out"].view(np.int8)
        mach.acc[0] = self.mirror["acc"]
        try:
            mach.gemm(isa.make(Opcode.GEMM, **fields))
        except EmulatorError:
            return None
        self.mirror["acc"][:] = mach.acc[0]  # the partial sums a later pass starts from
        return mach.out[0].view(np.uint8).copy()


def _region(size: int, lo: int, hi: int) -> tuple[int, int]:
    return max(0, lo), min(size, hi)


def fill_case(bench: Bench, fields: dict, rng: np.random.Generator) -> list[tuple[str, int, bytes]]:
    """Random ACT / WGT / OUT bytes over the instruction's extents and sane PARAM records (valid
    multipliers and shifts, layer-like double scales); returns the pokes, applied to the mirror."""
    cfg = bench.cfg
    f = fields
    c, ct = f["channels"], f["out_channels"]
    k = f["kh"] * f["kw"] * c
    pokes = []

    def put(name, addr, data: bytes):
        lo, hi = _region(len(bench.mirror[name]), addr, addr + len(data))
        if hi > lo:
            data = data[lo - addr:hi - addr]
            bench.mirror[name][lo:hi] = np.frombuffer(data, dtype=np.uint8)
            pokes.append((name, lo, data))

    put("act", f["act_addr"], rng.integers(0, 256, f["in_rows"] * f["in_cols"] * c + cfg.width).astype(np.uint8).tobytes())
    put("wgt", f["wgt_addr"], rng.integers(0, 256, isa.weight_bytes(ct, isa.gemm_stored_k(f, cfg.width), cfg.lanes)
                                           + cfg.lanes * cfg.width)
        .astype(np.uint8).tobytes())
    groups = isa.weight_groups(ct, cfg.lanes)
    n = groups * cfg.lanes  # records of the padding lanes too (their outputs are dropped)
    # Scales that keep most outputs inside int8: acc ~ sqrt(K) * 128 * 64.
    real = np.exp(rng.uniform(np.log(0.05), np.log(4.0), n)) / max(1.0, np.sqrt(k) * 128 * 64 / 128)
    bias = rng.integers(-2**14, 2**14, n)
    if f["epilogue"] == Epilogue.DOUBLE:
        sbits = real.astype("<f8").view("<u8").astype(np.uint64)
        words = np.stack([bias.astype(np.int64) & 0xFFFFFFFF, sbits & 0xFFFFFFFF, sbits >> 32], axis=1)
    else:
        mult, shift = fp.quantize_multiplier_array(real)
        words = np.stack([bias, mult, shift], axis=1).astype(np.int64) & 0xFFFFFFFF
    put("param", f["param_addr"], words.astype("<u4").tobytes())
    out_ext = f["out_rows"] * f["out_cols"] * ct
    put("out", f["out_addr"] - MARGIN, rng.integers(0, 256, out_ext + 2 * MARGIN).astype(np.uint8).tobytes())
    return pokes


def run_cases(cfg_name: str, cases: list[Case], idle: float = 0.5, max_cycles: int = 200_000):
    """Run the cases one after another in one simulation; returns, per case,
    (rtl OUT window, emulator OUT window or None, cycles or None, error code)."""
    cfg = load_config(cfg_name)
    bench = Bench(cfg)
    dut = bench.dut
    results = []

    async def bench_proc(ctx):
        for case in cases:
            rng = np.random.default_rng(case.seed)
            stall = random.Random(case.seed)
            pokes = fill_case(bench, case.fields, rng)
            for name, addr, data in pokes:
                bench.bufs[name].sim_poke(ctx, addr, data)
            want = bench.emulate(case.fields)
            while stall.random() < idle:  # the command arrives after a random gap
                await ctx.tick()
            ctx.set(dut.cmd.valid, 1)
            # the instruction's body bits as the ISA encodes them (above the 8-bit header)
            word = int.from_bytes(isa.encode(isa.make(Opcode.GEMM, **case.fields)), "little") >> isa.HEADER_BITS
            ctx.set(dut.cmd.payload.as_value(), word & ((1 << isa.field_bits(Opcode.GEMM)) - 1))
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            t = 0
            took = None
            while t < max_cycles:
                _, _, done, err = await ctx.tick().sample(dut.done, dut.error)
                t += 1
                if done:
                    took = t
                    break
                if err != EngineError.NONE and t > 64:
                    break
            err = ctx.get(dut.error)
            f = case.fields
            lo, hi = _region(cfg.out_bytes, f["out_addr"] - MARGIN,
                             f["out_addr"] + f["out_rows"] * f["out_cols"] * f["out_channels"] + MARGIN)
            got = np.frombuffer(bench.bufs["out"].sim_peek(ctx, lo, hi - lo), dtype=np.uint8)
            before = bench.mirror["out"][lo:hi].copy()
            results.append((got, None if want is None else want[lo:hi], took, err, before))
            if want is not None:
                bench.mirror["out"][:] = want
            if err != EngineError.NONE:
                for _ in range(8):  # sticky: no more commands
                    _, _, ready = await ctx.tick().sample(dut.cmd.ready)
                    assert not ready
                return

    sim = Simulator(bench.top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench_proc)
    sim.run()
    return cfg, results


def gemm(**kw) -> dict:
    base = dict(act_addr=0, wgt_addr=0, param_addr=0, out_addr=0, in_rows=1, in_cols=1, channels=1, out_rows=1,
                out_cols=1, out_channels=1, kh=1, kw=1, stride_h=1, stride_w=1, dilation_h=1, dilation_w=1,
                out_zp=0, act_min=-128, act_max=127, epilogue=Epilogue.FIXED, acc_addr=0, acc_in=0, acc_out=0)
    base.update(kw)
    return base


def random_fields(cfg, rng: np.random.Generator, small: bool = True) -> dict:
    lanes, width = cfg.lanes, cfg.width
    kh, kw = (int(v) for v in rng.integers(1, 6 if not small else 4, 2))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    dh, dw = (int(v) for v in rng.integers(1, 4, 2))
    if rng.random() < 0.5:
        dh = dw = 1
    c = int(rng.integers(1, 2 * width + 4 if small else width + 2))
    ct = int(rng.integers(1, 2 * lanes + 4)) if lanes <= 4 else int(rng.choice([1, 5, lanes, lanes + 3, 2 * lanes - 1]))
    orow, ocol = int(rng.integers(1, 3)), int(rng.integers(1, 4 if small else 3))
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    ir = (orow - 1) * sh + ekh + int(rng.integers(0, 2))
    ic = (ocol - 1) * sw + ekw + int(rng.integers(0, 2))
    act_ext = ir * ic * c
    wgt_ext = isa.weight_bytes(ct, isa.gemm_stored_k(dict(kh=kh, kw=kw, channels=c, dilation_w=dw), width), lanes)
    out_ext, par_ext = orow * ocol * ct, ct * 12
    return gemm(
        act_addr=int(rng.integers(0, cfg.act_bytes - act_ext + 1)) if rng.random() < 0.8 else cfg.act_bytes - act_ext,
        wgt_addr=int(rng.integers(0, (cfg.wgt_bytes - wgt_ext) // cfg.macs + 1)) * cfg.macs,
        param_addr=int(rng.integers(0, cfg.param_bytes - par_ext + 1)),
        out_addr=int(rng.integers(MARGIN, cfg.out_bytes - out_ext - MARGIN + 1)),
        in_rows=ir, in_cols=ic, channels=c, out_rows=orow, out_cols=ocol, out_channels=ct,
        kh=kh, kw=kw, stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
        out_zp=int(rng.integers(-128, 128)),
        act_min=int(rng.choice([-128, int(rng.integers(-128, 0))])), act_max=int(rng.choice([127, int(rng.integers(0, 128))])),
        epilogue=Epilogue(int(rng.integers(0, 2))), acc_addr=0, acc_in=0, acc_out=0)


def passes(cfg, rng: np.random.Generator, n: int) -> list[dict]:
    """``n`` passes over K of one output tile: random kernels and channel slices (each pass its own
    band and weights) around one output geometry, partial sums at a random place in ACC."""
    first = random_fields(cfg, rng)
    ct, orow, ocol = first["out_channels"], first["out_rows"], first["out_cols"]
    words = isa.acc_bytes(ct, orow * ocol, cfg.lanes)
    acc_addr = int(rng.integers(0, (cfg.acc_bytes - words) // (cfg.lanes * 4) + 1)) * cfg.lanes * 4
    out = []
    for p in range(n):
        f = first if p == 0 else None
        while f is None:
            f = random_fields(cfg, rng)
            if f["out_rows"] * f["out_cols"] >= orow * ocol:  # enough band for the tile
                f = {**f, "out_rows": orow, "out_cols": ocol, "out_channels": ct,
                     "wgt_addr": min(f["wgt_addr"], (cfg.wgt_bytes - isa.weight_bytes(
                         ct, isa.gemm_stored_k(f, cfg.width), cfg.lanes)) // cfg.macs * cfg.macs),
                     "param_addr": min(f["param_addr"], cfg.param_bytes - ct * 12)}
                if f["wgt_addr"] < 0 or (f["out_rows"] - 1) * f["stride_h"] + (f["kh"] - 1) * f["dilation_h"] + 1 \
                        > f["in_rows"] or (f["out_cols"] - 1) * f["stride_w"] + (f["kw"] - 1) * f["dilation_w"] + 1 \
                        > f["in_cols"]:
                    f = None
            else:
                f = None
        out.append({**f, "out_addr": first["out_addr"], "epilogue": first["epilogue"], "out_zp": first["out_zp"],
                    "act_min": first["act_min"], "act_max": first["act_max"], "acc_addr": acc_addr,
                    "acc_in": int(p > 0), "acc_out": int(p < n - 1)})
    return out


def check_results(cfg, cases, results, bubble: int = 0):
    """OUT equal to the emulator's, done, and the cycle count ``gemm_unit_cycles`` exactly (up to
    ``bubble`` more where the caller expects one). Returns each case's cycles over the formula's."""
    extra = []
    assert len(results) == len(cases)
    for case, (got, want, took, err, _) in zip(cases, results):
        assert want is not None, f"emulator refused a valid case {case.fields}"
        assert err == EngineError.NONE, (case.fields, err)
        assert took is not None, f"no done for {case.fields}"
        bad = np.nonzero(got != want)[0]
        assert bad.size == 0, (f"{bad.size} OUT bytes differ for {case.fields}: first at window offset "
                               f"{bad[0]}: rtl {got[bad[0]]}, emulator {want[bad[0]]}")
        expected = gemm_unit_cycles(cfg, case.fields)
        assert expected <= took <= expected + bubble, f"took {took} cycles, gemm_unit_cycles {expected}: {case.fields}"
        extra.append(took - expected)
    return extra


TABLE = [
    gemm(),  # one 1x1 pixel, one channel
    gemm(channels=3, out_channels=5, in_rows=3, in_cols=3, kh=3, kw=3, act_addr=7, out_addr=40, param_addr=5),
    gemm(channels=2, out_channels=4, in_rows=5, in_cols=5, out_rows=2, out_cols=2, kh=2, kw=2, stride_h=2, stride_w=3,
         wgt_addr=256, epilogue=Epilogue.DOUBLE, out_zp=-3, act_min=-3),  # ReLU-like clamp
    gemm(channels=5, out_channels=3, in_rows=5, in_cols=8, out_rows=1, out_cols=2, kh=3, kw=3, dilation_h=2,
         dilation_w=3, out_addr=100),  # dilated: one segment per tap
    gemm(channels=17, out_channels=9, out_addr=33, epilogue=Epilogue.DOUBLE),  # fully connected, K not a multiple
]


@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_table(cfg_name):
    cases = [Case(f, 100 + n) for n, f in enumerate(TABLE)]
    cfg, results = run_cases(cfg_name, cases)
    fills = check_results(cfg, cases, results)
    print(cfg_name, "cycles over the formula", fills)


@pytest.mark.parametrize("cfg_name,seed", [(c, s) for c in CONFIGS for s in (1, 2, 3)])
def test_random(cfg_name, seed):
    """Random geometry: channels and out_channels not multiples of width / lanes, strides and
    dilations 1-3, kernels 1-3 (seed 3: 1-5), both epilogues, tiles ending at a buffer's end."""
    cfg = load_config(cfg_name)
    rng = np.random.default_rng(seed)
    cases = [Case(random_fields(cfg, rng, small=seed != 3), seed * 1000 + n) for n in range(6)]
    cfg, results = run_cases(cfg_name, cases)
    fills = check_results(cfg, cases, results)
    print(cfg_name, "cycles over the formula", fills)


@pytest.mark.parametrize("cfg_name,seed", [(c, s) for c in CONFIGS for s in (4, 5)])
def test_passes_over_k(cfg_name, seed):
    """A GEMM split over K: two and three passes of random kernels and channel slices into one
    output tile, partial sums through ACC (``acc_out``, ``acc_in``), the last pass's OUT equal to
    the emulator's, the earlier passes writing nothing to OUT; cycles the formula's (``acc_out``:
    a lane a cycle, ``acc_fill_cycles``)."""
    cfg = load_config(cfg_name)
    rng = np.random.default_rng(seed)
    fields = passes(cfg, rng, 2) + passes(cfg, rng, 3)
    cases = [Case(f, seed * 100 + n) for n, f in enumerate(fields)]
    cfg, results = run_cases(cfg_name, cases)
    # as test_many_groups: a single-pixel tile of three or more lane groups may wait once for the
    # third group's parameters
    fills = check_results(cfg, cases, results, bubble={"icebreaker": 8, "ulx3s-85f": 9}[cfg_name])
    print(cfg_name, "cycles over the formula", fills)


BASE = gemm(channels=3, out_channels=5, in_rows=4, in_cols=4, out_rows=2, out_cols=2, kh=3, kw=3, act_addr=8,
            wgt_addr=16, param_addr=24, out_addr=64)
ERRORS = [  # (changes to BASE, error): Machine.gemm refuses each; the first failing check names the code
    (dict(kh=0), EngineError.BAD_FIELD),
    (dict(stride_w=0), EngineError.BAD_FIELD),
    (dict(dilation_h=0), EngineError.BAD_FIELD),
    (dict(out_rows=3), EngineError.BAD_FIELD),  # the tile reads beyond the band
    (dict(dilation_w=2), EngineError.BAD_FIELD),  # ... through a dilated kernel
    (dict(act_addr=6144 - 47), EngineError.BUFFER_RANGE),
    (dict(wgt_addr=2), EngineError.BAD_FIELD),  # not a multiple of lanes
    (dict(wgt_addr=4), EngineError.BAD_FIELD),  # a multiple of lanes (4), not of lanes * width (8)
    (dict(wgt_addr=5120 - 2 * 4 * 30 + 8), EngineError.BUFFER_RANGE),  # 2 groups x K' 30 (3 rows of 9 -> 10) x 4
    (dict(param_addr=1024 - 59), EngineError.BUFFER_RANGE),
    (dict(epilogue=2), EngineError.BAD_FIELD),
    (dict(epilogue=3, act_addr=6144), EngineError.BUFFER_RANGE),  # the act check comes first
    (dict(out_addr=2048 - 19), EngineError.BUFFER_RANGE),
    (dict(kh=0, out_addr=2048), EngineError.BAD_FIELD),
    (dict(acc_out=1, acc_addr=8), EngineError.BAD_FIELD),  # ACC words not lane-vector aligned
    (dict(acc_in=1, acc_addr=1024 - 112), EngineError.BUFFER_RANGE),  # 2 groups x 4 pixels x 16 B from 912
    (dict(acc_out=1, out_addr=2048, acc_addr=1024), EngineError.BUFFER_RANGE),  # OUT unused, ACC checked
]


@pytest.mark.parametrize("changes,code", ERRORS)
def test_refused(changes, code):
    """Refused before anything is written: the error code, no done, OUT untouched, no more commands."""
    fields = {**BASE, **changes}
    cases = [Case(fields, 7)]
    cfg, results = run_cases("icebreaker", cases, idle=0.0, max_cycles=200)
    (got, want, took, err, before), = results
    assert want is None, "the emulator executes what the RTL must refuse"
    assert err == code and took is None
    assert np.array_equal(got, before)


def test_sequence_and_edges():
    """Instructions back to back (state restarts), a zero-pixel tile (nothing written, done), the
    tile ending on the last bytes of ACT and OUT."""
    cfg = load_config("icebreaker")
    cases = [Case(gemm(channels=3, out_channels=6, in_rows=3, in_cols=4, out_rows=1, out_cols=2, kh=3, kw=3,
                       act_addr=cfg.act_bytes - 36, out_addr=cfg.out_bytes - 12 - MARGIN), 1),
             Case(gemm(out_rows=0, out_addr=500), 2),
             Case(gemm(channels=9, out_channels=7, epilogue=Epilogue.DOUBLE, wgt_addr=cfg.wgt_bytes - 2 * 10 * 4,
                       param_addr=cfg.param_bytes - 84), 3)]
    cfg, results = run_cases("icebreaker", cases)
    check_results(cfg, cases, results)


@pytest.mark.parametrize("cfg_name", CONFIGS)
def test_many_groups(cfg_name):
    """Four lane groups (parameters reloaded into a bank three times while the other computes),
    one and two pixels. A single-pixel tile with dot products of about drain_cycles beats can
    wait once for its third group's parameters (bank 0 is free only once the first group has been
    sent to the requantizer): at most 9 cycles measured on the ULX3S build, 8 on the iCEBreaker's."""
    cfg = load_config(cfg_name)
    lanes, width, d = cfg.lanes, cfg.width, cfg.drain_cycles
    cases = [Case(gemm(channels=b * width - 1, out_channels=4 * lanes - 1, in_rows=1, in_cols=px, out_cols=px,
                       out_addr=64, epilogue=Epilogue(px - 1)), 40 + px * b)
             for px in (1, 2) for b in (1, d, 2 * d)]
    cfg, results = run_cases(cfg_name, cases)
    check_results(cfg, cases, results, bubble={"icebreaker": 8, "ulx3s-85f": 9}[cfg_name])


def test_configurations_the_rtl_cannot_build_are_refused():
    import dataclasses

    from onda.hw.config import ConfigError

    cfg = load_config("ulx3s-85f")
    with pytest.raises(ConfigError, match="lanes must be a power of two"):
        dataclasses.replace(cfg, lanes=12).validate()
    with pytest.raises(ConfigError, match=r"weight slot \(98306 B\) must be a multiple of lanes x width \(128\)"):
        dataclasses.replace(cfg, wgt_bytes=cfg.wgt_bytes + 4).validate()
    with pytest.raises(ValueError, match="GemmUnit: lanes must be a power of two"):
        GemmUnit(dataclasses.replace(cfg, lanes=12))
