"""Tiling of a convolution (or fully-connected layer) as an implicit GEMM on the engine.

An output tile is ``rows`` whole output rows x ``channels`` output channels. Its input is a band
of padded input rows (all columns, all input channels) in an activation slot, read by the GEMM
through the kernel window (no im2col in memory); its weights are ``channels`` rows of the
[Cout, KH*KW*Cin] weight matrix in a weight slot. The loop order decides which operand stays
resident: ``act`` (bands outer, weight blocks inner) or ``wgt`` (weight blocks outer). The
choice minimises the estimated time, max(compute, memory) plus the pipeline fill and drain.

A layer whose smallest such tile does not fit is split further (``split_tiling``): into column
tiles (``cols`` output columns, the band then holds only the columns their windows read), and
over the reduction into passes of ``slice`` input channels (K = kh * kw * slice each), whose
int32 partial sums stay in the accumulator buffer (GEMM ``acc_in`` / ``acc_out``) until the last
pass requantizes them. Each pass loads its own channel slice of the band and of the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from onda.hw.config import EngineConfig
from onda.hw.isa import GEMM_PARAM_WORDS, acc_bytes, stored_k, weight_bytes, weight_segment
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

    def wk(self, width: int, channels: int | None = None) -> int:
        """K' of the GEMM's weights in WGT (``isa.stored_k``: each kernel row, or each tap when
        ``dw > 1``, padded to whole beats of ``width``), for ``channels`` input channels (all)."""
        c = self.c if channels is None else channels
        return stored_k(self.kh * self.kw * c, weight_segment(self.kw, c, self.dw), width)

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
    cols: int = 0  # output columns per tile (0: whole rows)
    slice: int = 0  # input channels per pass over K (0: all of them, one pass)

    @property
    def split(self) -> bool:
        return bool(self.cols or self.slice)

    def describe(self) -> str:
        d = f"{self.rows}r x {self.channels}c, {self.order}-resident"
        if self.cols:
            d += f", {self.cols}-column tiles"
        if self.slice:
            d += f", K in passes of {self.slice} channels"
        return d


def choose_tiling(cfg: EngineConfig, g: ConvGeometry, name: str, prev_cycles: int = 0) -> ConvTiling:
    """The cheapest tiling of whole output rows and all input channels, or, when even the smallest
    such tile does not fit, ``split_tiling``'s."""
    try:
        return _row_tiling(cfg, g, name, prev_cycles)
    except TilingError as e:
        return split_tiling(cfg, g, name, str(e))


def _row_tiling(cfg: EngineConfig, g: ConvGeometry, name: str, prev_cycles: int = 0) -> ConvTiling:
    aslot, wslot, oslot, pslot = cfg.slot("act"), cfg.slot("wgt"), cfg.slot("out"), cfg.slot("param")
    row_bytes = g.in_cols * g.c
    if g.ekh * row_bytes > aslot:
        raise TilingError(f"{name}: the minimum activation band ({g.ekh} padded rows x {g.in_cols} columns x "
                          f"{g.c} channels = {g.ekh * row_bytes} B) exceeds the activation slot ({aslot} B)")
    min_ct = min(cfg.lanes, g.cout)
    wk = g.wk(cfg.width)
    if weight_bytes(min_ct, wk, cfg.lanes) > wslot:
        raise TilingError(f"{name}: the minimum weight tile ({cfg.lanes} lanes x K'={wk} = "
                          f"{weight_bytes(min_ct, wk, cfg.lanes)} B) "
                          f"exceeds the weight slot ({wslot} B)")
    if min_ct * GEMM_PARAM_WORDS * 4 > pslot:
        raise TilingError(f"{name}: {min_ct} channels' parameters exceed the parameter slot ({pslot} B)")
    if g.ow * min_ct > oslot:
        raise TilingError(f"{name}: one output row ({g.ow} x {min_ct} B) exceeds the output slot ({oslot} B)")
    cands = sorted({min(g.cout, cfg.lanes * m) for m in range(1, math.ceil(g.cout / cfg.lanes) + 1)})
    best = None
    w_bytes = g.cout * wk + g.cout * GEMM_PARAM_WORDS * 4
    out_bytes = g.oh * g.ow * g.cout
    for ct in cands:
        if weight_bytes(ct, wk, cfg.lanes) > wslot or ct * GEMM_PARAM_WORDS * 4 > pslot or g.ow * ct > oslot:
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
        first_w = dma_cycles(cfg, ct * g.wk(cfg.width) + ct * GEMM_PARAM_WORDS * 4)
        fill = dma_cycles(cfg, min(g.h, g.band_rows(th)) * row_bytes) + max(0, first_w - prev_cycles)
        drain = gemm_cycles(cfg, g, th, ct) + dma_cycles(cfg, th * g.ow * ct)
        est = int(max(compute, mem) + fill + drain)
        cand = ConvTiling(th, ct, order, est, int(moved))
        if best is None or (est, moved) < (best.est_cycles, best.bytes_moved):
            best = cand
    return best


