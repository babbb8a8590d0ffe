"""WGT's weight layout (hw/ISA.md, "WGT layout"): ``isa.pack_weights`` against the byte formula
written out element by element, its inverse, and the padding that makes every MAC beat one
aligned read."""

import numpy as np
import pytest

from onda.hw import isa

CASES = [  # (out_channels, kh, kw, channels, dilation_w, lanes, width)
    (5, 3, 3, 3, 1, 4, 2),      # rows of 9 padded to 10
    (16, 1, 1, 64, 1, 16, 8),   # already whole beats: nothing padded
    (20, 3, 3, 5, 2, 16, 8),    # dilated: each tap its own segment, 5 -> 8
    (1, 7, 7, 3, 1, 16, 8),     # a stem-like row of 21 -> 24, one lane of sixteen used
    (7, 1, 1, 9, 1, 4, 1),      # width 1: the unpadded layout
]


def _by_formula(w, kh, kw, c, dw, lanes, width):
    """The layout byte by byte, as hw/ISA.md states it."""
    ct = w.shape[0]
    seg = kw * c if dw == 1 else c
    seg_pad = -(-seg // width) * width
    kp = (kh * kw * c // seg) * seg_pad
    groups = -(-ct // lanes)
    out = np.zeros(groups * kp * lanes, dtype=np.int8)
    for j in range(ct):
        for k in range(kh * kw * c):
            s, e = divmod(k, seg)
            out[((j // lanes) * kp + s * seg_pad + e) * lanes + j % lanes] = w[j, k]
    return out.tobytes(), kp


@pytest.mark.parametrize("ct, kh, kw, c, dw, lanes, width", CASES)
def test_pack_matches_the_isa_and_inverts(ct, kh, kw, c, dw, lanes, width):
    rng = np.random.default_rng(ct * 100 + kh * 10 + c)
    w = rng.integers(-128, 128, (ct, kh * kw * c)).astype(np.int8)
    seg = isa.weight_segment(kw, c, dw)
    want, kp = _by_formula(w, kh, kw, c, dw, lanes, width)
    f = dict(kh=kh, kw=kw, channels=c, dilation_w=dw)
    assert isa.gemm_stored_k(f, width) == kp and kp % width == 0
    got = isa.pack_weights(w, lanes, width, seg)
    assert got == want and len(got) == isa.weight_bytes(ct, kp, lanes)
    assert np.array_equal(isa.unpack_weights(got, ct, w.shape[1], lanes, width, seg), w)
    # The inverse ignores the padding: garbage there unpacks to the same matrix.
    noisy = np.frombuffer(got, dtype=np.int8).copy()
    pad = np.frombuffer(isa.pack_weights(np.ones_like(w), lanes, width, seg), dtype=np.int8) == 0
    noisy[pad] = rng.integers(-128, 128, int(pad.sum()))
    assert np.array_equal(isa.unpack_weights(noisy, ct, w.shape[1], lanes, width, seg), w)


def test_stored_k_refuses_partial_segments():
    with pytest.raises(ValueError, match="not a whole number of 4-element segments"):
        isa.stored_k(10, 4, 8)
    with pytest.raises(ValueError, match="need 80 weight bytes"):
        isa.unpack_weights(bytes(79), 5, 9, 4, 2, 9)  # 2 groups x K' 10 x 4
