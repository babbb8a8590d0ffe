"""Functional ISA emulation: executes program bytes on a model of the engine's memories, bit-exact.

The state is the engine's: the memory port's address space (activations per image, the weight
image shared) and the on-chip ACT, WGT, PARAM and OUT buffers. A batch of N images runs the same
program in one pass: every activation memory and buffer carries a leading batch axis, so each
instruction is one vectorized NumPy operation over its whole tile (no per-MAC or per-pixel
loops). The arithmetic is the golden model's (``sim/golden``): exact int8 GEMM, TFLite's
requantizer, ADD, MUL, pools and MEAN, called with the parameters the program's records hold.

Instructions execute in program order, which the compiler guarantees is a legal serialization of
the decoupled load / compute / store modules; the token counters are checked as they go.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from onda.hw.config import EngineConfig
from onda.hw.extents import Extent, extents, row_span, vec_out_size
from onda.hw.isa import (GEMM_PARAM_WORDS, QUEUES, TOKEN_QUEUES, Buffer, Epilogue, Instruction, Opcode, VecFunc,
                         unpack_weights, weight_segment)
from onda.sim.golden import fixedpoint as fp
from onda.sim.golden import kernels as K
from onda.sim.golden.exact_gemm import Weights, operand_dtype
from onda.sim.golden.layout import space_to_depth
from onda.sim.golden.params import AddParams, MulParams, RequantParams


class EmulatorError(RuntimeError):
    """The program did something the engine cannot: out-of-range access, token underflow, bad op."""


def pop_tokens(tokens: dict[str, int], ins: Instruction) -> None:
    """The pops of ``ins`` on the token counts ``tokens`` (``isa.TOKEN_QUEUES``), as it starts."""
    for flag, q in zip(("pop_prev", "pop_next"), TOKEN_QUEUES[ins.module][:2]):
        if getattr(ins, flag):
            if q is None or tokens[q] == 0:
                raise EmulatorError(f"{ins.opcode.name}: pops an empty {q} token queue (dependency error)")
            tokens[q] -= 1


def push_tokens(tokens: dict[str, int], ins: Instruction) -> None:
    """The pushes of ``ins``, as it completes."""
    for flag, q in zip(("push_prev", "push_next"), TOKEN_QUEUES[ins.module][2:]):
        if getattr(ins, flag):
            if q is None:
                raise EmulatorError(f"{ins.opcode.name}: pushes a token to no module")
            tokens[q] += 1


class Machine:
    """Engine state for a batch of ``n`` images."""

    def __init__(self, cfg: EngineConfig, memmap: dict, weights: bytes, n: int):
        self.cfg = cfg
        self.n = n
        self.act_size = int(memmap["act_size"])
        self.wbase = int(memmap["weights_base"])
        self.act_mem = np.zeros((n, max(self.act_size, 1)), dtype=np.int8)
        self.wmem = np.frombuffer(weights, dtype=np.int8)
        self.act = np.zeros((n, cfg.act_bytes), dtype=np.int8)
        self.wgt = np.zeros(cfg.wgt_bytes, dtype=np.int8)
        self.param = np.zeros(cfg.param_bytes, dtype=np.uint8)
        self.out = np.zeros((n, cfg.out_bytes), dtype=np.int8)
        self.acc = np.zeros((n, cfg.acc_bytes), dtype=np.uint8)  # int32 words, little-endian
        self.tokens = dict.fromkeys(QUEUES, 0)
        self.finished = False

    # -- memory port ---------------------------------------------------------------------------
    def _check_range(self, what: str, addr: int, y: int, x: int, stride: int, limit: int) -> None:
        """A LOAD's rows (``extents``' ``dram``: checked only when it moves bytes) within [0, limit)."""
        span = row_span(y, x, stride)
        if y and x and (addr < 0 or addr + span > limit):
            raise EmulatorError(f"{what}: [{addr}, {addr + span}) outside [0, {limit})")

    def read_memory(self, addr: int, y: int, x: int, stride: int) -> np.ndarray:
        """[n, y, x] from the activation region, or [y, x] from the weight image."""
        if addr >= self.wbase:
            off = addr - self.wbase
            self._check_range("LOAD from weight image", off, y, x, stride, self.wmem.size)
            if y == 0:
                return np.zeros((0, x), dtype=np.int8)
            return as_strided(self.wmem[off:], shape=(y, x), strides=(stride, 1), writeable=False)
        self._check_range("LOAD from activations", addr, y, x, stride, self.act_size)
        if y == 0:
            return np.zeros((self.n, 0, x), dtype=np.int8)
        base = self.act_mem[:, addr:]
        return as_strided(base, shape=(self.n, y, x), strides=(self.act_mem.strides[0], stride, 1),
                          writeable=False)

    def write_memory(self, addr: int, y: int, x: int, stride: int, data: np.ndarray) -> None:
        check_store_range(addr, y, x, stride, self.act_size)
        if stride == x:
            self.act_mem[:, addr:addr + y * x] = data.reshape(self.n, y * x)
            return
        view = as_strided(self.act_mem[:, addr:], shape=(self.n, y, x),
                          strides=(self.act_mem.strides[0], stride, 1), writeable=True)
        view[...] = data.reshape(self.n, y, x)

    # -- buffers -------------------------------------------------------------------------------
    def _buf(self, which: int):
        return {Buffer.ACT: self.act, Buffer.WGT: self.wgt, Buffer.PARAM: self.param, Buffer.OUT: self.out}[which]

    def _span(self, buf: np.ndarray, addr: int, size: int, name: str) -> slice:
        limit = buf.shape[-1]
        if addr < 0 or addr + size > limit:
            raise EmulatorError(f"{name}: buffer access [{addr}, {addr + size}) outside [0, {limit})")
        return slice(addr, addr + size)

    def _extent(self, buf: np.ndarray, e: Extent, name: str) -> slice:
        return self._span(buf, e.lo, e.size, name)

    def record(self, e: Extent) -> np.ndarray:
        """The int32 words of a PARAM extent, as int64."""
        return self.param[self._extent(self.param, e, "PARAM")].view("<i4").astype(np.int64)

    # -- execution -----------------------------------------------------------------------------
    def step(self, ins: Instruction) -> None:
        pop_tokens(self.tokens, ins)
        op = ins.opcode
        if op == Opcode.LOAD:
            self.load(ins)
        elif op == Opcode.STORE:
            self.store(ins)
        elif op == Opcode.GEMM:
            self.gemm(ins)
        elif op == Opcode.VEC:
            self.vec(ins)
        elif op == Opcode.FINISH:
            self.finished = True
        push_tokens(self.tokens, ins)

    def load(self, ins: Instruction) -> None:
        f = ins.fields
        y, x = f["y_size"], f["x_size"]
        if f["buffer"] == Buffer.OUT:
            raise EmulatorError("LOAD into OUT: a LOAD writes ACT, WGT or PARAM")
        data = self.read_memory(f["dram_addr"], y, x, f["dram_stride"])
        pt, pb, pl, pr = f["pad_top"], f["pad_bottom"], f["pad_left"], f["pad_right"]
        if pt or pb or pl or pr:
            pads = ((pt, pb), (pl, pr))
            if data.ndim == 3:
                pads = ((0, 0),) + pads
            data = np.pad(data, pads, constant_values=f["pad_value"])
        buf = self._buf(f["buffer"])
        sram = extents(Opcode.LOAD, f, self.cfg.lanes, self.cfg.width)["sram"]
        if f["buffer"] in (Buffer.PARAM, Buffer.WGT):
            if data.ndim == 3:
                raise EmulatorError(f"LOAD into {sram.resource} must read the weight image")
            s = self._extent(buf, sram, f"LOAD {sram.resource}")
            buf[s] = data.reshape(-1).view(buf.dtype)
            return
        s = self._extent(buf, sram, f"LOAD {sram.resource}")
        buf[:, s] = data.reshape(data.shape[0], sram.size) if data.ndim == 3 else data.reshape(1, sram.size)

    def store(self, ins: Instruction) -> None:
        f = ins.fields
        y, x = f["y_size"], f["x_size"]
        if f["buffer"] not in (Buffer.OUT, Buffer.ACT):
            raise EmulatorError("STORE reads the OUT or ACT buffer")
        buf = self._buf(f["buffer"])
        s = self._extent(buf, extents(Opcode.STORE, f, self.cfg.lanes, self.cfg.width)["sram"], "STORE")
        data = buf[:, s]
        if data.dtype != np.int8:
            data = data.astype(np.int8)
        self.write_memory(f["dram_addr"], y, x, f["dram_stride"], data)

    def gemm(self, ins: Instruction) -> None:
        f = ins.fields
        n, lanes = self.n, self.cfg.lanes
        check_gemm(f)
        e = extents(Opcode.GEMM, f, lanes, self.cfg.width)
        ct, k = f["out_channels"], f["kh"] * f["kw"] * f["channels"]
        seg = weight_segment(f["kw"], f["channels"], f["dilation_w"])
        a = self.act[:, self._extent(self.act, e["act"], "GEMM act")].reshape(n, f["in_rows"], f["in_cols"],
                                                                               f["channels"])
        if f["wgt_addr"] % (lanes * self.cfg.width):
            raise EmulatorError(f"GEMM: wgt_addr {f['wgt_addr']} is not a multiple of lanes * width "
                                f"({lanes * self.cfg.width})")
        w = unpack_weights(self.wgt[self._extent(self.wgt, e["wgt"], "GEMM wgt")], ct, k, lanes, self.cfg.width, seg)
        prm = self.record(e["param"]).reshape(ct, GEMM_PARAM_WORDS)
        so = self._extent(self.out, e["out"], "GEMM out") if "out" in e else None
        acc = None
        if "acc" in e:
            if f["acc_addr"] % (lanes * 4):
                raise EmulatorError(f"GEMM: acc_addr {f['acc_addr']} is not a multiple of lanes * 4 ({lanes * 4})")
            acc = self.acc[:, self._extent(self.acc, e["acc"], "GEMM acc")]
        cols = gemm_patches(a, f)
        sums = np.asarray(Weights(w.T).product(cols)).astype(np.int64).reshape(n, -1, ct)
        if f["acc_in"]:
            sums += acc_unpack(acc, ct, lanes)
        else:
            sums += prm[:, 0]
        if f["acc_out"]:
            acc[...] = acc_pack(sums, lanes)
            return
        y = gemm_epilogue(prm, f, with_bias=False)(sums.reshape(-1, ct))
        self.out[:, so] = y.reshape(n, -1)

    def vec(self, ins: Instruction) -> None:
        f = ins.fields
        VecFunc(f["func"])  # an unknown function is refused first
        e = extents(Opcode.VEC, f, self.cfg.lanes, self.cfg.width)
        x = self.act[:, self._extent(self.act, e["src"], "VEC src")]
        x2 = self.act[:, self._extent(self.act, e["src2"], "VEC src2")] if "src2" in e else None
        words = self.record(e["param"]) if "param" in e else None
        y = vec_compute(f, x, x2, words)
        self.out[:, self._extent(self.out, e["dst"], "VEC dst")] = y


def check_gemm(f: dict) -> None:
    """A GEMM's data-independent checks: kernel, stride and dilation, and the tile within its band."""
    kh, kw, sh, sw, dh, dw = f["kh"], f["kw"], f["stride_h"], f["stride_w"], f["dilation_h"], f["dilation_w"]
    if min(kh, kw, sh, sw, dh, dw) < 1:
        raise EmulatorError("GEMM: kernel, stride and dilation must be >= 1")
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if (f["out_rows"] - 1) * sh + ekh > f["in_rows"] or (f["out_cols"] - 1) * sw + ekw > f["in_cols"]:
        raise EmulatorError("GEMM: output tile reads beyond the input band")
    if f["epilogue"] not in (Epilogue.FIXED, Epilogue.DOUBLE):
        raise EmulatorError(f"GEMM: unknown epilogue {f['epilogue']}")