def split_tiling(cfg: EngineConfig, g: ConvGeometry, name: str, why: str = "") -> ConvTiling:
    """Column tiles and passes over K for a layer whose smallest whole-row tile does not fit (``why``):
    the fewest passes whose weights and one-pixel band fit, then the (rows, columns, channels)
    tile of least estimated time within the activation, output and accumulator buffers."""
    aslot, wslot, oslot, pslot = cfg.slot("act"), cfg.slot("wgt"), cfg.slot("out"), cfg.slot("param")
    min_ct = min(cfg.lanes, g.cout)
    taps = g.kh * g.kw
    if min_ct * GEMM_PARAM_WORDS * 4 > pslot:
        raise TilingError(f"{name}: {min_ct} channels' parameters exceed the parameter slot ({pslot} B)")
    if weight_bytes(min_ct, g.wk(cfg.width, 1), cfg.lanes) > wslot or g.ekh * g.ekw > aslot or min_ct > oslot:
        raise TilingError(f"{name}: not even one input channel fits: {cfg.lanes} lanes x {taps} taps of weights "
                          f"(weight slot {wslot} B), a {g.ekh}x{g.ekw} window (activation slot {aslot} B)")
    cs = min(g.c, wslot // (cfg.lanes * taps), aslot // (g.ekh * g.ekw))
    while cs > 1 and weight_bytes(min_ct, g.wk(cfg.width, cs), cfg.lanes) > wslot:  # rows padded to beats
        cs -= 1
    passes = math.ceil(g.c / cs)
    cs = math.ceil(g.c / passes)  # balanced passes
    if passes > 1 and cfg.acc_bytes < acc_bytes(min_ct, 1, cfg.lanes):
        raise TilingError(f"{name}: {why}; splitting K needs an accumulator buffer, and engine {cfg.name!r} "
                          f"has none (buffers.acc)")

    def band_cols(tc: int) -> int:
        return (tc - 1) * g.sw + g.ekw

    def fits(th: int, tc: int, ct: int) -> bool:
        return (g.band_rows(th) * band_cols(tc) * cs <= aslot and th * tc * ct <= oslot
                and (passes == 1 or acc_bytes(ct, th * tc, cfg.lanes) <= cfg.acc_bytes))

    best = None
    cands = sorted({min(g.cout, cfg.lanes * m) for m in range(1, math.ceil(g.cout / cfg.lanes) + 1)})
    for ct in cands:
        if weight_bytes(ct, g.wk(cfg.width, cs), cfg.lanes) > wslot or ct * GEMM_PARAM_WORDS * 4 > pslot:
            continue
        tc_max = g.ow
        while tc_max > 1 and not fits(1, tc_max, ct):
            tc_max -= 1
        if not fits(1, tc_max, ct):
            continue
        for tc in sorted({tc_max} | {math.ceil(g.ow / k) for k in range(2, 9)}):
            if tc > tc_max:
                continue
            th_max = g.oh
            while th_max > 1 and not fits(th_max, tc, ct):
                th_max -= 1
            for th in sorted({th_max} | {math.ceil(g.oh / k) for k in range(2, 9)}):
                if th > th_max:
                    continue
                cand = _estimate_split(cfg, g, th, tc, ct, cs)
                if best is None or (cand.est_cycles, cand.bytes_moved) < (best.est_cycles, best.bytes_moved):
                    best = cand
    if best is None:
        raise TilingError(f"{name}: no tile fits the engine's buffers ({why})")
    return best


def _sizes(total: int, step: int) -> list[tuple[int, int]]:
    """(size, how many) of the pieces ``total`` splits into at ``step``: the full ones and the rest."""
    n, rest = divmod(total, step)
    return [(s, k) for s, k in ((step, n), (rest, 1 if rest else 0)) if k]


def _estimate_split(cfg: EngineConfig, g: ConvGeometry, th: int, tc: int, ct: int, cs: int) -> ConvTiling:
    """Bands outer, then column tiles, weight blocks and passes (every pass reloads its band slice
    and weight slice; with one pass the band stays for the blocks and a single block's weights for
    the layer): max(compute, memory) plus the first band and the last tile."""
    passes = math.ceil(g.c / cs)
    nt, nu, nb = math.ceil(g.oh / th), math.ceil(g.ow / tc), math.ceil(g.cout / ct)
    compute = sum(kr * ku * kb * kp * gemm_cycles_px(cfg, g, r * u, n, c)
                  for r, kr in _sizes(g.oh, th) for u, ku in _sizes(g.ow, tc)
                  for n, kb in _sizes(g.cout, ct) for c, kp in _sizes(g.c, cs))
    band = g.band_rows(th) * ((tc - 1) * g.sw + g.ekw) * g.c  # all passes of one tile's band
    w_bytes = g.cout * sum(k * g.wk(cfg.width, c) for c, k in _sizes(g.c, cs)) + g.cout * GEMM_PARAM_WORDS * 4
    per_row = passes > 1 or tc < g.ow
    if passes == 1:
        moved = nt * nu * band + (w_bytes if nb == 1 else nt * nu * w_bytes)
        transfers = nt * nu * (g.band_rows(th) if per_row else 1) + nt * nu * nb * 2
    else:
        moved = nt * nu * nb * band + nt * nu * w_bytes
        transfers = nt * nu * nb * passes * (g.band_rows(th) + 2)
    moved += g.oh * g.ow * g.cout
    transfers += nt * nu * nb * (th if tc < g.ow else 1)
    mem = moved / cfg.mem_bytes_per_cycle + transfers * cfg.mem_latency_cycles
    fill = dma_cycles(cfg, band // passes) + dma_cycles(cfg, ct * g.wk(cfg.width, cs))
    drain = gemm_cycles_px(cfg, g, th * tc, ct, cs) + dma_cycles(cfg, th * tc * ct)
    return ConvTiling(th, ct, "act", int(max(compute, mem) + fill + drain), int(moved),
                      cols=tc if tc < g.ow else 0, slice=cs if passes > 1 else 0)


def gemm_cycles_px(cfg: EngineConfig, g: ConvGeometry, pixels: int, channels: int, cin: int) -> int:
    """Cycles of one GEMM of ``pixels`` output pixels, ``channels`` output channels and ``cin``
    input channels (the cycle model's formula)."""
    return cycles.gemm_cycles(cfg, pixels, channels, g.kh, g.kw, cin, g.dw)
