"""CONV_2D and FULLY_CONNECTED -> GEMM tiles.

A layer is a grid of output bands (``rows`` output rows) by weight blocks (``channels`` output
channels, a multiple of ``lanes``), in the order ``conv_tiling.choose_tiling`` found cheaper:
bands outer (each band's activations loaded once) or blocks outer (each block's weights loaded
once, the next block's streamed in during this one). The weight image holds the layer's ``[Cout,
K]`` int8 matrix lane-interleaved (``isa.pack_weights``) and one record per channel: the folded
bias ``bias - x_zp * sum(w)`` (so the MAC array multiplies raw int8 activations and the padding
the DMA fills with ``x_zp`` contributes nothing), then the epilogue's two words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onda.hw import isa
from onda.hw.isa import GEMM_PARAM_WORDS, Buffer, Epilogue, Opcode
from onda.sim.golden import kernels as K
from onda.sim.golden import params as P
from onda.sim.golden.layout import space_to_depth_kernel
from onda.sim.ir import Op, OpKind, Padding

from .conv_tiling import ConvGeometry, ConvTiling, choose_tiling
from .emitter import Emitter, hwc, op_name, pixel_span
from .errors import CompileError
from .program import Tile


@dataclass
class GemmLayer:
    describe: str
    macs: int
    est_cycles: int  # the tiling's estimate (hides the next layer's first weights)


def lower_gemm(em: Emitter, op: Op, prev_est: int) -> GemmLayer:
    g, cfg = em.g, em.cfg
    p = P.gemm_params(g, op)
    if p.weight_zero_point != 0:
        raise CompileError(f"{op_name(op)}: weight zero point {p.weight_zero_point} (the engine takes "
                           f"symmetric int8 weights)")
    geo, wmat_src = _geometry(em, op, p)
    if max(geo.kh, geo.kw, geo.sh, geo.sw, geo.dh, geo.dw) > 15:
        raise CompileError(f"{op_name(op)}: kernel/stride/dilation above 15 not encodable")
    tiling = choose_tiling(cfg, geo, op_name(op), prev_est)
    cout, kdim = geo.cout, geo.k
    wmat = np.ascontiguousarray(wmat_src.reshape(cout, kdim)).astype(np.int8)
    bias = K.folded_bias(p.bias, p.in_zero_point, wmat)
    if np.any(np.abs(bias) >= 2**31):
        raise CompileError(f"{op_name(op)}: folded bias overflows int32")
    if op.kind == OpKind.FULLY_CONNECTED:
        # LiteRT's reference FULLY_CONNECTED scales in double: carry the IEEE bits per channel.
        epilogue = Epilogue.DOUBLE
        bits = np.asarray(p.double_scale, dtype="<f8").view("<i8")
        prm = np.stack([bias, bits & 0xFFFFFFFF, (bits >> 32) & 0xFFFFFFFF], axis=1).astype("<u8")
        prm = prm.astype("<u4").view("<i4")
    else:
        epilogue = Epilogue.FIXED
        prm = np.stack([bias, p.multiplier, p.shift], axis=1).astype("<i4")
    gemm = dict(in_cols=geo.in_cols, channels=geo.c, out_cols=geo.ow, kh=geo.kh, kw=geo.kw, stride_h=geo.sh,
                stride_w=geo.sw, dilation_h=geo.dh, dilation_w=geo.dw, out_zp=p.out_zero_point, act_min=p.act_min,
                act_max=p.act_max, epilogue=epilogue)
    if tiling.split:
        w4 = wmat.reshape(cout, geo.kh, geo.kw, geo.c)
        cs = tiling.slice or geo.c
        # one lane-interleaved matrix per pass: the pass's input channels of every tap
        waddrs = [em.weight_data(isa.pack_weights(w4[..., k0:k0 + cs].reshape(cout, -1), cfg.lanes, cfg.width,
                                                  isa.weight_segment(geo.kw, min(cs, geo.c - k0), geo.dw)))
                  for k0 in range(0, geo.c, cs)]
        paddr = em.weight_data(prm.tobytes())
        _SplitTiles(em, geo, tiling, waddrs, paddr, op.inputs[0], op.outputs[0], p.in_zero_point, gemm).emit()
    else:
        waddr = em.weight_data(isa.pack_weights(wmat, cfg.lanes, cfg.width,  # lane-interleaved (hw/ISA.md, WGT)
                                                isa.weight_segment(geo.kw, geo.c, geo.dw)))
        paddr = em.weight_data(prm.tobytes())
        _Tiles(em, geo, tiling, waddr, paddr, op.inputs[0], op.outputs[0], p.in_zero_point, gemm).emit()
    out = g.tensor(op.outputs[0])
    macs = int(np.prod(out.shape[1:])) * int(np.prod(p.weights.shape[1:]))
    desc = tiling.describe() + (", space-to-depth" if op.inputs[0] in em.mem.s2d else "")
    return GemmLayer(desc, macs, tiling.est_cycles)


def _geometry(em: Emitter, op: Op, p: P.GemmParams) -> tuple[ConvGeometry, np.ndarray]:
    """The GEMM's geometry on the engine, and the weights in the order it reads them."""
    g = em.g
    x, out = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
    cout = p.weights.shape[0]
    if op.kind == OpKind.CONV_2D and op.inputs[0] in em.mem.s2d:
        h, w, c = em.mem.s2d[op.inputs[0]]
        wmat = space_to_depth_kernel(p.weights)
        _, kh, kw, _ = wmat.shape
        oh, ow = out.shape[1:3]
        return ConvGeometry(h, w, c, oh, ow, cout, kh, kw, 1, 1, 1, 1, 0, 0), wmat
    if op.kind == OpKind.CONV_2D:
        a = op.attrs
        h, w, c = hwc(x.shape)
        _, kh, kw, _ = p.weights.shape
        (sh, sw), (dh, dw) = a.stride, a.dilation
        oh = P.conv_output_size(h, kh, sh, dh, a.padding)
        ow = P.conv_output_size(w, kw, sw, dw, a.padding)
        pt = P.same_padding(h, kh, sh, dh, a.padding)[0] if a.padding == Padding.SAME else 0
        pl = P.same_padding(w, kw, sw, dw, a.padding)[0] if a.padding == Padding.SAME else 0
        return ConvGeometry(h, w, c, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl), p.weights
    kdim = int(np.prod(p.weights.shape[1:]))
    if em.mem.nbytes(op.inputs[0]) != kdim:
        raise CompileError(f"{op_name(op)}: batched fully-connected input {list(x.shape)} not supported")
    return ConvGeometry(1, 1, kdim, 1, 1, cout, 1, 1, 1, 1, 1, 1, 0, 0), p.weights


