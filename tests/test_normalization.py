"""Batch norm / layer norm (csrc/cpu/normalization.cpp) against nnkernels.reference.normalization."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import numpy_of, torch_of
from isolated import assert_clean_exit, run_isolated
from tolerances import BF16, F16, TOL, TOL_REDUCTION, assert_close, assert_within_ulps

import nnkernels as nk
from nnkernels import reference as ref

DTYPES = [np.float32, np.float64]
ACTS = [None, "relu", "leaky_relu"]
LN_SHAPES = [(1, 1), (1, 7), (2, 5), (3, 1), (17, 33), (5, 257), (2, 3, 31), (40, 1024), (7,), (3, 4100)]
BN_SHAPES = [(2, 1), (1, 5, 2), (2, 3), (17, 31), (130, 7), (5, 3, 7), (2, 5, 3, 3), (3, 4, 9, 11), (3, 2, 70),
             (2, 3, 5, 17), (200, 65)]


def _data(shape, dtype, seed=0, loc=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + loc).astype(dtype)


def _f64(*arrays):
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


# ---------------------------------------------------------------- layer norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("activation", ACTS)
def test_layernorm_forward_backward(shape, dtype, activation, isa):
    d = shape[-1]
    x = _data(shape, dtype, 1)
    gamma, beta = _data((d,), dtype, 2), _data((d,), dtype, 3)
    y, mean, rstd = nk.layernorm_forward(x, gamma, beta, activation=activation, negative_slope=0.1)
    assert y.dtype == mean.dtype == rstd.dtype == np.dtype(dtype)
    assert mean.shape == shape[:-1] == rstd.shape
    ry, rm, rr = ref.layernorm_forward(*_f64(x, gamma, beta), activation=activation, negative_slope=0.1)
    assert_close(y, ry, dtype, table=TOL_REDUCTION)
    assert_close(mean, rm, dtype, table=TOL_REDUCTION)
    assert_close(rstd, rr, dtype, table=TOL_REDUCTION)
    dout = _data(shape, dtype, 4)
    dx, dg, db = nk.layernorm_backward(dout, x, gamma, mean, rstd, activation=activation, y=y, negative_slope=0.1)
    rdx, rdg, rdb = ref.layernorm_backward(*_f64(dout, x, gamma, mean, rstd), activation=activation,
                                           y=np.asarray(y, np.float64), negative_slope=0.1)
    scale = max(1.0, float(np.abs(rdx).max()))
    assert_close(dx, rdx, dtype, table=TOL_REDUCTION, atol=TOL_REDUCTION[np.dtype(dtype)]["atol"] * scale * 10)
    assert_close(dg, rdg, dtype, table=TOL_REDUCTION, atol=TOL_REDUCTION[np.dtype(dtype)]["atol"] * np.sqrt(x.size))
    assert_close(db, rdb, dtype, table=TOL_REDUCTION, atol=TOL_REDUCTION[np.dtype(dtype)]["atol"] * np.sqrt(x.size))


def test_layernorm_no_affine_and_out_inplace():
    x = _data((9, 13), np.float32)
    y, mean, rstd = nk.layernorm_forward(x)
    assert_close(y, ref.layernorm_forward(x.astype(np.float64))[0], np.float32, table=TOL_REDUCTION)
    dx, dg, db = nk.layernorm_backward(x, x, None, mean, rstd)
    assert dg is None and db is None
    xc = x.copy()
    res = nk.layernorm_forward(xc, out=xc)[0]
    assert res is xc
    np.testing.assert_array_equal(xc, y)


def test_layernorm_strided_and_noncontiguous_out():
    base = _data((12, 40), np.float64)
    x = base[::2, 3:30]          # row stride, unit inner stride
    xt = base[:, ::3]            # inner stride 3 -> copied
    for v in (x, xt, base.T):
        gamma = _data((v.shape[-1],), np.float64, 5)
        y, m, r = nk.layernorm_forward(v, gamma)
        assert_close(y, ref.layernorm_forward(np.ascontiguousarray(v), gamma)[0], np.float64, table=TOL_REDUCTION)
        out = np.zeros((v.shape[1], v.shape[0])).T
        nk.layernorm_forward(v, gamma, out=out)
        np.testing.assert_array_equal(out, y)
        dout = _data(v.shape, np.float64, 6)[:, ::1]
        dx = nk.layernorm_backward(dout, v, gamma, m, r)[0]
        assert_close(dx, ref.layernorm_backward(dout, np.ascontiguousarray(v), gamma, m, r)[0], np.float64,
                     table=TOL_REDUCTION)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_large_mean_as_accurate(dtype):
    x0 = _data((16, 300), dtype, 7)
    x1 = (x0.astype(np.float64) + 1e4).astype(dtype)   # mean 1e4, std 1
    err = []
    for x, shift in ((x0, 0.0), (x1, 1e4)):   # the shift is exact: reference on centred data
        y = nk.layernorm_forward(x)[0]
        err.append(np.abs(y - ref.layernorm_forward(x.astype(np.float64) - shift)[0]).max())
    assert err[1] <= 10 * err[0] + 10 * np.finfo(dtype).eps
    dout = _data(x1.shape, dtype, 8)
    y, m, r = nk.layernorm_forward(x1)
    dx = nk.layernorm_backward(dout, x1, None, m, r)[0]
    xc = x1.astype(np.float64) - 1e4
    _, m64, r64 = ref.layernorm_forward(xc)
    rdx = ref.layernorm_backward(dout.astype(np.float64), xc, None, m64, r64)[0]
    assert_close(dx, rdx, dtype, table=TOL_REDUCTION, atol=1e-3 if dtype == np.float32 else 1e-9)


def test_layernorm_constant_rows_give_beta():
    x = np.full((3, 17), 5.0, np.float32)
    beta = _data((17,), np.float32, 9)
    y, m, r = nk.layernorm_forward(x, None, beta)
    assert np.isfinite(y).all() and np.isfinite(r).all()
    np.testing.assert_array_equal(y, np.broadcast_to(beta, y.shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_param_layouts(isa, dtype):
    # gamma/beta are read in place when contiguous; strided views, one of the pair missing, and
    # gamma/beta sharing memory with `out` must give the same result as contiguous copies.
    x = _data((5, 37), dtype, 50)
    gb = _data((2, 74), dtype, 51)
    gamma, beta = gb[0, ::2], gb[1, 1::2]  # strided
    want = nk.layernorm_forward(x, gamma.copy(), beta.copy())[0]
    np.testing.assert_array_equal(nk.layernorm_forward(x, gamma, beta)[0], want)
    ones, zeros = np.ones(37, dtype), np.zeros(37, dtype)
    np.testing.assert_array_equal(nk.layernorm_forward(x, gamma.copy(), None)[0],
                                  nk.layernorm_forward(x, gamma.copy(), zeros)[0])
    np.testing.assert_array_equal(nk.layernorm_forward(x, None, beta.copy())[0],
                                  nk.layernorm_forward(x, ones, beta.copy())[0])
    ry = ref.layernorm_forward(*_f64(x, gamma, beta))[0]
    assert_close(want, ry, dtype, table=TOL_REDUCTION)
    buf = np.zeros((5, 37), dtype)  # gamma is row 0 of the output buffer
    buf[0] = gamma
    g_alias = buf[0]
    out = buf
    g_copy = g_alias.copy()
    y = nk.layernorm_forward(x, g_alias, beta, out=out)[0]
    np.testing.assert_array_equal(y, nk.layernorm_forward(x, g_copy, beta)[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_threads_bitwise(threads, dtype):
    x = _data((300, 700), dtype, 10)
    dout = _data(x.shape, dtype, 11)
    gamma = _data((700,), dtype, 12)
    res = []
    for t in (1, 2):
        threads(t)
        y, m, r = nk.layernorm_forward(x, gamma, gamma, activation="relu")
        res.append((y, m, r) + nk.layernorm_backward(dout, x, gamma, m, r, activation="relu", y=y))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1024, 1031])
def test_layernorm_streamed_rows_bitwise(threads, isa, dtype, d):
    """Outputs of 8 MB and more are streamed (non-temporal stores, each row written in the loop
    that sums the next, a vector line shared by two rows assembled once): the result must be
    bit-identical to small (cached) calls on slices, for 1 and 2 threads, into outs at any
    offset from the vector alignment."""
    rows = (9 << 20) // (d * np.dtype(dtype).itemsize) + 3
    x = _data((rows, d), dtype, 16, loc=50.0)
    gamma, beta = _data((d,), dtype, 17), _data((d,), dtype, 18)
    step = 400  # slices of at most 3.3 MB: not streamed
    parts = [nk.layernorm_forward(x[i:i + step], gamma, beta, activation="leaky_relu") for i in range(0, rows, step)]
    expect = [np.concatenate([p[k] for p in parts]) for k in range(3)]
    np.testing.assert_array_equal(expect[0][5], nk.layernorm_forward(x[5:6], gamma, beta, activation="leaky_relu")[0][0])
    buf = np.empty(rows * d + 16, dtype)
    for t in (1, 2):
        threads(t)
        for out in (None, buf[:-16].reshape(rows, d), buf[1:-15].reshape(rows, d), buf[3:-13].reshape(rows, d)):
            res = nk.layernorm_forward(x, gamma, beta, activation="leaky_relu", out=out)
            for a, b in zip(res, expect):
                np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- layer norm, 16-bit storage (issue 15)
# x, y, dout, dx in float16 / bfloat16; gamma/beta in that dtype or float32; arithmetic, mean and rstd
# in float32; dgamma/dbeta in gamma's dtype (accumulated in float32 blocks, then double).
HALF = [F16, BF16]


def _half_data(shape, dtype, seed, loc=0.0, scale=1.0):
    return _data(shape, np.float64, seed, loc, scale).astype(dtype)


@pytest.mark.parametrize("pdtype", ["storage", "float32"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("activation", ACTS)
def test_layernorm_16bit_forward_backward(shape, dtype, activation, pdtype, isa):
    d = shape[-1]
    pdt = dtype if pdtype == "storage" else np.dtype(np.float32)
    x = _half_data(shape, dtype, 1, loc=3.0)
    gamma, beta = _half_data((d,), pdt, 2), _half_data((d,), pdt, 3)
    y, mean, rstd = nk.layernorm_forward(x, gamma, beta, activation=activation, negative_slope=0.1)
    assert y.dtype == dtype and mean.dtype == rstd.dtype == np.float32
    assert mean.shape == shape[:-1] == rstd.shape
    ry, rm, rr = ref.layernorm_forward(*_f64(x, gamma, beta), activation=activation, negative_slope=0.1)
    assert_close(y, ry, dtype, table=TOL_REDUCTION)
    assert_close(mean, rm, np.float32, table=TOL_REDUCTION)  # of the 16-bit values, in float32
    assert_close(rstd, rr, np.float32, table=TOL_REDUCTION)
    dout = _half_data(shape, dtype, 4)
    dx, dg, db = nk.layernorm_backward(dout, x, gamma, mean, rstd, activation=activation, y=y, negative_slope=0.1)
    assert dx.dtype == dtype and dg.dtype == db.dtype == pdt
    rdx, rdg, rdb = ref.layernorm_backward(*_f64(dout, x, gamma, mean, rstd), activation=activation,
                                           y=np.asarray(y, np.float64), negative_slope=0.1)
    tol = TOL_REDUCTION[dtype]
    scale = max(1.0, float(np.abs(rdx).max()))
    assert_close(dx, rdx, dtype, table=TOL_REDUCTION, atol=tol["atol"] * scale * 10)
    # dgamma/dbeta: float32 sums of the 16-bit inputs, one rounding to gamma's dtype at the end
    if pdt == np.float32:
        assert_close(dg, rdg, np.float32, table=TOL_REDUCTION, atol=1e-5 * np.sqrt(x.size))
        assert_close(db, rdb, np.float32, table=TOL_REDUCTION, atol=1e-5 * np.sqrt(x.size))
    else:
        assert_close(dg, rdg, dtype, table=TOL_REDUCTION, atol=1e-4 * np.sqrt(x.size))
        assert_within_ulps(db, rdb, dtype, ulps=1)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_layernorm_16bit_params_in_either_dtype_agree(dtype, isa):
    """float32 gamma/beta holding the same values as 16-bit ones give the same bits (the 16-bit
    parameters are widened exactly); dgamma/dbeta are the same sums, rounded to each dtype."""
    x, dout = _half_data((37, 259), dtype, 20, loc=-2.0), _half_data((37, 259), dtype, 21)
    g16, b16 = _half_data((259,), dtype, 22), _half_data((259,), dtype, 23)
    g32, b32 = g16.astype(np.float32), b16.astype(np.float32)
    y16, m16, r16 = nk.layernorm_forward(x, g16, b16)
    y32, m32, r32 = nk.layernorm_forward(x, g32, b32)
    for a, b in ((y16, y32), (m16, m32), (r16, r32)):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    ymix = nk.layernorm_forward(x, g16, b32)[0]  # one of each
    np.testing.assert_array_equal(ymix.view(np.uint16), y16.view(np.uint16))
    dx16, dg16, db16 = nk.layernorm_backward(dout, x, g16, m16, r16)
    dx32, dg32, db32 = nk.layernorm_backward(dout, x, g32, m32, r32)
    np.testing.assert_array_equal(dx16.view(np.uint16), dx32.view(np.uint16))
    assert dg16.dtype == dtype and dg32.dtype == np.float32
    np.testing.assert_array_equal(dg32.astype(dtype).view(np.uint16), dg16.view(np.uint16))
    np.testing.assert_array_equal(db32.astype(dtype).view(np.uint16), db16.view(np.uint16))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_layernorm_16bit_threads_and_layouts_bitwise(threads, dtype, isa):
    base = _half_data((301, 2 * 700), dtype, 30, loc=1.0)
    x = base[:, ::2]  # strided rows: copied to C order inside
    dout = _half_data(x.shape, dtype, 31)
    gamma = _half_data((700,), np.float32, 32)
    res = []
    for t in (1, 2):
        threads(t)
        y, m, r = nk.layernorm_forward(x, gamma, gamma, activation="relu")
        res.append((y, m, r) + nk.layernorm_backward(dout, x, gamma, m, r, activation="relu", y=y))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    xc = np.ascontiguousarray(x)
    np.testing.assert_array_equal(nk.layernorm_forward(xc, gamma, gamma, activation="relu")[0].view(np.uint16),
                                  res[0][0].view(np.uint16))
    assert nk.layernorm_forward(xc, gamma, gamma, activation="relu", out=xc)[0] is xc  # in place
    np.testing.assert_array_equal(xc.view(np.uint16), res[0][0].view(np.uint16))
    d = dout.copy()
    assert nk.layernorm_backward(d, x, gamma, res[0][1], res[0][2], out=d)[0] is d  # dx over dout
    np.testing.assert_array_equal(d.view(np.uint16), nk.layernorm_backward(dout, x, gamma, res[0][1],
                                                                           res[0][2])[0].view(np.uint16))


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("d", [1024, 1031])
def test_layernorm_16bit_streamed_rows_bitwise(threads, isa, dtype, d):
    """Outputs of 8 MB and more (streamed, rows written while the next is summed, shared vector
    lines assembled once) give the bits of small cached calls, into outs at any element offset."""
    rows = (9 << 20) // (d * 2) + 3
    x = _half_data((rows, d), dtype, 16, loc=5.0)
    gamma, beta = _half_data((d,), dtype, 17), _half_data((d,), dtype, 18)
    step = 700
    parts = [nk.layernorm_forward(x[i:i + step], gamma, beta, activation="leaky_relu") for i in range(0, rows, step)]
    expect = [np.concatenate([p[k] for p in parts]) for k in range(3)]
    buf = np.empty(rows * d + 16, dtype)
    for t in (1, 2):
        threads(t)
        for out in (None, buf[:-16].reshape(rows, d), buf[1:-15].reshape(rows, d), buf[5:-11].reshape(rows, d)):
            res = nk.layernorm_forward(x, gamma, beta, activation="leaky_relu", out=out)
            for a, b in zip(res, expect):
                np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
        dout = _half_data((rows, d), dtype, 19)
        dx = nk.layernorm_backward(dout, x, gamma, expect[1], expect[2])[0]
        dpart = np.concatenate([nk.layernorm_backward(dout[i:i + step], x[i:i + step], gamma, expect[1][i:i + step],
                                                      expect[2][i:i + step])[0] for i in range(0, rows, step)])
        np.testing.assert_array_equal(dx.view(np.uint16), dpart.view(np.uint16))


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("d", [17, 100, 509, 512])
@pytest.mark.parametrize("activation", ACTS)
def test_layernorm_16bit_row_writers_agree_bitwise(dtype, d, activation, isa):
    """Rows of up to 512 with gamma/beta go out four at a time (one gamma/beta load per four rows, Storage's
    layout); a row alone, below AVX-512, in bfloat16 pairs (even/odd lanes, parity-split gamma/beta):
    the same bits (x read at an odd element offset)."""
    x = _half_data((9 * d + 1,), dtype, 40, loc=3.0)[1:].reshape(9, d)
    gamma = _half_data((d,), dtype, 41, loc=1.0)
    beta = _half_data((d,), dtype, 42)
    kw = dict(activation=activation, negative_slope=0.125) if activation == "leaky_relu" else dict(activation=activation)
    y8 = nk.layernorm_forward(x[:8], gamma, beta, **kw)[0]
    for r in (0, 3, 7):
        alone = nk.layernorm_forward(x[r:r + 1], gamma, beta, **kw)[0]
        np.testing.assert_array_equal(alone[0].view(np.uint16), y8[r].view(np.uint16))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_layernorm_16bit_large_mean_and_extreme_rows(dtype, isa):
    x = _half_data((16, 300), dtype, 7, loc=1e3 if dtype == F16 else 1e4, scale=30.0)
    y, m, r = nk.layernorm_forward(x)
    ry, rm, rr = ref.layernorm_forward(x.astype(np.float64))
    assert_close(y, ry, dtype, table=TOL_REDUCTION)
    assert_close(m, rm, np.float32, table=TOL_REDUCTION)
    assert_close(r, rr, np.float32, table=TOL_REDUCTION)
    if dtype == BF16:  # float32 range: rows whose float32 sum of squares overflows take the wide path
        xe = _half_data((3, 257), dtype, 8, scale=1e30)
        ye, me, re = nk.layernorm_forward(xe)
        assert np.isfinite(ye.astype(np.float32)).all() and np.isfinite(re).all()
        assert_close(ye, ref.layernorm_forward(xe.astype(np.float64))[0], dtype, table=TOL_REDUCTION)
        de = _half_data((3, 257), dtype, 9)
        dxe = nk.layernorm_backward(de, xe, None, me, re)[0]
        rdx = ref.layernorm_backward(*_f64(de, xe, None, me, re))[0]
        assert_close(dxe, rdx, dtype, table=TOL_REDUCTION, atol=1e-3 * np.abs(rdx).max())


def _rows_with_offset_starts(dtype, d, seed):
    """Rows of mean 7, std 3 whose first 32 elements are moved by 0 to 50 std: the 16-bit first pass
    (sums around the mean of a row's first 32 elements) holds for the near ones and hands the far
    ones (and rows with a NaN or an infinity after the start) to the two-pass statistics."""
    offsets = [0.0, 0.5, 0.9, 1.1, 2.0, 3.0, 50.0, -50.0]
    z = np.random.default_rng(seed).standard_normal((4 * len(offsets) + 3, d))
    for i, off in enumerate(offsets * 4):
        z[i, :32] += off
    x = z * 3 + 7
    x[-3] = 1.5  # constant row
    x[-2, min(d - 1, 40)] = np.nan
    x[-1, min(d - 1, 40)] = np.inf
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("d", [1, 5, 31, 32, 33, 300, 1031])
def test_layernorm_16bit_statistics_either_first_pass(dtype, d, isa):
    x = _rows_with_offset_starts(dtype, d, 40 + d)
    beta = _half_data((d,), np.float32, 41)
    y, m, r = nk.layernorm_forward(x, np.ones(d, np.float32), beta)
    ry, rm, rr = ref.layernorm_forward(x[:-2].astype(np.float64))
    fin = slice(0, len(x) - 2)
    # float32 statistics of the 16-bit values: the mean within 1e-6 std of float64 (and its own
    # rounding), rstd within 16 float32 ulps (measured: within 9, as the float32 two-pass on the
    # same values; a first pass without its fallback is off by thousands on the far starts)
    tol_m = 1e-6 / rr + np.abs(rm) * 2.0 ** -24
    assert (np.abs(m[fin] - rm) <= tol_m).all()
    assert (np.abs(r[fin] / rr - 1) <= 16 * 2.0 ** -24).all()
    assert_close(y[fin], ry * 1 + beta, dtype, table=TOL_REDUCTION)
    np.testing.assert_array_equal(y[-3].view(np.uint16), beta.astype(dtype).view(np.uint16))  # xhat = 0
    if d > 1:
        assert np.isnan(m[-2]) and np.isnan(y[-2].astype(np.float32)).all()
        assert not np.isfinite(m[-1]) and np.isnan(y[-1].astype(np.float32)).all()


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("d", [1024, 1031])
def test_layernorm_16bit_statistics_streamed_bitwise(threads, dtype, d):
    """Rows taking either first pass give the same bits in streamed calls (a row's first pass in the
    loop writing the row before it) as in small cached calls, for 1 and 2 threads."""
    block = _rows_with_offset_starts(dtype, d, 50)
    reps = (9 << 20) // (block.nbytes) + 1
    x = np.concatenate([block] * reps)
    expect = [nk.layernorm_forward(block)[k] for k in range(3)]
    for t in (1, 2):
        threads(t)
        res = nk.layernorm_forward(x)
        for a, b in zip(res, expect):
            np.testing.assert_array_equal(a.view(np.uint8), np.concatenate([b] * reps).view(np.uint8))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_layernorm_16bit_bad_params_refused(dtype):
    x = _half_data((4, 6), dtype, 40)
    before = x.copy()
    other16 = BF16 if dtype == F16 else F16
    for name, bad in (("gamma", np.ones(6)), ("beta", np.zeros(6)), ("gamma", np.ones(6, other16))):
        kw = {"gamma": None, "beta": None, name: bad}
        with pytest.raises(ValueError, match=rf"^{name}: expected float32 or {dtype} \(the dtype of x\) for {dtype} x"):
            nk.layernorm_forward(x, **kw)
    y, m, r = nk.layernorm_forward(x)
    with pytest.raises(ValueError, match=rf"^gamma: expected float32 or {dtype}"):
        nk.layernorm_backward(x, x, np.ones(6), m, r)
    with pytest.raises(TypeError, match="^mean: expected a float32 or float64 array"):  # statistics stay float32
        nk.layernorm_backward(x, x, None, m.astype(dtype), r)
    with pytest.raises(ValueError, match=rf"^dout: expected the dtype of x \({dtype}\), got float32"):
        nk.layernorm_backward(x.astype(np.float32), x, None, m, r)
    with pytest.raises(ValueError, match=rf"^out: expected dtype {dtype}, got float32"):
        nk.layernorm_forward(x, out=np.zeros((4, 6), np.float32))
    with pytest.raises(TypeError, match="^gamma: expected a float32 or float64 array"):  # float32 x: as before
        nk.layernorm_forward(x.astype(np.float32), np.ones(6, dtype))
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))


@pytest.mark.parametrize("pdtype", [np.float32, BF16], ids=str)
def test_layernorm_module_bf16_activations(pdtype):
    ln = nk.LayerNorm(19, dtype=pdtype, activation="relu")
    ln.gamma[...] = _half_data((19,), pdtype, 60)
    x = _half_data((8, 19), BF16, 61)
    y = ln(x)
    assert y.dtype == BF16
    dx = ln.backward(_half_data((8, 19), BF16, 62))
    assert dx.dtype == BF16 and ln.dgamma.dtype == ln.dbeta.dtype == np.dtype(pdtype)
    with pytest.raises(TypeError, match="^dtype: expected float32, float64, float16 or bfloat16"):
        nk.LayerNorm(4, dtype=np.int16)


def test_layernorm_backward_mean_rstd_layouts():
    """mean/rstd are read in place when they are C-contiguous of x's dtype, else converted:
    float64 statistics for float32 data, strided views, and statistics inside `out` itself
    all give the same dx bit for bit."""
    x, dout = _data((4, 5, 37), np.float32, 19), _data((4, 5, 37), np.float32, 20)
    gamma = _data((37,), np.float32, 21)
    _, m, r = nk.layernorm_forward(x, gamma)
    dx = nk.layernorm_backward(dout, x, gamma, m, r)
    m_strided = np.repeat(m[..., None], 3, axis=-1)[..., 1]
    for mm, rr in ((m.astype(np.float64), r.astype(np.float64)), (m_strided, np.asfortranarray(r)), (m.tolist(), r)):
        res = nk.layernorm_backward(dout, x, gamma, mm, rr)
        for a, b in zip(res, dx):
            np.testing.assert_array_equal(a, b)
    out = np.zeros_like(x)
    out.reshape(-1)[:m.size] = m.reshape(-1)  # mean lives in out's first elements
    res = nk.layernorm_backward(dout, x, gamma, out.reshape(-1)[:m.size].reshape(m.shape), r, out=out)
    np.testing.assert_array_equal(res[0], dx[0])


@pytest.mark.parametrize("activation", ACTS)
def test_layernorm_backward_finite_differences(activation):
    x = _data((3, 6), np.float64, 13)
    gamma, beta = _data((6,), np.float64, 14), _data((6,), np.float64, 15) + 0.3
    dout = _data(x.shape, np.float64, 16)
    y, m, r = nk.layernorm_forward(x, gamma, beta, activation=activation, negative_slope=0.2)
    dx, dg, db = nk.layernorm_backward(dout, x, gamma, m, r, activation=activation, y=y, negative_slope=0.2)

    def loss(xx, gg, bb):
        return float((nk.layernorm_forward(xx, gg, bb, activation=activation, negative_slope=0.2)[0] * dout).sum())

    for arr, grad in ((x, dx), (gamma, dg), (beta, db)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + 1e-6
            lp = loss(x, gamma, beta)
            arr[i] = old - 1e-6
            lm = loss(x, gamma, beta)
            arr[i] = old
            num[i] = (lp - lm) / 2e-6
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("activation", ACTS)
def test_batchnorm_training(shape, dtype, activation, isa):
    c = shape[1]
    x = _data(shape, dtype, 20)
    gamma, beta = _data((c,), dtype, 21), _data((c,), dtype, 22)
    rm, rv = _data((c,), dtype, 23), np.abs(_data((c,), dtype, 24)) + 0.5
    rm2, rv2 = rm.astype(np.float64), rv.astype(np.float64)
    y, mean, rstd = nk.batchnorm_forward(x, gamma, beta, running_mean=rm, running_var=rv, momentum=0.2,
                                         activation=activation, negative_slope=0.05)
    ry, rmean, rrstd = ref.batchnorm_forward(*_f64(x, gamma, beta), running_mean=rm2, running_var=rv2, momentum=0.2,
                                             activation=activation, negative_slope=0.05)
    assert y.dtype == mean.dtype == rstd.dtype == np.dtype(dtype) and mean.shape == (c,)
    assert_close(y, ry, dtype, table=TOL_REDUCTION)
    assert_close(mean, rmean, dtype, table=TOL_REDUCTION)
    assert_close(rstd, rrstd, dtype, table=TOL_REDUCTION, rtol=1e-4 if dtype == np.float32 else 1e-10)
    assert_close(rm, rm2, dtype, table=TOL_REDUCTION)
    assert_close(rv, rv2, dtype, table=TOL_REDUCTION)
    dout = _data(shape, dtype, 25)
    dx, dg, db = nk.batchnorm_backward(dout, x, gamma, mean, rstd, activation=activation, y=y, negative_slope=0.05)
    rdx, rdg, rdb = ref.batchnorm_backward(*_f64(dout, x, gamma, mean, rstd), activation=activation,
                                           y=np.asarray(y, np.float64), negative_slope=0.05)
    big = float(np.abs(rdx).max(initial=1.0))
    tol = TOL_REDUCTION[np.dtype(dtype)]
    assert_close(dx, rdx, dtype, table=TOL_REDUCTION, atol=tol["atol"] * 10 * big * max(1.0, float(rstd.max()) / 100))
    n = x.size // c
    assert_close(dg, rdg, dtype, table=TOL_REDUCTION, atol=tol["atol"] * np.sqrt(n) * 10)
    assert_close(db, rdb, dtype, table=TOL_REDUCTION, atol=tol["atol"] * np.sqrt(n) * 10)


@pytest.mark.parametrize("unbiased", [True, False])
def test_batchnorm_running_stats(unbiased):
    x = _data((6, 4, 3), np.float64, 30)
    rm, rv = np.zeros(4), np.ones(4)
    nk.batchnorm_forward(x, running_mean=rm, running_var=rv, momentum=0.3, unbiased_running_var=unbiased)
    n = 18
    var = x.transpose(1, 0, 2).reshape(4, -1).var(axis=1)
    np.testing.assert_allclose(rm, 0.3 * x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(rv, 0.7 + 0.3 * (var * n / (n - 1) if unbiased else var), rtol=1e-12)


def test_batchnorm_eval_uses_running_stats():
    x = _data((5, 3, 4), np.float32, 31)
    rm, rv = np.array([0.5, -1, 2], np.float32), np.array([1.5, 0.25, 4], np.float32)
    gamma = np.array([1, 2, 3], np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, rstd = nk.batchnorm_forward(x, gamma, None, training=False, running_mean=rm, running_var=rv)
    ry = ref.batchnorm_normalize(x.astype(np.float64), rm, 1 / np.sqrt(rv.astype(np.float64) + 1e-5), gamma)
    assert_close(y, ry, np.float32)
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    np.testing.assert_array_equal(mean, rm)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_large_mean_as_accurate(dtype):
    x0 = _data((300, 5), dtype, 32)
    x1 = (x0.astype(np.float64) + 1e4).astype(dtype)
    err = []
    for x, shift in ((x0, 0.0), (x1, 1e4)):
        y = nk.batchnorm_forward(x)[0]
        err.append(np.abs(y - ref.batchnorm_forward(x.astype(np.float64) - shift)[0]).max())
    assert err[1] <= 10 * err[0] + 10 * np.finfo(dtype).eps
    x3 = (_data((4, 3, 100), dtype, 33).astype(np.float64) + 1e4).astype(dtype)   # plane path
    y = nk.batchnorm_forward(x3)[0]
    assert_close(y, ref.batchnorm_forward(x3.astype(np.float64) - 1e4)[0], dtype, table=TOL_REDUCTION)
    dout = _data(x1.shape, dtype, 34)
    y, m, r = nk.batchnorm_forward(x1)
    dx = nk.batchnorm_backward(dout, x1, None, m, r)[0]
    xc = x1.astype(np.float64) - 1e4
    _, m64, r64 = ref.batchnorm_forward(xc)
    rdx = ref.batchnorm_backward(dout.astype(np.float64), xc, None, m64, r64)[0]
    assert_close(dx, rdx, dtype, table=TOL_REDUCTION, atol=1e-3 if dtype == np.float32 else 1e-9)


def test_batchnorm_constant_channels():
    beta = np.array([0.5, -2.0, 3.0], np.float32)
    for x in (np.full((2, 3), 7.0, np.float32), np.full((4, 3, 5), 7.0, np.float32)):
        rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
        y, mean, rstd = nk.batchnorm_forward(x, np.ones(3, np.float32), beta, running_mean=rm, running_var=rv)
        assert np.isfinite(y).all() and np.isfinite(rstd).all() and np.isfinite(rv).all()
        np.testing.assert_array_equal(y, np.broadcast_to(beta.reshape((1, 3) + (1,) * (x.ndim - 2)), x.shape))
        dx, dg, db = nk.batchnorm_backward(np.ones_like(x), x, np.ones(3, np.float32), mean, rstd)
        assert np.isfinite(dx).all() and np.isfinite(dg).all()


def test_batchnorm_strided_inputs_and_inplace():
    base = _data((20, 9, 7), np.float64, 35)
    for x in (base[::3, 1:8], base[:, ::2, :], base.transpose(0, 2, 1), base[:, :, 2]):
        y, m, r = nk.batchnorm_forward(x)
        assert_close(y, ref.batchnorm_forward(np.ascontiguousarray(x))[0], np.float64, table=TOL_REDUCTION)
        dout = np.ones_like(x)[:, ::-1]
        dx = nk.batchnorm_backward(dout, x, None, m, r)[0]
        rdx = ref.batchnorm_backward(dout, np.ascontiguousarray(x), None, m, r)[0]
        assert_close(dx, rdx, np.float64, table=TOL_REDUCTION)
    x = _data((8, 5), np.float32, 36)
    expect = nk.batchnorm_forward(x)[0]
    assert nk.batchnorm_forward(x, out=x)[0] is x
    np.testing.assert_array_equal(x, expect)


@pytest.mark.parametrize("op", ["layernorm", "batchnorm"])
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("shape", [(7, 33), (3, 5, 17), (4096, 1024)])
def test_backward_out(op, activation, shape, isa):
    """dx into `out`: equal to the allocated result for a fresh buffer, for dout / x / y
    themselves (in place), through a non-contiguous out, and around partial overlaps; refused
    outs change nothing. (4096, 1024) float32 is 16 MB: the streamed (non-temporal) path."""
    dtype = np.float32
    fwd, bwd = (nk.layernorm_forward, nk.layernorm_backward) if op == "layernorm" else \
        (nk.batchnorm_forward, nk.batchnorm_backward)
    c = shape[-1] if op == "layernorm" else shape[1]
    x = _data(shape, dtype, 60)
    gamma, beta = _data((c,), dtype, 61), _data((c,), dtype, 62)
    dout = _data(shape, dtype, 63)
    y, m, r = fwd(x, gamma, beta, activation=activation)
    kw = dict(activation=activation, y=y)
    dx, dg, db = bwd(dout, x, gamma, m, r, **kw)

    out = np.full_like(x, np.nan)
    res = bwd(dout, x, gamma, m, r, out=out, **kw)
    assert res[0] is out
    np.testing.assert_array_equal(out, dx)
    np.testing.assert_array_equal(res[1], dg)
    np.testing.assert_array_equal(res[2], db)

    for which in ("dout", "x", "y"):  # exact aliases: dx overwrites an input in place
        a = {"dout": dout.copy(), "x": x.copy(), "y": y.copy()}
        res = bwd(a["dout"], a["x"], gamma, m, r, activation=activation, y=a["y"], out=a[which])
        assert res[0] is a[which]
        np.testing.assert_array_equal(a[which], dx)
        np.testing.assert_array_equal(res[1], dg)

    if len(shape) == 2 and shape[0] < 100:
        big = np.full((shape[0], 2 * shape[1]), np.nan, dtype)
        strided = big[:, ::2]  # non-contiguous out
        assert bwd(dout, x, gamma, m, r, out=strided, **kw)[0] is strided
        np.testing.assert_array_equal(strided, dx)
        np.testing.assert_array_equal(big[:, 1::2], np.full_like(dx, np.nan))
        buf = np.concatenate([dout.ravel(), np.zeros(5, dtype)])  # out overlaps dout shifted by 5 elements
        d_view, o_view = buf[:dout.size].reshape(shape), buf[5:5 + dout.size].reshape(shape)
        bwd(d_view, x, gamma, m, r, out=o_view, **kw)
        np.testing.assert_array_equal(o_view, dx)

    keep = np.zeros_like(x)
    for bad, exc in ((np.zeros(shape, np.float64), ValueError), (np.zeros(shape[:-1] + (shape[-1] + 1,), dtype),
                                                                 ValueError), ([0.0], TypeError)):
        with pytest.raises(exc, match="^out"):
            bwd(dout, x, gamma, m, r, out=bad, **kw)
    ro = keep.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^out"):
        bwd(dout, x, gamma, m, r, out=ro, **kw)
    with pytest.raises(ValueError, match="^mean"):
        bwd(dout, x, gamma, m[:1], r, out=keep, **kw)
    np.testing.assert_array_equal(keep, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1024, 1031])
def test_batchnorm_streamed_out_bitwise(threads, isa, dtype, c):
    """An existing `out` of 8 MB and more is written with non-temporal stores (lines shared by
    two rows assembled once): y and dx must equal the freshly allocated (cached) results bit
    for bit, for 1 and 2 threads and outs at any offset from the vector alignment."""
    n = (9 << 20) // (c * np.dtype(dtype).itemsize) + 3
    x, dout = _data((n, c), dtype, 70, loc=-30.0), _data((n, c), dtype, 71)
    gamma, beta = _data((c,), dtype, 72), _data((c,), dtype, 73)
    y, m, r = nk.batchnorm_forward(x, gamma, beta, activation="relu")
    dx = nk.batchnorm_backward(dout, x, gamma, m, r, activation="relu", y=y)[0]
    buf = np.empty(n * c + 16, dtype)
    for t in (1, 2):
        threads(t)
        for off in (0, 1, 3):
            out = buf[off:off + n * c].reshape(n, c)
            np.testing.assert_array_equal(nk.batchnorm_forward(x, gamma, beta, activation="relu", out=out)[0], y)
            np.testing.assert_array_equal(nk.batchnorm_backward(dout, x, gamma, m, r, activation="relu", y=y,
                                                                out=out)[0], dx)


@pytest.mark.parametrize("shape", [(2000, 37), (9, 5, 300), (300, 3, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_threads_bitwise(threads, shape, dtype):
    x = _data(shape, dtype, 37)
    dout = _data(shape, dtype, 38)
    g = _data((shape[1],), dtype, 39)
    res = []
    for t in (1, 2):
        threads(t)
        y, m, r = nk.batchnorm_forward(x, g, g, activation="leaky_relu")
        res.append((y, m, r) + nk.batchnorm_backward(dout, x, g, m, r, activation="leaky_relu", y=y))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5)])
def test_batchnorm_backward_finite_differences(activation, shape):
    x = _data(shape, np.float64, 40)
    gamma, beta = _data((shape[1],), np.float64, 41), _data((shape[1],), np.float64, 42) + 0.2
    dout = _data(shape, np.float64, 43)
    y, m, r = nk.batchnorm_forward(x, gamma, beta, activation=activation, negative_slope=0.3)
    dx, dg, db = nk.batchnorm_backward(dout, x, gamma, m, r, activation=activation, y=y, negative_slope=0.3)

    def loss():
        return float((nk.batchnorm_forward(x, gamma, beta, activation=activation, negative_slope=0.3)[0]
                      * dout).sum())

    for arr, grad in ((x, dx), (gamma, dg), (beta, db)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + 1e-6
            lp = loss()
            arr[i] = old - 1e-6
            lm = loss()
            arr[i] = old
            num[i] = (lp - lm) / 2e-6
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- separable (sync-BN) pieces

@pytest.mark.parametrize("shape", [(12, 5), (6, 3, 70), (10, 4, 3)])
def test_separable_pieces_match_fused(shape):
    x = _data(shape, np.float64, 50)
    dout = _data(shape, np.float64, 51)
    g, b = _data((shape[1],), np.float64, 52), _data((shape[1],), np.float64, 53)
    parts = [x[:5], x[5:]]
    stats = [nk.batchnorm_stats(p) for p in parts]
    n, mean, m2 = nk.batchnorm_merge_stats([s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats])
    rn, rmean, rm2 = ref.batchnorm_stats(x)
    assert n == rn
    np.testing.assert_allclose(mean, rmean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m2, rm2, rtol=1e-12)
    rstd = 1 / np.sqrt(m2 / n + 1e-5)
    y, fm, fr = nk.batchnorm_forward(x, g, b, activation="relu")
    ys = np.concatenate([nk.batchnorm_normalize(p, mean, rstd, g, b, activation="relu") for p in parts])
    assert_close(ys, y, np.float64, table=TOL_REDUCTION)
    red = [nk.batchnorm_backward_reduce(dp, p, mean, rstd, activation="relu", y=yp)
           for dp, p, yp in zip((dout[:5], dout[5:]), parts, (y[:5], y[5:]))]
    sd, sdx = red[0][0] + red[1][0], red[0][1] + red[1][1]
    dx = np.concatenate([nk.batchnorm_backward_elemt(dp, p, g, mean, rstd, sd, sdx, n, activation="relu", y=yp)
                         for dp, p, yp in zip((dout[:5], dout[5:]), parts, (y[:5], y[5:]))])
    fdx, fdg, fdb = nk.batchnorm_backward(dout, x, g, fm, fr, activation="relu", y=y)
    assert_close(dx, fdx, np.float64, table=TOL_REDUCTION)
    assert_close(sdx, fdg, np.float64, table=TOL_REDUCTION)
    assert_close(sd, fdb, np.float64, table=TOL_REDUCTION)


# ---------------------------------------------------------------- batch norm, 16-bit storage (issue 15)

@pytest.mark.parametrize("pdtype", ["storage", "float32"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("activation", ACTS)
def test_batchnorm_16bit_training(shape, dtype, activation, pdtype, isa):
    c = shape[1]
    pdt = dtype if pdtype == "storage" else np.dtype(np.float32)
    x = _half_data(shape, dtype, 20, loc=2.0)
    gamma, beta = _half_data((c,), pdt, 21), _half_data((c,), pdt, 22)
    rm, rv = _half_data((c,), pdt, 23), (np.abs(_half_data((c,), np.float64, 24)) + 0.5).astype(pdt)
    rm2, rv2 = rm.astype(np.float64), rv.astype(np.float64)
    y, mean, rstd = nk.batchnorm_forward(x, gamma, beta, running_mean=rm, running_var=rv, momentum=0.2,
                                         activation=activation, negative_slope=0.05)
    ry, rmean, rrstd = ref.batchnorm_forward(*_f64(x, gamma, beta), running_mean=rm2, running_var=rv2, momentum=0.2,
                                             activation=activation, negative_slope=0.05)
    assert y.dtype == dtype and mean.dtype == rstd.dtype == np.float32 and mean.shape == (c,)
    assert rm.dtype == rv.dtype == pdt
    assert_close(y, ry, dtype, table=TOL_REDUCTION)
    assert_close(mean, rmean, np.float32, table=TOL_REDUCTION)
    assert_close(rstd, rrstd, np.float32, table=TOL_REDUCTION, rtol=1e-4)
    # running statistics: updated in double, rounded once to their dtype
    assert_within_ulps(rm, rm2, pdt, ulps=1) if pdt != np.float32 else assert_close(rm, rm2, np.float32,
                                                                                     table=TOL_REDUCTION)
    assert_within_ulps(rv, rv2, pdt, ulps=1) if pdt != np.float32 else assert_close(rv, rv2, np.float32,
                                                                                     table=TOL_REDUCTION)
    dout = _half_data(shape, dtype, 25)
    dx, dg, db = nk.batchnorm_backward(dout, x, gamma, mean, rstd, activation=activation, y=y, negative_slope=0.05)
    assert dx.dtype == dtype and dg.dtype == db.dtype == pdt
    rdx, rdg, rdb = ref.batchnorm_backward(*_f64(dout, x, gamma, mean, rstd), activation=activation,
                                           y=np.asarray(y, np.float64), negative_slope=0.05)
    big = float(np.abs(rdx).max(initial=1.0))
    assert_close(dx, rdx, dtype, table=TOL_REDUCTION, atol=1e-4 * big * max(1.0, float(rstd.max()) / 100))
    n = x.size // c
    assert_close(dg, rdg, pdt, table=TOL_REDUCTION, atol=1e-4 * np.sqrt(n) * 10)
    assert_close(db, rdb, pdt, table=TOL_REDUCTION, atol=1e-4 * np.sqrt(n) * 10)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_batchnorm_16bit_eval_module_and_params_either_dtype(dtype, isa):
    x = _half_data((13, 6, 9), dtype, 70, loc=-1.0)
    g16, b16 = _half_data((6,), dtype, 71), _half_data((6,), dtype, 72)
    rm, rv = _half_data((6,), dtype, 73), (np.abs(_half_data((6,), np.float64, 74)) + 0.5).astype(dtype)
    # float32 parameters holding the same values: the same bits
    a = nk.batchnorm_forward(x, g16, b16, running_mean=rm.copy(), running_var=rv.copy())
    b = nk.batchnorm_forward(x, g16.astype(np.float32), b16.astype(np.float32), running_mean=rm.copy(),
                             running_var=rv.copy())
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.view(np.uint8), v.view(np.uint8))
    y, m, r = nk.batchnorm_forward(x, g16, b16, training=False, running_mean=rm, running_var=rv)
    ry = ref.batchnorm_forward(*_f64(x, g16, b16), training=False, running_mean=rm.astype(np.float64),
                               running_var=rv.astype(np.float64))[0]
    assert_close(y, ry, dtype, table=TOL_REDUCTION)
    bn = nk.BatchNorm(6, dtype=dtype, activation="relu")
    y = bn(x)
    assert y.dtype == dtype and bn.running_mean.dtype == dtype
    dx = bn.backward(_half_data(x.shape, dtype, 75))
    assert dx.dtype == dtype and bn.dgamma.dtype == dtype
    bn.eval()
    y2 = bn(x)
    dx2 = bn.backward(_half_data(x.shape, dtype, 76))
    assert y2.dtype == dx2.dtype == dtype


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", [(12, 5), (6, 3, 70), (10, 4, 3)])
def test_batchnorm_16bit_separable_pieces_match_fused(shape, dtype, isa):
    x = _half_data(shape, dtype, 50, loc=4.0)
    dout = _half_data(shape, dtype, 51)
    g, b = _half_data((shape[1],), np.float32, 52), _half_data((shape[1],), dtype, 53)
    parts = [x[:5], x[5:]]
    stats = [nk.batchnorm_stats(p) for p in parts]
    n, mean, m2 = nk.batchnorm_merge_stats([s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats])
    rn, rmean, rm2 = ref.batchnorm_stats(x.astype(np.float64))
    assert n == rn
    assert_close(mean, rmean, np.float32, table=TOL_REDUCTION)
    assert_close(m2, rm2, np.float32, table=TOL_REDUCTION)
    rstd = 1 / np.sqrt(m2 / n + 1e-5)  # float64 statistics with 16-bit x: accepted
    y, fm, fr = nk.batchnorm_forward(x, g, b, activation="relu")
    ys = np.concatenate([nk.batchnorm_normalize(p, mean, rstd, g, b, activation="relu") for p in parts])
    assert ys.dtype == dtype
    assert_close(ys, y, dtype, table=TOL_REDUCTION)
    red = [nk.batchnorm_backward_reduce(dp, p, mean, rstd, activation="relu", y=yp)
           for dp, p, yp in zip((dout[:5], dout[5:]), parts, (y[:5], y[5:]))]
    assert red[0][0].dtype == red[0][1].dtype == np.float32  # sums to all-reduce: never 16-bit
    sd, sdx = red[0][0] + red[1][0], red[0][1] + red[1][1]
    dx = np.concatenate([nk.batchnorm_backward_elemt(dp, p, g, mean, rstd, sd, sdx, n, activation="relu", y=yp)
                         for dp, p, yp in zip((dout[:5], dout[5:]), parts, (y[:5], y[5:]))])
    fdx, fdg, fdb = nk.batchnorm_backward(dout, x, g, fm, fr, activation="relu", y=y)
    assert dx.dtype == dtype
    assert_close(dx, fdx, dtype, table=TOL_REDUCTION, atol=1e-2)
    assert_close(sdx, fdg, np.float32, table=TOL_REDUCTION)
    assert_close(sd, fdb, np.float32, table=TOL_REDUCTION)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", [(2000, 37), (9, 5, 300), (300, 3, 5)])
def test_batchnorm_16bit_threads_bitwise(threads, shape, dtype):
    x, dout = _half_data(shape, dtype, 80, loc=3.0), _half_data(shape, dtype, 81)
    g = _half_data((shape[1],), np.float32, 82)
    res = []
    for t in (1, 2):
        threads(t)
        y, m, r = nk.batchnorm_forward(x, g, g, activation="leaky_relu")
        res.append((y, m, r) + nk.batchnorm_backward(dout, x, g, m, r, activation="leaky_relu", y=y))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("c", [1024, 1031])
def test_batchnorm_16bit_streamed_out_bitwise(threads, isa, dtype, c):
    """Outputs of 8 MB and more are written with non-temporal stores: the bits of the same
    normalisation on small (cached) slices, into outs at any element offset."""
    n = (9 << 20) // (c * 2) + 3
    x = _half_data((n, c), dtype, 85, loc=7.0)
    g, b = _half_data((c,), np.float32, 86), _half_data((c,), np.float32, 87)
    mean, rstd = np.linspace(6.5, 7.5, c), np.linspace(0.9, 1.1, c)
    expect = np.concatenate([nk.batchnorm_normalize(x[i:i + 500], mean, rstd, g, b) for i in range(0, n, 500)])
    buf = np.empty(n * c + 8, dtype)
    for t in (1, 2):
        threads(t)
        for out in (None, buf[:-8].reshape(n, c), buf[3:-5].reshape(n, c)):
            y = nk.batchnorm_normalize(x, mean, rstd, g, b, out=out)
            np.testing.assert_array_equal(y.view(np.uint16), expect.view(np.uint16))


def test_batchnorm_16bit_extreme_channels_take_the_wide_path(isa):
    """bfloat16 has float32's range: channels whose float32 sums overflow are redone in double."""
    x = _half_data((40, 3, 5), BF16, 90)
    x[:, 1] = _half_data((40, 5), BF16, 91, scale=1e30)
    dout = _half_data(x.shape, BF16, 92)
    y, m, r = nk.batchnorm_forward(x)
    ry, rm, rr = ref.batchnorm_forward(x.astype(np.float64))
    assert np.isfinite(y.astype(np.float32)).all()
    assert_close(y, ry, BF16, table=TOL_REDUCTION)
    assert_close(r, rr, np.float32, table=TOL_REDUCTION)
    dx, dg, db = nk.batchnorm_backward(dout, x, np.ones(3, np.float32), m, r)
    rdx = ref.batchnorm_backward(*_f64(dout, x, np.ones(3), m, r))[0]
    assert_close(dx, rdx, BF16, table=TOL_REDUCTION, atol=1e-3 * np.abs(rdx).max())


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_batchnorm_16bit_bad_params_refused(dtype):
    x = _half_data((4, 3, 2), dtype, 95)
    before = x.copy()
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    for name in ("gamma", "beta", "running_mean", "running_var"):
        kw = {"running_mean": rm, "running_var": rv, name: np.ones(3)}
        with pytest.raises(ValueError, match=rf"^{name}: expected float32 or {dtype} \(the dtype of x\)"):
            nk.batchnorm_forward(x, **kw)
    np.testing.assert_array_equal(rm, 0)
    np.testing.assert_array_equal(rv, 1)
    y, m, r = nk.batchnorm_forward(x)
    with pytest.raises(TypeError, match="^mean: expected a float32 or float64 array"):
        nk.batchnorm_normalize(x, m.astype(dtype), r)
    with pytest.raises(ValueError, match=rf"^gamma: expected float32 or {dtype}"):
        nk.batchnorm_backward(x, x, np.ones(3), m, r)
    with pytest.raises(ValueError, match=rf"^dout: expected the dtype of x \({dtype}\)"):
        nk.batchnorm_backward_reduce(x.astype(np.float32), x, m, r)
    with pytest.raises(TypeError, match="^dtype: expected float32, float64, float16 or bfloat16"):
        nk.BatchNorm(3, dtype=np.int8)
    np.testing.assert_array_equal(x.view(np.uint16), before.view(np.uint16))


def test_merge_stats_float32_data_and_empty_part():
    x = (_data((64, 3), np.float32, 54).astype(np.float64) + 1e4).astype(np.float32)
    c0, m0, q0 = nk.batchnorm_stats(x[:0])
    c1, m1, q1 = nk.batchnorm_stats(x)
    n, mean, m2 = nk.batchnorm_merge_stats([c0, c1], [m0, m1], [q0, q1])
    rn, rmean, rm2 = ref.batchnorm_stats(x)
    assert n == 64 and mean.dtype == np.float64
    np.testing.assert_allclose(mean, rmean, rtol=1e-12)
    np.testing.assert_allclose(m2, rm2, rtol=1e-6)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1), (1, 1), (1, 5, 1)])
