"""Exactness of the golden model's fast paths, each against an independent oracle.

* the GEMM (``exact_gemm``): float32 K-chunks (fast) and float64 (fallback) against NumPy's int64
  matmul (exact integer arithmetic, no BLAS), at the worst case of the bound: the longest K of
  ResNet50 (3x3x512 = 4608) and the chunk edge (1024, 1025) with every operand -128, and +127/-128 mixes;
* the compiled loops (``loops``, numba) and the NumPy fallback against the reference functions
  of ``fixedpoint`` (themselves checked against TFLite's C definitions) and against plain loops;
* the whole golden model with the compiled loops off against TFLite's reference kernels.
"""

import numpy as np
import pytest

from onda.sim.golden import exact_gemm, kernels, loops
from onda.sim.golden import fixedpoint as fp
from onda.sim.golden.params import AddParams
from onda.sim.ir import Padding

RESNET50_LONGEST_K = 3 * 3 * 512
PATHS = [np.float32, np.float64]


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ b.astype(np.int64)


@pytest.mark.parametrize("dtype", PATHS, ids=["float32-chunked", "float64"])
@pytest.mark.parametrize("k", [1, 1023, 1024, 1025, 2048, RESNET50_LONGEST_K, 3 * 1024 + 7])
def test_worst_case_all_minus_128(dtype, k):
    a = np.full((3, k), -128, dtype=dtype)
    b = np.full((k, 5), -128, dtype=dtype)
    got = exact_gemm.exact_int8_matmul(a, b)
    assert got.dtype == np.int64
    assert np.all(got == k * 16384)
    if k == 1024:
        assert got[0, 0] == 2**24  # the bound itself: the largest integer span float32 holds exactly


@pytest.mark.parametrize("dtype", PATHS, ids=["float32-chunked", "float64"])
@pytest.mark.parametrize("k", [1024, 1025, RESNET50_LONGEST_K])
def test_worst_case_mixes_of_127_and_minus_128(dtype, k):
    rng = np.random.default_rng(k)
    rows = [np.full(k, 127), np.full(k, -128), np.where(np.arange(k) % 2, 127, -128),
            rng.choice([127, -128], k)]
    a = np.stack(rows).astype(np.int8)
    b = np.stack([np.full(k, -128), np.full(k, 127), np.where(np.arange(k) % 3, -128, 127),
                  rng.choice([127, -128], k)], axis=1).astype(np.int8)
    got = exact_gemm.exact_int8_matmul(a.astype(dtype), b.astype(dtype))
    np.testing.assert_array_equal(got, int_matmul(a, b))
    assert got[1, 0] == k * 16384 and got[0, 0] == -k * 16256


def test_float32_without_chunks_would_not_be_exact():
    """The bound is sharp: one float32 GEMM over K = 1025 products of -128 is already off, so the
    chunking is what makes the fast path exact (odd integers above 2**24 do not exist in float32)."""
    k = 1025
    a = np.full((1, k), -128, np.float32)
    b = np.full((k, 1), -128, np.float32)
    a[0, -1] = b[-1, 0] = 1  # 1024 products of 2**14, then + 1: 2**24 + 1 has no float32
    want = 2**24 + 1
    assert int((a @ b)[0, 0]) != want
    assert int(exact_gemm.exact_int8_matmul(a, b)[0, 0]) == want


def test_random_gemm_matches_integer_matmul():
    rng = np.random.default_rng(0)
    for k in (17, 1000, 2500):
        a = rng.integers(-128, 128, (37, k)).astype(np.int8)
        b = rng.integers(-128, 128, (k, 11)).astype(np.int8)
        for dtype in PATHS:
            np.testing.assert_array_equal(exact_gemm.exact_int8_matmul(a.astype(dtype), b.astype(dtype)),
                                          int_matmul(a, b))


def test_gemm_rejects_mixed_operands():
    with pytest.raises(TypeError, match="float32 or float64"):
        exact_gemm.exact_int8_matmul(np.zeros((1, 2), np.float32), np.zeros((2, 1), np.int64))