class _Tiles:
    """The layer's tiles in the tiling's order: which band is in ACT, which weight block in which
    slot, and the next block's weight pieces still to issue."""

    def __init__(self, em: Emitter, geo: ConvGeometry, tiling: ConvTiling, waddr: int, paddr: int,
                 x: int, out: int, pad_value: int, gemm: dict):
        self.em, self.cfg, self.geo, self.tiling = em, em.cfg, geo, tiling
        self.waddr, self.paddr, self.x = waddr, paddr, x
        self.xaddr, self.oaddr = em.mem.dram(x), em.mem.dram(out)
        self.ostride = em.mem.pixel_stride(out)  # cout, or a concatenation's channels for a slice of it
        self.pad_value = pad_value
        self.gemm = gemm  # the fields every GEMM of the layer shares
        self.nt, self.nb = math.ceil(geo.oh / tiling.rows), math.ceil(geo.cout / tiling.channels)
        self.band = None  # the band in ACT
        self.aslot = 1  # the ACT slot it is in
        self.tiles = 0  # tiles emitted (the OUT slot alternates)
        self.wslot_of: dict[int, int] = {}  # weight block -> the slot it was loaded into
        self.pending: list[isa.Instruction] = []  # the next block's weight pieces still to issue

    def emit(self) -> None:
        if self.tiling.order == "act":
            for t in range(self.nt):
                for b in range(self.nb):
                    self._tile(t, b)
        else:
            for b in range(self.nb):
                for t in range(self.nt):
                    self._tile(t, b, b + 1 if t == 1 and b + 1 < self.nb else None)

    def _load_act(self, t: int) -> isa.Instruction:
        geo, th = self.geo, self.tiling.rows
        oy0 = t * th
        rows = min(th, geo.oh - oy0)
        p0 = oy0 * geo.sh - geo.pad_top
        p1 = p0 + geo.band_rows(rows)
        r0, r1 = max(0, p0), min(geo.h, p1)
        row_bytes = geo.w * geo.c
        self.aslot ^= 1
        if self.em.mem.is_view(self.x):  # a channel slice: whole pixels (VALID: no padding to add)
            assert r0 == p0 and r1 == p1 and geo.pad_left == geo.pad_right == 0
            return isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=self.aslot * self.cfg.slot("act"),
                            **pixel_span(self.em.mem, self.x, r0 * geo.w, (r1 - r0) * geo.w))
        return isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=self.aslot * self.cfg.slot("act"),
                        dram_addr=self.xaddr + r0 * row_bytes, y_size=r1 - r0, x_size=row_bytes,
                        dram_stride=row_bytes, pad_top=r0 - p0, pad_bottom=p1 - r1,
                        pad_left=geo.pad_left * geo.c, pad_right=geo.pad_right * geo.c, pad_value=self.pad_value)

    def _load_wgt(self, b: int, pieces: int = 1) -> list[isa.Instruction]:
        """Block b's weights (in ``pieces`` DMAs of whole lane groups) and parameters, into the next slot."""
        cfg, geo, ct = self.cfg, self.geo, self.tiling.channels
        co0 = b * ct  # a multiple of lanes: so is the block's offset in the lane-interleaved image
        n = min(ct, geo.cout - co0)
        slot = self.em.next_weight_slot()
        out = []
        groups = isa.weight_groups(n, cfg.lanes)
        wk = geo.wk(cfg.width)
        group_bytes = wk * cfg.lanes
        step = -(-groups // pieces)
        for g0 in range(0, groups, step):
            size = min(step, groups - g0) * group_bytes
            out.append(isa.make(Opcode.LOAD, buffer=Buffer.WGT, sram_addr=slot * cfg.slot("wgt") + g0 * group_bytes,
                                dram_addr=self.waddr + co0 * wk + g0 * group_bytes, y_size=1, x_size=size,
                                dram_stride=size))
        prm_bytes = n * GEMM_PARAM_WORDS * 4
        out.append(isa.make(Opcode.LOAD, buffer=Buffer.PARAM, sram_addr=slot * cfg.slot("param"),
                            dram_addr=self.paddr + co0 * GEMM_PARAM_WORDS * 4, y_size=1, x_size=prm_bytes,
                            dram_stride=prm_bytes))
        return out

    def _resident(self, blk: int, pieces: int = 1) -> list[isa.Instruction]:
        ins = self._load_wgt(blk, pieces)
        for other in [k for k, v in self.wslot_of.items() if v == self.em.wslot]:
            del self.wslot_of[other]  # evicted: its slot was just overwritten
        self.wslot_of[blk] = self.em.wslot
        return ins

    def _tile(self, t: int, b: int, prefetch: int | None = None) -> None:
        cfg, geo, th, ct = self.cfg, self.geo, self.tiling.rows, self.tiling.channels
        tile = Tile()
        if self.band != t:
            tile.loads.append(self._load_act(t))
            self.band = t
        if b not in self.wslot_of:
            tile.loads += self._resident(b)
        if prefetch is not None and prefetch not in self.wslot_of:
            # Weight-resident order: block b+1 streams in during block b, one piece per tile after
            # the first (its slot was last read by block b-1's final tile, which the slot rule of
            # this tile's first load waits for).
            self.pending.extend(self._resident(prefetch, max(1, self.nt - 1)))
        if self.pending:
            share = -(-len(self.pending) // max(1, self.nt - t))
            tile.tail += self.pending[:share]
            del self.pending[:share]
        ws = self.wslot_of[b]
        oy0, co0 = t * th, b * ct
        rows, n = min(th, geo.oh - oy0), min(ct, geo.cout - co0)
        oslot = self.tiles % 2
        self.tiles += 1
        tile.computes.append(isa.make(
            Opcode.GEMM, **{**self.gemm, "act_addr": self.aslot * cfg.slot("act"), "wgt_addr": ws * cfg.slot("wgt"),
                            "param_addr": ws * cfg.slot("param"), "out_addr": oslot * cfg.slot("out"),
                            "in_rows": geo.band_rows(rows), "out_rows": rows, "out_channels": n}))
        tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=oslot * cfg.slot("out"),
                                    dram_addr=self.oaddr + oy0 * geo.ow * self.ostride + co0, y_size=rows * geo.ow,
                                    x_size=n, dram_stride=self.ostride))
        self.em.prog.tile(tile)