def test_batchnorm_training_one_value_per_channel_refused(shape):
    """Like PyTorch: training mode needs more than one value per channel (else y = beta and the
    unbiased running variance is undefined), refused before anything is written, at every entry
    point that normalises with batch statistics. Eval mode normalises one sample fine."""
    x = _data(shape, np.float32, 70)
    c = shape[1]
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    out = np.full(shape, 5.0, np.float32)
    msg = r"x: expected more than 1 value per channel when training, got input size \(1, "
    with pytest.raises(ValueError, match=msg):
        nk.batchnorm_forward(x, running_mean=rm, running_var=rv, out=out)
    with pytest.raises(ValueError, match=msg):
        nk.batchnorm_forward(x, out=out)
    assert (out == 5).all() and (rm == 0).all() and (rv == 1).all()
    bn = nk.BatchNorm(c)
    with pytest.raises(ValueError, match=msg):
        bn.forward(x)
    assert (bn.running_mean == 0).all() and (bn.running_var == 1).all()
    from nnkernels import nn

    layer = nn.BatchNorm(c)
    with pytest.raises(ValueError, match=msg):
        layer.forward(x)
    with pytest.raises(ValueError, match=msg):  # the synchronised path's global count
        nk._core.batchnorm_check_training_count(shape, 1)
    nk._core.batchnorm_check_training_count(shape, 2)
    y = nk.batchnorm_forward(x, training=False, running_mean=rm, running_var=rv)[0]
    assert_close(y, x / np.sqrt(np.float32(1 + 1e-5)), np.float32)
    assert_close(bn.eval().forward(x), x / np.sqrt(np.float32(1 + 1e-5)), np.float32)
    # two values per channel (N = 2, or N = 1 with a spatial size of 2) train
    nk.batchnorm_forward(np.concatenate([x, x + 1]), running_mean=rm, running_var=rv)
    nk.batchnorm_forward(np.concatenate([x, x + 1], axis=-1) if len(shape) > 2 else x.reshape(1, c, 1).repeat(2, 2))