def _extreme_accumulators(rng, m, n):
    acc = rng.integers(-(2**31), 2**31, (m, n), dtype=np.int64)
    acc[0] = fp.INT32_MIN
    acc[1] = fp.INT32_MAX
    acc[2] = 0
    acc[3] = -1
    acc[4, :] = np.arange(n) - n // 2
    return acc


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
def test_requantizer_matches_reference(compiled):
    rng = np.random.default_rng(1)
    n = 24
    mult = rng.integers(0, 2**31, n)
    mult[:3] = [1 << 30, 2**31 - 1, 0]
    shift = rng.integers(-31, 8, n)
    shift[:4] = [-31, 0, 7, -1]
    for acc, bias in ((_extreme_accumulators(rng, 40, n), np.zeros(n, np.int64)),
                      (rng.integers(-50000, 50000, (3000, n)), rng.integers(-(2**20), 2**20, n)),
                      (rng.integers(-50000, 50000, (8000, n)), rng.integers(-(2**20), 2**20, n))):  # parallel loop
        want = fp.requantize(acc + bias, mult, shift, -7, -100, 120)
        with loops.use(compiled):
            r = fp.Requantizer(mult, shift, -7, -100, 120)
            got = r(acc.astype(np.float64) if np.abs(acc).max() < 2**52 else acc, bias)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
def test_requantizer_saturating_multiplier(compiled):
    acc = np.array([[fp.INT32_MIN, fp.INT32_MAX, 5]], dtype=np.int64).T.repeat(2, axis=1)
    mult, shift = np.array([fp.INT32_MIN, 1 << 30]), np.array([0, -3])
    with loops.use(compiled):
        got = fp.Requantizer(mult, shift, 0, -128, 127)(acc)
    np.testing.assert_array_equal(got, fp.requantize(acc, mult, shift, 0, -128, 127))


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
def test_add_lookup_matches_reference_arithmetic(compiled):
    rng = np.random.default_rng(2)
    p = AddParams(zp1=-3, zp2=11, rescale=fp.add_params(0.05, 0.11, 0.13), out_zero_point=-9,
                  act_min=-128, act_max=127)
    for shape in [(2, 9, 7, 5), (4, 64, 64, 16)]:  # the serial and the parallel loop
        a = rng.integers(-128, 128, shape, dtype=np.int8)
        b = rng.integers(-128, 128, shape, dtype=np.int8)
        a.reshape(-1)[:256] = np.arange(-128, 128)
        with loops.use(compiled):
            got = kernels.add(a, b, p)
        want = fp.add(a, p.zp1, b, p.zp2, p.rescale, p.out_zero_point, p.act_min, p.act_max)
        np.testing.assert_array_equal(got, want)


def _patches_by_loops(x, kh, kw, stride, dilation, pads, oh, ow, value):
    n, h, w, c = x.shape
    out = np.empty((n * oh * ow, kh * kw * c), np.int64)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                row = []
                for i in range(kh):
                    for j in range(kw):
                        iy, ix = oy * stride[0] + i * dilation[0] - pads[0], ox * stride[1] + j * dilation[1] - pads[1]
                        row += list(x[b, iy, ix]) if 0 <= iy < h and 0 <= ix < w else [value] * c
                out[(b * oh + oy) * ow + ox] = row
    return out


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("geom", [(3, 3, (1, 1), (1, 1), Padding.SAME), (7, 7, (2, 2), (1, 1), Padding.VALID),
                                  (3, 2, (2, 1), (2, 1), Padding.SAME), (1, 1, (2, 2), (1, 1), Padding.VALID),
                                  (1, 1, (1, 1), (1, 1), Padding.SAME)])
def test_patch_matrix_matches_plain_loops(compiled, geom):
    kh, kw, stride, dilation, padding = geom
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (2, 11, 9, 3), dtype=np.int8)
    with loops.use(compiled):
        cols, oh, ow = kernels.im2col(x, kh, kw, stride, dilation, padding, -5)
    assert cols.dtype == np.float32
    from onda.sim.golden.params import same_padding
    pads = ((same_padding(11, kh, stride[0], dilation[0], padding)[0],
             same_padding(9, kw, stride[1], dilation[1], padding)[0]) if padding == Padding.SAME else (0, 0))
    np.testing.assert_array_equal(cols, _patches_by_loops(x, kh, kw, stride, dilation, pads, oh, ow, -5))


@pytest.mark.parametrize("case", ["residual_scales_1_to_50", "resnet_stem_pad_maxpool", "saturating",
                                  "conv3x3_s2_valid_relu6"])
def test_golden_model_numpy_fallback_bit_exact(case, tmp_path):
    """The pure NumPy path (compiled loops off) against TFLite's reference kernels, every tensor."""
    from onda.host.quantize import quantize
    from onda.host.verify import compare, format_table

    from .nets import build_case

    model, calib = build_case(case)
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(quantize(model, calib, progress=lambda s: None))
    with loops.use(False):
        rows = compare(path, "golden", images=3, seed=4)
    assert len(rows) >= 3 and all(r.ok for r in rows), format_table(rows)