class _SplitTiles:
    """A split layer's tiles (``conv_tiling.split_tiling``): bands outer, then column tiles, weight
    blocks and passes over K. Each pass is a tile of the token protocol: its band slice and weight
    slice loaded into the next slots, one GEMM (partial sums into ACC but for the last pass, which
    requantizes them into OUT), and the last pass's stores."""

    def __init__(self, em: Emitter, geo: ConvGeometry, tiling: ConvTiling, waddrs: list[int], paddr: int,
                 x: int, out: int, pad_value: int, gemm: dict):
        self.em, self.cfg, self.geo, self.tiling = em, em.cfg, geo, tiling
        self.waddrs, self.paddr, self.x, self.out = waddrs, paddr, x, out
        self.xaddr, self.oaddr = em.mem.dram(x), em.mem.dram(out)
        # the input's bytes per pixel of the geometry: its channels (4C stored space-to-depth, K for a
        # fully-connected layer), or a view's container's
        self.xstride = em.mem.pixel_stride(x) if em.mem.is_view(x) else geo.c
        self.ostride = em.mem.pixel_stride(out)
        self.pad_value, self.gemm = pad_value, gemm
        self.cs = tiling.slice or geo.c
        self.tc = tiling.cols or geo.ow
        self.band = None  # (band, column tile) whose all-channel band is in ACT (one pass only)
        self.aslot = 1
        self.tiles = 0
        self.resident: tuple[int, int] | None = None  # (block, pass) whose weights the current slot holds

    def emit(self) -> None:
        geo, t = self.geo, self.tiling
        for oy0 in range(0, geo.oh, t.rows):
            for ox0 in range(0, geo.ow, self.tc):
                for co0 in range(0, geo.cout, t.channels):
                    for k0 in range(0, geo.c, self.cs):
                        self._tile(oy0, ox0, co0, k0)

    def _band_loads(self, oy0: int, ox0: int, rows: int, cols: int, k0: int, cs: int) -> tuple[list, int]:
        """LOADs of the padded band of output rows ``oy0 ..`` and columns ``ox0 ..``, channels
        ``k0 .. k0 + cs``, into the next ACT slot; and the band's columns."""
        geo, cfg = self.geo, self.cfg
        p0 = oy0 * geo.sh - geo.pad_top
        p1 = p0 + geo.band_rows(rows)
        q0 = ox0 * geo.sw - geo.pad_left
        q1 = q0 + (cols - 1) * geo.sw + geo.ekw
        r0, r1, c0, c1 = max(0, p0), min(geo.h, p1), max(0, q0), min(geo.w, q1)
        in_cols = q1 - q0
        self.aslot ^= 1
        base = self.aslot * cfg.slot("act")
        fill = dict(buffer=Buffer.ACT, pad_value=self.pad_value)
        ps = self.xstride
        if cs == ps:  # whole pixels: the band's rows are contiguous runs of memory
            return [isa.make(Opcode.LOAD, sram_addr=base, dram_addr=self.xaddr + (r0 * geo.w + c0) * ps,
                             y_size=r1 - r0, x_size=(c1 - c0) * ps, dram_stride=geo.w * ps, pad_top=r0 - p0,
                             pad_bottom=p1 - r1, pad_left=(c0 - q0) * cs, pad_right=(q1 - c1) * cs, **fill)], in_cols
        # a channel slice: one LOAD per band row, a pixel per DMA row, its padding as whole pixels
        row = in_cols * cs
        loads = []
        if r0 > p0:
            loads.append(isa.make(Opcode.LOAD, sram_addr=base, pad_top=r0 - p0, pad_left=row, **fill))
        for r in range(r0, r1):
            loads.append(isa.make(Opcode.LOAD, sram_addr=base + (r - p0) * row,
                                  dram_addr=self.xaddr + (r * geo.w + c0) * ps + k0, y_size=c1 - c0, x_size=cs,
                                  dram_stride=ps, pad_top=c0 - q0, pad_bottom=q1 - c1, **fill))
        if p1 > r1:
            loads.append(isa.make(Opcode.LOAD, sram_addr=base + (r1 - p0) * row, pad_top=p1 - r1, pad_left=row,
                                  **fill))
        return loads, in_cols

    def _weight_loads(self, co0: int, n: int, p: int, cs: int) -> list:
        cfg, geo = self.cfg, self.geo
        k = geo.wk(cfg.width, cs)
        slot = self.em.next_weight_slot()
        size = isa.weight_bytes(n, k, cfg.lanes)
        prm_bytes = n * GEMM_PARAM_WORDS * 4
        return [isa.make(Opcode.LOAD, buffer=Buffer.WGT, sram_addr=slot * cfg.slot("wgt"),
                         dram_addr=self.waddrs[p] + co0 * k, y_size=1, x_size=size, dram_stride=size),
                isa.make(Opcode.LOAD, buffer=Buffer.PARAM, sram_addr=slot * cfg.slot("param"),
                         dram_addr=self.paddr + co0 * GEMM_PARAM_WORDS * 4, y_size=1, x_size=prm_bytes,
                         dram_stride=prm_bytes)]

    def _tile(self, oy0: int, ox0: int, co0: int, k0: int) -> None:
        cfg, geo, t = self.cfg, self.geo, self.tiling
        rows, cols, n = min(t.rows, geo.oh - oy0), min(self.tc, geo.ow - ox0), min(t.channels, geo.cout - co0)
        p, cs = k0 // self.cs, min(self.cs, geo.c - k0)
        last = k0 + cs == geo.c
        tile = Tile()
        if self.band != (oy0, ox0, k0) or t.slice:
            loads, in_cols = self._band_loads(oy0, ox0, rows, cols, k0, cs)
            tile.loads += loads
            self.band, self.in_cols = (oy0, ox0, k0), in_cols
        if self.resident != (co0, p):
            tile.loads += self._weight_loads(co0, n, p, cs)
            self.resident = (co0, p)
        oslot = self.tiles % 2
        self.tiles += 1
        ws = self.em.wslot
        tile.computes.append(isa.make(
            Opcode.GEMM, **{**self.gemm, "act_addr": self.aslot * cfg.slot("act"), "wgt_addr": ws * cfg.slot("wgt"),
                            "param_addr": ws * cfg.slot("param"), "out_addr": oslot * cfg.slot("out"),
                            "in_rows": geo.band_rows(rows), "in_cols": self.in_cols, "channels": cs,
                            "out_rows": rows, "out_cols": cols, "out_channels": n, "acc_addr": 0,
                            "acc_in": int(k0 > 0), "acc_out": int(not last)}))
        if last:
            sram = oslot * cfg.slot("out")
            dram = self.oaddr + (oy0 * geo.ow + ox0) * self.ostride + co0
            if cols == geo.ow:
                tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=sram, dram_addr=dram,
                                            y_size=rows * cols, x_size=n, dram_stride=self.ostride))
            elif n == self.ostride:
                tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=sram, dram_addr=dram,
                                            y_size=rows, x_size=cols * n, dram_stride=geo.ow * n))
            else:
                for r in range(rows):
                    tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=sram + r * cols * n,
                                                dram_addr=dram + r * geo.ow * self.ostride, y_size=cols, x_size=n,
                                                dram_stride=self.ostride))
        self.em.prog.tile(tile)
