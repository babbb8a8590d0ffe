"""ADD, MUL, int8 QUANTIZE (REQUANT), standalone activations, pools, MEAN and PAD -> VEC tiles.

Each tile loads its input rows (or a channel chunk of them) into ACT, runs one VEC and stores the
OUT slot; a layer's parameter record (``isa.PARAM_RECORDS``) is loaded once into the next
parameter slot and stays resident for the layer. Tiles alternate between the two ACT and OUT slots.
Where one row does not fit a slot, element-for-element ops (ADD, MUL, REQUANT, a concatenation's
copy) take whole pixels a tile, or a channel chunk of one pixel, and PAD takes a channel chunk of
its rows; pools and MEAN always tile by channel chunks.
"""

from __future__ import annotations


import numpy as np

from onda.hw import isa
from onda.hw.isa import ADD_PARAM_WORDS, MUL_PARAM_WORDS, Buffer, Opcode, VecFunc
from onda.sim.golden import params as P
from onda.sim.ir import Op, OpKind, Padding

from .conv_tiling import TilingError
from .emitter import MIN_TILES, Emitter, hwc, op_name, pixel_span, words
from .errors import CompileError
from .program import Tile


def rows_per_tile(em: Emitter, row_in: int, row_out: int, band, n_rows: int, name: str) -> int:
    """Largest row count whose input band (``band(rows)`` rows of ``row_in`` bytes) and output
    (``rows`` of ``row_out``) fit the activation and output slots."""
    aslot, oslot = em.cfg.slot("act"), em.cfg.slot("out")
    if band(1) * row_in > aslot or row_out > oslot:
        raise TilingError(f"{name}: one row (input {band(1) * row_in} B, output {row_out} B) exceeds the "
                          f"activation ({aslot} B) or output ({oslot} B) slot")
    r = min(n_rows, oslot // row_out, max(1, -(-n_rows // MIN_TILES)))
    while r > 1 and band(r) * row_in > aslot:
        r -= 1
    return r


def _elementwise(em: Emitter, op: Op, func: VecFunc, srcs: list[int], record: bytes,
                 act_range: tuple[int, int]) -> str:
    """ADD / MUL / REQUANT over whole rows: each tile loads the operands' rows, one VEC, one STORE.

    A constant second operand (``srcs[1]``) broadcast to the output's shape is written into the
    weight image for one tile's rows; it is loaded beside each ACT slot's activations, once per slot
    if it does not change along the rows, with each tile's rows otherwise."""
    g, mem = em.g, em.mem
    shape = tuple(g.tensor(op.outputs[0]).shape)
    h, w, c = hwc(shape)
    row = w * c
    const = None
    for i, s in enumerate(srcs):
        t = g.tensor(s)
        if t.is_constant and i == 1:
            try:
                const = np.broadcast_to(t.data.astype(np.int8), shape).reshape(h, row)
            except ValueError:
                raise CompileError(f"{op_name(op)}: constant {list(t.shape)} does not broadcast to {list(shape)}") from None
        elif tuple(t.shape) != shape:
            raise CompileError(f"{op_name(op)}: broadcasting {list(t.shape)} to {list(shape)} not supported "
                               f"(only a constant operand is broadcast)")
    n = len(srcs)
    aslot, oslot = em.cfg.slot("act"), em.cfg.slot("out")
    cn = c  # channels a tile
    try:  # whole rows a tile
        th = rows_per_tile(em, row * n, row, lambda r: r, h, op_name(op))
        cap, desc = th * w, f"{th} rows/tile"
    except TilingError:  # one row does not fit: whole pixels a tile, or a channel chunk of one
        cap = min(aslot // (c * n), oslot // c)
        desc = f"{cap} pixels/tile"
        if cap < 1:
            cap, cn = 1, min(aslot // n, oslot)
            desc = f"{cn} channels/tile"
    per_tile = const is not None and not (const == const[:1]).all()
    if const is not None:
        caddr = em.weight_data((const if per_tile else const.reshape(-1)[:cap * c]).tobytes())
    paddr = em.weight_data(record)
    pload, pslot_addr = em.param_load(paddr, len(record))

    def span(t: int, p0: int, px: int, c0: int, k: int) -> dict:
        if k == c:
            return pixel_span(mem, t, p0, px)
        return dict(dram_addr=mem.dram(t) + p0 * mem.pixel_stride(t) + c0, y_size=1, x_size=k, dram_stride=k)

    tiles = [(p0, c0) for p0 in range(0, h * w, cap) for c0 in range(0, c, cn)]
    for t, (p0, c0) in enumerate(tiles):
        px, k = min(cap, h * w - p0), min(cn, c - c0)
        rows, cols = (px // w, w) if cap % w == 0 else (1, px)  # the VEC's shape (any: element for element)
        slot = t % 2
        src2 = slot * aslot + (cap * cn if const is not None else px * k)
        tile = Tile()
        if t == 0:
            tile.loads.append(pload)
        tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=slot * aslot, **span(srcs[0], p0, px, c0, k)))
        if n == 2 and const is None:
            tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=src2, **span(srcs[1], p0, px, c0, k)))
        elif const is not None and (per_tile or cn < c or t < 2):  # t >= 2 finds its slot's copy still there
            nbytes = px * k if per_tile or cn < c else cap * c
            tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=src2,
                                       dram_addr=caddr + (p0 * c if per_tile else 0) + c0, y_size=1, x_size=nbytes,
                                       dram_stride=nbytes))
        tile.computes.append(isa.make(
            Opcode.VEC, func=func, src_addr=slot * aslot, src2_addr=src2,
            dst_addr=slot * oslot, param_addr=pslot_addr, in_rows=rows, in_cols=cols, channels=k, out_rows=rows,
            out_cols=cols, kh=1, kw=1, stride_h=1, stride_w=1, act_min=act_range[0], act_max=act_range[1]))
        tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                    **span(op.outputs[0], p0, px, c0, k)))
        em.prog.tile(tile)
    return desc + (", constant operand" if const is not None else "")