def gemm_patches(bands: np.ndarray, f: dict, out_rows: int | None = None) -> np.ndarray:
    """The patch matrix [n * rows * out_cols, kh * kw * C] of int8 bands [n, rows', in_cols, C] read
    through a GEMM's kernel window (the band holds its padding: no more is added), in the GEMM's
    operand type (``exact_gemm.operand_dtype``)."""
    oh = f["out_rows"] if out_rows is None else out_rows
    return K.patch_matrix(bands, f["kh"], f["kw"], (f["stride_h"], f["stride_w"]),
                          (f["dilation_h"], f["dilation_w"]), (0, 0), oh, f["out_cols"], 0,
                          operand_dtype(f["kh"] * f["kw"] * bands.shape[-1]))


def acc_unpack(acc: np.ndarray, ct: int, lanes: int) -> np.ndarray:
    """ACC's ``[groups, pixels, lanes]`` int32 bytes [n, size] as sums [n, pixels, ct] (int64)."""
    n = acc.shape[0]
    groups = -(-ct // lanes)
    v = acc.view("<i4").astype(np.int64).reshape(n, groups, -1, lanes)
    return v.transpose(0, 2, 1, 3).reshape(n, v.shape[2], groups * lanes)[:, :, :ct]


def acc_pack(sums: np.ndarray, lanes: int) -> np.ndarray:
    """Sums [n, pixels, ct] as ACC's ``[groups, pixels, lanes]`` int32 bytes [n, size]: the lanes past
    ``ct`` of the last group hold 0, each sum wraps to int32 as the engine's adders do."""
    n, pixels, ct = sums.shape
    groups = -(-ct // lanes)
    full = np.zeros((n, pixels, groups * lanes), dtype=np.int64)
    full[:, :, :ct] = sums
    words = full.reshape(n, pixels, groups, lanes).transpose(0, 2, 1, 3).astype(np.int32).astype("<i4")
    return np.ascontiguousarray(words).reshape(n, -1).view(np.uint8)


def gemm_epilogue(prm: np.ndarray, f: dict, with_bias: bool = True):
    """The requantizer of a GEMM's parameter records [C, 3] (bias, then the epilogue's two words):
    a function from exact accumulators [M, C] (without bias, or with it when ``with_bias`` is
    False: they started from the bias or from ACC) to int8 [M, C]."""
    bias = prm[:, 0].astype(np.int64) if with_bias else np.zeros(len(prm), dtype=np.int64)
    if f["epilogue"] == Epilogue.FIXED:
        r = fp.Requantizer(prm[:, 1], prm[:, 2], f["out_zp"], f["act_min"], f["act_max"])
        return lambda acc: r(acc, bias)
    scale = ((prm[:, 1] & 0xFFFFFFFF) | (prm[:, 2] << 32)).astype(np.int64).view(np.float64)
    return lambda acc: fp.requantize_double(np.asarray(acc).astype(np.int64) + bias, scale, f["out_zp"], f["act_min"],
                                            f["act_max"])


def check_space_to_depth(f: dict) -> None:
    """A SPACE_TO_DEPTH takes whole 2x2 blocks: ``[2R, 2C] -> [R, C]``."""
    ir, ic = f["in_rows"], f["in_cols"]
    if ir % 2 or ic % 2 or f["out_rows"] * 2 != ir or f["out_cols"] * 2 != ic:
        raise EmulatorError("VEC SPACE_TO_DEPTH: needs even input rows/columns and half-size output")


def check_store_range(addr: int, y: int, x: int, stride: int, act_size: int) -> None:
    """A STORE's rows (``extents``' ``dram``: checked whenever it has rows) within the activation
    region [0, act_size)."""
    if y and (addr < 0 or addr + row_span(y, x, stride) > act_size):
        raise EmulatorError(f"STORE to [{addr}, {addr + row_span(y, x, stride)}): outside the activation "
                            f"region [0, {act_size})")


def vec_compute(f: dict, x: np.ndarray, x2: np.ndarray | None, words: np.ndarray | None) -> np.ndarray:
    """A VEC instruction's result [n, out elements] from its source tile(s) [n, in elements] and its
    parameter record: the golden model's kernels with the record's parameters."""
    n = x.shape[0]
    func = VecFunc(f["func"])
    ir, ic, c = f["in_rows"], f["in_cols"], f["channels"]
    lo, hi = f["act_min"], f["act_max"]
    if func == VecFunc.COPY:
        y = x.astype(np.int8)
    elif func == VecFunc.SPACE_TO_DEPTH:
        check_space_to_depth(f)
        y = space_to_depth(x.reshape(n, ir, ic, c)).astype(np.int8)  # a copy: never a view of the source
    elif func == VecFunc.ADD:
        zp1, zp2, m1, s1, m2, s2, mo, so, ozp = (int(v) for v in words)
        p = AddParams(zp1, zp2, (m1, s1, m2, s2, mo, so), ozp, lo, hi)
        y = K.add(np.asarray(x, dtype=np.int8), np.asarray(x2, dtype=np.int8), p)  # a fresh result: no copies
    elif func == VecFunc.MUL:
        zp1, zp2, m, s, ozp = (int(v) for v in words)
        y = K.mul(np.asarray(x, dtype=np.int8), np.asarray(x2, dtype=np.int8), MulParams(zp1, zp2, m, s, ozp, lo, hi))
    elif func == VecFunc.REQUANT:
        izp, m, s, ozp = (int(v) for v in words)
        y = K.requantize_tensor(x.astype(np.int64), RequantParams(izp, m, s, ozp), lo, hi)
    elif func in (VecFunc.MAX_POOL, VecFunc.AVG_POOL):
        y = _pool(func, x.reshape(n, ir, ic, c), f)
    elif func == VecFunc.MEAN:
        izp, m, s, ozp = (int(v) for v in words)
        y = K.mean(x.reshape(n, ir, ic, c).astype(np.int64), (1, 2), False, RequantParams(izp, m, s, ozp))
    else:
        raise EmulatorError(f"VEC: function {func.name} not implemented")
    y = y.reshape(n, -1)
    if y.shape[1] != vec_out_size(f):
        raise EmulatorError(f"VEC {func.name}: produced {y.shape[1]} elements, tile says {vec_out_size(f)}")
    return y


def _pool(func: VecFunc, x: np.ndarray, f: dict) -> np.ndarray:
    """Pooling over a band with ``pad_top``/``pad_left`` virtual padding; taps outside the band
    are excluded (max: never win; average: not counted): the golden model's reference kernels
    with the instruction's geometry."""
    kh, kw, sh, sw = f["kh"], f["kw"], f["stride_h"], f["stride_w"]
    if min(kh, kw, sh, sw) < 1:  # as the engine refuses it (BAD_FIELD)
        raise EmulatorError(f"VEC {func.name}: kernel and stride must be >= 1")
    pool = K.max_pool_explicit if func == VecFunc.MAX_POOL else K.average_pool_explicit
    return pool(np.asarray(x, dtype=np.int8), (kh, kw), (sh, sw), (f["pad_top"], f["pad_left"]), f["out_rows"],
                f["out_cols"], f["act_min"], f["act_max"])


def execute(machine: Machine, program: list[Instruction], on_instruction=None) -> None:
    """Run ``program`` to FINISH; ``on_instruction(index)`` is called after each instruction."""
    for i, ins in enumerate(program):
        machine.step(ins)
        if on_instruction is not None:
            on_instruction(i)
        if machine.finished:
            return
    raise EmulatorError("program ended without FINISH")
