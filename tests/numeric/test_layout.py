"""The space-to-depth layout (``sim/golden/layout.py``): its defining formula, its inverse, and the
identity the compiler's strided stem relies on, checked with the golden model's own convolution."""

from dataclasses import replace

import numpy as np
import pytest

from onda.sim.golden import fixedpoint as fp
from onda.sim.golden import kernels as K
from onda.sim.ir import Padding
from onda.sim.golden.layout import depth_to_space, space_to_depth, space_to_depth_kernel
from onda.sim.golden.params import GemmParams


def test_space_to_depth_formula():
    """``y[b, r, c, (dy*2 + dx)*C + ch] = x[b, 2r + dy, 2c + dx, ch]``, element by element."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 6, 4, 3), dtype=np.int8)
    y = space_to_depth(x)
    assert y.shape == (2, 3, 2, 12)
    for b, r, c, dy, dx, ch in np.ndindex(2, 3, 2, 2, 2, 3):
        assert y[b, r, c, (dy * 2 + dx) * 3 + ch] == x[b, 2 * r + dy, 2 * c + dx, ch]


def test_kernel_formula():
    """``w'[o, i, k, (dy*2 + dx)*C + ch] = w[o, 2i + dy, 2k + dx, ch]``, zero beyond the kernel."""
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, (2, 3, 5, 2), dtype=np.int8)
    wk = space_to_depth_kernel(w)
    assert wk.shape == (2, 2, 3, 8)
    for o, i, k, dy, dx, ch in np.ndindex(2, 2, 3, 2, 2, 2):
        y, x = 2 * i + dy, 2 * k + dx
        assert wk[o, i, k, (dy * 2 + dx) * 2 + ch] == (w[o, y, x, ch] if y < 3 and x < 5 else 0)


@pytest.mark.parametrize("shape", [(1, 2, 2, 1), (3, 4, 6, 3), (2, 8, 2, 5)])
def test_round_trip(shape):
    x = np.random.default_rng(2).integers(-128, 128, shape, dtype=np.int8)
    np.testing.assert_array_equal(depth_to_space(space_to_depth(x)), x)
    y = space_to_depth(x)
    np.testing.assert_array_equal(space_to_depth(depth_to_space(y)), y)


def test_odd_sizes_refused():
    with pytest.raises(ValueError, match="even"):
        space_to_depth(np.zeros((1, 3, 4, 1), np.int8))
    with pytest.raises(ValueError, match="multiple of 4"):
        depth_to_space(np.zeros((1, 2, 2, 6), np.int8))


def _params(rng, w: np.ndarray) -> GemmParams:
    cout = w.shape[0]
    mult, shift = fp.quantize_multiplier_array(rng.uniform(1e-4, 2e-3, cout))
    return GemmParams(weights=w, weight_zero_point=0, bias=rng.integers(-5000, 5000, cout).astype(np.int64),
                      in_zero_point=int(rng.integers(-128, 128)), multiplier=mult, shift=shift,
                      out_zero_point=int(rng.integers(-20, 20)), act_min=-128, act_max=127)


# (height, width, channels, kernel height, kernel width, output channels): odd sizes included,
# which the compiler rounds up to whole 2x2 blocks with more fill.
CONVS = [(8, 8, 3, 3, 3, 4), (7, 9, 3, 7, 7, 5), (9, 7, 1, 2, 3, 2), (11, 11, 2, 5, 4, 3), (6, 5, 4, 1, 1, 2),
         (16, 13, 3, 7, 7, 8)]


@pytest.mark.parametrize("h, w, c, kh, kw, cout", CONVS)
def test_stride2_conv_is_stride1_conv_on_space_to_depth(h, w, c, kh, kw, cout):
    """A stride-2 VALID conv on ``x`` = the stride-1 VALID conv of ``space_to_depth_kernel(w)`` on
    ``space_to_depth(x)`` (``x`` padded to even sizes with an arbitrary fill, which meets only the
    kernel's zeros), on its first output rows and columns: accumulators and int8 outputs."""
    rng = np.random.default_rng(h * 1000 + w * 100 + kh * 10 + kw)
    x = rng.integers(-128, 128, (2, h, w, c), dtype=np.int8)
    p = _params(rng, rng.integers(-127, 128, (cout, kh, kw, c), dtype=np.int8))
    want_acc = K.conv_accumulators(x, p, (2, 2), (1, 1), Padding.VALID)
    want = K.conv2d(x, p, (2, 2), (1, 1), Padding.VALID)
    oh, ow = want.shape[1:3]

    even = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=int(rng.integers(-128, 128)))
    xs = space_to_depth(even)
    ps = replace(p, weights=space_to_depth_kernel(p.weights))
    got_acc = K.conv_accumulators(xs, ps, (1, 1), (1, 1), Padding.VALID)
    got = K.conv2d(xs, ps, (1, 1), (1, 1), Padding.VALID)
    assert got.shape[1] >= oh and got.shape[2] >= ow
    np.testing.assert_array_equal(got_acc[:, :oh, :ow], want_acc)
    np.testing.assert_array_equal(got[:, :oh, :ow], want)