def _operands(em: Emitter, op: Op) -> tuple[list[int], bool]:
    """The two operands with a constant one second, and whether they were swapped."""
    a, b = op.inputs[:2]
    ca, cb = em.g.tensor(a).is_constant, em.g.tensor(b).is_constant
    if ca and cb:
        raise CompileError(f"{op_name(op)}: both operands constant (the converter folds these)")
    return ([b, a], True) if ca else ([a, b], False)


def lower_add(em: Emitter, op: Op) -> str:
    srcs, swapped = _operands(em, op)
    p = P.add_params(em.g, op)
    m1, s1, m2, s2, mo, so = p.rescale
    if swapped:  # ADD is symmetric in its operands, each with its own zero point and multiplier
        rec = words(p.zp2, p.zp1, m2, s2, m1, s1, mo, so, p.out_zero_point)
    else:
        rec = words(p.zp1, p.zp2, m1, s1, m2, s2, mo, so, p.out_zero_point)
    assert len(rec) == ADD_PARAM_WORDS * 4
    return _elementwise(em, op, VecFunc.ADD, srcs, rec, (p.act_min, p.act_max))


def lower_mul(em: Emitter, op: Op) -> str:
    srcs, swapped = _operands(em, op)
    p = P.mul_params(em.g, op)
    zp1, zp2 = (p.zp2, p.zp1) if swapped else (p.zp1, p.zp2)
    rec = words(zp1, zp2, p.multiplier, p.shift, p.out_zero_point)
    assert len(rec) == MUL_PARAM_WORDS * 4
    return _elementwise(em, op, VecFunc.MUL, srcs, rec, (p.act_min, p.act_max))


def lower_requant(em: Emitter, op: Op) -> str:
    """An int8 -> int8 QUANTIZE: REQUANT over the whole int8 range."""
    p = P.rescale_params(em.g, op)
    rec = words(p.in_zero_point, p.multiplier, p.shift, p.out_zero_point)
    return _elementwise(em, op, VecFunc.REQUANT, [op.inputs[0]], rec, (-128, 127))


def lower_activation(em: Emitter, op: Op) -> str:
    """A standalone RELU / RELU6 / RELU_N1_TO_1: REQUANT to the output's quantization, clamped."""
    p, lo, hi = P.activation_params(em.g, op)
    rec = words(p.in_zero_point, p.multiplier, p.shift, p.out_zero_point)
    return _elementwise(em, op, VecFunc.REQUANT, [op.inputs[0]], rec, (lo, hi))


