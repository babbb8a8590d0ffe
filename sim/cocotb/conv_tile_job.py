"""Workloads for the ConvTile bench: a conv tile's beats, parameter writes and golden outputs.

Expected values come from the golden model only (``kernels.conv2d`` for the layer tile,
``fixedpoint.requantize`` for edge accumulators); packing uses the components' own layouts, so
the bench and the RTL agree on bit positions by construction.
"""

from __future__ import annotations

import numpy as np

from onda.hw.datapath.conv_tile import ChannelParamLayout
from onda.hw.datapath.gemm import MacBeatLayout
from onda.sim.golden import kernels
from onda.sim.golden.params import GemmParams
from onda.sim.ir import Padding


def _pack(layout, value: dict) -> str:
    return format(layout.const(value).as_value().value & ((1 << layout.size) - 1), "x")


def conv_tile_job(x: np.ndarray, p: GemmParams, lanes: int, width: int, *, stride=(1, 1),
                  padding: Padding = Padding.SAME, seed: int = 0, idle: float = 0.2,
                  stall: float = 0.2) -> dict:
    """Every output pixel of conv(x) for the first ``lanes`` output channels of ``p``.

    ``x`` is NHWC int8 (N = 1). K = KH*KW*Cin is streamed ``width`` elements a beat in TFLite's
    OHWI order; a partial last beat is padded with x = x_zp and w = 0 (contributes 0).
    """
    cout, kh, kw, cin = p.weights.shape
    assert cout == lanes, "one tile of `lanes` output channels"
    cols, oh, ow = kernels.im2col(x, kh, kw, stride, (1, 1), padding, p.in_zero_point, dtype=np.int64)
    w = p.weights.reshape(cout, -1).astype(np.int64)
    k = w.shape[1]
    nbeats = -(-k // width)
    kpad = nbeats * width
    cols = np.concatenate([cols, np.full((cols.shape[0], kpad - k), p.in_zero_point)], axis=1)
    w = np.concatenate([w, np.zeros((cout, kpad - k), dtype=np.int64)], axis=1)
    blayout = MacBeatLayout(lanes, width)
    beats = []
    for row in cols:
        for b in range(nbeats):
            sl = slice(b * width, (b + 1) * width)
            beats.append(_pack(blayout, dict(x=[int(v) for v in row[sl]],
                                             w=[[int(v) for v in wr[sl]] for wr in w],
                                             first=int(b == 0), last=int(b == nbeats - 1))))
    playout = ChannelParamLayout(lanes)
    params = [_pack(playout, dict(lane=l, bias=int(p.bias[l]), multiplier=int(p.multiplier[l]),
                                  shift=int(p.shift[l]))) for l in range(lanes)]
    expected = kernels.conv2d(x, p, stride, (1, 1), padding)  # [1, oh, ow, cout]
    return {
        "config": {"x_zp": int(p.in_zero_point), "out_zero_point": int(p.out_zero_point),
                   "act_min": int(p.act_min), "act_max": int(p.act_max)},
        "params": params, "beats": beats,
        "expected": [int(v) for v in expected.reshape(-1)],  # pixel-major, channel-minor
        "seed": seed, "idle": idle, "stall": stall,
        "shape": [int(oh), int(ow), int(cout)], "k": int(k),
    }
