"""Activations: kernels vs nnkernels.reference, NumPy semantics, numerics, errors, GPU."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tolerances import BF16, ULP_BOUND, assert_close, assert_within_ulps

import nnkernels as nk
from nnkernels import reference as ref

from conftest import AWKWARD_SIZES, DTYPES, HALF_DTYPES, compiled_isas, expected_half_bits

FORWARD = ["relu", "leaky_relu", "sigmoid", "tanh"]
# backward op -> which forward tensor it takes as its second argument
SAVED = {"relu": "x", "leaky_relu": "x", "sigmoid": "y", "tanh": "y"}


def _fwd(op):
    return getattr(nk, op), getattr(ref, op)


def _bwd(op):
    return getattr(nk, op + "_backward"), getattr(ref, op + "_backward")


def _inputs(n, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(dtype)
    d = rng.standard_normal(n).astype(dtype)
    return x, d


def _saved(op, x):
    return x if SAVED[op] == "x" else getattr(ref, op)(x.astype(np.float64)).astype(x.dtype)


# ----------------------------------------------------------------- values vs reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", AWKWARD_SIZES)
@pytest.mark.parametrize("op", FORWARD)
def test_forward_matches_reference(op, n, dtype, isa):
    x, _ = _inputs(n, dtype)
    f, r = _fwd(op)
    y = f(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, r(x.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", AWKWARD_SIZES)
@pytest.mark.parametrize("op", FORWARD)
def test_backward_matches_reference(op, n, dtype, isa):
    x, d = _inputs(n, dtype, seed=1)
    s = _saved(op, x)
    f, r = _bwd(op)
    dx = f(d, s)
    assert dx.dtype == dtype and dx.shape == x.shape
    assert_close(dx, r(d.astype(np.float64), s.astype(np.float64)), dtype)


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.5, -0.3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_slopes(slope, dtype):
    x, d = _inputs(1001, dtype)
    x[::7] = 0  # PyTorch convention: the slope applies at exactly 0
    assert_close(nk.leaky_relu(x, slope), ref.leaky_relu(x.astype(np.float64), slope), dtype)
    assert_close(nk.leaky_relu_backward(d, x, slope), ref.leaky_relu_backward(d.astype(np.float64), x, slope), dtype)
    assert_close(nk.leaky_relu_backward(d, x, negative_slope=slope)[::7], d[::7] * np.asarray(slope, dtype), dtype)


def test_relu_backward_at_zero_is_zero():
    x = np.array([-1.0, 0.0, 1.0], np.float32)
    np.testing.assert_array_equal(nk.relu_backward(np.ones(3, np.float32), x), [0, 0, 1])


# ----------------------------------------------------------------- shapes, layouts, out=
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1,), (1, 1, 1), (5, 7), (3, 17, 19), (2, 3, 4, 5)])
@pytest.mark.parametrize("op", FORWARD)
def test_shapes(op, shape):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32)
    f, r = _fwd(op)
    y = f(x)
    assert isinstance(y, np.ndarray) and y.shape == x.shape and y.dtype == x.dtype
    assert_close(y, r(x.astype(np.float64)), np.float32)
    fb, rb = _bwd(op)
    s = _saved(op, x)
    assert_close(fb(x, s), rb(x.astype(np.float64), s.astype(np.float64)), np.float32)


def _strided_views(dtype):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((37, 41)).astype(dtype) * 3
    return {
        "step2": base[:, ::2],
        "transposed": base.T,
        "reversed": base[::-1, ::-3],
        "column": base[:, 5],
        "fortran": np.asfortranarray(base),
        "broadcast0": np.broadcast_to(base[0], (5, 41)),
        "big_strided": (rng.standard_normal(200_003).astype(dtype))[::3],
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("view", list(_strided_views(np.float32)))
@pytest.mark.parametrize("op", FORWARD)
def test_strided_inputs(op, view, dtype, isa):
    x = _strided_views(dtype)[view]
    before = x.copy()
    f, r = _fwd(op)
    assert_close(f(x), r(x.astype(np.float64)), dtype)
    fb, rb = _bwd(op)
    d = np.ascontiguousarray(x[..., ::-1]) if x.ndim else x
    s = _saved(op, np.ascontiguousarray(x))
    assert_close(fb(x, s), rb(x.astype(np.float64), s.astype(np.float64)), dtype)  # strided dout
    assert_close(fb(d, s.T.copy().T), rb(d.astype(np.float64), s.astype(np.float64)), dtype)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("op", FORWARD)
def test_strided_out(op):
    x, _ = _inputs(4099, np.float64)
    big = np.full(2 * 4099, 7.0)
    out = big[::2]
    f, r = _fwd(op)
    res = f(x, out=out)
    assert res is out
    assert_close(out, r(x), np.float64)
    np.testing.assert_array_equal(big[1::2], 7.0)  # the gaps are untouched


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", FORWARD)
def test_in_place(op, dtype):
    x, d = _inputs(70001, dtype)
    expect = _fwd(op)[1](x.astype(np.float64))
    y = x.copy()
    assert _fwd(op)[0](y, out=y) is y
    assert_close(y, expect, dtype)
    s = _saved(op, x)
    expect_b = _bwd(op)[1](d.astype(np.float64), s.astype(np.float64))
    assert _bwd(op)[0](d, s, out=d) is d  # dx written over dout
    assert_close(d, expect_b, dtype)


@pytest.mark.parametrize("op", FORWARD)
def test_partially_overlapping_out(op):
    base, _ = _inputs(1000, np.float64)
    expect = _fwd(op)[1](base[:-1].copy())
    _fwd(op)[0](base[:-1], out=base[1:])  # out is the input shifted by one element
    assert_close(base[1:], expect, np.float64)


def test_array_like_and_scalars():
    np.testing.assert_array_equal(nk.relu([-1.0, 2.0]), [0.0, 2.0])
    assert nk.relu([-1.0, 2.0]).dtype == np.float64
    y = nk.sigmoid(np.float32(0.0))
    assert y.shape == () and y.dtype == np.float32 and y == 0.5


# ----------------------------------------------------------------- threads and ISA levels
@pytest.mark.parametrize("op", FORWARD)
def test_thread_count_bitwise_identical(op, threads, isa):
    x, d = _inputs(300_007, np.float32, scale=10)
    s = _saved(op, x)
    threads(1)
    y1, b1 = _fwd(op)[0](x), _bwd(op)[0](d, s)
    threads(2)
    y2, b2 = _fwd(op)[0](x), _bwd(op)[0](d, s)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(b1, b2)


@pytest.mark.parametrize("op", FORWARD)
def test_isa_levels_agree(op):
    x, _ = _inputs(10_007, np.float32, scale=20)
    results = {}
    from conftest import compiled_isas

    for level in compiled_isas():
        with nk.isa(level):
            results[level] = _fwd(op)[0](x)
    first = next(iter(results.values()))
    for v in results.values():
        assert_close(v, first, np.float32, rtol=4e-7, atol=0)


def test_threadpoolctl_limits_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = nk.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert nk.get_num_threads() == 1
    assert nk.get_num_threads() == before


# ----------------------------------------------------------------- numerics
def _ulp_error(actual, expected, dtype):
    expected = np.asarray(expected, np.longdouble)
    rounded = expected.astype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    spacing = np.maximum(np.spacing(np.abs(rounded)).astype(np.longdouble), tiny)
    return np.abs(np.asarray(actual, np.longdouble) - expected) / spacing


def _wide_float32_inputs(n=400_000, seed=4):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    return np.concatenate([x, np.linspace(-110, 110, 200_001, dtype=np.float32),
                           np.float32(rng.standard_normal(100_000)), np.float32([0, -0.0, 1e-45, -1e-45, 88.7, -88.7])])


def _ref_sigmoid_ld(x):
    x = np.asarray(x, np.longdouble)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
def test_ulp_bound_float32(op, isa):
    x = _wide_float32_inputs()
    ref_ld = _ref_sigmoid_ld(x) if op == "sigmoid" else np.tanh(x.astype(np.longdouble))
    err = _ulp_error(getattr(nk, op)(x), ref_ld, np.float32)
    assert err.max() <= ULP_BOUND[op][np.dtype(np.float32)], f"max {err.max():.2f} ulp at x={x[np.argmax(err)]!r}"


@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
def test_ulp_bound_float64(op, isa):
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("long double is not extended precision here")
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(200_000) * 30, rng.standard_normal(50_000) * 1e-3,
                        np.linspace(-745, 745, 100_001), [0.0, -0.0, 5e-324, 0.5, 0.625, 20.0, -40.0]])
    ref_ld = _ref_sigmoid_ld(x) if op == "sigmoid" else np.tanh(x.astype(np.longdouble))
    err = _ulp_error(getattr(nk, op)(x), ref_ld, np.float64)
    assert err.max() <= ULP_BOUND[op][np.dtype(np.float64)], f"max {err.max():.2f} ulp at x={x[np.argmax(err)]!r}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([nan, inf, -inf, 0.0, -0.0, 1e30, -1e30], dtype)
    with np.errstate(all="raise"):  # the reference must not be needed; kernels raise no FP warnings
        s, t = nk.sigmoid(x), nk.tanh(x)
    np.testing.assert_array_equal(s, np.array([nan, 1, 0, 0.5, 0.5, 1, 0], dtype))
    np.testing.assert_array_equal(t, np.array([nan, 1, -1, 0, -0.0, 1, -1], dtype))
    assert np.signbit(t[4]) and not np.signbit(t[3])
    np.testing.assert_array_equal(nk.relu(x), np.array([nan, inf, 0, 0, 0, 1e30, 0], dtype))
    np.testing.assert_array_equal(nk.leaky_relu(x, 0.5), np.array([nan, inf, -inf, 0, 0, 1e30, -5e29], dtype))
    # NaN in dout propagates where the gradient passes
    d = np.array([nan, nan], dtype)
    assert np.isnan(nk.relu_backward(d, np.array([1, -1], dtype))[0])
    assert np.isnan(nk.sigmoid_backward(d, np.array([0.5, 0.5], dtype))).all()


def test_sigmoid_tanh_tiny_and_huge_arguments():
    x = np.array([1e-30, -1e-30, 1e-45, 100, -100, -103], np.float32)
    t = nk.tanh(x)
    np.testing.assert_array_equal(t[:3], x[:3])  # tanh(x) == x for tiny x
    s = nk.sigmoid(x)
    assert s[3] == 1 and 0 < s[4] < 1e-43 and s[5] >= 0  # subnormal results, no overflow


# ----------------------------------------------------------------- finite differences (float64)
@pytest.mark.parametrize("op", FORWARD)
def test_backward_finite_differences(op):
    rng = np.random.default_rng(6)
    x = rng.standard_normal(257) * 3
    x = x[np.abs(x) > 1e-3]  # keep away from the kink of relu / leaky relu
    d = rng.standard_normal(x.shape)
    h = 1e-6
    f = _fwd(op)[0]
    numeric = d * (f(x + h) - f(x - h)) / (2 * h)
    saved = x if SAVED[op] == "x" else f(x)
    analytic = _bwd(op)[0](d, saved)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("op", FORWARD)
@pytest.mark.parametrize("bad", [np.arange(4), np.arange(4, dtype=np.int32), np.ones(3, np.complex64),
                                 np.ones(3, bool), np.ones(3, np.int16), np.ones(3, np.float128)])
def test_non_float_input_is_type_error(op, bad):
    with pytest.raises(TypeError, match="^x: expected a float32, float64, float16 or bfloat16 array"):
        _fwd(op)[0](bad)


@pytest.mark.parametrize("op", FORWARD)
def test_backward_argument_mismatches(op):
    f = _bwd(op)[0]
    second = SAVED[op]
    a = np.ones(5, np.float32)
    with pytest.raises(ValueError, match=f"^{second}: expected the shape of dout"):
        f(a, np.ones(6, np.float32))
    with pytest.raises(ValueError, match=f"^{second}: expected the dtype of dout"):
        f(a, np.ones(5, np.float64))
    with pytest.raises(TypeError, match="^dout: expected a float32, float64, float16 or bfloat16"):
        f(np.ones(5, np.int64), a)
    with pytest.raises(ValueError, match=f"^{second}: expected the dtype of dout \\(bfloat16\\), got float16"):
        f(a.astype(BF16), a.astype(np.float16))


@pytest.mark.parametrize("op", FORWARD)
def test_out_errors_leave_out_untouched(op):
    x = np.ones(5, np.float32)
    f = _fwd(op)[0]
    ro = np.zeros(5, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^out: array is read-only"):
        f(x, out=ro)
    wrong = np.full(6, 3.0, np.float32)
    with pytest.raises(ValueError, match=r"^out: expected shape \(5,\)"):
        f(x, out=wrong)
    with pytest.raises(ValueError, match="^out: expected dtype float32"):
        f(x, out=np.zeros(5, np.float64))
    with pytest.raises(TypeError, match="^out: expected an array"):
        f(x, out=[0.0] * 5)
    np.testing.assert_array_equal(ro, 0)
    np.testing.assert_array_equal(wrong, 3.0)


def test_none_input_is_type_error():
    with pytest.raises(TypeError):
        nk.relu(None)


def test_isa_errors():
    with pytest.raises(ValueError, match="^isa: expected one of"):
        nk.set_isa("sse9")


# ----------------------------------------------------------------- 16-bit storage (issue 15)
# float16 / bfloat16 in and out, float32 arithmetic, one rounding to nearest even on the store:
# within 1 ulp (of the storage dtype) of the float64 result correctly rounded, ReLU exact.
EXACT_16 = {"relu", "relu_backward"}


def _half_inputs(n, dtype, seed=0, scale=3.0):
    x, d = _inputs(n, np.float64, seed, scale)
    return x.astype(dtype), d.astype(dtype)


def _half_saved(op, x):
    return x if SAVED[op] == "x" else getattr(nk, op)(x)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("n", AWKWARD_SIZES)
@pytest.mark.parametrize("op", FORWARD)
def test_16bit_forward_within_one_ulp(op, n, dtype, isa):
    x, d = _half_inputs(n, dtype)
    f, r = _fwd(op)
    y = f(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert_within_ulps(y, r(x.astype(np.float64)), dtype, ulps=0 if op in EXACT_16 else 1)
    s = _half_saved(op, x)
    fb, rb = _bwd(op)
    dx = fb(d, s)
    assert dx.dtype == dtype
    assert_within_ulps(dx, rb(d.astype(np.float64), s.astype(np.float64)), dtype,
                       ulps=0 if op + "_backward" in EXACT_16 else 1)


def _all_finite_16bit(dtype):
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    return h[np.isfinite(h.astype(np.float32))]


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_16bit_every_input_value(op, dtype, isa, bf16_insn):
    """Every finite 16-bit input (subnormals, the largest numbers): forward within 1 ulp, ReLU exact;
    infinities and NaN as in float32."""
    x = _all_finite_16bit(dtype)
    f, r = _fwd(op)
    with np.errstate(over="ignore"):
        expect = r(x.astype(np.float64))
    assert_within_ulps(f(x), expect, dtype, ulps=0 if op in EXACT_16 else 1)
    special = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0], np.float32).astype(dtype)
    np.testing.assert_array_equal(f(special).astype(np.float32), f(special.astype(np.float32)))
    assert np.signbit(f(special)[3].astype(np.float32)) == np.signbit(f(special.astype(np.float32))[3])


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_16bit_sigmoid_below_avx512_is_correctly_rounded(dtype, threads):
    """Below AVX-512 the 16-bit sigmoid looks up the correctly rounded result of its input pattern
    (cpu/activations.cpp): 0 ulp on every finite input, infinities to their limits, NaN quiet with
    its sign and payload kept; the same bits in place, through a strided view, streamed (past the
    non-temporal threshold at an odd offset) and on 1 or 2 threads."""
    levels = [i for i in compiled_isas() if i != "avx512"]
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    x = h.view(dtype)
    x32 = x.astype(np.float32)
    finite, nan = np.isfinite(x32), np.isnan(x32)
    quiet = np.uint16(0x0040 if np.dtype(dtype) == BF16 else 0x0200)
    big = np.tile(x, 131)[1:]  # 8.6M elements, 17 MB: streamed
    for level in levels:
        with nk.isa(level):
            threads(1)
            y = nk.sigmoid(x)
            assert_within_ulps(y[finite], ref.sigmoid(x[finite].astype(np.float64)), dtype, ulps=0)
            bits = y.view(np.uint16)
            np.testing.assert_array_equal(bits[nan], h[nan] | quiet)
            inf = np.array([np.inf, -np.inf], np.float32).astype(dtype)
            np.testing.assert_array_equal(nk.sigmoid(inf).astype(np.float32), [1.0, 0.0])
            threads(2)
            np.testing.assert_array_equal(nk.sigmoid(x).view(np.uint16), bits)
            np.testing.assert_array_equal(nk.sigmoid(np.repeat(x, 2)[::-2]).view(np.uint16), bits[::-1])
            inplace = x.copy()
            nk.sigmoid(inplace, out=inplace)
            np.testing.assert_array_equal(inplace.view(np.uint16), bits)
            yb = nk.sigmoid(big).view(np.uint16)
            np.testing.assert_array_equal(yb, np.tile(bits, 131)[1:])
            ob = np.zeros(big.size + 1, dtype)[1:]  # streamed out= 2 bytes past alignment: the peel
            nk.sigmoid(big, out=ob)
            np.testing.assert_array_equal(ob.view(np.uint16), yb)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_16bit_relu_bits_of_every_pattern(dtype, isa):
    """ReLU on 16-bit lanes (no conversion) gives the bits of the float32 computation stored back:
    every pattern, NaNs (quieted, sign kept), infinities and -0 included."""
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    rng = np.random.default_rng(8)
    other = rng.permutation(h)

    def via_float32(f, *args):
        a32 = []
        for a in args:
            b = np.empty(a.shape, np.float32)
            nk._core.stream_convert(a, b)
            a32.append(b)
        r = np.empty(args[0].shape, dtype)
        nk._core.stream_convert(f(*a32), r)
        return r.view(np.uint16)

    np.testing.assert_array_equal(nk.relu(h).view(np.uint16), via_float32(nk.relu, h))
    np.testing.assert_array_equal(nk.relu_backward(h, other).view(np.uint16), via_float32(nk.relu_backward, h, other))
    np.testing.assert_array_equal(nk.relu_backward(other, h).view(np.uint16), via_float32(nk.relu_backward, other, h))
    for n in (1, 7, 31, 33):  # tails
        np.testing.assert_array_equal(nk.relu(h[-n:]).view(np.uint16), via_float32(nk.relu, h[-n:]))


@pytest.mark.parametrize("slope", [1 + 2**-8, 1 - 2**-10, 0.3, -3.0, 2.0**-120, 2.0**-135])
def test_bf16_pairs_round_every_product_to_nearest_even(slope, isa, bf16_insn):
    """bfloat16 elementwise kernels read and write whole registers as pairs of float32 vectors (even
    and odd elements, core/simd.hpp) and round both with one VCVTNE2PS2BF16 and a permutation back, or
    the integer rounding: each element gets the bits of its float32 result rounded to nearest even.
    dx = dout * slope for x < 0 on every bfloat16 pattern gives ties (1 +- 2^-k), float32 subnormals
    (the integer fallback, small slopes), overflow and NaNs, at any length and output offset."""
    dtype = np.dtype(ml_dtypes.bfloat16)
    d = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    x = -np.ones(d.shape, dtype)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        expect = expected_half_bits(d.astype(np.float32) * np.float32(slope), dtype)
    np.testing.assert_array_equal(nk.leaky_relu_backward(d, x, slope).view(np.uint16), expect)
    buf = np.zeros(d.size + 64, dtype)
    for n in (1, 2, 31, 32, 33, 95, 1000):
        for off in (0, 1, 7, 31):
            lo = (n * 7919) % (d.size - n)  # a window of the patterns
            out = buf[off:off + n]
            assert nk.leaky_relu_backward(d[lo:lo + n], x[:n], slope, out=out) is out
            np.testing.assert_array_equal(out.view(np.uint16), expect[lo:lo + n])


@pytest.mark.parametrize("slope", [0.5, 0.25, -2.0, 0.0])
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_16bit_leaky_relu_power_of_two_slope_is_exact(slope, dtype, isa):
    x, d = _half_inputs(4099, dtype)
    x64 = x.astype(np.float64)
    assert_within_ulps(nk.leaky_relu(x, slope), ref.leaky_relu(x64, slope), dtype, ulps=0)
    assert_within_ulps(nk.leaky_relu_backward(d, x, slope), ref.leaky_relu_backward(d.astype(np.float64), x64, slope),
                       dtype, ulps=0)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_16bit_in_place(op, dtype, isa):
    x, d = _half_inputs(70001, dtype)
    f, fb = _fwd(op)[0], _bwd(op)[0]
    y, s = f(x), _half_saved(op, x)
    dx = fb(d, s)
    z = x.copy()
    assert f(z, out=z) is z
    np.testing.assert_array_equal(z.view(np.uint16), y.view(np.uint16))
    assert fb(d, s, out=d) is d  # dx written over dout
    np.testing.assert_array_equal(d.view(np.uint16), dx.view(np.uint16))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_16bit_strided_views_of_16bit_memory(op, dtype):
    rng = np.random.default_rng(9)
    base = (rng.standard_normal((37, 82)) * 3).astype(dtype)
    f = _fwd(op)[0]
    for v in (base[:, ::2], base.T, base[::-1, ::-3], base[:, 5], np.asfortranarray(base),
              np.broadcast_to(base[0], (5, 82))):
        before = v.copy()
        y = f(v)
        assert_within_ulps(y, _fwd(op)[1](v.astype(np.float64)), dtype, ulps=0 if op in EXACT_16 else 1)
        np.testing.assert_array_equal(y.view(np.uint16), f(np.ascontiguousarray(v)).view(np.uint16))
        np.testing.assert_array_equal(v.view(np.uint16), before.view(np.uint16))
        out = np.zeros((v.shape[0], 2 * v.shape[-1]) if v.ndim == 2 else (2 * v.shape[0],), dtype)[..., ::2]
        assert f(v, out=out) is out
        np.testing.assert_array_equal(out.view(np.uint16), f(np.ascontiguousarray(v)).view(np.uint16))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_16bit_thread_count_bitwise_identical(op, dtype, threads, isa):
    x, d = _half_inputs(300_007, dtype, scale=10)
    s = _half_saved(op, x)
    threads(1)
    y1, b1 = _fwd(op)[0](x), _bwd(op)[0](d, s)
    threads(2)
    y2, b2 = _fwd(op)[0](x), _bwd(op)[0](d, s)
    np.testing.assert_array_equal(y1.view(np.uint16), y2.view(np.uint16))
    np.testing.assert_array_equal(b1.view(np.uint16), b2.view(np.uint16))


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("op", FORWARD)
def test_16bit_large_streamed_output(op, dtype):
    """Outputs past the streaming threshold (non-temporal stores, alignment peel) give the same bits."""
    x, _ = _half_inputs((8 << 20) // 2 + 37, dtype)
    f = _fwd(op)[0]
    y = f(x[1:])  # an input at an odd element offset
    np.testing.assert_array_equal(y[:5000].view(np.uint16), f(x[1:5001].copy()).view(np.uint16))
    np.testing.assert_array_equal(y[-5000:].view(np.uint16), f(x[-5000:].copy()).view(np.uint16))


def test_16bit_mixed_with_float32_is_refused():
    with pytest.raises(ValueError, match="^x: expected the dtype of dout"):
        nk.relu_backward(np.ones(3, np.float32), np.ones(3, BF16))
    with pytest.raises(ValueError, match="^out: expected dtype bfloat16, got float32"):
        nk.relu(np.ones(3, BF16), out=np.ones(3, np.float32))


# ----------------------------------------------------------------- property tests
_float_arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=9),
    elements={"allow_nan": True, "allow_infinity": True},
)


@settings(max_examples=150, deadline=None)
@given(_float_arrays)
def test_property_relu_matches_reference_exactly(x):
    np.testing.assert_array_equal(nk.relu(x), ref.relu(x))
    np.testing.assert_array_equal(nk.leaky_relu(x, 0.25), ref.leaky_relu(x, 0.25))


@settings(max_examples=150, deadline=None)
@given(_float_arrays)
def test_property_sigmoid_tanh_range_and_symmetry(x):
    s, t = nk.sigmoid(x), nk.tanh(x)
    finite = ~np.isnan(x)
    assert np.all((s[finite] >= 0) & (s[finite] <= 1))
    assert np.all(np.abs(t[finite]) <= 1)
    np.testing.assert_array_equal(np.isnan(s), np.isnan(x))
    np.testing.assert_array_equal(nk.tanh(-x), -t)  # odd function, exactly


# ----------------------------------------------------------------- GPU (skipped without a device)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", FORWARD)
def test_gpu_matches_cpu(op, dtype, gpu):
    to_gpu, to_np, lib = gpu
    x, d = _inputs(100_003, dtype)
    s = _saved(op, x)
    gx = to_gpu(x)
    gy = _fwd(op)[0](gx)
    assert type(gy) is type(gx)
    assert_close(to_np(gy), _fwd(op)[0](x), dtype, rtol=4e-7 if dtype == np.float32 else 1e-15, atol=0)
    gdx = _bwd(op)[0](to_gpu(d), to_gpu(s))
    assert_close(to_np(gdx), _bwd(op)[0](d, s), dtype)
    out = to_gpu(np.zeros_like(x))
    assert _fwd(op)[0](gx, out=out) is out
    assert_close(to_np(out), to_np(gy), dtype, rtol=0, atol=0)
    # strided GPU input
    g2 = to_gpu(np.ascontiguousarray(x[: 2 * 5000].reshape(5000, 2)))[:, 0]
    assert_close(to_np(_fwd(op)[0](g2)), _fwd(op)[0](x[: 2 * 5000 : 2]), dtype, rtol=4e-7 if dtype == np.float32 else 1e-15, atol=0)


def test_gpu_errors(gpu):
    to_gpu, _, _ = gpu
    with pytest.raises(ValueError, match="^y: expected the shape of dout"):
        nk.sigmoid_backward(to_gpu(np.ones(4, np.float32)), to_gpu(np.ones(5, np.float32)))
    with pytest.raises(TypeError, match="^x: expected a float32"):
        nk.relu(to_gpu(np.ones(4, np.int32)))


def test_gpu_out_partially_overlapping_input(gpu):
    # out = x shifted by one element: the kernel must not race on the shared memory
    to_gpu, to_np, _ = gpu
    x = np.linspace(-3, 3, 10_007).astype(np.float32)
    buf = to_gpu(np.concatenate([x, np.zeros(1, np.float32)]))
    expect = nk.sigmoid(x)
    assert nk.sigmoid(buf[:-1], out=buf[1:]) is not None
    assert_close(to_np(buf)[1:], expect, np.float32, rtol=4e-7, atol=0)


def test_gpu_torch_requires_grad():
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0):
        pytest.skip("needs a CUDA device and a CUDA build")
    x = torch.linspace(-3, 3, 1001, dtype=torch.float64, device="cuda", requires_grad=True)
    y = nk.tanh(x)
    assert_close(y.cpu().numpy(), nk.tanh(x.detach().cpu().numpy()), np.float64, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op", FORWARD)
def test_gpu_16bit_storage_matches_cpu(op, dtype):
    """torch CUDA float16/bfloat16 tensors: the ReLU family bit for bit as the CPU kernels (float32
    math, the same rounding), sigmoid/tanh within 1 ulp of the storage dtype (CUDA's expf/tanhf)."""
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0):
        pytest.skip("needs a CUDA device and a CUDA build")
    tdt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(100_003, generator=g) * 4).to(tdt)
    d = torch.randn(100_003, generator=g).to(tdt)
    fwd, bwd = _fwd(op)[0], _bwd(op)[0]
    for xs, ds in ((x, d), (x[1::3], d[1::3])):  # contiguous (16-byte loads) and strided
        cy, gy = fwd(xs), fwd(xs.cuda())
        s = xs if op in ("relu", "leaky_relu") else cy
        cdx, gdx = bwd(ds, s), bwd(ds.cuda(), s.cuda())
        assert gy.dtype == tdt and gy.is_cuda and gdx.dtype == tdt
        for c, gg in ((cy, gy.cpu()), (cdx, gdx.cpu())):
            if op in ("relu", "leaky_relu"):
                assert torch.equal(c.view(torch.int16), gg.view(torch.int16))
            else:  # adjacent 16-bit numbers at most: the bit patterns (same sign) differ by <= 1
                diff = (c.view(torch.int16).int() - gg.view(torch.int16).int()).abs()
                assert int(diff.max()) <= 1