def lower_pool(em: Emitter, op: Op) -> str:
    g, a, mem = em.g, op.attrs, em.mem
    x = g.tensor(op.inputs[0])
    h, w, c = hwc(x.shape)
    (fh, fw), (sh, sw) = a.filter, a.stride
    oh = P.conv_output_size(h, fh, sh, 1, a.padding)
    ow = P.conv_output_size(w, fw, sw, 1, a.padding)
    pt = P.same_padding(h, fh, sh, 1, a.padding)[0] if a.padding == Padding.SAME else 0
    pl = P.same_padding(w, fw, sw, 1, a.padding)[0] if a.padding == Padding.SAME else 0
    if max(fh, fw) > 255 or max(sh, sw, pt, pl) > 15:
        raise CompileError(f"{op_name(op)}: pool window/stride/padding not encodable")
    lo, hi = P.pool_act_range(g, op)
    aslot, oslot = em.cfg.slot("act"), em.cfg.slot("out")
    # Channel chunk: the largest whose one-output-row band fits.
    cc = c
    while cc > 1 and (fh * w * cc > aslot or ow * cc > oslot):
        cc = -(-cc // 2)
    th = rows_per_tile(em, w * cc, ow * cc, lambda r: min(h, (r - 1) * sh + fh), oh, op_name(op))
    func = VecFunc.MAX_POOL if op.kind == OpKind.MAX_POOL_2D else VecFunc.AVG_POOL
    xaddr, oaddr = mem.dram(op.inputs[0]), mem.dram(op.outputs[0])
    xs, os_ = mem.pixel_stride(op.inputs[0]), mem.pixel_stride(op.outputs[0])
    i = 0
    for c0 in range(0, c, cc):
        n = min(cc, c - c0)
        for oy0 in range(0, oh, th):
            rows = min(th, oh - oy0)
            p0 = oy0 * sh - pt
            p1 = p0 + (rows - 1) * sh + fh
            r0, r1 = max(0, p0), min(h, p1)
            slot = i % 2
            i += 1
            tile = Tile()
            tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=slot * aslot,
                                       dram_addr=xaddr + (r0 * w) * xs + c0, y_size=(r1 - r0) * w, x_size=n,
                                       dram_stride=xs))
            tile.computes.append(isa.make(
                Opcode.VEC, func=func, src_addr=slot * aslot, dst_addr=slot * oslot, in_rows=r1 - r0,
                in_cols=w, channels=n, out_rows=rows, out_cols=ow, kh=fh, kw=fw, stride_h=sh, stride_w=sw,
                pad_top=r0 - p0, pad_left=pl, act_min=lo, act_max=hi))
            tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                        dram_addr=oaddr + oy0 * ow * os_ + c0, y_size=rows * ow, x_size=n,
                                        dram_stride=os_))
            em.prog.tile(tile)
    return f"{th} rows x {cc} ch/tile"


def lower_mean(em: Emitter, op: Op) -> str:
    g, a, mem = em.g, op.attrs, em.mem
    x = g.tensor(op.inputs[0])
    axes = tuple(sorted({ax % len(x.shape) for ax in a.axes}))
    if len(x.shape) != 4 or axes != (1, 2):
        raise CompileError(f"{op_name(op)}: MEAN over axes {a.axes} of {list(x.shape)} not supported "
                           f"(the engine reduces H and W of NHWC)")
    p = P.rescale_params(g, op)
    rec = words(p.in_zero_point, p.multiplier, p.shift, p.out_zero_point)
    paddr = em.weight_data(rec)
    h, w, c = hwc(x.shape)
    aslot, oslot = em.cfg.slot("act"), em.cfg.slot("out")
    cc = max(1, -(-c // MIN_TILES))
    while cc > 1 and (h * w * cc > aslot or cc > oslot):
        cc = -(-cc // 2)
    if h * w * cc > aslot:
        raise TilingError(f"{op_name(op)}: {h}x{w} pixels of one channel exceed the activation slot")
    xaddr, oaddr = mem.dram(op.inputs[0]), mem.dram(op.outputs[0])
    pload, pslot_addr = em.param_load(paddr, len(rec))
    for i, c0 in enumerate(range(0, c, cc)):
        n = min(cc, c - c0)
        slot = i % 2
        tile = Tile()
        if i == 0:
            tile.loads.append(pload)
        tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=slot * aslot,
                                   dram_addr=xaddr + c0, y_size=h * w, x_size=n,
                                   dram_stride=mem.pixel_stride(op.inputs[0])))
        tile.computes.append(isa.make(Opcode.VEC, func=VecFunc.MEAN, src_addr=slot * aslot, dst_addr=slot * oslot,
                                      param_addr=pslot_addr, in_rows=h, in_cols=w, channels=n, out_rows=1,
                                      out_cols=1, kh=h, kw=w, stride_h=1, stride_w=1, act_min=-128, act_max=127))
        tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                    dram_addr=oaddr + c0, y_size=1, x_size=n, dram_stride=n))
        em.prog.tile(tile)
    return f"{cc} ch/tile, MEAN"


