"""IR -> engine program: the driver of the compiler's passes.

Memory (the engine's port address space)::

    [0, act_size)                          activation tensors, NHWC int8, allocated by liveness
                                           (``memory.py``)
    [weights_base, + weights_size)         weight image: per GEMM layer the [Cout, K] int8 matrix
                                           (TFLite's OHWI order) lane-interleaved as WGT holds it
                                           (``isa.pack_weights``), then int32 (bias', M0, shift) per
                                           channel (``gemm.py``); vector ops' int32 parameter records
                                           (``vector_ops.py``)
    [program_base, + program_size)         the instructions (fetched by the engine)

Passes: the host's QUANTIZE/DEQUANTIZE split off (``partition.py``), the space-to-depth stem
chosen (``space_to_depth.py``), activations placed (``memory.py``), each op lowered to tiles
(``gemm.py``, ``vector_ops.py``) joined by dependency tokens (``program.py``), the memory map
written (``memmap.py``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from onda.hw import container as ctr
from onda.hw import isa
from onda.hw.config import EngineConfig
from onda.hw.extents import dma_bytes
from onda.sim.ir import ACTIVATION_OPS, Graph, Op, OpKind

from .conv_tiling import TilingError
from .emitter import Emitter
from .errors import CompileError
from .gemm import lower_gemm
from .memmap import build_memmap
from .memory import MemoryPlan, align, reshape_aliases
from .partition import partition
from .space_to_depth import plan_space_to_depth
from .concat import plan_views
from .vector_ops import lower_activation, lower_add, lower_concat, lower_mul, lower_mean, lower_pad, lower_pool, lower_requant

__all__ = ["CompileError", "Layer", "compile_graph"]


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


def _vector_lowering(g: Graph, op: Op):
    k = op.kind
    if k == OpKind.ADD:
        return lower_add
    if k == OpKind.MUL:
        return lower_mul
    if k in (OpKind.MAX_POOL_2D, OpKind.AVERAGE_POOL_2D):
        return lower_pool
    if k == OpKind.MEAN:
        return lower_mean
    if k == OpKind.PAD:
        return lower_pad
    if k == OpKind.CONCATENATION:
        return lower_concat
    if k == OpKind.QUANTIZE and g.tensor(op.inputs[0]).dtype == "int8":
        return lower_requant
    if k in ACTIVATION_OPS:
        return lower_activation
    raise CompileError(f"op #{op.index} {k.value}: not supported by the engine "
                       f"(float QUANTIZE/DEQUANTIZE run on the host)")


def compile_graph(graph: Graph, cfg: EngineConfig, source: bytes | None = None,
                  progress: bool = False) -> ctr.Container:
    """Lower ``graph`` to a program for the engine ``cfg``; raises CompileError naming what does not fit."""
    g = graph
    part = partition(g)
    for t in part.inputs + part.outputs:
        if g.tensor(t).dtype != "int8":
            raise CompileError(f"tensor {g.tensor(t).name!r} is {g.tensor(t).dtype}: the engine takes and "
                               f"returns int8 (only a float QUANTIZE at an input and a DEQUANTIZE at an "
                               f"output run on the host)")
    alias = reshape_aliases(part.ops)
    s2d = plan_space_to_depth(g, part.ops, part.outputs, alias, cfg)
    views = plan_views(g, part.ops, part.inputs, part.outputs, alias, s2d)
    mem = MemoryPlan(g, part.ops, part.inputs, part.outputs, alias, s2d, views)
    em = Emitter(g, cfg, mem, align(mem.act_size, 4096))
    floor = mem.act_size + sum(int(np.prod(g.tensor(t).shape)) for op in part.ops for t in op.inputs[1:]
                               if t >= 0 and g.tensor(t).is_constant and g.tensor(t).dtype == "int8")
    if floor > cfg.mem_size_bytes:  # the weights alone do not fit: say so before tiling every layer
        raise CompileError(f"model needs at least {floor} B of engine memory (activations {mem.act_size} and "
                           f"int8 weights), engine {cfg.name!r} has {cfg.mem_size_bytes} B ({cfg.mem_kind})")
    layers = _emit_layers(em, part.ops, progress)
    try:
        program = isa.encode_program(em.prog.finish())
    except isa.ISAError as e:
        raise CompileError(f"engine {cfg.name!r}: a tile does not fit the instruction fields: {e}") from None
    weights_size = em.wimg.size
    program_base = align(em.wbase + weights_size, 4096)
    total = program_base + len(program)
    if total > cfg.mem_size_bytes:
        raise CompileError(f"model needs {total} B of engine memory (activations {mem.act_size}, weights "
                           f"{weights_size}, program {len(program)}), engine {cfg.name!r} has "
                           f"{cfg.mem_size_bytes} B ({cfg.mem_kind})")
    regions = {"act_base": 0, "act_size": mem.act_size, "weights_base": em.wbase, "weights_size": weights_size,
               "program_base": program_base, "program_size": len(program)}
    memmap = build_memmap(g, part, mem, regions, [vars(layer) for layer in layers])
    return ctr.Container(config=cfg.as_dict(), fingerprint=cfg.fingerprint, program=program,
                         weights=em.wimg.bytes(), memmap=memmap, source=source)


def _emit_layers(em: Emitter, ops: list[Op], progress: bool) -> list[Layer]:
    g, cfg, mem = em.g, em.cfg, em.mem
    it = ops
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(ops, desc=f"compiling {g.name} for {cfg.name}", unit="op", file=sys.stderr, leave=False)
        it = bar
    layers: list[Layer] = []
    prev_est = 0  # estimated cycles of the previous layer (hides the next one's first weights)
    for op in it:
        if op.kind == OpKind.RESHAPE:
            continue  # its output is its input's bytes
        em.layer_weight_bytes = 0
        try:
            if op.kind in (OpKind.CONV_2D, OpKind.FULLY_CONNECTED):
                gl = lower_gemm(em, op, prev_est)
                desc, macs, est = gl.describe, gl.macs, gl.est_cycles
            else:
                desc, macs = _vector_lowering(g, op)(em, op), 0
                est = None
        except TilingError as e:
            raise CompileError(f"engine {cfg.name!r}: {e}") from None
        if est is None:
            dma = sum(dma_bytes(i) for t in em.prog.pending for i in t.loads + t.stores)
            est = int(dma / cfg.mem_bytes_per_cycle)
        first, last = em.prog.end_layer()
        prev_est = est
        out = op.outputs[0]
        ins = [i for i in op.inputs if i >= 0 and not g.tensor(i).is_constant]
        compulsory = sum(mem.nbytes(i) for i in set(ins)) + mem.nbytes(out) + em.layer_weight_bytes
        layers.append(Layer(op.index, op.kind.value, g.tensor(out).name, out, ins, first, last, macs, desc,
                            compulsory))
    if bar is not None:
        bar.close()
    return layers

