"""The functional emulator's fast path: the program, decoded once, compiled into vectorized steps.

The program is data independent: which bytes each instruction reads and writes never depends on
the activations. So at load the instructions are walked once, in program order, tracking for every
byte of the on-chip buffers where its value comes from (an address on the memory port, a LOAD's
fill value, or an element of a GEMM/VEC result), and checking what ``Machine.step`` checks
(ranges, token queues, FINISH) with the same messages. The walk cuts the program into *groups*
of consecutive instructions in which no LOAD reads memory a STORE of the same group wrote; a
group then runs as: every computation (reading the memory as it was when the group began), then
every STORE in program order, which is what running its instructions one by one does.

Within a group, GEMM tiles of one geometry whose bands are consecutive windows of one padded
region of memory and whose weight blocks all meet all bands (a convolution layer tiled by rows
and output channels) run as one patch matrix, one exact GEMM against their weight blocks side by
side and one requantizer pass: the golden model's kernels, with the parameters the program's
weight image holds. STOREs of such a result whose addresses form one strided block run as one
copy. Anything else (a GEMM alone, a VEC, a STORE of scattered bytes) runs as its own step over
gathered bytes. Every shortcut is taken only after checking, byte by byte at load time, that it
reads and writes exactly what the instructions do. ``Machine``/``execute`` remain the
instruction-by-instruction reference, and the tests compare the two.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import as_strided

from onda.hw.config import EngineConfig
from onda.hw.extents import extents
from onda.hw.isa import GEMM_PARAM_WORDS, QUEUES, Buffer, Instruction, Opcode, VecFunc, unpack_weights, weight_segment
from onda.sim.golden.exact_gemm import Weights

from .functional import (EmulatorError, Machine, check_gemm, check_space_to_depth, check_store_range, gemm_epilogue,
                         gemm_patches, pop_tokens, push_tokens, vec_compute)

class PlanUnsupported(Exception):
    """A legal program the planner does not take (the caller runs ``execute`` instead); says why."""


ZERO = -129  # provenance of a byte never written: the buffers start as zeros
_GEO = ("in_cols", "channels", "out_cols", "kh", "kw", "stride_h", "stride_w", "dilation_h", "dilation_w",
        "out_zp", "act_min", "act_max", "epilogue")  # tiles batched together agree on these


def _const(v: int) -> int:
    """Provenance code of a constant byte (a LOAD's fill value), below every address."""
    return -1 - (int(v) + 128)


# -- run-time steps --------------------------------------------------------------------------------
def _gather(mem: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Bytes of ``mem`` [n, size] at provenance codes ``src`` (addresses, or constants)."""
    out = mem[:, np.maximum(src, 0)]
    const = src < 0
    if const.any():
        out[:, const] = (-1 - src[const] - 128).astype(np.int8)
    return out


@dataclass
class ActRead:
    """Source bytes of a computation: a plain slice of memory when they are one, a strided block
    of memory with constant padding around it (``PaddedRegion``) when they are that, else a gather."""

    src: np.ndarray
    start: int | None = None
    region: "PaddedRegion | None" = None

    @classmethod
    def of(cls, src: np.ndarray) -> "ActRead":
        if src.size and src[0] >= 0 and np.array_equal(src, np.arange(src[0], src[0] + src.size)):
            return cls(src, int(src[0]))
        return cls(src, region=PaddedRegion.matching(src))

    def __call__(self, mem: np.ndarray) -> np.ndarray:
        if self.start is not None:
            return mem[:, self.start:self.start + self.src.size]
        if self.region is not None:
            return self.region(mem).reshape(mem.shape[0], -1)
        return _gather(mem, self.src)


@dataclass
class PaddedRegion:
    """Rows of memory (``rows`` of ``x`` bytes, ``stride`` apart from ``addr``), padded with
    ``top``/``bottom`` rows and ``left``/``right`` bytes of ``value``: what a run of LOADs reads."""

    addr: int
    rows: int
    x: int
    stride: int
    top: int
    bottom: int
    left: int
    right: int
    value: int

    def __call__(self, mem: np.ndarray) -> np.ndarray:
        n = mem.shape[0]
        view = as_strided(mem[:, self.addr:], shape=(n, self.rows, self.x), strides=(mem.strides[0], self.stride, 1),
                          writeable=False)
        if not (self.top or self.bottom or self.left or self.right):
            return view
        out = np.full((n, self.top + self.rows + self.bottom, self.left + self.x + self.right), self.value, np.int8)
        out[:, self.top:self.top + self.rows, self.left:self.left + self.x] = view
        return out

    @classmethod
    def matching(cls, src: np.ndarray) -> "PaddedRegion | None":
        """The region whose bytes, row by row, have exactly the provenance codes ``src``, if one does."""
        data = np.flatnonzero(src >= 0)
        if data.size == 0:
            return None
        breaks = np.flatnonzero((np.diff(src[data]) != 1) | (np.diff(data) != 1))
        x = int(breaks[0] + 1) if breaks.size else int(data.size)
        rows = int(data.size // x)
        if rows * x != data.size:
            return None
        first = int(data[0])
        width = int(data[x] - data[0]) if rows > 1 else src.size  # bytes from one data row to the next
        stride = int(src[data[x]] - src[data[0]]) if rows > 1 else x
        if width < x or src.size % width:
            return None
        top, left = divmod(first, width)
        bottom = src.size // width - top - rows
        consts = src[src < 0]
        value = int(-1 - consts[0] - 128) if consts.size else 0
        if bottom < 0 or (consts.size and np.any(consts != consts[0])):
            return None
        region = cls(int(src[first]), rows, x, stride, top, bottom, left, width - left - x, value)
        return region if np.array_equal(region.codes().reshape(-1), src) else None

    def codes(self) -> np.ndarray:
        """Provenance codes of every byte, [top + rows + bottom, left + x + right]."""
        out = np.full((self.top + self.rows + self.bottom, self.left + self.x + self.right), _const(self.value),
                      np.int64)
        out[self.top:self.top + self.rows, self.left:self.left + self.x] = \
            self.addr + np.arange(self.rows)[:, None] * self.stride + np.arange(self.x)[None, :]
        return out


@dataclass
class ConvStep:
    """GEMM tiles of one geometry over consecutive bands of one padded region, all weight blocks
    side by side: one patch matrix, one exact GEMM, one requantizer pass. Output [n, rows, C]."""

    region: PaddedRegion
    row0: int
    rows_in: int
    out_rows: int
    fields: dict
    weights: Weights
    epilogue: object

    def __call__(self, mem: np.ndarray) -> np.ndarray:
        f = self.fields
        p = self.region(mem)[:, self.row0:self.row0 + self.rows_in]
        n = p.shape[0]
        bands = p.reshape(n, self.rows_in, f["in_cols"], f["channels"])
        cols = gemm_patches(bands, f, self.out_rows)
        return self.epilogue(self.weights.product(cols)).reshape(n, -1)


@dataclass
class GemmStep:
    """One GEMM instruction over gathered band bytes."""

    read: ActRead
    fields: dict
    weights: Weights
    epilogue: object

    def __call__(self, mem: np.ndarray) -> np.ndarray:
        f = self.fields
        a = self.read(mem)
        n = a.shape[0]
        cols = gemm_patches(a.reshape(n, f["in_rows"], f["in_cols"], f["channels"]), f)
        return self.epilogue(self.weights.product(cols)).reshape(n, -1)


@dataclass
class VecStep:
    read: ActRead
    read2: ActRead | None
    fields: dict
    words: np.ndarray | None

    def __call__(self, mem: np.ndarray) -> np.ndarray:
        return vec_compute(self.fields, self.read(mem), None if self.read2 is None else self.read2(mem), self.words)


@dataclass
class CopyStep:
    """Bytes a STORE takes from the ACT buffer, read before the group's stores."""

    read: ActRead

    def __call__(self, mem: np.ndarray) -> np.ndarray:
        return np.array(self.read(mem))


@dataclass
class BlockStore:
    """A step's whole result [n, rows, cols] to ``addr + r * stride + c``: one strided copy."""

    step: int
    addr: int
    rows: int
    cols: int
    stride: int

    def __call__(self, mem: np.ndarray, outs: list) -> None:
        n = mem.shape[0]
        view = as_strided(mem[:, self.addr:], shape=(n, self.rows, self.cols),
                          strides=(mem.strides[0], self.stride, 1), writeable=True)
        view[...] = outs[self.step].reshape(n, self.rows, self.cols)


class ScatterStore:
    """Bytes from results (``steps``/``offsets``; step -1: zero) to memory addresses ``dst``."""

    def __init__(self, steps: np.ndarray, offsets: np.ndarray, dst: np.ndarray):
        order = np.argsort(steps, kind="stable")
        steps, offsets, dst = steps[order], offsets[order], dst[order]
        bounds = np.flatnonzero(np.diff(steps)) + 1
        self.parts = [(int(st[0]), d, o) for st, d, o in
                      zip(np.split(steps, bounds), np.split(dst, bounds), np.split(offsets, bounds)) if st.size]

    def __call__(self, mem: np.ndarray, outs: list) -> None:
        for s, dst, off in self.parts:
            mem[:, dst] = 0 if s < 0 else outs[s][:, off]


@dataclass
class Group:
    computes: list = field(default_factory=list)
    stores: list = field(default_factory=list)
    last: int = -1  # index of the group's last instruction


class Plan:
    """The program as groups of steps; ``run(mem)`` executes it on memory [n, act_size] in place."""

    def __init__(self, groups: list[Group]):
        self.groups = groups

    def run(self, mem: np.ndarray, on_group=None) -> None:
        for g in self.groups:
            outs = [step(mem) for step in g.computes]
            for st in g.stores:
                st(mem, outs)
            if on_group is not None:
                on_group(g.last)


ELEMENTWISE = (VecFunc.COPY, VecFunc.ADD, VecFunc.MUL, VecFunc.REQUANT)  # each output element depends on its own inputs only


def _elementwise_batches(vecs: list) -> list[list]:
    """The group's VEC steps in lists that run as one: elementwise functions with the same
    parameters (function, record, clamp) together, in program order; any other VEC alone."""
    batches: dict = {}
    out = []
    for v in vecs:
        f = v[1].fields
        if VecFunc(f["func"]) not in ELEMENTWISE:
            out.append([v])
            continue
        key = (f["func"], f["act_min"], f["act_max"], None if v[1].words is None else tuple(v[1].words.tolist()))
        if key not in batches:
            batches[key] = []
            out.append(batches[key])
        batches[key].append(v)
    return out


def _merged_vec(members: list) -> VecStep:
    """One VEC step computing several elementwise VEC steps' results, concatenated."""
    steps = [st for _, st, _ in members]
    src = np.concatenate([st.read.src for st in steps])
    src2 = None if steps[0].read2 is None else np.concatenate([st.read2.src for st in steps])
    total = int(src.size)
    fields = dict(steps[0].fields, in_rows=1, in_cols=total, channels=1, out_rows=1, out_cols=total)
    return VecStep(ActRead.of(src), None if src2 is None else ActRead.of(src2), fields, steps[0].words)


# -- load-time compilation --------------------------------------------------------------------------
@dataclass
class _Load:
    region: PaddedRegion
    sram: int
    size: int


@dataclass
class _Tile:
    """A GEMM of the current group: where its band came from, its weights, its output slot."""

    fields: dict
    load: int | None  # the ACT load that wrote exactly its band, if one did
    band_src: np.ndarray | None  # its band's provenance when no single load wrote it
    wkey: int  # its weight block (weights and parameters), the same id for the same bytes
    w: np.ndarray  # int8 [ct, K]
    prm: np.ndarray  # int64 [ct, 3]
    base: int  # provisional index of its first output element


class _Builder:
    def __init__(self, cfg: EngineConfig, memmap: dict, weights: bytes, cuts: set[int]):
        self.m = Machine(cfg, memmap, weights, 0)  # for its range checks and sizes only
        self.cfg = cfg
        self.cuts = cuts
        self.wmem = self.m.wmem
        self.act_size = self.m.act_size
        self.act = np.full(cfg.act_bytes, ZERO, np.int64)
        self.act_load = np.full(cfg.act_bytes, -1, np.int64)  # which load of this group wrote each ACT byte
        self.act_seq = np.full(cfg.act_bytes, -1, np.int64)  # stores issued before that load
        self.wgt = np.full(cfg.wgt_bytes, -1, np.int64)  # weight-image offsets (-1: zero)
        self.param = np.full(cfg.param_bytes, -1, np.int64)
        self.out = np.full(cfg.out_bytes, -1, np.int64)  # provisional result indices (-1: zero)
        size = max(self.act_size, 1)
        self.seq = 0  # STOREs so far
        self.mem_group = np.full(size, -1, np.int64)  # group of the last STORE to each address
        self.mem_last = np.full(size, -1, np.int64)  # its sequence number
        self.mem_prev = np.full(size, -1, np.int64)  # the last STORE's before that group began
        self.blocks: dict[tuple, list] = {}  # weight blocks seen: cheap key -> [(id, (wprov, pprov, w, prm))]
        self.nblocks = 0
        self.i = 0
        self.tokens = dict.fromkeys(QUEUES, 0)
        self.groups: list[Group] = []
        self._new_group()

    def _new_group(self) -> None:
        self.gid = len(self.groups)
        self.groups.append(Group())
        self.loads: list[_Load] = []
        self.tiles: list[_Tile] = []
        self.vecs: list[tuple[int, object, int]] = []  # (base, step, size)
        self.stores: list[tuple[np.ndarray, np.ndarray]] = []  # (provisional sources, destinations)
        self.act_stores: list[tuple[np.ndarray, np.ndarray]] = []  # (memory sources, destinations)
        self.nprov = 0
        # a new group: every ACT byte's source is still the memory it was loaded from, but loads of
        # earlier groups are no longer this group's
        self.act_load[:] = -1

    def _const_bytes(self, prov: np.ndarray) -> np.ndarray:
        """Weight-image bytes at offsets ``prov`` (-1: zero)."""
        out = self.wmem[np.maximum(prov, 0)].copy()
        out[prov < 0] = 0
        return out

    def _record(self, e) -> np.ndarray:
        """The int32 words of a PARAM extent (``Machine.record``), from the weight image."""
        s = self.m._extent(self.m.param, e, "PARAM")
        return self._const_bytes(self.param[s]).view("<i4").astype(np.int64)

    # -- the walk ----------------------------------------------------------------------------------
    def walk(self, program: list[Instruction]) -> Plan:
        for i, ins in enumerate(program):
            self.i = i
            pop_tokens(self.tokens, ins)
            op = ins.opcode
            if op == Opcode.LOAD:
                self.load(ins.fields)
            elif op == Opcode.STORE:
                self.store(ins.fields)
            elif op == Opcode.GEMM:
                self.gemm(ins.fields)
            elif op == Opcode.VEC:
                self.vec(ins.fields)
            push_tokens(self.tokens, ins)
            if op == Opcode.FINISH:
                self._finish_group(i)
                return Plan([g for g in self.groups if g.computes or g.stores or g.last >= 0])
            if i in self.cuts:
                self._finish_group(i)
                self._new_group()
        raise EmulatorError("program ended without FINISH")

    def load(self, f: dict) -> None:
        y, x, stride, addr = f["y_size"], f["x_size"], f["dram_stride"], f["dram_addr"]
        pt, pb, pl, pr = f["pad_top"], f["pad_bottom"], f["pad_left"], f["pad_right"]
        buf = f["buffer"]
        if buf == Buffer.OUT:
            raise EmulatorError("LOAD into OUT: a LOAD writes ACT, WGT or PARAM")
        sram = extents(Opcode.LOAD, f, self.cfg.lanes, self.cfg.width)["sram"]
        if addr >= self.m.wbase:
            off = addr - self.m.wbase
            self.m._check_range("LOAD from weight image", off, y, x, stride, self.wmem.size)
            if buf in (Buffer.WGT, Buffer.PARAM):
                if pt or pb or pl or pr:
                    codes = PaddedRegion(off, y, x, stride, pt, pb, pl, pr, 0).codes()
                    codes[codes < 0] = -1  # fill of weights: only zero fills are meaningful here
                    if f["pad_value"]:
                        raise PlanUnsupported("LOAD into WGT/PARAM with a non-zero fill")
                else:
                    codes = (off + np.arange(y)[:, None] * stride + np.arange(x)[None, :]) if y else \
                        np.zeros((0, x), np.int64)
                target = self.wgt if buf == Buffer.WGT else self.param
                s = self.m._extent(target, sram, f"LOAD {sram.resource}")
                target[s] = codes.reshape(-1)
                return
            raise PlanUnsupported("LOAD of weight-image bytes into ACT/OUT")
        self.m._check_range("LOAD from activations", addr, y, x, stride, self.act_size)
        if buf in (Buffer.PARAM, Buffer.WGT):
            raise EmulatorError(f"LOAD into {sram.resource} must read the weight image")
        if y and x:
            rows = as_strided(self.mem_group[addr:], shape=(y, x), strides=(stride * 8, 8))
            if (rows == self.gid).any():  # reads what this group stored: start a new group
                self._finish_group(self.i - 1)
                self._new_group()
        region = PaddedRegion(addr, y, x, stride, pt, pb, pl, pr, f["pad_value"])
        codes = region.codes().reshape(-1)
        s = self.m._extent(self.act, sram, "LOAD ACT")
        self.act[s] = codes
        self.act_load[s] = len(self.loads)
        self.act_seq[s] = self.seq
        self.loads.append(_Load(region, f["sram_addr"], codes.size))

    def store(self, f: dict) -> None:
        y, x, stride, addr = f["y_size"], f["x_size"], f["dram_stride"], f["dram_addr"]
        if f["buffer"] not in (Buffer.OUT, Buffer.ACT):
            raise EmulatorError("STORE reads the OUT or ACT buffer")
        buf = self.out if f["buffer"] == Buffer.OUT else self.act
        s = self.m._extent(buf, extents(Opcode.STORE, f, self.cfg.lanes, self.cfg.width)["sram"], "STORE")
        check_store_range(addr, y, x, stride, self.act_size)
        if not y:
            return
        dst = (addr + np.arange(y)[:, None] * stride + np.arange(x)[None, :]).reshape(-1)
        if f["buffer"] == Buffer.OUT:
            self.stores.append((self.out[s].copy(), dst))
        else:
            self._check_fresh(s)
            self.act_stores.append((self.act[s].copy(), dst))
            self.stores.append((None, dst))  # placeholder: keeps program order
        self.seq += 1
        fresh = self.mem_group[dst] != self.gid
        self.mem_prev[dst[fresh]] = self.mem_last[dst[fresh]]
        self.mem_last[dst] = self.seq
        self.mem_group[dst] = self.gid

    def _check_fresh(self, s: slice) -> None:
        """ACT bytes are read from memory when the group starts: refuse bytes whose memory a STORE
        changed between their LOAD and this group's start (the engine would still hold the old ones)."""
        if (self.act_load[s] >= 0).all():  # all loaded in this group, after it began
            return
        codes = self.act[s]
        addr = codes[codes >= 0]
        if not addr.size:
            return
        before = np.where(self.mem_group[addr] == self.gid, self.mem_prev[addr], self.mem_last[addr])
        if (before > self.act_seq[s][codes >= 0]).any():
            raise PlanUnsupported("ACT bytes used after a STORE overwrote the memory they were loaded from")

    def gemm(self, f: dict) -> None:
        check_gemm(f)
        if f["acc_in"] or f["acc_out"]:
            raise PlanUnsupported("a GEMM split over K (partial sums in ACC)")
        lanes = self.cfg.lanes
        e = extents(Opcode.GEMM, f, lanes, self.cfg.width)
        ct, k = f["out_channels"], f["kh"] * f["kw"] * f["channels"]
        seg = weight_segment(f["kw"], f["channels"], f["dilation_w"])
        sa = self.m._extent(self.act, e["act"], "GEMM act")
        if f["wgt_addr"] % (lanes * self.cfg.width):
            raise EmulatorError(f"GEMM: wgt_addr {f['wgt_addr']} is not a multiple of lanes * width "
                                f"({lanes * self.cfg.width})")
        sw = self.m._extent(self.wgt, e["wgt"], "GEMM wgt")
        wprov = np.ascontiguousarray(unpack_weights(self.wgt[sw], ct, k, lanes, self.cfg.width, seg)).reshape(-1)  # [ct, k] provenance
        sp = self.m._extent(self.m.param, e["param"], "PARAM")
        pprov = self.param[sp]
        so = self.m._extent(self.out, e["out"], "GEMM out")
        lid = self.act_load[sa]
        load = None
        if lid.size and lid[0] >= 0 and self.loads[int(lid[0])].size == lid.size and \
                self.loads[int(lid[0])].sram == sa.start and (lid == lid[0]).all():
            load = int(lid[0])
        else:
            self._check_fresh(sa)
        # weight blocks are constants: resolve each once (keyed cheaply, confirmed byte by byte)
        wkey = (ct, k, int(wprov[0]) if wprov.size else -1, int(wprov[-1]) if wprov.size else -1,
                int(pprov[0]), int(pprov[-1]))
        for bid, (wp, pp, w, prm) in self.blocks.get(wkey, ()):
            if np.array_equal(wp, wprov) and np.array_equal(pp, pprov):
                break
        else:
            w = self._const_bytes(wprov).view(np.int8).reshape(ct, k)
            prm = self._const_bytes(pprov).view("<i4").astype(np.int64).reshape(ct, GEMM_PARAM_WORDS)
            bid = self.nblocks
            self.nblocks += 1
            self.blocks.setdefault(wkey, []).append((bid, (wprov.copy(), pprov.copy(), w, prm)))
        wkey = bid
        band = None if load is not None else self.act[sa].copy()
        tile = _Tile(dict(f), load, band, wkey, w, prm, self.nprov)
        self.out[so] = self.nprov + np.arange(e["out"].size)
        self.nprov += e["out"].size
        self.tiles.append(tile)

    def vec(self, f: dict) -> None:
        func = VecFunc(f["func"])
        e = extents(Opcode.VEC, f, self.cfg.lanes, self.cfg.width)
        s1 = self.m._extent(self.act, e["src"], "VEC src")
        self._check_fresh(s1)
        src = self.act[s1].copy()
        src2 = None
        if "src2" in e:
            s2 = self.m._extent(self.act, e["src2"], "VEC src2")
            self._check_fresh(s2)
            src2 = self.act[s2].copy()
        words = self._record(e["param"]) if "param" in e else None
        if func == VecFunc.SPACE_TO_DEPTH:
            check_space_to_depth(f)
        size_out = e["dst"].size
        so = self.m._extent(self.out, e["dst"], "VEC dst")
        step = VecStep(ActRead.of(src), None if src2 is None else ActRead.of(src2), dict(f), words)
        self.vecs.append((self.nprov, step, size_out))
        self.out[so] = self.nprov + np.arange(size_out)
        self.nprov += size_out

    # -- closing a group: batch the tiles, place the results, plan the stores ----------------------
    def _finish_group(self, last: int) -> None:
        g = self.groups[-1]
        g.last = last
        step_of = np.full(self.nprov, -1, np.int64)  # provisional index -> (step, offset)
        off_of = np.zeros(self.nprov, np.int64)
        shapes: list[tuple[int, int]] = []  # per step: (rows, cols) of its result

        def add_step(step, rows: int, cols: int) -> int:
            g.computes.append(step)
            shapes.append((rows, cols))
            return len(g.computes) - 1

        for tiles in self._batches():
            placed = self._conv_batch(tiles)
            if placed is None:
                by_rows = defaultdict(list)  # a short last band may be what broke the batch
                for t in tiles:
                    by_rows[(t.fields["in_rows"], t.fields["out_rows"])].append(t)
                if len(by_rows) > 1:
                    self._pending_batches.extend(by_rows.values())
                    continue
                for t in tiles:
                    f = t.fields
                    m = f["out_rows"] * f["out_cols"]
                    band = t.band_src if t.band_src is not None else self.loads[t.load].region.codes().reshape(-1)
                    step = GemmStep(ActRead.of(band), f, Weights(t.w.T),
                                    gemm_epilogue(t.prm, f))
                    sid = add_step(step, m, f["out_channels"])
                    n_out = m * f["out_channels"]
                    step_of[t.base:t.base + n_out] = sid
                    off_of[t.base:t.base + n_out] = np.arange(n_out)
                continue
            step, rows, cols, layout = placed
            sid = add_step(step, rows, cols)
            for t, (r0, c0) in layout:
                f = t.fields
                m, ct = f["out_rows"] * f["out_cols"], f["out_channels"]
                idx = ((r0 + np.arange(m))[:, None] * cols + c0 + np.arange(ct)[None, :]).reshape(-1)
                step_of[t.base:t.base + m * ct] = sid
                off_of[t.base:t.base + m * ct] = idx
        for members in _elementwise_batches(self.vecs):
            step = members[0][1] if len(members) == 1 else _merged_vec(members)
            sid = add_step(step, 1, sum(size for _, _, size in members))
            off = 0
            for base, _, size in members:
                step_of[base:base + size] = sid
                off_of[base:base + size] = off + np.arange(size)
                off += size
        act_stores = iter(self.act_stores)
        planned = []  # (steps, offsets, dst) per STORE, program order
        for src, dst in self.stores:
            if src is None:
                asrc, adst = next(act_stores)
                sid = add_step(CopyStep(ActRead.of(asrc)), 1, asrc.size)
                planned.append((np.full(adst.size, sid), np.arange(adst.size), adst))
                continue
            steps = np.where(src >= 0, step_of[np.maximum(src, 0)], -1)
            offs = np.where(src >= 0, off_of[np.maximum(src, 0)], 0)
            planned.append((steps, offs, dst))
        g.stores = self._plan_stores(planned, shapes)

    def _batches(self):
        """Tiles of one geometry (band heights may differ), then any sub-batches split off."""
        by_key: dict[tuple, list[_Tile]] = defaultdict(list)
        for t in self.tiles:
            by_key[tuple(t.fields[k] for k in _GEO)].append(t)
        self._pending_batches = list(by_key.values())
        while self._pending_batches:
            yield self._pending_batches.pop(0)

    def _conv_batch(self, tiles: list[_Tile]):
        """One ConvStep for ``tiles`` if their bands are consecutive windows of one padded region and
        every band meets every weight block; ``None`` otherwise."""
        if any(t.load is None for t in tiles):
            return None
        f = tiles[0].fields
        loads = sorted({t.load for t in tiles})
        regions = [self.loads[i].region for i in loads]
        r0 = regions[0]
        if any((r.x, r.stride, r.left, r.right, r.value) != (r0.x, r0.stride, r0.left, r0.right, r0.value)
               for r in regions):
            return None
        if any((r.addr - r0.addr) % r0.stride for r in regions):
            return None
        rows_of = [(r.addr - r0.addr) // r0.stride for r in regions]  # first data row of each band
        lo = min(rows_of)
        hi = max(row + r.rows for row, r in zip(rows_of, regions))
        top, bottom = max(r.top for r in regions), max(r.bottom for r in regions)
        region = PaddedRegion(r0.addr + lo * r0.stride, hi - lo, r0.x, r0.stride, top, bottom, r0.left, r0.right,
                              r0.value)
        if r0.left + r0.x + r0.right != f["in_cols"] * f["channels"]:
            return None
        starts = [top - r.top + row - lo for row, r in zip(rows_of, regions)]
        codes = region.codes()
        for s, r in zip(starts, regions):  # the band each load wrote is exactly that window of the region
            ir = r.top + r.rows + r.bottom
            if s < 0 or s + ir > codes.shape[0] or not np.array_equal(codes[s:s + ir], r.codes()):
                return None
        uniq = sorted(set(starts))  # a band loaded again (weight-resident order) is the same band
        band_of = {lid: uniq.index(st) for lid, st in zip(loads, starts)}
        sh, ekh = f["stride_h"], (f["kh"] - 1) * f["dilation_h"] + 1
        orows = [None] * len(uniq)
        for t in tiles:  # every tile of a band has the band's height, and reads all of the band
            b = band_of[t.load]
            tf = t.fields
            if orows[b] not in (None, tf["out_rows"]) or tf["in_rows"] != (tf["out_rows"] - 1) * sh + ekh:
                return None
            orows[b] = tf["out_rows"]
        if any(b - a != o * sh for a, b, o in zip(uniq, uniq[1:], orows)):  # consecutive windows
            return None
        row0 = np.cumsum([0] + orows)  # first output row of each band
        blocks: dict[tuple, int] = {}
        for t in tiles:
            blocks.setdefault(t.wkey, len(blocks))
        pairs = {(band_of[t.load], blocks[t.wkey]) for t in tiles}
        if len(pairs) != len(uniq) * len(blocks):
            return None
        starts = uniq
        first = {}
        for t in tiles:
            first.setdefault(t.wkey, t)
        wlist = [first[k] for k in blocks]
        col0 = np.cumsum([0] + [t.w.shape[0] for t in wlist])
        w_all = np.concatenate([t.w for t in wlist])
        prm_all = np.concatenate([t.prm for t in wlist])
        ocol, total = f["out_cols"], int(row0[-1])
        rows_in = (total - 1) * sh + ekh
        step = ConvStep(region, starts[0], rows_in, total, dict(f),
                        Weights(w_all.T), gemm_epilogue(prm_all, f))
        layout = [(t, (int(row0[band_of[t.load]]) * ocol, int(col0[blocks[t.wkey]]))) for t in tiles]
        return step, total * ocol, int(col0[-1]), layout

    def _plan_stores(self, planned, shapes) -> list:
        if not planned:
            return []
        all_dst = np.concatenate([d for _, _, d in planned])
        if np.bincount(all_dst).max() > 1:  # an address stored twice: keep program order
            return [ScatterStore(s, o, d) for s, o, d in planned]
        steps = np.concatenate([s for s, _, _ in planned])
        offs = np.concatenate([o for _, o, _ in planned])
        out = []
        rest = np.ones(all_dst.size, bool)
        for sid in np.flatnonzero(np.bincount(steps[steps >= 0])) if (steps >= 0).any() else ():
            sel = steps == sid
            rows, cols = shapes[sid]
            if sel.sum() != rows * cols:
                continue
            dst_of = np.full(rows * cols, -1, np.int64)
            dst_of[offs[sel]] = all_dst[sel]
            d = dst_of.reshape(rows, cols)
            if (d < 0).any():
                continue
            stride = int(d[1, 0] - d[0, 0]) if rows > 1 else cols
            want = d[0, 0] + np.arange(rows)[:, None] * stride + np.arange(cols)[None, :]
            if stride < cols or not np.array_equal(d, want):
                continue
            out.append(BlockStore(int(sid), int(d[0, 0]), rows, cols, stride))
            rest &= ~sel
        if rest.any():
            out.append(ScatterStore(steps[rest], offs[rest], all_dst[rest]))
        return out


def build_plan(program: list[Instruction], cfg: EngineConfig, memmap: dict, weights: bytes,
               cuts: set[int] | None = None) -> Plan:
    """Compile ``program`` into a Plan, raising ``EmulatorError`` as ``execute`` would for a program
    that breaks the engine's rules; ``cuts``: instruction indices after which memory must be as
    the instructions leave it (layer ends, to read intermediate tensors)."""
    return _Builder(cfg, memmap, weights, set(cuts or ())).walk(program)