def lower_pad(em: Emitter, op: Op) -> str:
    """Spatial PAD: the LOAD fills the border with the pad value; the vector unit copies the rows
    to OUT, or (a space-to-depth output) interleaves each pair of rows into ``[rows/2, cols/2, 4C]``
    blocks; either way the store is one contiguous burst."""
    g, a, mem = em.g, op.attrs, em.mem
    x = g.tensor(op.inputs[0])
    pads = tuple(tuple(int(v) for v in pr) for pr in a.paddings)
    if len(x.shape) != 4 or pads[0] != (0, 0) or pads[3] != (0, 0):
        raise CompileError(f"{op_name(op)}: only spatial (H, W) padding of NHWC is supported, got {pads}")
    value = P.pad_value(g, op)
    (pt, pb), (pl, pr) = pads[1], pads[2]
    h, w, c = hwc(x.shape)
    s2d = op.outputs[0] in mem.s2d
    if s2d:  # round the padded size up to whole 2x2 blocks, with more fill
        pb += (h + pt + pb) % 2
        pr += (w + pl + pr) % 2
    oh, ow = h + pt + pb, w + pl + pr
    row_out = ow * c
    aslot, oslot = em.cfg.slot("act"), em.cfg.slot("out")
    if not s2d and row_out > min(aslot, oslot):
        return _pad_channel_chunks(em, op, value, (pt, pb, pl, pr))
    th = rows_per_tile(em, row_out, row_out, lambda r: r, oh, op_name(op))
    if s2d:  # whole 2x2 blocks per tile
        th = max(2, th - th % 2)
    xaddr, oaddr = mem.dram(op.inputs[0]), mem.dram(op.outputs[0])
    for i, oy0 in enumerate(range(0, oh, th)):
        rows = min(th, oh - oy0)
        p0 = oy0 - pt
        p1 = p0 + rows
        r0, r1 = max(0, min(h, p0)), max(0, min(h, p1))
        top = r0 - p0 if r1 > r0 else rows
        bottom = p1 - r1 if r1 > r0 else 0
        slot = i % 2
        tile = Tile()
        tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=slot * aslot,
                                   dram_addr=xaddr + r0 * w * c, y_size=r1 - r0, x_size=w * c,
                                   dram_stride=w * c, pad_top=top, pad_bottom=bottom, pad_left=pl * c,
                                   pad_right=pr * c, pad_value=value))
        tile.computes.append(isa.make(
            Opcode.VEC, func=VecFunc.SPACE_TO_DEPTH if s2d else VecFunc.COPY, src_addr=slot * aslot,
            dst_addr=slot * oslot, in_rows=rows, in_cols=ow, channels=c, out_rows=rows // 2 if s2d else rows,
            out_cols=ow // 2 if s2d else ow, kh=1, kw=1, stride_h=1, stride_w=1, act_min=-128, act_max=127))
        tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                    dram_addr=oaddr + oy0 * row_out, y_size=1, x_size=rows * row_out,
                                    dram_stride=rows * row_out))
        em.prog.tile(tile)
    return f"{th} rows/tile" + (", space-to-depth" if s2d else "")