def test_batchnorm_training_empty_batch_refused():
    """An empty batch (no value per channel) stays refused in training mode, kept as before."""
    with pytest.raises(ValueError, match=r"x: training mode needs at least one value per channel"):
        nk.batchnorm_forward(np.zeros((0, 3), np.float32))
    assert nk.batchnorm_forward(np.zeros((0, 3), np.float32), training=False, running_mean=np.zeros(3),
                                running_var=np.ones(3))[0].shape == (0, 3)


def _running_stat_cases(c):
    base = np.zeros(2 * c + 1, np.float32)
    ro = np.zeros(c, np.float32)
    ro.flags.writeable = False
    return [
        ("list", dict(running_mean=[0.0] * c, running_var=[1.0] * c), TypeError, "running_mean: expected a writeable NumPy array"),
        ("list_var", dict(running_mean=np.zeros(c, np.float32), running_var=[1.0] * c), TypeError, "running_var: expected a writeable NumPy array"),
        ("tuple", dict(running_mean=tuple([0.0] * c), running_var=np.ones(c, np.float32)), TypeError, "running_mean: expected"),
        ("readonly", dict(running_mean=ro, running_var=np.ones(c, np.float32)), ValueError, "running_mean: array is read-only"),
        ("int", dict(running_mean=np.zeros(c, np.int64), running_var=np.ones(c, np.float32)), TypeError, "running_mean: expected a float32 or float64"),
        ("shape", dict(running_mean=np.zeros(c + 1, np.float32), running_var=np.ones(c, np.float32)), ValueError, "running_mean: expected shape"),
        ("same", "same", ValueError, "running_var: shares memory with running_mean"),
        ("overlap", dict(running_mean=base[:c], running_var=base[c - 1:2 * c - 1]), ValueError, "running_var: shares memory with running_mean"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_batchnorm_running_stats_refused(case):
    """Running statistics that cannot be updated in place are refused before anything is written."""
    c = 3
    name, kw, exc, msg = _running_stat_cases(c)[case]
    x = _data((6, c), np.float32, 71)
    x0 = x.copy()
    out = np.full((6, c), 5.0, np.float32)
    if kw == "same":
        r = np.ones(c, np.float32)
        kw = dict(running_mean=r, running_var=r)
    before = {k: np.array(v, copy=True) for k, v in kw.items()}
    with pytest.raises(exc, match=msg):
        nk.batchnorm_forward(x, running_mean=kw["running_mean"], running_var=kw["running_var"], out=out)
    assert (out == 5).all() and (x == x0).all()
    for k, v in kw.items():
        np.testing.assert_array_equal(np.asarray(v), before[k])
    if name in ("list", "list_var", "tuple", "readonly", "same", "overlap"):  # read only: fine in eval mode
        y = nk.batchnorm_forward(x, training=False, running_mean=kw["running_mean"], running_var=kw["running_var"])[0]
        assert np.isfinite(y).all()


@pytest.mark.parametrize("other", ["out", "x", "gamma", "beta"])
def test_batchnorm_running_stats_overlapping_other_arrays_refused(other):
    c = 4
    buf = np.zeros(64, np.float32)
    x = _data((3, c), np.float32, 72)
    arrays = dict(x=x, gamma=np.ones(c, np.float32), beta=np.zeros(c, np.float32), out=np.zeros((3, c), np.float32))
    if other in ("x", "out"):
        arrays[other] = buf[:3 * c].reshape(3, c)
        arrays[other][...] = x if other == "x" else 5
        rm, rv = buf[3 * c - 2:4 * c - 2], np.ones(c, np.float32)  # tail of the (3, c) block
    else:
        arrays[other] = buf[:c]
        arrays[other][...] = 1 if other == "gamma" else 0
        rm, rv = np.zeros(c, np.float32), buf[1:c + 1]
    snap = {k: v.copy() for k, v in arrays.items()}
    rm0, rv0 = rm.copy(), rv.copy()
    with pytest.raises(ValueError, match=r"running_(mean|var): shares memory with " + other):
        nk.batchnorm_forward(arrays["x"], arrays["gamma"], arrays["beta"], running_mean=rm, running_var=rv,
                             out=arrays["out"])
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, snap[k])
    np.testing.assert_array_equal(rm, rm0)
    np.testing.assert_array_equal(rv, rv0)
    # eval mode only reads them (before writing y): an overlap with out is handled there
    if other == "out":
        out = arrays["out"]
        rm[...] = 0.5
        expect = ref.batchnorm_forward(x.astype(np.float64), training=False, running_mean=np.full(c, 0.5),
                                       running_var=np.ones(c))[0]
        y = nk.batchnorm_forward(x, training=False, running_mean=rm, running_var=rv, out=out)[0]
        assert_close(y, expect, np.float32)


# ---------------------------------------------------------------- modules

def test_modules_train_eval():
    bn = nk.BatchNorm(3, momentum=0.5, activation="relu", dtype=np.float64)
    x = _data((8, 3, 2), np.float64, 60)
    y = bn.forward(x)
    assert_close(y, ref.batchnorm_forward(x, bn.gamma, bn.beta, activation="relu")[0], np.float64, table=TOL_REDUCTION)
    dx = bn.backward(np.ones_like(x))
    assert dx.shape == x.shape and bn.dgamma.shape == (3,)
    rm = bn.running_mean.copy()
    bn.eval()
    y2 = bn.forward(x)
    np.testing.assert_array_equal(bn.running_mean, rm)
    ry = ref.batchnorm_normalize(x, bn.running_mean, 1 / np.sqrt(bn.running_var + 1e-5), bn.gamma, bn.beta,
                                 activation="relu")
    assert_close(y2, ry, np.float64)
    dx2 = bn.backward(np.ones_like(x))
    expect = np.where(y2 > 0, 1.0, 0.0) * (1 / np.sqrt(bn.running_var + 1e-5)).reshape(1, 3, 1)
    assert_close(dx2, expect, np.float64)
    ln = nk.LayerNorm(6, dtype=np.float32).train()
    x = _data((4, 6), np.float32, 61)
    assert_close(ln.forward(x), ref.layernorm_forward(x.astype(np.float64))[0], np.float32, table=TOL_REDUCTION)
    assert ln.backward(np.ones_like(x)).shape == x.shape and ln.dbeta.shape == (6,)
    with pytest.raises(ValueError, match="num_features"):
        nk.BatchNorm(0)
    with pytest.raises(RuntimeError):
        nk.LayerNorm(3).backward(np.ones((1, 3), np.float32))


# ---------------------------------------------------------------- bad input

def test_bad_inputs_leave_state_untouched():
    x = _data((6, 3), np.float32, 70)
    x0 = x.copy()
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    out = np.zeros_like(x)
    g3 = np.ones(3, np.float32)
    cases = [
        (ValueError, "gamma", dict(gamma=np.ones(4, np.float32))),
        (ValueError, "beta", dict(beta=np.ones((3, 1), np.float32))),
        (ValueError, "running_var", dict(running_mean=rm, running_var=None)),
        (ValueError, "running_mean", dict(running_mean=np.zeros(2, np.float32), running_var=rv)),
        (ValueError, "running_mean", dict(training=False, running_mean=None, running_var=None)),
        (ValueError, "activation", dict(activation="gelu")),
        (ValueError, "eps", dict(eps=-1.0)),
        (TypeError, "gamma", dict(gamma=np.ones(3, np.int64))),
        (ValueError, "out", dict(out=np.zeros((6, 4), np.float32))),
        (ValueError, "out", dict(out=np.zeros((6, 3), np.float64))),  # dtype mismatch between arguments
    ]
    for exc, name, kw in cases:
        kw.setdefault("running_mean", rm)
        kw.setdefault("running_var", rv)
        kw.setdefault("out", out)
        with pytest.raises(exc, match=f"^{name}"):
            nk.batchnorm_forward(x, **kw)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(rm, 0)
        np.testing.assert_array_equal(rv, 1)
        np.testing.assert_array_equal(out, 0)
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^running_mean"):
        nk.batchnorm_forward(x, running_mean=ro, running_var=rv)
    np.testing.assert_array_equal(rv, 1)
    with pytest.raises(TypeError, match="^x"):
        nk.batchnorm_forward(x.astype(np.int32))
    with pytest.raises(ValueError, match="^x"):
        nk.batchnorm_forward(np.ones(5, np.float32))
    with pytest.raises(ValueError, match="^x"):
        nk.batchnorm_forward(np.ones((0, 3), np.float32))
    with pytest.raises(TypeError, match="^x"):
        nk.layernorm_forward(np.ones((2, 3), np.int64))
    with pytest.raises(ValueError, match="^x"):
        nk.layernorm_forward(np.ones((2, 0), np.float32))
    with pytest.raises(ValueError, match="^gamma"):
        nk.layernorm_forward(x, np.ones(4, np.float32), out=out)
    np.testing.assert_array_equal(out, 0)
    y, m, r = nk.layernorm_forward(x)
    with pytest.raises(ValueError, match="^mean"):
        nk.layernorm_backward(x, x, None, m[:2], r)
    with pytest.raises(ValueError, match="^y"):
        nk.layernorm_backward(x, x, None, m, r, activation="relu")
    with pytest.raises(ValueError, match="^dout"):
        nk.layernorm_backward(x[:2], x, None, m, r)
    with pytest.raises(ValueError, match="^dout"):
        nk.batchnorm_backward(x.astype(np.float64), x, g3, m[:3], r[:3])
    with pytest.raises(ValueError, match="^negative_slope"):
        nk.batchnorm_backward(x, x, g3, m[:3], r[:3], activation="leaky_relu", y=x, negative_slope=-1.0)
    with pytest.raises(ValueError, match="^count"):
        nk.batchnorm_backward_elemt(x, x, g3, m[:3], r[:3], g3, g3, 0)
    with pytest.raises(ValueError, match="^rstd"):
        nk.batchnorm_normalize(x, g3, None)
    with pytest.raises(ValueError, match="^counts"):
        nk.batchnorm_merge_stats([1, 2, 3], np.zeros((2, 3)), np.zeros((2, 3)))
    for bad in (-1, np.nan, np.inf):
        with pytest.raises(ValueError, match="^counts: expected finite non-negative counts"):
            nk.batchnorm_merge_stats([1, bad], np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^means: expected shape \(P, C\)"):
        nk.batchnorm_merge_stats([1, 2], np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="^m2s: expected the shape of means"):
        nk.batchnorm_merge_stats([1, 2], np.zeros((2, 3)), np.zeros((2, 4)))
    np.testing.assert_array_equal(x, x0)


# ---------------------------------------------------------------- PyTorch cross-check (optional)

def test_against_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _data((16, 8, 5), np.float64, 80)
    g, b = _data((8,), np.float64, 81), _data((8,), np.float64, 82)
    rm, rv = np.zeros(8), np.ones(8)
    trm, trv = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    xt = torch.from_numpy(x).requires_grad_()
    gt, bt = torch.from_numpy(g).requires_grad_(), torch.from_numpy(b).requires_grad_()
    yt = F.batch_norm(xt, trm, trv, gt, bt, training=True, momentum=0.1, eps=1e-5)
    y, m, r = nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    dout = _data(x.shape, np.float64, 83)
    yt.backward(torch.from_numpy(dout))
    dx, dg, db = nk.batchnorm_backward(dout, x, g, m, r)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dg, gt.grad.numpy(), rtol=1e-9, atol=1e-11)
    x2 = _data((6, 33), np.float64, 84)
    g2 = _data((33,), np.float64, 85)
    xt2 = torch.from_numpy(x2).requires_grad_()
    gt2 = torch.from_numpy(g2).requires_grad_()
    yt2 = F.layer_norm(xt2, (33,), gt2, None, 1e-5)
    y2, m2, r2 = nk.layernorm_forward(x2, g2)
    np.testing.assert_allclose(y2, yt2.detach().numpy(), rtol=1e-10, atol=1e-12)
    d2 = _data(x2.shape, np.float64, 86)
    yt2.backward(torch.from_numpy(d2))
    dx2, dg2, _ = nk.layernorm_backward(d2, x2, g2, m2, r2)
    np.testing.assert_allclose(dx2, xt2.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dg2, gt2.grad.numpy(), rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------- PyTorch CPU tensors (zero-copy)
# The same calls with torch CPU tensors: the kernels read and write the tensors' memory through
# DLPack, results come back as tensors, out=/running statistics tensors are written in place,
# and every value is bitwise the NumPy call's.

def _t(a):
    """A torch CPU tensor with a's values (ml_dtypes.bfloat16 as torch.bfloat16), None for None."""
    pytest.importorskip("torch")
    return None if a is None else torch_of(np.array(a, copy=True))


def _same(result, expect):
    """result (a tensor or a tuple of them, None / an int where expect is one) bitwise equals expect,
    tensor dtypes following expect's (ml_dtypes.bfloat16 as torch.bfloat16)."""
    torch = pytest.importorskip("torch")
    if isinstance(expect, tuple):
        assert isinstance(result, tuple) and len(result) == len(expect)
        for r, e in zip(result, expect):
            _same(r, e)
        return
    if expect is None:
        assert result is None
        return
    if isinstance(expect, int):
        assert result == expect and type(result) is int
        return
    assert isinstance(result, torch.Tensor), type(result)
    assert result.dtype == _t(np.empty(0, expect.dtype)).dtype and tuple(result.shape) == expect.shape
    got = numpy_of(result)
    np.testing.assert_array_equal(got, expect, strict=True)
    assert got.tobytes() == np.ascontiguousarray(expect).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTS)
def test_torch_cpu_layernorm_bitwise(dtype, activation):
    x, dout = _data((17, 33), dtype, 200, loc=3.0), _data((17, 33), dtype, 201)
    g, b = _data((33,), dtype, 202), _data((33,), dtype, 203)
    fwd = nk.layernorm_forward(x, g, b, activation=activation, negative_slope=0.2)
    _same(nk.layernorm_forward(_t(x), _t(g), _t(b), activation=activation, negative_slope=0.2), fwd)
    y, m, r = fwd
    bwd = nk.layernorm_backward(dout, x, g, m, r, activation=activation, y=y, negative_slope=0.2)
    _same(nk.layernorm_backward(_t(dout), _t(x), _t(g), _t(m), _t(r), activation=activation, y=_t(y),
                                negative_slope=0.2), bwd)
    _same(nk.layernorm_backward(_t(dout), _t(x), None, _t(m), _t(r), activation=activation, y=_t(y),
                                negative_slope=0.2),
          nk.layernorm_backward(dout, x, None, m, r, activation=activation, y=y, negative_slope=0.2))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(17, 31), (5, 3, 7), (3, 2, 70)])
