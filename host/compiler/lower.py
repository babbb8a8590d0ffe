"""IR -> engine program: memory map, weight image, tiled instructions, container.

Memory (the engine's port address space)::

    [0, act_size)                          activation tensors, NHWC int8, allocated by liveness
    [weights_base, + weights_size)         weight image: per GEMM layer the [Cout, K] int8 matrix
                                           (TFLite's OHWI order) lane-interleaved as WGT holds it
                                           (``isa.pack_weights``), then int32 (bias', M0, shift) per
                                           channel; vector ops' int32 parameter records
    [program_base, + program_size)         the instructions (fetched by the engine)

``bias'`` folds the input zero point into the bias (``bias - x_zp * sum(w)``), so the MAC array
multiplies raw int8 activations and the padding the DMA fills with ``x_zp`` contributes nothing.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from onda.hw import container as ctr
from onda.hw import isa
from onda.hw.config import EngineConfig
from onda.hw.isa import ADD_PARAM_WORDS, GEMM_PARAM_WORDS, Buffer, Epilogue, Opcode, VecFunc
from onda.sim.golden import params as P
from onda.sim.ir import ACTIVATION_OPS, Graph, Op, OpKind, Padding

from .conv_tiling import ConvGeometry, TilingError, choose_tiling
from .program import ProgramBuilder, Tile

ALIGN = 64
MIN_TILES = 8  # vector layers are split at least this finely, so their DMA overlaps the vector unit


class CompileError(ValueError):
    """A model the compiler cannot map onto the engine; the message names the op and the limit."""


def _align(n: int, a: int = ALIGN) -> int:
    return -(-n // a) * a


def _hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an activation with a leading batch of 1: NHWC, or [1, C] as 1 x 1 x C."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return 1, shape[1], shape[2]
    if len(shape) == 2:
        return 1, 1, shape[1]
    if len(shape) == 1:
        return 1, 1, shape[0]
    raise ValueError(f"shape {shape}")


class WeightImage:
    def __init__(self):
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        addr = self.size
        pad = _align(len(data)) - len(data)
        self.chunks.append(data + b"\0" * pad)
        self.size += len(data) + pad
        return addr

    def bytes(self) -> bytes:
        return b"".join(self.chunks)


def isa_bytes(ins: isa.Instruction) -> int:
    return ins.fields["y_size"] * ins.fields["x_size"] if ins.opcode in (Opcode.LOAD, Opcode.STORE) else 0


def _words(*vals) -> bytes:
    return np.asarray(vals, dtype="<i4").tobytes()


@dataclass
class Layer:
    op_index: int
    kind: str
    name: str
    output: int
    inputs: list[int]
    first: int  # first instruction index
    last: int  # last instruction index (inclusive)
    macs: int
    tiling: str
    min_bytes: int = 0  # compulsory traffic: each input, output and weight byte once


class Lowering:
    def __init__(self, graph: Graph, cfg: EngineConfig, progress: bool):
        self.g = graph
        self.cfg = cfg
        self.progress = progress
        self.wimg = WeightImage()
        self.prog = ProgramBuilder()
        self.layers: list[Layer] = []
        self.alias: dict[int, int] = {}  # RESHAPE output -> the tensor whose bytes it shares
        self.addr: dict[int, int] = {}  # activation tensor -> offset in the activation region
        self.act_size = 0
        self.s2d: dict[int, tuple[int, int, int]] = {}  # tensor -> space-to-depth stored shape
        self.wslot = 1  # the weight/parameter slot last loaded (alternates across layers)
        self.prev_est = 0  # estimated cycles of the previous layer (hides the next one's first weights)

    # -- memory ------------------------------------------------------------------------------
    def root(self, tid: int) -> int:
        while tid in self.alias:
            tid = self.alias[tid]
        return tid

    def nbytes(self, tid: int) -> int:
        if tid in self.s2d:
            hs, ws, c4 = self.s2d[tid]
            return hs * ws * c4
        return int(np.prod(self.g.tensor(tid).shape))

    def _plan_space_to_depth(self) -> None:
        """Space-to-depth for a strided stem: a PAD whose only consumer is a stride-2 VALID conv with
        few input channels is stored as [ceil(H/2), ceil(W/2), 4C] (each 2x2 pixel block's channels
        side by side); the conv becomes a stride-1 conv with a ceil(k/2) kernel over 4C channels.
        The MAC array then sees ``ceil(kw/2) * 4C`` contiguous bytes per kernel row instead of
        ``kw * C``: for a 7x7 conv on 3 channels, 48 bytes instead of 21. Chosen only when the
        cycle formula says it is faster on this engine."""
        cfg = self.cfg
        consumers: dict[int, list[Op]] = {}
        for op in self.ops:
            for t in op.inputs:
                consumers.setdefault(t, []).append(op)
        for op in self.ops:
            if op.kind != OpKind.PAD or len(self.g.tensor(op.outputs[0]).shape) != 4:
                continue
            t = op.outputs[0]
            users = consumers.get(t, [])
            if len(users) != 1 or t in self.engine_outputs or t in self.alias.values():
                continue
            conv = users[0]
            if (conv.kind != OpKind.CONV_2D or conv.inputs[0] != t or conv.attrs.stride != (2, 2)
                    or conv.attrs.dilation != (1, 1) or conv.attrs.padding != Padding.VALID):
                continue
            _, hp, wp, c = self.g.tensor(t).shape
            cout, kh, kw, _ = self.g.tensor(conv.inputs[1]).shape
            hs, ws, kh2, kw2 = -(-hp // 2), -(-wp // 2), -(-kh // 2), -(-kw // 2)
            oh, ow = self.g.tensor(conv.outputs[0]).shape[1:3]
            if hs - kh2 + 1 < oh or ws - kw2 + 1 < ow:
                continue
            lanes = -(-cout // cfg.lanes)
            plain = kh * -(-(kw * c) // cfg.width) * lanes
            packed = kh2 * -(-(kw2 * 4 * c) // cfg.width) * lanes
            if packed < plain:
                self.s2d[t] = (hs, ws, 4 * c)

    def allocate(self) -> None:
        """First-fit allocation of activation tensors over their live ranges (op positions)."""
        g = self.g
        for op in self.ops:
            if op.kind == OpKind.RESHAPE:
                self.alias[op.outputs[0]] = op.inputs[0]
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        for t in self.engine_inputs:
            start[self.root(t)] = -1
        for pos, op in enumerate(self.ops):
            for t in op.outputs:
                r = self.root(t)
                start.setdefault(r, pos)
                end[r] = max(end.get(r, pos), pos)
            for t in op.inputs:
                if t >= 0 and not g.tensor(t).is_constant:
                    r = self.root(t)
                    end[r] = max(end.get(r, pos), pos)
        for t in self.engine_outputs + self.engine_inputs:
            end[self.root(t)] = len(self.ops)
        live: list[tuple[int, int, int]] = []  # (offset, size, end)
        for r in sorted(start, key=lambda r: (start[r], r)):
            s = start[r]
            live = [blk for blk in live if blk[2] >= s]
            size = _align(self.nbytes(r))
            off = 0
            for o, sz, _ in sorted(live):
                if off + size <= o:
                    break
                off = max(off, o + sz)
            live.append((off, size, end[r]))
            self.addr[r] = off
            self.act_size = max(self.act_size, off + size)

    def dram(self, tid: int) -> int:
        return self.addr[self.root(tid)]

    def weight_data(self, data: bytes) -> int:
        self._layer_weight_bytes += len(data)
        return self.wbase + self.wimg.add(data)

    # -- lowering ----------------------------------------------------------------------------
    def run(self, source: bytes | None) -> ctr.Container:
        g = self.g
        self._split_host_ops()
        for t in self.engine_inputs + self.engine_outputs:
            if g.tensor(t).dtype != "int8":
                raise CompileError(f"tensor {g.tensor(t).name!r} is {g.tensor(t).dtype}: the engine takes and "
                                   f"returns int8 (only a float QUANTIZE at an input and a DEQUANTIZE at an "
                                   f"output run on the host)")
        self.alias = {op.outputs[0]: op.inputs[0] for op in self.ops if op.kind == OpKind.RESHAPE}
        self._plan_space_to_depth()
        self.allocate()
        self.wbase = _align(self.act_size, 4096)
        self._emit_all()
        try:
            program = isa.encode_program(self.prog.finish())
        except isa.ISAError as e:
            raise CompileError(f"engine {self.cfg.name!r}: a tile does not fit the instruction fields: {e}") from None
        weights_size = self.wimg.size
        program_base = _align(self.wbase + weights_size, 4096)
        total = program_base + len(program)
        if total > self.cfg.mem_size_bytes:
            raise CompileError(f"model needs {total} B of engine memory (activations {self.act_size}, weights "
                               f"{weights_size}, program {len(program)}), engine {self.cfg.name!r} has "
                               f"{self.cfg.mem_size_bytes} B ({self.cfg.mem_kind})")
        memmap = {
            "act_base": 0, "act_size": self.act_size, "weights_base": self.wbase, "weights_size": weights_size,
            "program_base": program_base, "program_size": len(program),
            "inputs": list(self.engine_inputs), "outputs": list(self.engine_outputs), "name": g.name,
            "host_inputs": list(g.inputs), "host_outputs": list(g.outputs), "host_ops": self.host_ops,
            "tensors": {str(t): self._tensor_entry(t) for t in self._activation_ids()},
            **{"host_tensors": {str(h[k]): self._host_tensor_entry(h[k]) for h in self.host_ops
                                for k in ("input", "output") if h[k] not in self._activation_ids()}},
            "layers": [vars(layer) for layer in self.layers],
        }
        return ctr.Container(config=self.cfg.as_dict(), fingerprint=self.cfg.fingerprint, program=program,
                             weights=self.wimg.bytes(), memmap=memmap, source=source)

    def _activation_ids(self) -> list[int]:
        ids = list(self.engine_inputs)
        for op in self.ops:
            ids += list(op.outputs)
        return ids

    def _host_tensor_entry(self, t: int) -> dict:
        tt = self.g.tensor(t)
        q = tt.quant
        producer = next((f"#{op.index} {op.kind.value} (host)" for op in self.g.ops if t in op.outputs), "input")
        return {"name": tt.name, "shape": list(tt.shape), "dtype": tt.dtype, "addr": None, "alias_of": None,
                "scale": q.s if q is not None and not q.per_channel else None,
                "zero_point": q.zp if q is not None else None, "producer": producer}

    def _split_host_ops(self) -> None:
        """A float QUANTIZE of a graph input and a DEQUANTIZE to a graph output run on the host
        (as Brainwave's host does); the engine program takes and returns their int8 sides."""
        g = self.g
        self.host_ops: list[dict] = []
        self.ops = []
        self.engine_inputs = list(g.inputs)
        self.engine_outputs = list(g.outputs)
        for op in g.ops:
            x = g.tensor(op.inputs[0])
            if op.kind == OpKind.QUANTIZE and x.dtype == "float32" and op.inputs[0] in g.inputs:
                q = g.tensor(op.outputs[0]).quant
                self.engine_inputs[self.engine_inputs.index(op.inputs[0])] = op.outputs[0]
                self.host_ops.append({"kind": "QUANTIZE", "stage": "pre", "input": op.inputs[0],
                                      "output": op.outputs[0], "scale": q.s, "zero_point": q.zp})
            elif op.kind == OpKind.DEQUANTIZE and op.outputs[0] in g.outputs:
                self.engine_outputs[self.engine_outputs.index(op.outputs[0])] = op.inputs[0]
                self.host_ops.append({"kind": "DEQUANTIZE", "stage": "post", "input": op.inputs[0],
                                      "output": op.outputs[0], "scale": x.quant.s, "zero_point": x.quant.zp})
            else:
                self.ops.append(op)

    def _tensor_entry(self, t: int) -> dict:
        tt = self.g.tensor(t)
        q = tt.quant
        producer = "input"
        for op in self.g.ops:
            if t in op.outputs:
                producer = f"#{op.index} {op.kind.value}"
        return {"name": tt.name, "shape": list(tt.shape), "dtype": tt.dtype,
                "addr": self.addr[self.root(t)],
                "alias_of": self.root(t) if self.root(t) != t else None,
                "scale": q.s if q is not None and not q.per_channel else None,
                "zero_point": q.zp if q is not None else None, "producer": producer,
                "space_to_depth": list(self.s2d[t]) if t in self.s2d else None}

    def _emit_all(self) -> None:
        ops = self.ops
        it = ops
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(ops, desc=f"compiling {self.g.name} for {self.cfg.name}", unit="op", file=sys.stderr,
                       leave=False)
            it = bar
        for op in it:
            self._layer_weight_bytes = 0
            try:
                desc, macs = self._lower(op)
            except TilingError as e:
                raise CompileError(f"engine {self.cfg.name!r}: {e}") from None
            if desc is None:
                continue
            dma = sum(isa_bytes(i) for t in self.prog._pending for i in t.loads + t.stores)
            w0 = self.wimg.size
            first, last = self.prog.end_layer()
            self.prev_est = self._last_tiling_est if op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED) \
                else int(dma / self.cfg.mem_bytes_per_cycle)
            out = op.outputs[0]
            ins = [i for i in op.inputs if i >= 0 and not self.g.tensor(i).is_constant]
            compulsory = sum(self.nbytes(i) for i in set(ins)) + self.nbytes(out) + self._layer_weight_bytes
            self.layers.append(Layer(op.index, op.kind.value, self.g.tensor(out).name, out, ins, first, last, macs,
                                     desc, compulsory))
        if bar is not None:
            bar.close()

    def _lower(self, op: Op) -> tuple[str | None, int]:
        k = op.kind
        if k in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED):
            return self._gemm(op)
        if k == OpKind.ADD:
            return self._add(op), 0
        if k in (OpKind.MAX_POOL_2D, OpKind.AVERAGE_POOL_2D):
            return self._pool(op), 0
        if k == OpKind.MEAN:
            return self._mean(op), 0
        if k == OpKind.PAD:
            return self._pad(op), 0
        if k == OpKind.RESHAPE:
            return None, 0
        if k == OpKind.QUANTIZE and self.g.tensor(op.inputs[0]).dtype == "int8":
            return self._requant(op), 0
        if k in ACTIVATION_OPS:
            return self._activation(op), 0
        raise CompileError(f"op #{op.index} {k.value}: not supported by the engine "
                           f"(float QUANTIZE/DEQUANTIZE run on the host)")

    def _name(self, op: Op) -> str:
        return f"op #{op.index} {op.kind.value}"

    # -- GEMM --------------------------------------------------------------------------------
    def _gemm(self, op: Op) -> tuple[str, int]:
        g, cfg = self.g, self.cfg
        p = P.gemm_params(g, op)
        if p.weight_zero_point != 0:
            raise CompileError(f"{self._name(op)}: weight zero point {p.weight_zero_point} (the engine takes "
                               f"symmetric int8 weights)")
        x, out = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
        cout = p.weights.shape[0]
        wmat_src = p.weights
        if op.kind == OpKind.CONV_2D and op.inputs[0] in self.s2d:
            h, w, c = self.s2d[op.inputs[0]]
            _, kh0, kw0, c0 = p.weights.shape
            kh, kw = -(-kh0 // 2), -(-kw0 // 2)
            sh = sw = dh = dw = 1
            oh, ow = out.shape[1:3]
            pt = pl = 0
            # w'[o, i, k, (dy*2 + dx)*C + ch] = w[o, 2i + dy, 2k + dx, ch] (zero beyond the kernel)
            wp = np.zeros((cout, 2 * kh, 2 * kw, c0), dtype=np.int8)
            wp[:, :kh0, :kw0, :] = p.weights
            wmat_src = wp.reshape(cout, kh, 2, kw, 2, c0).transpose(0, 1, 3, 2, 4, 5).reshape(cout, kh, kw, 4 * c0)
        elif op.kind == OpKind.CONV_2D:
            a = op.attrs
            h, w, c = _hwc(x.shape)
            _, kh, kw, _ = p.weights.shape
            (sh, sw), (dh, dw) = a.stride, a.dilation
            oh = P.conv_output_size(h, kh, sh, dh, a.padding)
            ow = P.conv_output_size(w, kw, sw, dw, a.padding)
            pt = P.same_padding(h, kh, sh, dh, a.padding)[0] if a.padding == Padding.SAME else 0
            pl = P.same_padding(w, kw, sw, dw, a.padding)[0] if a.padding == Padding.SAME else 0
        else:
            kdim = int(np.prod(p.weights.shape[1:]))
            if self.nbytes(op.inputs[0]) != kdim:
                raise CompileError(f"{self._name(op)}: batched fully-connected input {list(x.shape)} not supported")
            h = w = 1
            c = kdim
            kh = kw = sh = sw = dh = dw = 1
            oh = ow = 1
            pt = pl = 0
        geo = ConvGeometry(h, w, c, oh, ow, cout, kh, kw, sh, sw, dh, dw, pt, pl)
        if max(kh, kw, sh, sw, dh, dw) > 15:
            raise CompileError(f"{self._name(op)}: kernel/stride/dilation above 15 not encodable")
        tiling = choose_tiling(cfg, geo, self._name(op), self.prev_est)
        kdim = geo.k
        wmat = np.ascontiguousarray(wmat_src.reshape(cout, kdim)).astype(np.int8)
        bias = p.bias.astype(np.int64) - p.in_zero_point * wmat.astype(np.int64).sum(axis=1)
        if np.any(np.abs(bias) >= 2**31):
            raise CompileError(f"{self._name(op)}: folded bias overflows int32")
        if op.kind == OpKind.FULLY_CONNECTED:
            # LiteRT's reference FULLY_CONNECTED scales in double: carry the IEEE bits per channel.
            epilogue = Epilogue.DOUBLE
            bits = np.asarray(p.double_scale, dtype="<f8").view("<i8")
            prm = np.stack([bias, bits & 0xFFFFFFFF, (bits >> 32) & 0xFFFFFFFF], axis=1).astype("<u8")
            prm = prm.astype("<u4").view("<i4")
        else:
            epilogue = Epilogue.FIXED
            prm = np.stack([bias, p.multiplier, p.shift], axis=1).astype("<i4")
        waddr = self.weight_data(isa.pack_weights(wmat, cfg.lanes))  # lane-interleaved (hw/ISA.md, WGT)
        paddr = self.weight_data(prm.tobytes())
        xaddr, oaddr = self.dram(op.inputs[0]), self.dram(op.outputs[0])
        th, ct = tiling.rows, tiling.channels
        nt, nb = math.ceil(oh / th), math.ceil(cout / ct)
        aslot, wslot, oslot, pslot = cfg.slot("act"), cfg.slot("wgt"), cfg.slot("out"), cfg.slot("param")
        row_bytes = w * c
        state = {"act": None, "wgt": None, "aslot": 1, "t": 0}

        def load_act(t: int) -> isa.Instruction:
            oy0 = t * th
            rows = min(th, oh - oy0)
            p0 = oy0 * sh - pt
            p1 = p0 + geo.band_rows(rows)
            r0, r1 = max(0, p0), min(h, p1)
            state["aslot"] ^= 1
            return isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=state["aslot"] * aslot,
                            dram_addr=xaddr + r0 * row_bytes, y_size=r1 - r0, x_size=row_bytes,
                            dram_stride=row_bytes, pad_top=r0 - p0, pad_bottom=p1 - r1,
                            pad_left=pl * c, pad_right=geo.pad_right * c, pad_value=p.in_zero_point)

        def load_wgt(b: int, pieces: int = 1) -> list[isa.Instruction]:
            """Block b's weights (in ``pieces`` DMAs of whole lane groups) and parameters, into the next slot."""
            co0 = b * ct  # a multiple of lanes: so is the block's offset in the lane-interleaved image
            n = min(ct, cout - co0)
            self.wslot ^= 1
            out = []
            groups = isa.weight_groups(n, cfg.lanes)
            group_bytes = kdim * cfg.lanes
            step = -(-groups // pieces)
            for g0 in range(0, groups, step):
                size = min(step, groups - g0) * group_bytes
                out.append(isa.make(Opcode.LOAD, buffer=Buffer.WGT, sram_addr=self.wslot * wslot + g0 * group_bytes,
                                    dram_addr=waddr + co0 * kdim + g0 * group_bytes, y_size=1, x_size=size,
                                    dram_stride=size))
            out.append(isa.make(Opcode.LOAD, buffer=Buffer.PARAM, sram_addr=self.wslot * pslot,
                                dram_addr=paddr + co0 * GEMM_PARAM_WORDS * 4, y_size=1,
                                x_size=n * GEMM_PARAM_WORDS * 4, dram_stride=n * GEMM_PARAM_WORDS * 4))
            return out

        wslot_of: dict[int, int] = {}  # weight block -> the slot it was loaded into

        pending: list[isa.Instruction] = []  # the next block's weight pieces still to issue

        def emit(t: int, b: int, prefetch: int | None = None) -> None:
            tile = Tile()
            if state["act"] != t:
                tile.loads.append(load_act(t))
                state["act"] = t

            def resident(blk: int, pieces: int = 1) -> list[isa.Instruction]:
                ins = load_wgt(blk, pieces)
                for other in [k for k, v in wslot_of.items() if v == self.wslot]:
                    del wslot_of[other]  # evicted: its slot was just overwritten
                wslot_of[blk] = self.wslot
                return ins

            if b not in wslot_of:
                tile.loads += resident(b)
            if prefetch is not None and prefetch not in wslot_of:
                # Weight-resident order: block b+1 streams in during block b, one piece per tile after
                # the first (its slot was last read by block b-1's final tile, which the slot rule of
                # this tile's first load waits for).
                pending.extend(resident(prefetch, max(1, nt - 1)))
            if pending:
                share = -(-len(pending) // max(1, nt - t))
                tile.tail += pending[:share]
                del pending[:share]
            ws = wslot_of[b]
            oy0, co0 = t * th, b * ct
            rows, n = min(th, oh - oy0), min(ct, cout - co0)
            oslot_i = state["t"] % 2
            state["t"] += 1
            tile.computes.append(isa.make(
                Opcode.GEMM, act_addr=state["aslot"] * aslot, wgt_addr=ws * wslot,
                param_addr=ws * pslot, out_addr=oslot_i * oslot,
                in_rows=geo.band_rows(rows), in_cols=geo.in_cols, channels=c, out_rows=rows, out_cols=ow,
                out_channels=n, kh=kh, kw=kw, stride_h=sh, stride_w=sw, dilation_h=dh, dilation_w=dw,
                out_zp=p.out_zero_point, act_min=p.act_min, act_max=p.act_max, epilogue=epilogue))
            tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=oslot_i * oslot,
                                        dram_addr=oaddr + oy0 * ow * cout + co0, y_size=rows * ow, x_size=n,
                                        dram_stride=cout))
            self.prog.tile(tile)

        if tiling.order == "act":
            for t in range(nt):
                for b in range(nb):
                    emit(t, b)
        else:
            for b in range(nb):
                for t in range(nt):
                    emit(t, b, b + 1 if t == 1 and b + 1 < nb else None)
        self._last_tiling_est = tiling.est_cycles
        macs = int(np.prod(out.shape[1:])) * int(np.prod(p.weights.shape[1:]))
        desc = tiling.describe() + (", space-to-depth" if op.inputs[0] in self.s2d else "")
        return desc, macs

    # -- vector ops --------------------------------------------------------------------------
    def _rows_per_tile(self, row_in: int, row_out: int, band, n_rows: int, name: str) -> int:
        """Largest row count whose input band (``band(rows)`` rows of ``row_in`` bytes) and output
        (``rows`` of ``row_out``) fit the activation and output slots."""
        aslot, oslot = self.cfg.slot("act"), self.cfg.slot("out")
        if band(1) * row_in > aslot or row_out > oslot:
            raise TilingError(f"{name}: one row (input {band(1) * row_in} B, output {row_out} B) exceeds the "
                              f"activation ({aslot} B) or output ({oslot} B) slot")
        r = min(n_rows, oslot // row_out, max(1, -(-n_rows // MIN_TILES)))
        while r > 1 and band(r) * row_in > aslot:
            r -= 1
        return r

    def _param_record(self, data: bytes) -> int:
        return self.weight_data(data)

    def _param_load(self, addr: int, nbytes: int) -> tuple[isa.Instruction, int]:
        """A vector op's parameter record into the next parameter slot (resident for the layer)."""
        self.wslot ^= 1
        slot_addr = self.wslot * self.cfg.slot("param")
        return isa.make(Opcode.LOAD, buffer=Buffer.PARAM, sram_addr=slot_addr, dram_addr=addr, y_size=1,
                        x_size=nbytes, dram_stride=nbytes), slot_addr

    def _elementwise(self, op: Op, func: VecFunc, srcs: list[int], record: bytes, act_range: tuple[int, int]) -> str:
        """ADD / REQUANT over whole rows: each tile loads the operands' rows, one VEC, one STORE."""
        shape = self.g.tensor(op.outputs[0]).shape
        for s in srcs:
            if tuple(self.g.tensor(s).shape) != tuple(shape):
                raise CompileError(f"{self._name(op)}: broadcasting {list(self.g.tensor(s).shape)} to "
                                   f"{list(shape)} not supported")
        h, w, c = _hwc(shape)
        row = w * c
        n = len(srcs)
        th = self._rows_per_tile(row * n, row, lambda r: r, h, self._name(op))
        paddr = self._param_record(record)
        aslot, oslot = self.cfg.slot("act"), self.cfg.slot("out")
        out = self.dram(op.outputs[0])
        pload, pslot_addr = self._param_load(paddr, len(record))
        for t in range(math.ceil(h / th)):
            r0, rows = t * th, min(th, h - t * th)
            slot = t % 2
            tile = Tile()
            if t == 0:
                tile.loads.append(pload)
            for i, s in enumerate(srcs):
                tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=slot * aslot + i * rows * row,
                                           dram_addr=self.dram(s) + r0 * row, y_size=1, x_size=rows * row,
                                           dram_stride=rows * row))
            tile.computes.append(isa.make(
                Opcode.VEC, func=func, src_addr=slot * aslot, src2_addr=slot * aslot + rows * row,
                dst_addr=slot * oslot, param_addr=pslot_addr, in_rows=rows, in_cols=w, channels=c, out_rows=rows,
                out_cols=w, kh=1, kw=1, stride_h=1, stride_w=1, act_min=act_range[0], act_max=act_range[1]))
            tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                        dram_addr=out + r0 * row, y_size=1, x_size=rows * row,
                                        dram_stride=rows * row))
            self.prog.tile(tile)
        return f"{th} rows/tile"

    def _add(self, op: Op) -> str:
        g = self.g
        srcs = [i for i in op.inputs[:2]]
        if any(g.tensor(i).is_constant for i in srcs):
            raise CompileError(f"{self._name(op)}: ADD with a constant operand not supported")
        p = P.add_params(g, op)
        m1, s1, m2, s2, mo, so = p.rescale
        rec = _words(p.zp1, p.zp2, m1, s1, m2, s2, mo, so, p.out_zero_point)
        assert len(rec) == ADD_PARAM_WORDS * 4
        return self._elementwise(op, VecFunc.ADD, srcs, rec, (p.act_min, p.act_max))

    def _requant(self, op: Op) -> str:
        p = P.rescale_params(self.g, op)
        rec = _words(p.in_zero_point, p.multiplier, p.shift, p.out_zero_point)
        return self._elementwise(op, VecFunc.REQUANT, [op.inputs[0]], rec, (-128, 127))

    def _activation(self, op: Op) -> str:
        """A standalone RELU / RELU6 / RELU_N1_TO_1: REQUANT to the output's quantization, clamped."""
        p, lo, hi = P.activation_params(self.g, op)
        rec = _words(p.in_zero_point, p.multiplier, p.shift, p.out_zero_point)
        return self._elementwise(op, VecFunc.REQUANT, [op.inputs[0]], rec, (lo, hi))

    def _pool(self, op: Op) -> str:
        g, a = self.g, op.attrs
        x = g.tensor(op.inputs[0])
        h, w, c = _hwc(x.shape)
        (fh, fw), (sh, sw) = a.filter, a.stride
        oh = P.conv_output_size(h, fh, sh, 1, a.padding)
        ow = P.conv_output_size(w, fw, sw, 1, a.padding)
        pt = P.same_padding(h, fh, sh, 1, a.padding)[0] if a.padding == Padding.SAME else 0
        pl = P.same_padding(w, fw, sw, 1, a.padding)[0] if a.padding == Padding.SAME else 0
        if max(fh, fw) > 255 or max(sh, sw, pt, pl) > 15:
            raise CompileError(f"{self._name(op)}: pool window/stride/padding not encodable")
        lo, hi = P.pool_act_range(g, op)
        aslot, oslot = self.cfg.slot("act"), self.cfg.slot("out")
        # Channel chunk: the largest whose one-output-row band fits.
        cc = c
        while cc > 1 and (fh * w * cc > aslot or ow * cc > oslot):
            cc = -(-cc // 2)
        th = self._rows_per_tile(w * cc, ow * cc, lambda r: min(h, (r - 1) * sh + fh), oh, self._name(op))
        func = VecFunc.MAX_POOL if op.kind == OpKind.MAX_POOL_2D else VecFunc.AVG_POOL
        xaddr, oaddr = self.dram(op.inputs[0]), self.dram(op.outputs[0])
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
                                           dram_addr=xaddr + (r0 * w) * c + c0, y_size=(r1 - r0) * w, x_size=n,
                                           dram_stride=c))
                tile.computes.append(isa.make(
                    Opcode.VEC, func=func, src_addr=slot * aslot, dst_addr=slot * oslot, in_rows=r1 - r0,
                    in_cols=w, channels=n, out_rows=rows, out_cols=ow, kh=fh, kw=fw, stride_h=sh, stride_w=sw,
                    pad_top=r0 - p0, pad_left=pl, act_min=lo, act_max=hi))
                tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                            dram_addr=oaddr + oy0 * ow * c + c0, y_size=rows * ow, x_size=n,
                                            dram_stride=c))
                self.prog.tile(tile)
        return f"{th} rows x {cc} ch/tile"

    def _mean(self, op: Op) -> str:
        g, a = self.g, op.attrs
        x, out = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
        axes = tuple(sorted({ax % len(x.shape) for ax in a.axes}))
        if len(x.shape) != 4 or axes != (1, 2):
            raise CompileError(f"{self._name(op)}: MEAN over axes {a.axes} of {list(x.shape)} not supported "
                               f"(the engine reduces H and W of NHWC)")
        p = P.rescale_params(g, op)
        func = VecFunc.MEAN
        rec = _words(p.in_zero_point, p.multiplier, p.shift, p.out_zero_point)
        paddr = self._param_record(rec)
        h, w, c = _hwc(x.shape)
        aslot, oslot = self.cfg.slot("act"), self.cfg.slot("out")
        cc = max(1, -(-c // MIN_TILES))
        while cc > 1 and (h * w * cc > aslot or cc > oslot):
            cc = -(-cc // 2)
        if h * w * cc > aslot:
            raise TilingError(f"{self._name(op)}: {h}x{w} pixels of one channel exceed the activation slot")
        xaddr, oaddr = self.dram(op.inputs[0]), self.dram(op.outputs[0])
        pload, pslot_addr = self._param_load(paddr, len(rec))
        for i, c0 in enumerate(range(0, c, cc)):
            n = min(cc, c - c0)
            slot = i % 2
            tile = Tile()
            if i == 0:
                tile.loads.append(pload)
            tile.loads.append(isa.make(Opcode.LOAD, buffer=Buffer.ACT, sram_addr=slot * aslot,
                                       dram_addr=xaddr + c0, y_size=h * w, x_size=n, dram_stride=c))
            tile.computes.append(isa.make(Opcode.VEC, func=func, src_addr=slot * aslot, dst_addr=slot * oslot,
                                          param_addr=pslot_addr, in_rows=h, in_cols=w, channels=n, out_rows=1, out_cols=1, kh=h, kw=w,
                                          stride_h=1, stride_w=1, act_min=-128, act_max=127))
            tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                        dram_addr=oaddr + c0, y_size=1, x_size=n, dram_stride=n))
            self.prog.tile(tile)
        return f"{cc} ch/tile, {func.name}"

    def _pad(self, op: Op) -> str:
        g, a = self.g, op.attrs
        x, out = g.tensor(op.inputs[0]), g.tensor(op.outputs[0])
        pads = tuple(tuple(int(v) for v in pr) for pr in a.paddings)
        if len(x.shape) != 4 or pads[0] != (0, 0) or pads[3] != (0, 0):
            raise CompileError(f"{self._name(op)}: only spatial (H, W) padding of NHWC is supported, got {pads}")
        value = out.quant.zp if out.quant is not None else 0
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(g.tensor(op.inputs[2]).data.reshape(-1)[0])
        (pt, pb), (pl, pr) = pads[1], pads[2]
        h, w, c = _hwc(x.shape)
        s2d = op.outputs[0] in self.s2d
        if s2d:  # round the padded size up to whole 2x2 blocks, with more fill
            pb += (h + pt + pb) % 2
            pr += (w + pl + pr) % 2
        oh, ow = h + pt + pb, w + pl + pr
        row_out = ow * c
        aslot, oslot = self.cfg.slot("act"), self.cfg.slot("out")
        th = self._rows_per_tile(row_out, row_out, lambda r: r, oh, self._name(op))
        if s2d:  # whole 2x2 blocks per tile
            th = max(2, th - th % 2)
        xaddr, oaddr = self.dram(op.inputs[0]), self.dram(op.outputs[0])
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
            # The vector unit copies the padded rows to OUT, or interleaves each pair of rows into
            # [rows/2, cols/2, 4C] blocks; either way the store is one contiguous burst.
            tile.computes.append(isa.make(
                Opcode.VEC, func=VecFunc.SPACE_TO_DEPTH if s2d else VecFunc.COPY, src_addr=slot * aslot,
                dst_addr=slot * oslot, in_rows=rows, in_cols=ow, channels=c, out_rows=rows // 2 if s2d else rows,
                out_cols=ow // 2 if s2d else ow, kh=1, kw=1, stride_h=1, stride_w=1, act_min=-128, act_max=127))
            tile.stores.append(isa.make(Opcode.STORE, buffer=Buffer.OUT, sram_addr=slot * oslot,
                                        dram_addr=oaddr + oy0 * row_out, y_size=1, x_size=rows * row_out,
                                        dram_stride=rows * row_out))
            self.prog.tile(tile)
        return f"{th} rows/tile" + (", space-to-depth" if s2d else "")


def compile_graph(graph: Graph, cfg: EngineConfig, source: bytes | None = None,
                  progress: bool = False) -> ctr.Container:
    """Lower ``graph`` to a program for the engine ``cfg``; raises CompileError naming what does not fit."""
    return Lowering(graph, cfg, progress).run(source)