def _pad_channel_chunks(em: Emitter, op: Op, value: int, pads: tuple[int, int, int, int]) -> str:
    """A PAD whose padded row does not fit a slot: tiles of rows x a channel chunk, each input row
    loaded a pixel per DMA row with its left and right fill as whole pixels, the fill rows as
    fill-only LOADs."""
    g, mem = em.g, em.mem
    pt, pb, pl, pr = pads
    h, w, c = hwc(g.tensor(op.inputs[0]).shape)
    oh, ow = h + pt + pb, w + pl + pr
    aslot, oslot = em.cfg.slot("act"), em.cfg.slot("out")
    cc = c
    while cc > 1 and ow * cc > min(aslot, oslot):
        cc = -(-cc // 2)
    if ow * cc > min(aslot, oslot):
        raise TilingError(f"{op_name(op)}: one padded row of one channel ({ow} B) exceeds the activation "
                          f"({aslot} B) or output ({oslot} B) slot")
    th = max(1, min(oh, min(aslot, oslot) // (ow * cc), -(-oh // MIN_TILES)))
    xaddr, oaddr = mem.dram(op.inputs[0]), mem.dram(op.outputs[0])
    xs, os_ = mem.pixel_stride(op.inputs[0]), mem.pixel_stride(op.outputs[0])
    fill = dict(buffer=Buffer.ACT, pad_value=value)
    i = 0
    for c0 in range(0, c, cc):
        n = min(cc, c - c0)
        row = ow * n
        for oy0 in range(0, oh, th):
            rows = min(th, oh - oy0)
            slot = i % 2
            i += 1
            base = slot * aslot
            tile = Tile()
            top = max(0, min(rows, pt - oy0))  # fill rows before the input's first row
            r0, r1 = max(0, oy0 - pt), max(0, min(h, oy0 + rows - pt))
            if top:
                tile.loads.append(isa.make(Opcode.LOAD, sram_addr=base, pad_top=top, pad_left=row, **fill))
            for k, r in enumerate(range(r0, r1)):
                tile.loads.append(isa.make(Opcode.LOAD, sram_addr=base + (top + k) * row,
                                           dram_addr=xaddr + r * w * xs + c0, y_size=w, x_size=n, dram_stride=xs,
                                           pad_top=pl, pad_bottom=pr, **fill))
            bottom = rows - top - (r1 - r0)
            if bottom:
                tile.loads.append(isa.make(Opcode.LOAD, sram_addr=base + (rows - bottom) * row, pad_top=bottom,
                                           pad_left=row, **fill))
            tile.computes.append(isa.make(
                Opcode.VEC, func=VecFunc.COPY, src_addr=base, dst_addr=slot * oslot, in_rows=rows, in_cols=ow,
                channels=n, out_rows=rows, out_cols=ow, kh=1, kw=1, stride_h=1, stride_w=1, act_min=-128,
                act_max=127))
            tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                        dram_addr=oaddr + oy0 * ow * os_ + c0, y_size=rows * ow, x_size=n,
                                        dram_stride=os_))
            em.prog.tile(tile)
    return f"{th} rows x {cc} ch/tile"


def lower_concat(em: Emitter, op: Op) -> str:
    """CONCATENATION: inputs that are views of the output (``concat.py``) are already in place;
    each other input is copied into its channel slice (VEC COPY, stored a pixel per row)."""
    g, mem = em.g, em.mem
    out = op.outputs[0]
    aslot, oslot = em.cfg.slot("act"), em.cfg.slot("out")
    out_stride, out_addr = mem.pixel_stride(out), mem.dram(out)
    copied, offset, i = 0, 0, 0
    for t in op.inputs:
        h, w, c = hwc(g.tensor(t).shape)
        if mem.views.get(t) != (out, offset):
            copied += 1
            row = w * c
            try:
                cap = rows_per_tile(em, row, row, lambda r: r, h, op_name(op)) * w
            except TilingError:  # one row does not fit: whole pixels a tile
                cap = min(aslot, oslot) // c
                if cap < 1:
                    raise
            for p0 in range(0, h * w, cap):
                px = min(cap, h * w - p0)
                rows, cols = (px // w, w) if cap % w == 0 else (1, px)
                slot = i % 2
                i += 1
                tile = Tile()
                tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=slot * aslot,
                                           **pixel_span(mem, t, p0, px)))
                tile.computes.append(isa.make(
                    Opcode.VEC, func=VecFunc.COPY, src_addr=slot * aslot, dst_addr=slot * oslot, in_rows=rows,
                    in_cols=cols, channels=c, out_rows=rows, out_cols=cols, kh=1, kw=1, stride_h=1, stride_w=1,
                    act_min=-128, act_max=127))
                tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                            dram_addr=out_addr + offset + p0 * out_stride, y_size=px,
                                            x_size=c, dram_stride=out_stride))
                em.prog.tile(tile)
        offset += c
    n = len(op.inputs)
    return "in place" if not copied else f"{n - copied} of {n} in place, {copied} copied"