@pytest.mark.parametrize("activation", ACTS)
def test_torch_cpu_batchnorm_bitwise(dtype, shape, activation):
    c = shape[1]
    x, dout = _data(shape, dtype, 210, loc=1e4), _data(shape, dtype, 211)
    g, b = _data((c,), dtype, 212), _data((c,), dtype, 213)
    kw = dict(activation=activation, negative_slope=0.2)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    trm, trv = _t(rm), _t(rv)
    fwd = nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv, **kw)
    _same(nk.batchnorm_forward(_t(x), _t(g), _t(b), running_mean=trm, running_var=trv, **kw), fwd)
    _same(trm, rm)  # running statistics tensors updated in place
    _same(trv, rv)
    _same(nk.batchnorm_forward(_t(x), _t(g), _t(b), training=False, running_mean=trm, running_var=trv, **kw),
          nk.batchnorm_forward(x, g, b, training=False, running_mean=rm, running_var=rv, **kw))
    y, m, r = fwd
    _same(nk.batchnorm_backward(_t(dout), _t(x), _t(g), _t(m), _t(r), y=_t(y), **kw),
          nk.batchnorm_backward(dout, x, g, m, r, y=y, **kw))
    n, mean, m2 = nk.batchnorm_stats(x)
    _same(nk.batchnorm_stats(_t(x)), (n, mean, m2))
    _same(nk.batchnorm_normalize(_t(x), _t(mean), _t(r), _t(g), _t(b), **kw),
          nk.batchnorm_normalize(x, mean, r, g, b, **kw))
    sg, sgx = nk.batchnorm_backward_reduce(dout, x, mean, r, y=y, **kw)
    _same(nk.batchnorm_backward_reduce(_t(dout), _t(x), _t(mean), _t(r), y=_t(y), **kw), (sg, sgx))
    _same(nk.batchnorm_backward_elemt(_t(dout), _t(x), _t(g), _t(mean), _t(r), _t(sg), _t(sgx), n, y=_t(y), **kw),
          nk.batchnorm_backward_elemt(dout, x, g, mean, r, sg, sgx, n, y=y, **kw))
    counts, means, m2s = np.array([n, 0, n]), np.stack([mean, mean, mean + 1]), np.stack([m2, m2 * 0, m2])
    _same(nk.batchnorm_merge_stats(_t(counts), _t(means), _t(m2s)), nk.batchnorm_merge_stats(counts, means, m2s))
    pc = np.stack([counts, counts], axis=1).repeat(c // 2 + 1, axis=1)[:, :c]
    _same(nk.batchnorm_merge_stats(_t(pc), _t(means), _t(m2s)), nk.batchnorm_merge_stats(pc, means, m2s))


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_cpu_out_strided_params_and_mixing(dtype):
    """out= tensors are written in place and returned (strided ones too); strided input tensors,
    gamma as an nn.Parameter (requires grad), NumPy vectors with a torch x: all bitwise the NumPy call."""
    torch = pytest.importorskip("torch")
    base = _data((40, 9, 6), dtype, 220, loc=5.0)
    x_np = base[::2].transpose(0, 2, 1)
    x_t = torch.from_numpy(base.copy())[::2].permute(0, 2, 1)  # (20, 6, 9), strided: read from a copy
    assert not x_t.is_contiguous()
    g = _data((6,), dtype, 221)
    gp = torch.nn.Parameter(torch.from_numpy(g.copy()))
    expect = nk.batchnorm_forward(x_np, g, None, activation="relu")
    out = torch.full((20, 6, 9), 7.0, dtype=_t(g).dtype)
    res = nk.batchnorm_forward(x_t, gp, None, activation="relu", out=out)
    assert res[0] is out
    _same(res, expect)
    out_s = torch.zeros((20, 6, 18), dtype=out.dtype)[:, :, ::2]  # strided: written through a temporary
    assert nk.batchnorm_forward(x_t, g, None, activation="relu", out=out_s)[0] is out_s
    _same(out_s.contiguous(), expect[0])
    _same(nk.batchnorm_forward(x_t, g, None, activation="relu"), expect)  # NumPy gamma, torch x
    assert isinstance(nk.batchnorm_forward(x_np, _t(g))[0], np.ndarray)  # the result follows x
    assert gp.requires_grad and gp.grad is None
    # in place on the tensor (out is x)
    xl = _data((9, 257), dtype, 222)
    expect = nk.layernorm_forward(xl.copy(), gp.detach().numpy().repeat(43)[:257])
    xt = _t(xl)
    gl = torch.nn.Parameter(torch.from_numpy(g.repeat(43)[:257].copy()))
    res = nk.layernorm_forward(xt, gl, out=xt)
    assert res[0] is xt
    _same(res, expect)
    # dx into dout itself
    x2, d2 = _data((33, 70), dtype, 223), _data((33, 70), dtype, 224)
    _, m, r = nk.batchnorm_forward(x2)
    expect = nk.batchnorm_backward(d2, x2, g.repeat(12)[:70], m, r)
    dt_ = _t(d2)
    res = nk.batchnorm_backward(dt_, _t(x2), torch.nn.Parameter(_t(g.repeat(12)[:70])), _t(m), _t(r), out=dt_)
    assert res[0] is dt_
    _same(res, expect)


def test_torch_cpu_running_stats_refusals():
    """Tensor running statistics are accepted in training mode; the refusals stay those of NumPy."""
    torch = pytest.importorskip("torch")
    x = _data((6, 3), np.float32, 230)
    rm = torch.zeros(3)
    with pytest.raises(ValueError, match="running_var: shares memory with running_mean"):
        nk.batchnorm_forward(torch.from_numpy(x), running_mean=rm, running_var=rm)
    with pytest.raises(TypeError, match="running_mean: expected a writeable NumPy array, PyTorch tensor or CuPy array"):
        nk.batchnorm_forward(torch.from_numpy(x), running_mean=[0.0] * 3, running_var=torch.ones(3))
    with pytest.raises(TypeError, match="running_mean: expected a float32 or float64 array, got dtype int64"):
        nk.batchnorm_forward(torch.from_numpy(x), running_mean=torch.zeros(3, dtype=torch.int64),
                             running_var=torch.ones(3))
    assert (rm == 0).all()


def test_torch_cpu_modules():
    """nk.BatchNorm / nk.LayerNorm with a torch CPU x (NumPy parameters): tensors back, values
    bitwise those of the NumPy input, in training and eval mode (eval backward included)."""
    torch = pytest.importorskip("torch")
    x, dout = _data((8, 3, 5), np.float64, 240, loc=2.0), _data((8, 3, 5), np.float64, 241)
    for mode in ("train", "eval"):
        a, b = nk.BatchNorm(3, activation="relu", dtype=np.float64), nk.BatchNorm(3, activation="relu", dtype=np.float64)
        if mode == "eval":
            a.eval(), b.eval()
        ya, yb = a.forward(x), b.forward(torch.from_numpy(x.copy()))
        _same(yb, ya)
        _same(b.backward(torch.from_numpy(dout.copy())), a.backward(dout))
        np.testing.assert_array_equal(b.running_mean, a.running_mean)
        np.testing.assert_array_equal(b.running_var, a.running_var)
        np.testing.assert_array_equal(b.dgamma, a.dgamma)  # the parameters' gradient buffers (NumPy, in place)
    la, lb = nk.LayerNorm(5, dtype=np.float64), nk.LayerNorm(5, dtype=np.float64)
    _same(lb.forward(torch.from_numpy(x.copy())), la.forward(x))
    _same(lb.backward(torch.from_numpy(dout.copy())), la.backward(dout))


# ---- 16-bit storage with torch CPU tensors: torch.bfloat16 / float16 in, the same dtype out, bitwise
# the NumPy call (ml_dtypes.bfloat16 / float16 arrays over the same bits)

@pytest.mark.parametrize("pdtype", ["storage", "float32"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_torch_cpu_16bit_layernorm_bitwise(dtype, pdtype):
    torch = pytest.importorskip("torch")
    pdt = dtype if pdtype == "storage" else np.dtype(np.float32)
    x, dout = _half_data((17, 33), dtype, 250, loc=3.0), _half_data((17, 33), dtype, 251)
    g, b = _half_data((33,), pdt, 252), _half_data((33,), pdt, 253)
    kw = dict(activation="leaky_relu", negative_slope=0.2)
    fwd = nk.layernorm_forward(x, g, b, **kw)
    assert fwd[0].dtype == dtype and fwd[1].dtype == np.float32
    _same(nk.layernorm_forward(_t(x), _t(g), _t(b), **kw), fwd)
    y, m, r = fwd
    bwd = nk.layernorm_backward(dout, x, g, m, r, y=y, **kw)
    assert bwd[1].dtype == pdt
    gp = torch.nn.Parameter(_t(g))  # a parameter that requires grad, read in place
    _same(nk.layernorm_backward(_t(dout), _t(x), gp, _t(m), _t(r), y=_t(y), **kw), bwd)
    assert gp.grad is None
    out = _t(np.zeros_like(x))
    assert nk.layernorm_forward(_t(x), _t(g), _t(b), out=out, **kw)[0] is out
    _same(out, y)
    xt = _t(x)
    assert nk.layernorm_forward(xt, g, b, out=xt, **kw)[0] is xt  # NumPy gamma/beta, in place on the tensor
    _same(xt, y)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_cpu_16bit_strided_tensors(dtype):
    """Strided 16-bit tensors (read from a contiguous copy, which must keep the 16-bit dtype: a
    bfloat16 tensor's NumPy descriptor has kind 'V') give bitwise the NumPy call on the same strided
    view. In a child process: reading 16-bit memory as float32 wrote past the result (heap corruption)."""
    pytest.importorskip("torch")
    r = run_isolated(f"""
        import ml_dtypes, numpy as np, torch, nnkernels as nk
        dt = np.dtype(ml_dtypes.bfloat16) if "{dtype}" == "bfloat16" else np.dtype(np.float16)
        tdt = getattr(torch, "{dtype}")

        def t16(a):
            return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(tdt)

        def bits(v):
            if isinstance(v, torch.Tensor):
                v = v.contiguous()
                return v.view(torch.int16).numpy().tobytes() if v.dtype == tdt else v.numpy().tobytes()
            return v.tobytes() if isinstance(v, np.ndarray) else v

        def same(a, b):
            assert [bits(u) for u in a] == [bits(v) for v in b]

        rng = np.random.default_rng(255)
        for shape, sl in (((33, 70), np.s_[:, ::2]), ((4, 3, 9, 22), np.s_[..., ::2])):
            base = (rng.standard_normal(shape) + 1.0).astype(dt)
            xn, xt = base[sl], t16(base)[sl]
            assert not xt.is_contiguous()
            same(nk.layernorm_forward(xt), nk.layernorm_forward(xn))
            same(nk.batchnorm_forward(xt), nk.batchnorm_forward(xn))
            same(nk.batchnorm_stats(xt), nk.batchnorm_stats(xn))
            m, r = np.zeros(xn.shape[1], np.float32), np.ones(xn.shape[1], np.float32)
            same([nk.batchnorm_normalize(xt, m, r)], [nk.batchnorm_normalize(xn, m, r)])
        print("ok")
    """, timeout=120)
    assert_clean_exit(r)
    assert r.stdout.strip() == "ok"


@pytest.mark.parametrize("pdtype", ["storage", "float32"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", [(17, 31), (3, 2, 70)])
def test_torch_cpu_16bit_batchnorm_bitwise(shape, dtype, pdtype):
    c = shape[1]
    pdt = dtype if pdtype == "storage" else np.dtype(np.float32)
    x, dout = _half_data(shape, dtype, 260, loc=2.0), _half_data(shape, dtype, 261)
    g, b = _half_data((c,), pdt, 262), _half_data((c,), pdt, 263)
    kw = dict(activation="relu")
    rm, rv = np.zeros(c, pdt), np.ones(c, pdt)
    trm, trv = _t(rm), _t(rv)
    fwd = nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv, **kw)
    _same(nk.batchnorm_forward(_t(x), _t(g), _t(b), running_mean=trm, running_var=trv, **kw), fwd)
    _same(trm, rm)  # running statistics tensors (float32 or x's dtype) updated in place
    _same(trv, rv)
    _same(nk.batchnorm_forward(_t(x), _t(g), _t(b), training=False, running_mean=trm, running_var=trv, **kw),
            nk.batchnorm_forward(x, g, b, training=False, running_mean=rm, running_var=rv, **kw))
    y, m, r = fwd
    bwd = nk.batchnorm_backward(dout, x, g, m, r, y=y, **kw)
    assert bwd[0].dtype == dtype and bwd[1].dtype == pdt
    _same(nk.batchnorm_backward(_t(dout), _t(x), _t(g), _t(m), _t(r), y=_t(y), **kw), bwd)
    n, mean, m2 = nk.batchnorm_stats(x)
    _same(nk.batchnorm_stats(_t(x)), (n, mean, m2))
    _same(nk.batchnorm_normalize(_t(x), _t(mean), _t(r), _t(g), _t(b), **kw),
            nk.batchnorm_normalize(x, mean, r, g, b, **kw))
    sg, sgx = nk.batchnorm_backward_reduce(dout, x, mean, r, y=y, **kw)
    assert sg.dtype == sgx.dtype == np.float32
    _same(nk.batchnorm_backward_reduce(_t(dout), _t(x), _t(mean), _t(r), y=_t(y), **kw), (sg, sgx))
    _same(nk.batchnorm_backward_elemt(_t(dout), _t(x), _t(g), _t(mean), _t(r), _t(sg), _t(sgx), n,
                                        y=_t(y), **kw),
            nk.batchnorm_backward_elemt(dout, x, g, mean, r, sg, sgx, n, y=y, **kw))
    d = _t(dout)
    assert nk.batchnorm_backward(d, _t(x), _t(g), _t(m), _t(r), y=_t(y), out=d, **kw)[0] is d  # dx over dout
    _same(d, bwd[0])


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_torch_cpu_16bit_refusals(dtype):
    """The NumPy call's refusals, for tensors: float64 parameters, 16-bit statistics given back."""
    torch = pytest.importorskip("torch")
    x = _t(_half_data((6, 3), dtype, 270))
    with pytest.raises(ValueError, match=rf"^gamma: expected float32 or {dtype} \(the dtype of x\) for {dtype} x, "
                                         "got float64"):
        nk.batchnorm_forward(x, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=rf"^running_mean: expected float32 or {dtype}"):
        nk.batchnorm_forward(x, running_mean=torch.zeros(3, dtype=torch.float64), running_var=torch.ones(3))
    _, m, r = nk.layernorm_forward(x)
    assert m.dtype == torch.float32
    with pytest.raises(TypeError, match="^rstd: expected a float32 or float64 array, got dtype"):
        nk.layernorm_backward(x, x, None, m, r.to(x.dtype))


@pytest.mark.parametrize("pdtype", [F16, BF16, np.dtype(np.float32)], ids=str)
def test_torch_cpu_16bit_modules(pdtype):
    """nk.BatchNorm / nk.LayerNorm holding NumPy parameters (16-bit or float32) with a 16-bit torch CPU x:
    tensors of x's dtype back, values bitwise those of the NumPy input, gradient buffers in the
    parameters' dtype (training and eval mode)."""
    xdt = BF16 if pdtype == np.float32 else pdtype
    x, dout = _half_data((8, 3, 5), xdt, 280, loc=2.0), _half_data((8, 3, 5), xdt, 281)
    for mode in ("train", "eval"):
        a, b = nk.BatchNorm(3, activation="relu", dtype=pdtype), nk.BatchNorm(3, activation="relu", dtype=pdtype)
        if mode == "eval":
            a.eval(), b.eval()
        _same(b.forward(_t(x)), a.forward(x))
        _same(b.backward(_t(dout)), a.backward(dout))
        for u, v in ((a.running_mean, b.running_mean), (a.running_var, b.running_var), (a.dgamma, b.dgamma)):
            assert u.dtype == v.dtype == pdtype and u.tobytes() == v.tobytes()
    la, lb = nk.LayerNorm(5, dtype=pdtype), nk.LayerNorm(5, dtype=pdtype)
    _same(lb.forward(_t(x)), la.forward(x))
    _same(lb.backward(_t(dout)), la.backward(dout))
    assert lb.dgamma.dtype == pdtype and lb.dgamma.tobytes() == la.dgamma.tobytes()


# ---------------------------------------------------------------- GPU (skips without one)

def test_gpu_matches_cpu(gpu):
    to_gpu, to_np, _ = gpu
    for shape in [(33, 70), (4, 3, 9, 11), (5, 6, 100)]:
        x = _data(shape, np.float32, 90)
        dout = _data(shape, np.float32, 91)
        g, b = _data((shape[1],), np.float32, 92), _data((shape[1],), np.float32, 93)
        y, m, r = nk.batchnorm_forward(x, g, b, activation="relu")
        gy, gm, gr = nk.batchnorm_forward(to_gpu(x), to_gpu(g), to_gpu(b), activation="relu")
        assert_close(to_np(gy), y, np.float32, table=TOL_REDUCTION)
        dx, dg, db = nk.batchnorm_backward(dout, x, g, m, r, activation="relu", y=y)
        gdx, gdg, gdb = nk.batchnorm_backward(to_gpu(dout), to_gpu(x), to_gpu(g), gm, gr, activation="relu", y=gy)
        assert_close(to_np(gdx), dx, np.float32, table=TOL_REDUCTION, atol=1e-4)
        assert_close(to_np(gdg), dg, np.float32, table=TOL_REDUCTION, atol=1e-3)
        gl = _data((shape[-1],), np.float32, 94)
        y, m, r = nk.layernorm_forward(x, gl, gl)
        gy, gm, gr = nk.layernorm_forward(to_gpu(x), to_gpu(gl), to_gpu(gl))
        assert_close(to_np(gy), y, np.float32, table=TOL_REDUCTION)
        dx, dg, db = nk.layernorm_backward(dout, x, gl, m, r)
        gdx, gdg, gdb = nk.layernorm_backward(to_gpu(dout), to_gpu(x), to_gpu(gl), gm, gr)
        assert_close(to_np(gdx), dx, np.float32, table=TOL_REDUCTION, atol=1e-4)
        assert_close(to_np(gdb), db, np.float32, table=TOL_REDUCTION, atol=1e-3)


def test_gpu_backward_out(gpu):
    """dx into a GPU `out`, including dout itself (written through a temporary on the GPU)."""
    to_gpu, to_np, _ = gpu
    x, dout = _data((33, 70), np.float32, 95), _data((33, 70), np.float32, 96)
    g = _data((70,), np.float32, 97)
    for fwd, bwd, gg in ((nk.layernorm_forward, nk.layernorm_backward, g),
                         (nk.batchnorm_forward, nk.batchnorm_backward, g)):
        gx, gd, ggam = to_gpu(x), to_gpu(dout), to_gpu(gg)
        _, gm, gr = fwd(gx, ggam)
        expect = to_np(bwd(gd, gx, ggam, gm, gr)[0])
        out = to_gpu(np.zeros_like(x))
        assert bwd(gd, gx, ggam, gm, gr, out=out)[0] is out
        np.testing.assert_array_equal(to_np(out), expect)
        assert bwd(gd, gx, ggam, gm, gr, out=gd)[0] is gd
        np.testing.assert_array_equal(to_np(gd), expect)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_every_op_matches_cpu(gpu, dtype):
    """Every normalization op on the GPU (all kernels and parameter kernels on the device) against
    the CPU in both dtypes, including running statistics on the device, per-channel vectors of
    the other dtype and strided ones, and results in the GPU library on its device."""
    to_gpu, to_np, lib = gpu
    tab = TOL_REDUCTION
    for shape in [(33, 70), (4, 3, 9, 11), (5, 6, 100), (2, 1)]:
        c = shape[1]
        x, dout = _data(shape, dtype, 300, loc=50.0), _data(shape, dtype, 301)
        g, b = _data((c,), dtype, 302), _data((c,), np.float64, 303)
        kw = dict(activation="leaky_relu", negative_slope=0.1)
        rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
        grm, grv = to_gpu(rm), to_gpu(rv)
        y, m, r = nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv, **kw)
        gy, gm, gr = nk.batchnorm_forward(to_gpu(x), to_gpu(np.repeat(g, 2))[::2], to_gpu(b), running_mean=grm,
                                          running_var=grv, **kw)  # strided float32 gamma, float64 beta
        assert type(gy) is type(to_gpu(x)) and type(gm) is type(gy)
        for a, e in ((gy, y), (gm, m), (gr, r), (grm, rm), (grv, rv)):
            assert_close(to_np(a), e, dtype, table=tab, atol=1e-4 if dtype == np.float32 else 1e-9)
        ye = nk.batchnorm_forward(x, g, b, training=False, running_mean=rm, running_var=rv)[0]
        gye = nk.batchnorm_forward(to_gpu(x), to_gpu(g), to_gpu(b), training=False, running_mean=grm, running_var=grv)[0]
        assert_close(to_np(gye), ye, dtype, table=tab)
        dx, dg, db = nk.batchnorm_backward(dout, x, g, m, r, y=y, **kw)
        gdx, gdg, gdb = nk.batchnorm_backward(to_gpu(dout), to_gpu(x), to_gpu(g), gm, gr, y=gy, **kw)
        assert_close(to_np(gdx), dx, dtype, table=tab, atol=1e-4 if dtype == np.float32 else 1e-9)
        assert_close(to_np(gdg), dg, dtype, table=tab, atol=1e-3 if dtype == np.float32 else 1e-8)
        assert_close(to_np(gdb), db, dtype, table=tab, atol=1e-3 if dtype == np.float32 else 1e-8)
        n, mean, m2 = nk.batchnorm_stats(x)
        gn, gmean, gm2 = nk.batchnorm_stats(to_gpu(x))
        assert gn == n
        assert_close(to_np(gmean), mean, np.float64, table=tab)
        assert_close(to_np(gm2), m2, np.float64, table={np.dtype(np.float64): {"rtol": 1e-5, "atol": 1e-6}})
        yn = nk.batchnorm_normalize(x, mean, r, g, b, **kw)
        assert_close(to_np(nk.batchnorm_normalize(to_gpu(x), gmean, gr, to_gpu(g), to_gpu(b), **kw)), yn, dtype, table=tab)
        sg, sgx = nk.batchnorm_backward_reduce(dout, x, mean, r, y=y, **kw)
        gsg, gsgx = nk.batchnorm_backward_reduce(to_gpu(dout), to_gpu(x), gmean, gr, y=gy, **kw)
        assert_close(to_np(gsg), sg, dtype, table=tab, atol=1e-3 if dtype == np.float32 else 1e-8)
        assert_close(to_np(gsgx), sgx, dtype, table=tab, atol=1e-3 if dtype == np.float32 else 1e-8)
        de = nk.batchnorm_backward_elemt(dout, x, g, mean, r, sg, sgx, n, y=y, **kw)
        gde = nk.batchnorm_backward_elemt(to_gpu(dout), to_gpu(x), to_gpu(g), gmean, gr, to_gpu(sg), to_gpu(sgx), n,
                                          y=gy, **kw)
        assert_close(to_np(gde), de, dtype, table=tab, atol=1e-4 if dtype == np.float32 else 1e-9)
        gl, bl2 = _data((shape[-1],), dtype, 304), _data((shape[-1] * 2,), dtype, 305)
        y, m, r = nk.layernorm_forward(x, gl, bl2[::2], **kw)
        gy, gm, gr = nk.layernorm_forward(to_gpu(x), to_gpu(gl), to_gpu(bl2)[::2], **kw)  # a strided device beta
        for a, e in ((gy, y), (gm, m), (gr, r)):
            assert_close(to_np(a), e, dtype, table=tab, atol=1e-4 if dtype == np.float32 else 1e-9)
        assert_close(to_np(nk.layernorm_forward(to_gpu(x))[0]), nk.layernorm_forward(x)[0], dtype, table=tab)
        dx, dg, db = nk.layernorm_backward(dout, x, gl, m, r, y=y, **kw)
        gdx, gdg, gdb = nk.layernorm_backward(to_gpu(dout), to_gpu(x), to_gpu(gl), gm, gr, y=gy, **kw)
        assert_close(to_np(gdx), dx, dtype, table=tab, atol=1e-4 if dtype == np.float32 else 1e-9)
        assert_close(to_np(gdg), dg, dtype, table=tab, atol=1e-3 if dtype == np.float32 else 1e-8)
        assert_close(to_np(gdb), db, dtype, table=tab, atol=1e-3 if dtype == np.float32 else 1e-8)


def test_gpu_extreme_float32_on_device(gpu):
    """float32 values near 1e37 (statistics that overflow float) normalise correctly on the GPU
    with no host round trip: batch-norm statistics accumulate in double on the device."""
    to_gpu, to_np, _ = gpu
    x = (_data((64, 4, 5), np.float64, 310) * 1e37).astype(np.float32)
    expect = nk.batchnorm_forward(x)[0]
    assert_close(to_np(nk.batchnorm_forward(to_gpu(x))[0]), expect, np.float32, table=TOL_REDUCTION, atol=1e-4)
    x = (_data((9, 257), np.float64, 311) * 1e30).astype(np.float32)
    assert_close(to_np(nk.layernorm_forward(to_gpu(x))[0]), nk.layernorm_forward(x)[0], np.float32,
                 table=TOL_REDUCTION, atol=1e-4)


def test_gpu_host_vectors_refused(gpu):
    """A host vector with a GPU x is refused naming it (nothing is copied inside an op)."""
    to_gpu, _, _ = gpu
    x = _data((8, 3), np.float32, 320)
    with pytest.raises(ValueError, match=r"^gamma: expected an array on cuda"):
        nk.batchnorm_forward(to_gpu(x), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"^running_mean: expected an array on cuda"):
        nk.batchnorm_forward(to_gpu(x), running_mean=np.zeros(3, np.float32), running_var=to_gpu(np.ones(3, np.float32)))
    with pytest.raises(ValueError, match=r"^m2s: expected an array on cuda"):
        nk.batchnorm_merge_stats(np.array([1, 2]), to_gpu(np.zeros((2, 3))), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^counts: expected an array on cuda"):
        nk.batchnorm_merge_stats(np.array([1, 2]), to_gpu(np.zeros((2, 3))), to_gpu(np.zeros((2, 3))))


def test_gpu_merge_stats_on_device(gpu):
    """batchnorm_merge_stats of device statistics runs on the device (what SyncBatchNorm's all-gather gives):
    the host merge's values, from strided views of one table and from other dtypes; the count is a 0-d device
    array; bad values (which only a host read could check) make the channels they touch NaN."""
    to_gpu, to_np, _ = gpu
    rng = np.random.default_rng(330)
    P, C = 4, 7
    counts = np.array([5.0, 0.0, 12.0, 3.0])
    means = rng.normal(size=(P, C)) * 10 + 1e4
    m2s = rng.uniform(0.5, 3.0, size=(P, C))
    table = np.concatenate([counts[:, None], means, m2s], axis=1)  # SyncBatchNorm's gathered layout
    g = to_gpu(table)
    n, mean, m2 = nk.batchnorm_merge_stats(g[:, 0], g[:, 1:1 + C], g[:, 1 + C:])
    hn, hmean, hm2 = nk.batchnorm_merge_stats(counts, means, m2s)
    assert hn == 20 and to_np(n).shape == () and to_np(n).dtype == np.float64 and float(to_np(n)) == 20.0
    np.testing.assert_allclose(to_np(mean), hmean, rtol=1e-15)
    np.testing.assert_allclose(to_np(m2), hm2, rtol=1e-13)
    # integer counts and float32 statistics are converted on the device
    n2, mean2, m22 = nk.batchnorm_merge_stats(to_gpu(counts.astype(np.int64)), to_gpu(means.astype(np.float32)),
                                              to_gpu(m2s.astype(np.float32)))
    hn2, hmean2, hm22 = nk.batchnorm_merge_stats(counts.astype(np.int64), means.astype(np.float32),
                                                 m2s.astype(np.float32))
    assert float(to_np(n2)) == hn2
    np.testing.assert_allclose(to_np(mean2), hmean2, rtol=1e-15)
    np.testing.assert_allclose(to_np(m22), hm22, rtol=1e-13)
    # per-channel counts: a (C,) count, and an invalid value poisons only its channel
    pc = rng.integers(0, 9, size=(P, C)).astype(np.float64)
    pn, pmean, pm2 = nk.batchnorm_merge_stats(to_gpu(pc), to_gpu(means), to_gpu(m2s))
    hpn, hpmean, hpm2 = nk.batchnorm_merge_stats(pc, means, m2s)
    np.testing.assert_array_equal(to_np(pn), hpn)
    np.testing.assert_allclose(to_np(pmean), hpmean, rtol=1e-15)
    np.testing.assert_allclose(to_np(pm2), hpm2, rtol=1e-13)
    bad_c, bad_q = pc.copy(), m2s.copy()
    bad_c[2, 1], bad_q[0, 4] = -1.0, -0.5
    pn, pmean, pm2 = (to_np(v) for v in nk.batchnorm_merge_stats(to_gpu(bad_c), to_gpu(means), to_gpu(bad_q)))
    poisoned = np.zeros(C, bool)
    poisoned[[1, 4]] = True
    for v, ref in ((pn, hpn), (pmean, hpmean), (pm2, hpm2)):
        assert np.isnan(v[poisoned]).all()
        np.testing.assert_allclose(v[~poisoned], ref[~poisoned], rtol=1e-13)
    # an invalid per-part count poisons every channel and the count
    for bad in (-1.0, np.inf, np.nan):
        c2 = counts.copy()
        c2[3] = bad
        outs = [to_np(v) for v in nk.batchnorm_merge_stats(to_gpu(c2), to_gpu(means), to_gpu(m2s))]
        assert all(np.isnan(v).all() for v in outs)


def _cuda_torch_or_skip():
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0):
        pytest.skip("needs a CUDA device and a CUDA build")
    return torch


@pytest.mark.parametrize("pdtype", ["storage", "float32"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gpu_16bit_matches_cpu(dtype, pdtype):
    """torch CUDA float16/bfloat16 tensors through every normalization op against the CPU kernels on
    the same values (torch CPU tensors): same dtypes (x's for y/dx, float32 mean/rstd and
    backward_reduce sums, gamma's for dgamma/dbeta, running statistics updated in place in their
    dtype), values within the 16-bit tolerances (the reductions run in another order). Contiguous
    and strided x, 16-bit gamma/beta (converted on the device) and float32 ones."""
    torch = _cuda_torch_or_skip()
    tdt = getattr(torch, dtype)
    npdt = BF16 if dtype == "bfloat16" else F16
    pdt = npdt if pdtype == "storage" else np.dtype(np.float32)
    tab = TOL_REDUCTION

    def close(g, c, dt, scale=1.0):
        assert g.is_cuda and g.dtype == c.dtype, (g.dtype, c.dtype)
        assert_close(numpy_of(g).astype(np.float64), numpy_of(c).astype(np.float64), dt, table=tab,
                     atol=10 * tab[np.dtype(dt)]["rtol"] * scale)

    kw = dict(activation="leaky_relu", negative_slope=0.1)
    for shape in [(33, 70), (4, 3, 9, 11), (5, 6, 100), (64, 1031)]:
        c = shape[1]
        x = _t(_half_data(shape, npdt, 400, loc=3.0))
        dout = _t(_half_data(shape, npdt, 401))
        g, b = _t(_half_data((c,), pdt, 402)), _t(_half_data((c,), pdt, 403))
        for xs, ds in ((x, dout), (x[:, ::2], dout[:, ::2])):  # contiguous and strided (copied on the device)
            cs = xs.shape[1]
            gs, bs = g[:cs].contiguous(), b[:cs].contiguous()
            rm, rv = torch.zeros(cs, dtype=gs.dtype), torch.ones(cs, dtype=gs.dtype)
            grm, grv = rm.cuda(), rv.cuda()
            cpu = nk.batchnorm_forward(xs, gs, bs, running_mean=rm, running_var=rv, **kw)
            gpu = nk.batchnorm_forward(xs.cuda(), gs.cuda(), bs.cuda(), running_mean=grm, running_var=grv, **kw)
            assert cpu[0].dtype == tdt and cpu[1].dtype == torch.float32
            for gg, cc in zip(gpu, cpu):
                close(gg, cc, npdt if cc.dtype == tdt else np.float32)
            close(grm, rm, pdt)
            close(grv, rv, pdt)
            close(nk.batchnorm_forward(xs.cuda(), gs.cuda(), bs.cuda(), training=False, running_mean=grm,
                                       running_var=grv)[0],
                  nk.batchnorm_forward(xs, gs, bs, training=False, running_mean=rm, running_var=rv)[0], npdt)
            y, m, r = cpu
            cb = nk.batchnorm_backward(ds, xs, gs, m, r, y=y, **kw)
            gb = nk.batchnorm_backward(ds.cuda(), xs.cuda(), gs.cuda(), m.cuda(), r.cuda(), y=y.cuda(), **kw)
            n = int(np.prod(xs.shape)) // cs
            assert cb[1].dtype == gs.dtype
            close(gb[0], cb[0], npdt)
            close(gb[1], cb[1], pdt, scale=np.sqrt(n))
            close(gb[2], cb[2], pdt, scale=np.sqrt(n))
            cn, cmean, cm2 = nk.batchnorm_stats(xs)
            gn, gmean, gm2 = nk.batchnorm_stats(xs.cuda())
            assert gn == cn and gmean.dtype == torch.float64
            assert_close(gmean.cpu().numpy(), cmean.numpy(), np.float64, table={np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-9}})
            assert_close(gm2.cpu().numpy(), cm2.numpy(), np.float64, table={np.dtype(np.float64): {"rtol": 1e-6, "atol": 1e-6}})
            close(nk.batchnorm_normalize(xs.cuda(), gmean, r.cuda(), gs.cuda(), bs.cuda(), **kw),
                  nk.batchnorm_normalize(xs, cmean, r, gs, bs, **kw), npdt)
            csg, csgx = nk.batchnorm_backward_reduce(ds, xs, cmean, r, y=y, **kw)
            gsg, gsgx = nk.batchnorm_backward_reduce(ds.cuda(), xs.cuda(), gmean, r.cuda(), y=y.cuda(), **kw)
            assert gsg.dtype == torch.float32
            close(gsg, csg, np.float32, scale=np.sqrt(n))
            close(gsgx, csgx, np.float32, scale=np.sqrt(n))
            close(nk.batchnorm_backward_elemt(ds.cuda(), xs.cuda(), gs.cuda(), gmean, r.cuda(), csg.cuda(),
                                              csgx.cuda(), n, y=y.cuda(), **kw),
                  nk.batchnorm_backward_elemt(ds, xs, gs, cmean, r, csg, csgx, n, y=y, **kw), npdt)
            # layer norm over the last axis
            d = xs.shape[-1]
            gl, bl = _t(_half_data((d,), pdt, 404)), _t(_half_data((d,), pdt, 405))
            cl = nk.layernorm_forward(xs, gl, bl, **kw)
            gl_ = nk.layernorm_forward(xs.cuda(), gl.cuda(), bl.cuda(), **kw)
            assert gl_[1].dtype == torch.float32 and gl_[0].dtype == tdt
            for gg, cc in zip(gl_, cl):
                close(gg, cc, npdt if cc.dtype == tdt else np.float32)
            y, m, r = cl
            cb = nk.layernorm_backward(ds, xs, gl, m, r, y=y, **kw)
            gb = nk.layernorm_backward(ds.cuda(), xs.cuda(), gl.cuda(), m.cuda(), r.cuda(), y=y.cuda(), **kw)
            rows = int(np.prod(xs.shape)) // d
            assert gb[1].dtype == gl.dtype and gb[0].dtype == tdt
            close(gb[0], cb[0], npdt)
            close(gb[1], cb[1], pdt, scale=np.sqrt(rows))
            close(gb[2], cb[2], pdt, scale=np.sqrt(rows))


def test_gpu_16bit_refusals():
    """A float64 gamma with a 16-bit CUDA x is refused naming it before anything runs (as on the CPU)."""
    torch = _cuda_torch_or_skip()
    x = torch.randn(6, 3, device="cuda").to(torch.bfloat16)
    before = x.clone()
    with pytest.raises(ValueError, match=r"^gamma: expected float32 or bfloat16 \(the dtype of x\) for bfloat16 x"):
        nk.batchnorm_forward(x, torch.ones(3, dtype=torch.float64, device="cuda"))
    with pytest.raises(ValueError, match=r"^beta: expected float32 or bfloat16"):
        nk.layernorm_forward(x, None, torch.ones(3, dtype=torch.float16, device="cuda"))
    assert torch.equal(x.view(torch.int16), before.view(torch.int16))


def test_large_results_placed_apart_from_input():
    """Results of 1 MB and more are 64-byte aligned and half a page away from x modulo 4096
    (no 4K aliasing between the input's loads and the result's stores); they are ordinary
    writeable C-contiguous arrays whose memory outlives the input."""
    x = _data((1024, 300), np.float32, 80)
    dout = _data(x.shape, np.float32, 81)
    y, m, r = nk.layernorm_forward(x)
    dx = nk.batchnorm_backward(dout, x, None, *nk.batchnorm_forward(x)[1:])[0]
    for a in (y, dx, nk.layernorm_backward(dout, x, None, m, r)[0], nk.batchnorm_forward(x)[0]):
        assert a.ctypes.data % 64 == 0
        assert abs((a.ctypes.data - x.ctypes.data) % 4096 - 2048) <= 128
        assert a.flags.c_contiguous and a.flags.writeable and a.shape == x.shape and a.dtype == x.dtype
    expect = ref.layernorm_forward(x.astype(np.float64))[0]
    del x
    y += 0  # still writable memory of its own
    assert_close(y, expect, np.float32, table=TOL_REDUCTION)
    assert nk.layernorm_forward(_data((4, 5), np.float32))[0].flags.owndata  # small: NumPy's allocator


# ---------------------------------------------------------------- extreme magnitudes (issue 13 item 13)
# Finite float32 values beyond ~1e19 overflow the float sum of squared deviations (y was 0
# everywhere), beyond ~1e35 the float sum itself; float32 values below ~1e-19 underflow it (wrong
# with a tiny eps). Such rows / channels are redone in a wider type; results match the float64
# reference for every finite input.

EXTREME = [(1e19, 1e-5), (3e24, 1e-5), (1e30, 1e-5), (2e36, 1e-5), (1e37, 0.0), (1e-25, 0.0), (3e-30, 1e-45)]


def _ln_ref64(x, eps):
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps), mean[..., 0], 1 / np.sqrt(var[..., 0] + eps)


@pytest.mark.parametrize("scale,eps", EXTREME)
@pytest.mark.parametrize("d", [2, 7, 64, 257, 1031])
def test_layernorm_extreme_magnitudes(isa, scale, eps, d):
    x = (_data((9, d), np.float64, 80) * scale).astype(np.float32)
    assert np.isfinite(x).all()
    gamma, beta = _data((d,), np.float32, 81), _data((d,), np.float32, 82)
    y, mean, rstd = nk.layernorm_forward(x, gamma, beta, eps=eps)
    ry, rmean, rrstd = _ln_ref64(x, eps)
    assert_close(y, ry * gamma + beta, np.float32, table=TOL_REDUCTION)
    np.testing.assert_allclose(mean, rmean, rtol=1e-5, atol=0)
    np.testing.assert_allclose(rstd, rrstd, rtol=1e-5, atol=0)
    dout = _data((9, d), np.float32, 83)
    dx, dg, db = nk.layernorm_backward(dout, x, gamma, mean, rstd)
    rdx, rdg, rdb = ref.layernorm_backward(*_f64(dout, x, gamma, mean, rstd))
    # dx ~ rstd * dout * gamma (its terms cancel, to 0 for d = 2): tolerances relative to that scale
    unit = float(rrstd.max() * np.abs(dout * gamma).max())
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-4 * unit)
    assert_close(dg, rdg, np.float32, table=TOL_REDUCTION, atol=1e-4 * np.sqrt(9))
    assert_close(db, rdb, np.float32, table=TOL_REDUCTION)


@pytest.mark.parametrize("scale,eps", EXTREME)
@pytest.mark.parametrize("shape", [(2, 3), (9, 5), (130, 7), (3, 4, 65), (5, 3, 7)])
def test_batchnorm_extreme_magnitudes(isa, scale, eps, shape):
    x = (_data(shape, np.float64, 84) * scale).astype(np.float32)
    c = shape[1]
    gamma, beta = _data((c,), np.float32, 85), _data((c,), np.float32, 86)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    rm2, rv2 = rm.astype(np.float64), rv.astype(np.float64)
    y, mean, rstd = nk.batchnorm_forward(x, gamma, beta, eps=eps, running_mean=rm, running_var=rv)
    ry, rmean, rrstd = ref.batchnorm_forward(*_f64(x, gamma, beta), eps=eps, running_mean=rm2, running_var=rv2)
    assert_close(y, ry, np.float32, table=TOL_REDUCTION)
    np.testing.assert_allclose(mean, rmean, rtol=1e-5, atol=0)
    np.testing.assert_allclose(rstd, rrstd, rtol=1e-5, atol=0)
    np.testing.assert_allclose(rm, rm2, rtol=1e-5, atol=0)
    with np.errstate(over="ignore"):
        fin = np.isfinite(rv2.astype(np.float32))
    np.testing.assert_allclose(rv[fin], rv2[fin], rtol=1e-5, atol=0)  # beyond float32: inf
    assert (rv[~fin] == np.inf).all()
    n, smean, m2 = nk.batchnorm_stats(x)
    rn, rsmean, rm2s = ref.batchnorm_stats(x.astype(np.float64))
    np.testing.assert_allclose(smean, rsmean, rtol=1e-6, atol=0)
    np.testing.assert_allclose(m2, rm2s, rtol=1e-6, atol=0)
    dout = _data(shape, np.float32, 87)
    dx, dg, db = nk.batchnorm_backward(dout, x, gamma, mean, rstd)
    rdx, rdg, rdb = ref.batchnorm_backward(*_f64(dout, x, gamma, mean, rstd))
    unit = float(rrstd.max() * np.abs(gamma).max() * np.abs(dout).max())
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-4 * unit)
    # the separable pieces (synchronised batch norm) at the same magnitudes
    sg, sgx = nk.batchnorm_backward_reduce(dout, x, mean, rstd)
    assert_close(sgx, rdg, np.float32, table=TOL_REDUCTION, atol=1e-4 * np.sqrt(x.size / c))
    assert_close(sg, rdb, np.float32, table=TOL_REDUCTION)
    dxe = nk.batchnorm_backward_elemt(dout, x, gamma, mean, rstd, rdb, rdg, x.size // c)
    np.testing.assert_allclose(dxe, rdx, rtol=1e-4, atol=1e-4 * unit)
    assert_close(dg, rdg, np.float32, table=TOL_REDUCTION, atol=1e-4 * np.sqrt(x.size / c))
    assert_close(db, rdb, np.float32, table=TOL_REDUCTION)


def test_norm_values_spread_over_more_than_float_max(isa):
    """x - mean itself overflows float32 (values +-3e38): the kernels centre on the midpoint."""
    row = np.array([3e38, -3e38, -3e38, 1e38, 0.0, -2e38, 2.5e38], np.float32)
    x = np.stack([row, row[::-1], row * 0.5])
    y, mean, rstd = nk.layernorm_forward(x)
    ry, rmean, rrstd = _ln_ref64(x, 1e-5)
    assert_close(y, ry, np.float32, table=TOL_REDUCTION)
    np.testing.assert_allclose(rstd, rrstd, rtol=1e-5)
    dout = _data(x.shape, np.float32, 88)
    dx = nk.layernorm_backward(dout, x, None, mean, rstd)[0]
    rdx = ref.layernorm_backward(*_f64(dout, x), None, *_f64(mean, rstd))[0]
    np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-4 * float(rrstd.max() * np.abs(dout).max()))
    xb = np.ascontiguousarray(x.T)
    yb, mb, rb = nk.batchnorm_forward(xb)
    assert_close(yb, ry.T, np.float32, table=TOL_REDUCTION)
    dxb = nk.batchnorm_backward(dout.T.copy(), xb, None, mb, rb)[0]
    rdxb = ref.batchnorm_backward(*_f64(dout.T.copy(), xb), None, *_f64(mb, rb))[0]
    np.testing.assert_allclose(dxb, rdxb, rtol=1e-4, atol=1e-4 * float(rrstd.max() * np.abs(dout).max()))


@pytest.mark.parametrize("value", [0.7, 1e15, -3.3e37, 1e-30])
def test_norm_constant_rows_give_beta_at_any_magnitude(isa, value):
    """A constant row / channel gives y = beta exactly (was beta + 2048 for 1e15: the float mean of
    a constant row is not always its value)."""
    d = 1000
    beta = _data((d,), np.float32, 89)
    x = np.full((3, d), value, np.float32)
    y, mean, rstd = nk.layernorm_forward(x, np.ones(d, np.float32), beta)
    np.testing.assert_array_equal(y, np.broadcast_to(beta, x.shape))
    np.testing.assert_array_equal(mean, np.float32(value))
    yb = nk.batchnorm_forward(np.full((d, 3), value, np.float32), np.ones(3, np.float32), beta[:3])[0]
    np.testing.assert_array_equal(yb, np.broadcast_to(beta[:3], (d, 3)))


def test_norm_extreme_rows_keep_nan_and_inf_semantics():
    x = np.full((2, 9), 1e30, np.float32)
    x[0, 3] = np.nan
    x[1, :] = _data((9,), np.float64, 90) * 1e30
    x[1, 4] = np.inf
    y = nk.layernorm_forward(x)[0]
    assert np.isnan(y).all()


@pytest.mark.parametrize("op", ["layernorm", "batchnorm"])
def test_norm_extreme_threads_bitwise(threads, op):
    """Rows / channels redone in the wide type: same bits at 1 and 2 threads (fixed chunks)."""
    x = _data((600, 256), np.float32, 91)
    x[::7, ::3] *= np.float32(1e30)  # extreme: every 7th row (layer norm), every 3rd channel (batch norm)
    dout = _data(x.shape, np.float32, 92)
    g = _data((256,), np.float32, 93)
    res = []
    for t in (1, 2):
        threads(t)
        if op == "layernorm":
            y, m, r = nk.layernorm_forward(x, g, g)
            res.append((y, m, r) + nk.layernorm_backward(dout, x, g, m, r))
        else:
            y, m, r = nk.batchnorm_forward(x, g, g)
            res.append((y, m, r) + nk.batchnorm_backward(dout, x, g, m, r))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(res[0][0]).all() and np.isfinite(res[0][3]).all()


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max,
                    reason="no long double wider than float64 on this platform")
@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_norm_float64_extreme_magnitudes(isa, scale):
    """float64 squares overflow beyond ~1e154 (underflow below ~1e-154): redone in long double.
    The float64 reference runs on x / scale (y is scale-invariant; eps is negligible at 1e200 and
    set to 0 at 1e-200)."""
    eps = 1e-5 if scale > 1 else 0.0
    x0 = _data((5, 33), np.float64, 94)
    x = x0 * scale
    y, mean, rstd = nk.layernorm_forward(x, eps=eps)
    ry, rmean, rrstd = _ln_ref64(x0, 0.0)
    assert_close(y, ry, np.float64, table=TOL_REDUCTION)
    np.testing.assert_allclose(mean / scale, rmean, rtol=1e-12)
    np.testing.assert_allclose(rstd * scale, rrstd, rtol=1e-12)
    yb, mb, rb = nk.batchnorm_forward(np.ascontiguousarray(x.T), eps=eps)
    assert_close(yb, ry.T, np.float64, table=TOL_REDUCTION)
    np.testing.assert_allclose(rb * scale, rrstd, rtol=1e-12)
