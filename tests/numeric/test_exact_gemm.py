"""Exactness of the golden model's fast paths, each against an independent oracle.

* the GEMMs (``exact_gemm``): the native int8 kernel (int32, K <= 131071), float32 K-chunks and
  float64 against NumPy's int64 matmul (exact integer arithmetic, no BLAS), at the worst case of
  each bound (every operand -128 at the longest K the path takes, the float32 chunk edge 1024/1025,
  ResNet50's longest K 3x3x512 = 4608) and +127/-128 mixes; the native kernel also at every edge
  of its tiles (rows, 16-column blocks, k groups of 4), with row strides and split over threads;
* the compiled loops (``loops``, numba) and the NumPy fallback against the reference functions
  of ``fixedpoint`` (themselves checked against TFLite's C definitions) and against plain loops;
* the whole golden model with the compiled loops off against TFLite's reference kernels.
"""

import numpy as np
import pytest

from onda.sim.golden import exact_gemm, int8_gemm, kernels, loops, threading
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


native_only = pytest.mark.skipif(int8_gemm.available() is not None,
                                 reason=f"native int8 GEMM unavailable: {int8_gemm.available()}")


@native_only
@pytest.mark.parametrize("k", [1, 3, 4, 5, 1024, 1025, RESNET50_LONGEST_K, 65537, exact_gemm.EXACT_K_INT32])
def test_native_worst_case_all_minus_128(k):
    a = np.full((7, k), -128, np.int8)
    w = exact_gemm.Weights(np.full((k, 17), -128, np.int8))
    got = w.product(a)
    assert got.dtype == np.int32  # the native path took it
    assert np.all(got.astype(np.int64) == k * 16384)
    if k == exact_gemm.EXACT_K_INT32:
        assert int(got[0, 0]) == 2**31 - 2**14  # the bound itself: the largest K whose worst case fits int32


@native_only
@pytest.mark.parametrize("k", [4607, RESNET50_LONGEST_K, exact_gemm.EXACT_K_INT32])
def test_native_worst_case_mixes_of_127_and_minus_128(k):
    rng = np.random.default_rng(k)
    a = np.stack([np.full(k, 127), np.full(k, -128), np.where(np.arange(k) % 2, 127, -128),
                  rng.choice([127, -128], k)]).astype(np.int8)
    b = np.stack([np.full(k, -128), np.full(k, 127), np.where(np.arange(k) % 3, -128, 127),
                  rng.choice([127, -128], k)], axis=1).astype(np.int8)
    got = exact_gemm.Weights(b).product(a)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, int_matmul(a, b))
    assert got[1, 0] == k * 16384 and got[0, 0] == -k * 16256


@native_only
def test_native_bound_is_sharp_and_longer_k_falls_back():
    """At K = 131072 every operand -128 sums to 2**31, which int32 wraps: the kernel itself is off,
    so ``Weights`` sends that K to the float path, which is exact."""
    k = exact_gemm.EXACT_K_INT32 + 1
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 1), -128, np.int8)
    assert int(int8_gemm.matmul(a, int8_gemm.Packed(b))[0, 0]) == -(2**31)
    got = exact_gemm.Weights(b).product(a)
    assert got.dtype != np.int32 and int(got[0, 0]) == 2**31
    assert exact_gemm.operand_dtype(k) == np.float32


@native_only
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (5, 7, 15), (6, 4, 16), (7, 147, 64), (13, 5, 17), (50, 1030, 33),
                                     (100, 1000, 130), (12, 4608, 64), (400, 3000, 64), (30, 200, 2048),
                                     (3136, 64, 80), (6, 0, 16)])
def test_native_matches_integer_matmul_at_every_edge(m, k, n, threads):
    """Rows not a multiple of the 6-row tile, columns not of 16 or 64, K not of 4 or of the 1024-k
    cache block, a row stride wider than K, and splits by rows and by column blocks over threads."""
    rng = np.random.default_rng(m * 7919 + k * 31 + n)
    wide = rng.integers(-128, 128, (m, k + 5), dtype=np.int8)
    a = wide[:, 2:2 + k]  # rows contiguous, row stride k + 5
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    old = threading.gemm_threads()
    threading.set_threads(threads)
    try:
        got = exact_gemm.Weights(b).product(a)
    finally:
        threading.set_threads(old)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, int_matmul(a, b))


@native_only
def test_native_and_float_paths_agree_through_a_conv():
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (2, 9, 11, 12), dtype=np.int8)
    from onda.sim.golden.params import GemmParams

    p = GemmParams(weights=rng.integers(-127, 128, (20, 3, 3, 12), dtype=np.int8),
                   bias=rng.integers(-5000, 5000, 20), in_zero_point=-3, weight_zero_point=0,
                   multiplier=rng.integers(1 << 30, 2**31 - 1, 20), shift=rng.integers(-12, -5, 20),
                   out_zero_point=4, act_min=-128, act_max=127)
    with exact_gemm.use_native(True):
        fast = kernels.conv_accumulators(x, p, (1, 2), (1, 1), Padding.SAME, kernels.PreparedGemm(p))
    with exact_gemm.use_native(False):
        slow = kernels.conv_accumulators(x, p, (1, 2), (1, 1), Padding.SAME, kernels.PreparedGemm(p))
    np.testing.assert_array_equal(fast, slow)


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
    """The pure NumPy path (compiled loops and native GEMM off) against TFLite's reference kernels, every tensor."""
    from onda.host.quantizer import quantize
    from onda.host.verify import compare, format_table

    from .nets import build_case

    model, calib = build_case(case)
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(quantize(model, calib, progress=lambda s: None))
    with loops.use(False), exact_gemm.use_native(False):
        rows = compare(path, "golden", images=3, seed=4)
    assert len(rows) >= 3 and all(r.ok for r in rows), format_table(rows)


def test_without_a_compiler_the_gemms_fall_back_to_blas(tmp_path):
    """A machine with no C++ compiler (empty PATH, empty cache): one notice, and the GEMMs still exact."""
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from onda.sim.golden import exact_gemm, int8_gemm\n"
            "a = np.full((3, 2000), -128, np.int8); b = np.full((2000, 4), 127, np.int8)\n"
            "print(int8_gemm.available()); print(exact_gemm.operand_dtype(2000))\n"
            "print(int(exact_gemm.Weights(b).product(a).astype(np.int64).min()))\n")
    env = {"PATH": "", "ONDA_CACHE": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    if "lacks" in out[0]:
        pytest.skip(out[0])
    assert out[0].startswith("no C++ compiler") and out[1] == "float32" and out[2] == str(-2000 * 16256)
    assert "the golden model's GEMMs run on float BLAS" in proc.stderr


@pytest.mark.parametrize("case", [((1, 112, 112, 64), (3, 3), (2, 2), Padding.SAME, -128, 127),
                                  ((2, 9, 7, 5), (3, 2), (2, 1), Padding.SAME, -20, 100),
                                  ((2, 9, 7, 5), (3, 3), (1, 2), Padding.VALID, -128, 5),
                                  ((1, 4, 4, 3), (5, 5), (3, 3), Padding.SAME, -128, 127)])
def test_max_pool_loop_matches_numpy(case):
    """The compiled max pool against the NumPy one (itself checked against TFLite's kernels)."""
    shape, filt, stride, padding, lo, hi = case
    x = np.random.default_rng(6).integers(-128, 128, shape, dtype=np.int8)
    with loops.use(True):
        got = kernels.max_pool(x, filt, stride, padding, lo, hi)
    with loops.use(False):
        want = kernels.max_pool(x, filt, stride, padding, lo, hi)
    np.testing.assert_array_equal(got, want)
