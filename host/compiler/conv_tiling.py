"""Tiling of a convolution (or fully-connected layer) as an implicit GEMM on the engine.

An output tile is ``rows`` whole output rows x ``channels`` output channels. Its input is a band
of padded input rows (all columns, all input channels) in an activation slot, read by the GEMM
through the kernel window (no im2col in memory); its weights are ``channels`` rows of the
[Cout, KH*KW*Cin] weight matrix in a weight slot. The loop order decides which operand stays
resident: ``act`` (bands outer, weight blocks inner) or ``wgt`` (weight blocks outer). The
choice minimises the estimated time, max(compute, memory) plus the pipeline fill and drain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onda.hw.config import EngineConfig
from onda.hw.isa import GEMM_PARAM_WORDS, weight_bytes
from onda.sim.emulator import cycles


class TilingError(ValueError):
    """A layer that does not fit the engine's buffers at any tile size; the message names the limit."""


@dataclass(frozen=True)
class ConvGeometry:
    h: int
    w: int
    c: int
    oh: int
    ow: int
    cout: int
    kh: int
    kw: int
    sh: int
    sw: int
    dh: int
    dw: int
    pad_top: int
    pad_left: int

    @property
    def ekh(self) -> int:
        return (self.kh - 1) * self.dh + 1

    @property
    def ekw(self) -> int:
        return (self.kw - 1) * self.dw + 1

    @property
    def k(self) -> int:
        return self.kh * self.kw * self.c

    @property
    def in_cols(self) -> int:
        """Columns of the padded band: every input column plus the padding the windows reach."""
        need = (self.ow - 1) * self.sw + self.ekw
        return max(self.pad_left + self.w, need)

    @property
    def pad_right(self) -> int:
        return self.in_cols - self.pad_left - self.w

    def band_rows(self, rows: int) -> int:
        return (rows - 1) * self.sh + self.ekh

    @property
    def macs(self) -> int:
        return self.oh * self.ow * self.cout * self.k


def gemm_cycles(cfg: EngineConfig, g: ConvGeometry, rows: int, channels: int) -> int:
    """Cycles of one GEMM instruction (the cycle model's formula)."""
    return cycles.gemm_cycles(cfg, rows * g.ow, channels, g.kh, g.kw, g.c, g.dw)


def dma_cycles(cfg: EngineConfig, nbytes: int) -> int:
    return cycles.dma_cycles(cfg, nbytes)


@dataclass(frozen=True)
class ConvTiling:
    rows: int  # output rows per tile
    channels: int  # output channels per tile
    order: str  # "act": bands outer (activations resident); "wgt": weight blocks outer
    est_cycles: int
    bytes_moved: int

    def describe(self) -> str:
        return f"{self.rows}r x {self.channels}c, {self.order}-resident"


def choose_tiling(cfg: EngineConfig, g: ConvGeometry, name: str, prev_cycles: int = 0) -> ConvTiling:
    aslot, wslot, oslot, pslot = cfg.slot("act"), cfg.slot("wgt"), cfg.slot("out"), cfg.slot("param")
    row_bytes = g.in_cols * g.c
    if g.ekh * row_bytes > aslot:
        raise TilingError(f"{name}: the minimum activation band ({g.ekh} padded rows x {g.in_cols} columns x "
                          f"{g.c} channels = {g.ekh * row_bytes} B) exceeds the activation slot ({aslot} B)")
    min_ct = min(cfg.lanes, g.cout)
    if weight_bytes(min_ct, g.k, cfg.lanes) > wslot:
        raise TilingError(f"{name}: the minimum weight tile ({cfg.lanes} lanes x K={g.k} = "
                          f"{weight_bytes(min_ct, g.k, cfg.lanes)} B) "
                          f"exceeds the weight slot ({wslot} B)")
    if min_ct * GEMM_PARAM_WORDS * 4 > pslot:
        raise TilingError(f"{name}: {min_ct} channels' parameters exceed the parameter slot ({pslot} B)")
    if g.ow * min_ct > oslot:
        raise TilingError(f"{name}: one output row ({g.ow} x {min_ct} B) exceeds the output slot ({oslot} B)")
    cands = sorted({min(g.cout, cfg.lanes * m) for m in range(1, math.ceil(g.cout / cfg.lanes) + 1)})
    best = None
    w_bytes = g.cout * g.k + g.cout * GEMM_PARAM_WORDS * 4
    out_bytes = g.oh * g.ow * g.cout
    for ct in cands:
        if weight_bytes(ct, g.k, cfg.lanes) > wslot or ct * GEMM_PARAM_WORDS * 4 > pslot or g.ow * ct > oslot:
            continue
        th_max = min(g.oh, oslot // (g.ow * ct))
        while th_max > 1 and g.band_rows(th_max) * row_bytes > aslot:
            th_max -= 1
        # Smaller bands than the largest that fits pipeline better (shorter fill and drain).
        for th in sorted({th_max} | {math.ceil(g.oh / k) for k in range(2, 17)} - {0}):
            if th > th_max:
                continue
            cand = _estimate(cfg, g, th, ct, w_bytes, out_bytes, prev_cycles)
            if best is None or (cand.est_cycles, cand.bytes_moved) < (best.est_cycles, best.bytes_moved):
                best = cand
    if best is None:
        raise TilingError(f"{name}: no tile fits the engine's buffers")
    return best


def _estimate(cfg: EngineConfig, g: ConvGeometry, th: int, ct: int, w_bytes: int, out_bytes: int,
              prev_cycles: int = 0) -> ConvTiling:
    """The better loop order for (th, ct) and its estimated cycles: max(compute, memory) plus the
    pipeline fill (the first band; the first weights are prefetched during the previous layer) and
    drain (the last tile's GEMM and store)."""
    row_bytes = g.w * g.c
    nb, nt = math.ceil(g.cout / ct), math.ceil(g.oh / th)
    band_bytes = sum(min(g.h, g.band_rows(min(th, g.oh - t * th))) for t in range(nt)) * row_bytes
    compute = sum(gemm_cycles(cfg, g, min(th, g.oh - t * th), min(ct, g.cout - b * ct))
                  for t in range(nt) for b in range(nb))
    best = None
    for order in ("act", "wgt"):
        if order == "act":
            moved = band_bytes + (w_bytes if nb == 1 else nt * w_bytes) + out_bytes
            transfers = nt + nb * nt * 3
        else:
            moved = w_bytes + (band_bytes if nt == 1 else nb * band_bytes) + out_bytes
            transfers = nb * 2 + nb * nt * 2
        mem = moved / cfg.mem_bytes_per_cycle + transfers * cfg.mem_latency_cycles
        first_w = dma_cycles(cfg, ct * g.k + ct * GEMM_PARAM_WORDS * 4)
        fill = dma_cycles(cfg, min(g.h, g.band_rows(th)) * row_bytes) + max(0, first_w - prev_cycles)
        drain = gemm_cycles(cfg, g, th, ct) + dma_cycles(cfg, th * g.ow * ct)
        est = int(max(compute, mem) + fill + drain)
        cand = ConvTiling(th, ct, order, est, int(moved))
        if best is None or (est, moved) < (best.est_cycles, best.bytes_moved):
            best = cand
    return best
