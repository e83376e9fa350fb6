"""nnkernels.preprocessing against scikit-learn and the NumPy references: random and
adversarial data (mean 1e6, tiny variance, one row, one column, constant columns), float32 and
float64, C/F-ordered and strided inputs, every ISA level, 1 vs 2 threads bitwise, partial_fit,
estimator API (get/set_params, NotFittedError, feature-count and NaN errors), PCA/ZCA, images."""
from __future__ import annotations

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import preprocessing as P
from nnkernels import reference as ref
from tolerances import TOL, TOL_REDUCTION, assert_close

sk = pytest.importorskip("sklearn.preprocessing")
skd = pytest.importorskip("sklearn.decomposition")

DTYPES = [np.float32, np.float64]
SCALERS = {
    "standard": (P.StandardScaler, sk.StandardScaler),
    "minmax": (P.MinMaxScaler, sk.MinMaxScaler),
    "robust": (P.RobustScaler, sk.RobustScaler),
    "l2": (lambda: P.Normalizer("l2"), lambda: sk.Normalizer("l2")),
    "l1": (lambda: P.Normalizer("l1"), lambda: sk.Normalizer("l1")),
    "max": (lambda: P.Normalizer("max"), lambda: sk.Normalizer("max")),
}


def make(case, dtype, rng=None):
    rng = rng or np.random.default_rng(0)
    if case == "random":
        X = rng.standard_normal((257, 13)) * rng.uniform(0.1, 10, 13) + rng.uniform(-5, 5, 13)
    elif case == "mean1e6":
        X = 1e6 + rng.standard_normal((301, 7)) * 3.0
    elif case == "tinyvar":
        X = 1.0 + rng.standard_normal((199, 5)) * 1e-7
    elif case == "one_row":
        X = rng.standard_normal((1, 9))
    elif case == "one_col":
        X = rng.standard_normal((1031, 1)) * 4 + 2
    elif case == "constant":
        X = rng.standard_normal((120, 6))
        X[:, 1] = 3.25
        X[:, 4] = 0.0
    elif case == "large":  # several row blocks (threads) and long columns (percentile sampling)
        X = rng.standard_normal((100003, 3)) * [1, 5, 0.1] + [0, 2, -1]
    return np.asarray(X, dtype=dtype)


def layouts(X):
    yield "C", np.ascontiguousarray(X)
    yield "F", np.asfortranarray(X)
    big = np.zeros((X.shape[0], 2 * X.shape[1]), X.dtype)
    big[:, ::2] = X
    yield "strided", big[:, ::2]


def _cond_atol(est, X64):
    """Rounding of the statistics themselves (either implementation) amplified by |X| / scale:
    for data like 1e6 + 3 * noise, float64 means differ in the last bits between summation orders."""
    eps = np.finfo(np.float64).eps
    big = np.abs(X64).max()
    if isinstance(est, sk.MinMaxScaler):
        return 64 * eps * big * np.abs(est.scale_).max()
    if hasattr(est, "scale_") and est.scale_ is not None:
        return 64 * eps * big / np.abs(est.scale_).min()
    return 0.0


CASES = ["random", "mean1e6", "tinyvar", "one_row", "one_col", "constant", "large"]


# ---------------------------------------------------------------- scalers vs scikit-learn

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", list(SCALERS))
def test_scalers_match_sklearn(name, case, dtype):
    if name in ("minmax", "robust") and case == "tinyvar" and dtype == np.float32:
        pytest.skip("constant-feature threshold is 10 eps of X's dtype (as scikit-learn): "
                    "test_tinyvar_float32_as_sklearn compares with scikit-learn on float32")
    X = make(case, dtype)
    ours_cls, sk_cls = SCALERS[name]
    X64 = X.astype(np.float64)  # reference on the same values, in float64
    expect = sk_cls().fit(X64)
    Y_expect = expect.transform(X64)
    for layout, Xl in layouts(X):
        est = ours_cls()
        Y = est.fit_transform(Xl)
        assert Y.dtype == dtype and Y.shape == X.shape, layout
        if layout == "F":
            assert Y.flags.f_contiguous
        scale = np.maximum(np.abs(Y_expect).max(), 1.0)
        assert_close(Y, Y_expect, dtype, atol=TOL[np.dtype(dtype)]["atol"] * scale * 4 + _cond_atol(expect, X64))
        assert est.n_features_in_ == X.shape[1]
        for attr in ("mean_", "var_", "scale_", "data_min_", "data_max_", "data_range_", "min_", "center_"):
            if hasattr(expect, attr):
                e = getattr(expect, attr)
                tol = TOL_REDUCTION[np.dtype(np.float64)] if attr in ("mean_", "var_") else TOL[np.dtype(dtype)]
                np.testing.assert_allclose(np.asarray(getattr(est, attr), np.float64), e, equal_nan=True,
                                           rtol=tol["rtol"], atol=tol["atol"] * max(1.0, np.abs(e).max()))
        if hasattr(expect, "n_samples_seen_"):
            assert int(est.n_samples_seen_) == X.shape[0]
        if hasattr(est, "inverse_transform"):
            back = est.inverse_transform(Y)
            assert_close(back, X64, dtype, rtol=4 * TOL[np.dtype(dtype)]["rtol"],
                         atol=4 * TOL[np.dtype(dtype)]["rtol"] * np.abs(X64).max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_sklearn_float32_inputs_agree(dtype):
    """Same dtype in, same dtype out as scikit-learn, values within the dtype tolerance."""
    X = make("random", dtype)
    for name, (ours, theirs) in SCALERS.items():
        a, b = ours().fit_transform(X), theirs().fit_transform(X)
        assert a.dtype == b.dtype
        assert_close(a, b, dtype, atol=10 * TOL[np.dtype(dtype)]["atol"])


def test_constant_features_scale_one():
    X = make("constant", np.float64)
    for cls in (P.StandardScaler, P.MinMaxScaler, P.RobustScaler):
        Y = cls().fit_transform(X)
        assert np.isfinite(Y).all()
    s = P.StandardScaler().fit(X)
    assert s.scale_[1] == 1.0 and s.scale_[4] == 1.0
    Xz = np.zeros((5, 3))
    assert np.all(P.Normalizer().fit_transform(Xz) == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_functions(dtype):
    X = make("random", np.float64)
    assert_close(P.StandardScaler().fit_transform(X.astype(dtype)), ref.prep_standard_scale(X), dtype,
                 atol=1e-5 if dtype == np.float32 else 1e-12)
    assert_close(P.MinMaxScaler((-1, 2)).fit_transform(X.astype(dtype)), ref.prep_minmax_scale(X, (-1, 2)), dtype,
                 atol=1e-5 if dtype == np.float32 else 1e-12)
    r = P.RobustScaler(quantile_range=(10.0, 90.0)).fit(X)
    c, s = ref.prep_robust_stats(X, (10.0, 90.0))
    np.testing.assert_array_equal(r.center_, c)
    np.testing.assert_array_equal(r.scale_, s)
    for norm in ("l1", "l2", "max"):
        assert_close(P.Normalizer(norm).fit_transform(X.astype(dtype)), ref.prep_normalize_rows(X, norm), dtype)


# ---------------------------------------------------------------- ISA levels and threads

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(SCALERS))
def test_isa_levels(isa, dtype, name):
    X = make("large", dtype)
    Y_expect = SCALERS[name][1]().fit_transform(X.astype(np.float64))
    for _, Xl in layouts(X[:5000]):
        Y = SCALERS[name][0]().fit_transform(Xl)
        e = SCALERS[name][1]().fit_transform(Xl.astype(np.float64))
        assert_close(Y, e, dtype, atol=4 * TOL[np.dtype(dtype)]["atol"] * max(1, np.abs(e).max()))
    Y = SCALERS[name][0]().fit_transform(X)
    assert_close(Y, Y_expect, dtype, atol=4 * TOL[np.dtype(dtype)]["atol"] * max(1, np.abs(Y_expect).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_threads_bitwise(threads, dtype, order):
    X = np.asarray(make("large", dtype), order=order)
    res = []
    for t in (1, 2):
        threads(t)
        out = []
        for name, (cls, _) in SCALERS.items():
            est = cls().fit(X)
            out.append(est.transform(X))
            for attr in ("mean_", "var_", "center_", "scale_", "data_min_"):
                if getattr(est, attr, None) is not None:
                    out.append(np.asarray(getattr(est, attr)))
        out.append(P.ImageZeroCentering().fit_transform(X[:100000].reshape(-1, 1, 1, 3)))
        res.append(out)
    for a, b in zip(*res):
        np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_and_column_widths(isa, dtype):
    """Row norms (32-lane accumulation, overlapping masked tail) and column min/max (register
    blocks, overlapping last vector) at widths around every vector size; a NaN or inf in the last
    columns is still seen."""
    rng = np.random.default_rng(5)
    for C in (1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 129):
        X = (rng.standard_normal((37, C)) * 3 - 1).astype(dtype)
        X[5] = 0.0  # a zero row keeps norm 1 (scikit-learn leaves it unscaled)
        for _, Xl in layouts(X):
            for name in ("minmax", "l1", "l2", "max"):
                ours, theirs = SCALERS[name][0](), SCALERS[name][1]()
                assert_close(ours.fit_transform(Xl), theirs.fit_transform(Xl.astype(np.float64)), dtype)
        for name in ("minmax", "l1", "l2", "max"):
            for bad_value in (np.nan, np.inf, -np.inf):
                bad = X.copy()
                bad[11, C - 1] = bad_value
                if name == "minmax" and bad_value != bad_value:  # NaN skipped in fit, kept
                    Y = SCALERS[name][0]().fit_transform(bad)
                    assert np.isnan(Y[11, C - 1]) and np.isfinite(np.delete(Y.ravel(), 11 * C + C - 1)).all()
                    continue
                with pytest.raises(ValueError, match="NaN" if bad_value != bad_value else "infinity"):
                    SCALERS[name][0]().fit_transform(bad)


# ---------------------------------------------------------------- partial_fit, params, errors

@pytest.mark.parametrize("dtype", DTYPES)
def test_partial_fit_merges_exactly(dtype):
    X = make("mean1e6", dtype)
    full = P.StandardScaler().fit(X)
    inc = P.StandardScaler()
    for chunk in np.array_split(X, [1, 50, 51, 200]):
        inc.partial_fit(chunk)
    assert inc.n_samples_seen_ == X.shape[0]
    np.testing.assert_allclose(inc.mean_, full.mean_, rtol=1e-14)
    np.testing.assert_allclose(inc.var_, full.var_, rtol=1e-9)
    skinc = sk.StandardScaler()
    for chunk in np.array_split(X.astype(np.float64), 4):
        skinc.partial_fit(chunk)
    np.testing.assert_allclose(inc.var_, skinc.var_, rtol=1e-8)
    mm = P.MinMaxScaler()
    for chunk in np.array_split(X, 3):
        mm.partial_fit(chunk)
    ref_mm = P.MinMaxScaler().fit(X)
    np.testing.assert_array_equal(mm.data_min_, ref_mm.data_min_)
    np.testing.assert_array_equal(mm.scale_, ref_mm.scale_)
    assert mm.n_samples_seen_ == X.shape[0]


def test_get_set_params_and_flags():
    s = P.StandardScaler(with_mean=False)
    assert s.get_params() == {"copy": True, "with_mean": False, "with_std": True}
    assert s.set_params(with_std=False) is s and s.with_std is False
    with pytest.raises(ValueError, match="Invalid parameter"):
        s.set_params(bogus=1)
    assert set(P.MinMaxScaler().get_params()) == {"feature_range", "copy", "clip"}
    assert set(P.RobustScaler().get_params()) == {"with_centering", "with_scaling", "quantile_range", "copy",
                                                  "unit_variance"}
    assert P.PCA(3).get_params()["n_components"] == 3 and P.PCA(3).get_params()["whiten"] is False
    X = make("random", np.float64)
    for kw in ({"with_mean": False}, {"with_std": False}, {"with_mean": False, "with_std": False}):
        np.testing.assert_allclose(P.StandardScaler(**kw).fit_transform(X), sk.StandardScaler(**kw).fit_transform(X),
                                   rtol=1e-12, atol=1e-12)
    for kw in ({"with_centering": False}, {"with_scaling": False}, {"quantile_range": (5.0, 60.0)}):
        np.testing.assert_allclose(P.RobustScaler(**kw).fit_transform(X), sk.RobustScaler(**kw).fit_transform(X),
                                   rtol=1e-12, atol=1e-12)
    Y = P.MinMaxScaler((-2, 3), clip=True).fit(X[:100]).transform(X)
    np.testing.assert_allclose(Y, sk.MinMaxScaler(feature_range=(-2, 3), clip=True).fit(X[:100]).transform(X),
                               rtol=1e-12, atol=1e-12)
    assert "with_mean=False" in repr(P.StandardScaler(with_mean=False))


def test_copy_false_in_place():
    X = make("random", np.float64)
    Xc = X.copy()
    Y = P.StandardScaler(copy=False).fit_transform(Xc)
    assert Y is Xc
    np.testing.assert_allclose(Y, sk.StandardScaler().fit_transform(X), rtol=1e-12, atol=1e-12)
    Xn = X.copy()
    assert P.Normalizer(copy=False).fit(Xn).transform(Xn) is Xn


# (errors of the scalers: test_validation_messages_like_sklearn, test_infinity_raises_nan_kept;
# PCA / ZCAWhitening: tests/test_preprocessing_pca.py)

def test_int_input_and_invalid_params():
    Xi = np.arange(12).reshape(4, 3)
    assert P.StandardScaler().fit_transform(Xi).dtype == np.float64
    with pytest.raises(ValueError, match="feature range"):
        P.MinMaxScaler((1, 0)).fit(Xi)
    with pytest.raises(ValueError, match="quantile range"):
        P.RobustScaler(quantile_range=(80.0, 20.0)).fit(Xi)
    with pytest.raises(ValueError, match="norm"):
        P.Normalizer("l3").fit(Xi)


# PCA and ZCAWhitening: tests/test_preprocessing_pca.py


# ---------------------------------------------------------------- images

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("data_format", ["NCHW", "NHWC"])
@pytest.mark.parametrize("mode", ["channel", "image"])
def test_image_zero_centering(dtype, data_format, mode):
    rng = np.random.default_rng(4)
    shape = (9, 3, 5, 7) if data_format == "NCHW" else (9, 5, 7, 3)
    X = (rng.standard_normal(shape) * 20 + 120).astype(dtype)
    est = P.ImageZeroCentering(mode=mode, data_format=data_format)
    Y = est.fit_transform(X)
    expect, mean = ref.prep_image_zero_center(X.astype(np.float64), mode, data_format)
    assert Y.shape == X.shape and Y.dtype == dtype
    assert_close(Y, expect, dtype, atol=TOL[np.dtype(dtype)]["rtol"] * 200)
    assert_close(est.mean_, mean, dtype)
    assert_close(est.inverse_transform(Y), X, dtype)
    Yf, m = P.zero_center(X, mode=mode, data_format=data_format)
    np.testing.assert_array_equal(Yf, Y)
    inc = P.ImageZeroCentering(mode=mode, data_format=data_format)
    for part in np.array_split(X, [2, 3]):
        inc.partial_fit(part)
    np.testing.assert_allclose(inc.mean_, est.mean_, rtol=1e-6 if dtype == np.float32 else 1e-13)
    with pytest.raises(ValueError, match="4-D"):
        est.fit(X[0])
    with pytest.raises(ValueError, match="data_format"):
        P.ImageZeroCentering(data_format="CHWN").fit(X)
    with pytest.raises(ValueError, match="mode"):
        P.ImageZeroCentering(mode="pixel").fit(X)


# ---------------------------------------------------------------- GPU

@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_scalers_match_cpu(gpu, dtype):
    to_gpu, to_numpy, lib = gpu
    X = make("random", dtype)
    gX = to_gpu(X)
    for cls in (P.StandardScaler, P.MinMaxScaler, lambda: P.MinMaxScaler((-1, 0.5), clip=True), P.RobustScaler,
                P.Normalizer):
        est_g, est_c = cls().fit(gX), cls().fit(X)
        for a in ("mean_", "scale_", "data_min_", "center_"):  # fitted attributes are NumPy (scikit-learn's)
            if getattr(est_c, a, None) is not None:
                assert type(getattr(est_g, a)) is np.ndarray
                assert_close(getattr(est_g, a), getattr(est_c, a), dtype, table=TOL_REDUCTION)
        Yg = est_g.transform(gX)
        assert type(Yg) is type(gX)  # on X's device, in X's library
        assert_close(to_numpy(Yg), est_c.transform(X), dtype, atol=10 * TOL[np.dtype(dtype)]["atol"])
        if hasattr(est_c, "inverse_transform"):
            assert_close(to_numpy(est_g.inverse_transform(Yg)), est_c.inverse_transform(est_c.transform(X)), dtype,
                         atol=10 * TOL[np.dtype(dtype)]["atol"] * np.abs(X).max())
    # the fitted parameters are copied to the device once, and again only after a new fit
    est = P.StandardScaler().fit(gX)
    est.transform(gX)
    cached = dict(est._device_params)
    est.transform(gX)
    assert all(est._device_params[k] is v for k, v in cached.items())
    est.fit(to_gpu(X[:100]))
    assert not getattr(est, "_device_params", {})
    # partial_fit on the device merges batches as the CPU does
    inc = P.StandardScaler()
    for part in np.array_split(X, [50, 51]):
        inc.partial_fit(to_gpu(np.ascontiguousarray(part)))
    assert_close(inc.mean_, P.StandardScaler().fit(X).mean_, dtype, table=TOL_REDUCTION)
    with pytest.raises(ValueError, match="NaN"):
        Xn = X.copy()
        Xn[3, 2] = np.nan
        P.StandardScaler().fit(to_gpu(Xn))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_ops_return_device_arrays(gpu, dtype):
    """The ops themselves on a CUDA X: statistics come back as float64 device arrays of X's library
    (no host copy inside the op), parameters must be float64 device arrays (a host array is refused:
    never a hidden copy), CPU-only ops refuse a CUDA X naming it."""
    from nnkernels import _core

    to_gpu, to_numpy, lib = gpu
    X = make("random", dtype)
    gX = to_gpu(X)
    mean, m2, mn, mx, finite = _core.prep_col_stats(gX, 2 | 4)
    cm, cm2, cmn, cmx, _ = _core.prep_col_stats(X, 2 | 4)
    assert finite is None and type(mean) is type(gX)
    for g, c in ((mean, cm), (m2, cm2), (mn, cmn), (mx, cmx)):
        np.testing.assert_allclose(to_numpy(g), c, rtol=1e-12, atol=1e-12 * np.abs(c).max())
    shift, scale, offset = (to_gpu(np.linspace(-1, 1, 13)), to_gpu(np.linspace(0.5, 2, 13)), to_gpu(np.ones(13)))
    Y = _core.prep_affine(gX, shift, scale, offset)
    assert type(Y) is type(gX)
    expect = _core.prep_affine(X, to_numpy(shift), to_numpy(scale), to_numpy(offset))
    assert_close(to_numpy(Y), expect, dtype)
    out = to_gpu(np.zeros_like(X))
    assert _core.prep_affine(gX, shift, scale, None, out) is out
    Yn, norms = _core.prep_normalize(gX, "l2")
    Yc, cn = _core.prep_normalize(X, "l2")
    assert type(norms) is type(gX)
    assert_close(to_numpy(Yn), Yc, dtype)
    np.testing.assert_allclose(to_numpy(norms), cn, rtol=1e-12)
    with pytest.raises(ValueError, match="^shift: expected an array on cuda:"):
        _core.prep_affine(gX, to_numpy(shift), scale, None)
    with pytest.raises(TypeError, match="^scale: expected a float64 array on the device"):
        _core.prep_affine(gX, shift, to_gpu(np.ones(13, np.float32)), None)
    for call in (lambda: _core.prep_nan_col_stats(gX, 2), lambda: _core.prep_col_quantiles(gX, [50.0]),
                 lambda: _core.prep_centered_gram(gX)):
        with pytest.raises(ValueError, match="^X: .* CPU only"):
            call()


# ---------------------------------------------------------------- torch CPU tensors (issue 14)

@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_cpu_ops_bitwise_numpy(dtype):
    """The low-level ops read torch CPU tensors zero-copy and return torch tensors, bitwise the
    NumPy call's results; out= a tensor is written in place."""
    torch = pytest.importorskip("torch")
    from nnkernels import _core

    X = make("random", dtype)
    for Xn in (X, np.asfortranarray(X)):
        Xt = torch.from_numpy(Xn)
        for got, expect in ((_core.prep_col_stats(Xt, 2 | 4), _core.prep_col_stats(Xn, 2 | 4)),
                            (_core.prep_nan_col_stats(Xt, 2 | 4), _core.prep_nan_col_stats(Xn, 2 | 4)),
                            (_core.prep_centered_gram(Xt), _core.prep_centered_gram(Xn)),
                            (_core.prep_normalize(Xt, "l1"), _core.prep_normalize(Xn, "l1"))):
            for g, e in zip(got, expect):
                if isinstance(e, np.ndarray):
                    assert isinstance(g, torch.Tensor)
                    np.testing.assert_array_equal(g.numpy(), e)
                else:
                    assert g == e
        q = _core.prep_col_quantiles(Xt, [25.0, 50.0])
        assert isinstance(q, torch.Tensor)
        np.testing.assert_array_equal(q.numpy(), _core.prep_col_quantiles(Xn, [25.0, 50.0]))
        shift, scale = np.linspace(-1, 1, 13), torch.linspace(0.5, 2, 13, dtype=torch.float64)
        Y = _core.prep_affine(Xt, shift, scale, None)
        assert isinstance(Y, torch.Tensor) and Y.stride() == Xt.stride()  # X's memory order
        np.testing.assert_array_equal(Y.numpy(), _core.prep_affine(Xn, shift, scale.numpy(), None))
        out = torch.zeros(Xt.shape, dtype=Xt.dtype)
        assert _core.prep_affine(Xt, shift, scale, None, out) is out
        np.testing.assert_array_equal(out.numpy(), Y.numpy())
    # estimators follow scikit-learn: its validation converts a CPU tensor to NumPy (float64: a torch
    # dtype is not a NumPy one), the results are NumPy
    from sklearn.utils import check_array

    Xt = torch.from_numpy(X)
    for cls in (P.StandardScaler, P.MinMaxScaler, P.RobustScaler, P.Normalizer):
        Yt = cls().fit_transform(Xt)
        assert type(Yt) is np.ndarray
        np.testing.assert_array_equal(Yt, cls().fit_transform(check_array(Xt, dtype=[np.float64, np.float32])))


def test_torch_cpu_ops_bad_input():
    torch = pytest.importorskip("torch")
    from nnkernels import _core

    Xt = torch.ones(4, 3)
    with pytest.raises(ValueError, match="^X: expected a 2-D array"):
        _core.prep_col_stats(torch.ones(4), 2)
    with pytest.raises(TypeError, match="^X: expected a float32 or float64 array"):
        _core.prep_col_stats(torch.ones(4, 3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="^shift: expected a 1-D array of 3 values"):
        _core.prep_affine(Xt, torch.ones(4), np.ones(3), None)
    out = torch.full((4, 3), 7.0)
    with pytest.raises(ValueError, match="^out: partially overlaps X"):
        big = torch.ones(5, 3)
        _core.prep_affine(big[1:], np.ones(3), np.ones(3), None, big[:4])
    with pytest.raises(ValueError, match="^out: expected dtype float32"):
        _core.prep_affine(Xt, np.ones(3), np.ones(3), None, torch.zeros(4, 3, dtype=torch.float64))
    assert bool((out == 7.0).all())


# ---------------------------------------------------------------- scikit-learn contract (issue 17)
# StandardScaler, MinMaxScaler, RobustScaler, Normalizer, ImageZeroCentering: scikit-learn's own
# estimator checks, then the same fitted attributes and outputs as scikit-learn's estimator of the
# same name on the same data (NaN, sample_weight, partial_fit, parameters), set_output, feature
# names, sparse refusal, and the import without scikit-learn.

import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

CONTRACT_ESTIMATORS = [
    P.StandardScaler(), P.StandardScaler(with_mean=False, with_std=False), P.MinMaxScaler(),
    P.MinMaxScaler(feature_range=(-2, 3), clip=True), P.RobustScaler(), P.RobustScaler(unit_variance=True),
    P.Normalizer(), P.Normalizer("l1"), P.Normalizer("max"),
]


@parametrize_with_checks(CONTRACT_ESTIMATORS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_image_zero_centering_api_checks():
    """ImageZeroCentering takes 4-D batches (tag two_d_array=False, so check_estimator runs no data
    checks on it): the API checks that need no 2-D data apply and pass."""
    from sklearn.utils import estimator_checks as ec
    from sklearn.utils import get_tags

    for est in (P.ImageZeroCentering(), P.ImageZeroCentering(mode="image", data_format="NHWC")):
        assert get_tags(est).input_tags.two_d_array is False
        name = type(est).__name__
        ec.check_estimator_cloneable(name, est)
        ec.check_estimator_tags_renamed(name, est)
        ec.check_valid_tag_types(name, est)
        ec.check_estimator_repr(name, est)
        ec.check_no_attributes_set_in_init(name, est)
        ec.check_mixin_order(name, est)
        ec.check_do_not_raise_errors_in_init_or_set_params(name, est)
        ec.check_get_params_invariance(name, est)
        ec.check_set_params(name, est)
        ec.check_parameters_default_constructible(name, est)
    X = np.random.default_rng(0).standard_normal((4, 3, 5, 5))
    est = P.ImageZeroCentering()
    with pytest.raises(P.NotFittedError):
        est.transform(X)
    assert est.fit(X) is est and est.n_features_in_ == 75
    from sklearn.base import clone
    np.testing.assert_array_equal(clone(est).fit(X).mean_, est.mean_)
    bad = X.copy()
    bad[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        P.ImageZeroCentering().fit(bad)
    with pytest.raises(ValueError, match="NaN"):
        est.transform(bad)


def _nan_data(shape, dtype, frac=0.2, mean=0.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal(shape) * rng.uniform(0.5, 4, shape[1]) + mean
    X[rng.random(shape) < frac] = np.nan
    return X.astype(dtype)


def _awkward_layouts(X):
    yield "C", np.ascontiguousarray(X)
    yield "F", np.asfortranarray(X)
    big = np.full((X.shape[0], 3 * X.shape[1]), 7.0, X.dtype)
    big[:, 1::3] = X
    yield "strided", big[:, 1::3]
    yield "reversed", np.ascontiguousarray(X[::-1])[::-1]


def _assert_attrs_like(ours, theirs, names, dtype, scale=1.0):
    t = TOL[np.dtype(dtype)]
    for a in names:
        e, g = getattr(theirs, a), getattr(ours, a)
        if e is None:
            assert g is None, a
            continue
        e, g = np.asarray(e), np.asarray(g)
        assert g.shape == e.shape, a
        assert g.dtype == e.dtype, (a, g.dtype, e.dtype)
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), equal_nan=True,
                                   rtol=10 * t["rtol"], atol=10 * t["atol"] * max(scale, np.nanmax(np.abs(e), initial=0)),
                                   err_msg=a)


NAN_SHAPES = [(1, 1), (1, 7), (13, 1), (97, 31), (2003, 5)]
STD_KW = [{}, {"with_mean": False}, {"with_std": False}, {"with_mean": False, "with_std": False}]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", NAN_SHAPES)
@pytest.mark.parametrize("mean", [0.0, 1e4])
def test_standard_scaler_nan_like_sklearn(dtype, shape, mean):
    X = _nan_data(shape, dtype, mean=mean)
    for kw in STD_KW:
        with warnings.catch_warnings():  # all-NaN columns: scikit-learn warns, nnkernels does not
            warnings.simplefilter("ignore", RuntimeWarning)
            theirs = sk.StandardScaler(**kw).fit(X)
            Y_expect = theirs.transform(X)
        for layout, Xl in _awkward_layouts(X):
            ours = P.StandardScaler(**kw).fit(Xl)
            _assert_attrs_like(ours, theirs, ["mean_", "var_", "scale_"], np.float64, scale=mean or 1.0)
            np.testing.assert_array_equal(ours.n_samples_seen_, theirs.n_samples_seen_)
            assert np.asarray(ours.n_samples_seen_).dtype == np.asarray(theirs.n_samples_seen_).dtype
            Y = ours.transform(Xl)
            assert Y.dtype == dtype and Y.shape == X.shape, layout
            np.testing.assert_array_equal(np.isnan(Y), np.isnan(Y_expect))
            # scikit-learn subtracts and divides in X's dtype; nnkernels in float64
            s = np.nanmin(ours.scale_, initial=1.0) if ours.scale_ is not None else 1.0
            atol = 8 * np.finfo(dtype).eps * max(1.0, np.nanmax(np.abs(X), initial=0) / s)
            np.testing.assert_allclose(Y, Y_expect, rtol=8 * np.finfo(dtype).eps, atol=atol, equal_nan=True)
            np.testing.assert_allclose(P.StandardScaler(**kw).fit_transform(Xl), Y, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_standard_scaler_sample_weight_like_sklearn(dtype):
    rng = np.random.default_rng(3)
    for shape in [(1, 3), (41, 1), (1009, 17)]:
        X = _nan_data(shape, dtype, frac=0.15, mean=1e4, seed=shape[0])
        w = rng.uniform(0, 3, shape[0])
        w[1::7] = 0.0  # zero weights (not all: scikit-learn's _check_sample_weight refuses that)
        for kw in STD_KW:
            theirs = sk.StandardScaler(**kw).fit(X, sample_weight=w)
            for layout, Xl in _awkward_layouts(X):
                ours = P.StandardScaler(**kw).fit(Xl, sample_weight=w)
                _assert_attrs_like(ours, theirs, ["mean_", "var_", "scale_"], np.float64, scale=1e4)
                np.testing.assert_allclose(ours.n_samples_seen_, theirs.n_samples_seen_, rtol=1e-6)
                assert np.asarray(ours.n_samples_seen_).dtype == np.asarray(theirs.n_samples_seen_).dtype
        # integer weights equal repeated rows
        wi = rng.integers(0, 4, shape[0])
        wi[0] = 1
        a = P.StandardScaler().fit(X, sample_weight=wi)
        b = P.StandardScaler().fit(np.repeat(X, wi, axis=0)) if wi.sum() else None
        if b is not None:
            np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-12, equal_nan=True)
            np.testing.assert_allclose(a.var_, b.var_, rtol=1e-7, equal_nan=True)
    with pytest.raises(ValueError, match="sample_weight"):
        P.StandardScaler().fit(np.ones((4, 2)), sample_weight=np.ones(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_standard_scaler_partial_fit_nan_weights_like_sklearn(dtype):
    X = _nan_data((301, 6), dtype, frac=0.3, mean=1e4, seed=9)
    w = np.random.default_rng(2).uniform(0.1, 2, 301)
    for use_w in (False, True):
        ours, theirs = P.StandardScaler(), sk.StandardScaler()
        for sl in (slice(0, 3), slice(3, 100), slice(100, 103), slice(103, 301)):
            sw = w[sl] if use_w else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                theirs.partial_fit(X[sl], sample_weight=sw)
            ours.partial_fit(X[sl], sample_weight=sw)
            _assert_attrs_like(ours, theirs, ["mean_", "var_", "scale_"], np.float64, scale=1e4)
            np.testing.assert_allclose(ours.n_samples_seen_, theirs.n_samples_seen_, rtol=1e-6)
            assert np.asarray(ours.n_samples_seen_).dtype == np.asarray(theirs.n_samples_seen_).dtype
        np.testing.assert_allclose(ours.transform(X), theirs.transform(X), equal_nan=True,
                                   rtol=TOL_REDUCTION[np.dtype(dtype)]["rtol"], atol=TOL_REDUCTION[np.dtype(dtype)]["atol"] * 1e3)
        full = P.StandardScaler().fit(X, sample_weight=w if use_w else None)
        np.testing.assert_allclose(ours.mean_, full.mean_, rtol=1e-12)
        np.testing.assert_allclose(ours.var_, full.var_, rtol=1e-7)
    # Difference from scikit-learn (1.9): a column whose values are all NaN in the first batch
    # stays NaN in scikit-learn's partial_fit (its update multiplies the NaN mean by count 0);
    # nnkernels merges per-column counts, so later batches fill it in, as fit on all batches does.
    ours = P.StandardScaler().partial_fit(np.array([[np.nan, 1.0]], dtype))
    assert np.isnan(ours.mean_[0]) and ours.n_samples_seen_.tolist() == [0, 1]
    ours.partial_fit(np.array([[2.0, 1.0], [3.0, 2.0]], dtype))
    np.testing.assert_allclose(ours.mean_, [2.5, 4 / 3], rtol=1e-7)
    np.testing.assert_allclose(ours.var_, [0.25, 2 / 9], rtol=1e-6)
    assert ours.n_samples_seen_.tolist() == [2, 3]
    # ... and a batch with no value in a column turns that column's var_ NaN in scikit-learn
    # (0 * inf in its update); nnkernels leaves the column's statistics as they were.
    ours.partial_fit(np.array([[np.nan, 5.0]], dtype))
    np.testing.assert_allclose(ours.var_[0], 0.25, rtol=1e-6)
    assert ours.n_samples_seen_.tolist() == [2, 4]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", NAN_SHAPES)
@pytest.mark.parametrize("mean", [0.0, 1e4])
def test_minmax_scaler_nan_like_sklearn(dtype, shape, mean):
    X = _nan_data(shape, dtype, mean=mean, seed=1)
    for kw in [{}, {"feature_range": (-3, 0.5)}, {"feature_range": (-1, 1), "clip": True}]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            theirs = sk.MinMaxScaler(**kw).fit(X)
        Xt = _nan_data(shape, dtype, mean=mean, seed=2) * 1.5  # values outside the fitted range
        Y_expect = theirs.transform(Xt)
        for layout, Xl in _awkward_layouts(X):
            ours = P.MinMaxScaler(**kw).fit(Xl)
            _assert_attrs_like(ours, theirs, ["data_min_", "data_max_", "data_range_", "scale_", "min_"], dtype)
            assert ours.n_samples_seen_ == theirs.n_samples_seen_
            Y = ours.transform(Xt)
            assert Y.dtype == dtype
            np.testing.assert_array_equal(np.isnan(Y), np.isnan(Y_expect))
            # scikit-learn evaluates X * scale_ + min_ in X's dtype (cancellation for data far from 0)
            atol = 8 * np.finfo(dtype).eps * np.nanmax(np.abs(Xt) * ours.scale_, initial=1)
            np.testing.assert_allclose(Y, Y_expect, rtol=8 * np.finfo(dtype).eps, atol=atol, equal_nan=True)
            if not ours.clip:
                back, ok = ours.inverse_transform(Y), np.isfinite(Y)
                np.testing.assert_allclose(back[ok], Xt[ok], rtol=16 * np.finfo(dtype).eps,
                                           atol=16 * np.finfo(dtype).eps * max(mean, 10))
    ours, theirs = P.MinMaxScaler(), sk.MinMaxScaler()
    for part in np.array_split(X, [1, 2]) if shape[0] > 2 else [X]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            theirs.partial_fit(part)
        ours.partial_fit(part)
    _assert_attrs_like(ours, theirs, ["data_min_", "data_max_", "scale_", "min_"], dtype)
    assert ours.n_samples_seen_ == theirs.n_samples_seen_


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", NAN_SHAPES + [(5003, 3)])
def test_robust_scaler_nan_like_sklearn(dtype, shape):
    X = _nan_data(shape, dtype, mean=1e4, seed=4)
    for kw in [{}, {"quantile_range": (10.0, 90.0)}, {"with_centering": False}, {"with_scaling": False},
               {"unit_variance": True}, {"quantile_range": (0.0, 100.0)}]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            theirs = sk.RobustScaler(**kw).fit(X)
            Y_expect = theirs.transform(X)
        for layout, Xl in _awkward_layouts(X):
            ours = P.RobustScaler(**kw).fit(Xl)
            _assert_attrs_like(ours, theirs, ["center_", "scale_"], dtype)
            Y = ours.transform(Xl)
            assert Y.dtype == dtype
            np.testing.assert_array_equal(np.isnan(Y), np.isnan(Y_expect))
            atol = 16 * np.finfo(dtype).eps * 1e4 / np.nanmin(np.asarray(ours.scale_ if ours.scale_ is not None else [1.0]),
                                                              initial=1)
            np.testing.assert_allclose(Y, Y_expect, rtol=8 * np.finfo(dtype).eps, atol=atol, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tinyvar_float32_as_sklearn(dtype):
    """Constant-feature detection uses X's dtype (10 eps), as scikit-learn on the same array."""
    X = make("tinyvar", dtype)
    for ours, theirs in ((P.MinMaxScaler(), sk.MinMaxScaler()), (P.RobustScaler(), sk.RobustScaler())):
        ours.fit(X)
        theirs.fit(X)
        np.testing.assert_array_equal(ours.scale_, theirs.scale_)


@pytest.mark.parametrize("name", ["standard", "minmax", "robust"])
def test_infinity_raises_nan_kept(name):
    ctor = SCALERS[name][0]
    X = _nan_data((50, 4), np.float64, frac=0.1)
    est = ctor().fit(X)
    Y = est.transform(X)
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(X))
    for v in (np.inf, -np.inf):
        bad = X.copy()
        bad[7, 3] = v
        keep = bad.copy()
        with pytest.raises(ValueError, match="infinity"):
            ctor().fit(bad)
        with pytest.raises(ValueError, match="infinity"):
            ctor().fit_transform(bad)
        with pytest.raises(ValueError, match="infinity"):
            ctor(copy=False).fit(X).transform(bad)
        np.testing.assert_array_equal(bad, keep)  # refused calls leave the input alone


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_normalizer_like_sklearn(norm):
    for dtype in DTYPES:
        for shape in [(1, 1), (1, 37), (29, 1), (211, 67)]:
            X = _nan_data(shape, dtype, frac=0.0, mean=1e4, seed=shape[1])
            X[0] = 0.0
            e = sk.Normalizer(norm).fit_transform(X)
            for layout, Xl in _awkward_layouts(X):
                Y = P.Normalizer(norm).transform(Xl)  # stateless: no fit needed, as scikit-learn
                assert Y.dtype == dtype
                assert_close(Y, e, dtype, atol=4 * TOL[np.dtype(dtype)]["atol"])
        bad = np.ones((4, 3), dtype)
        bad[2, 1] = np.nan
        keep = bad.copy()
        for est in (P.Normalizer(norm), P.Normalizer(norm, copy=False)):
            with pytest.raises(ValueError, match="NaN"):
                est.fit_transform(bad)
            with pytest.raises(ValueError, match="NaN"):
                est.transform(bad)
            np.testing.assert_array_equal(bad, keep)
    Xi = np.arange(12).reshape(4, 3)
    np.testing.assert_allclose(P.Normalizer(norm).fit_transform(Xi), sk.Normalizer(norm).fit_transform(Xi),
                               rtol=1e-15)


@pytest.mark.parametrize("lib", ["pandas", "polars"])
def test_set_output_and_feature_names(lib):
    pd = pytest.importorskip("pandas")
    frame = pytest.importorskip(lib)
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline

    X = _nan_data((40, 3), np.float64, frac=0.1)
    def as_frame(A):
        f = pd.DataFrame(A, columns=["a", "b", "c"])
        return frame.from_pandas(f) if lib == "polars" else f

    df, df_finite = as_frame(X), as_frame(np.nan_to_num(X))
    for ours, theirs in ((P.StandardScaler(), sk.StandardScaler()), (P.MinMaxScaler(), sk.MinMaxScaler()),
                         (P.RobustScaler(), sk.RobustScaler()), (P.Normalizer(), sk.Normalizer())):
        Xin = df_finite if isinstance(ours, P.Normalizer) else df
        for est in (ours, theirs):
            est.set_output(transform=lib)
        Y, E = ours.fit_transform(Xin), theirs.fit_transform(Xin)
        assert type(Y) is type(E)
        assert list(Y.columns) == ["a", "b", "c"]
        np.testing.assert_allclose(np.asarray(Y.to_numpy(), float), np.asarray(E.to_numpy(), float),
                                   rtol=1e-12, atol=1e-12, equal_nan=True)
        assert list(ours.feature_names_in_) == ["a", "b", "c"]
        assert list(ours.get_feature_names_out()) == ["a", "b", "c"]
        assert type(ours.transform(Xin)) is type(E)
    pipe = make_pipeline(P.StandardScaler(), P.MinMaxScaler()).set_output(transform=lib)
    assert list(pipe.fit_transform(df).columns) == ["a", "b", "c"]
    assert "StandardScaler" in pipe._repr_html_()
    ct = ColumnTransformer([("s", P.StandardScaler(), ["a", "b"]), ("r", P.RobustScaler(), ["c"])])
    ct.fit(df)
    assert list(ct.get_feature_names_out()) == ["s__a", "s__b", "r__c"]
    with pytest.raises(ValueError, match="feature names"):  # scikit-learn's name check
        P.StandardScaler().fit(df).transform(as_frame(X)[["c", "b", "a"]])


def test_sparse_refused_like_sklearn():
    sp = pytest.importorskip("scipy.sparse")
    X = sp.random(20, 5, density=0.3, format="csr", random_state=0)
    for est in (P.StandardScaler(with_mean=False), P.MinMaxScaler(), P.RobustScaler(with_centering=False),
                P.Normalizer()):
        with pytest.raises(TypeError, match="Sparse data was passed.*dense data is required"):
            est.fit(X)
        with pytest.raises(TypeError, match="dense data is required"):
            est.fit(X.toarray()).transform(X)


def test_validation_messages_like_sklearn():
    from sklearn.utils._param_validation import InvalidParameterError

    X = np.ones((5, 3))
    for cls in (P.StandardScaler, P.MinMaxScaler, P.RobustScaler, P.Normalizer):
        with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
            cls().fit(X[:, 0])
        with pytest.raises(ValueError, match="0 sample"):
            cls().fit(X[:0])
        with pytest.raises(ValueError, match="0 feature"):
            cls().fit(X[:, :0])
        with pytest.raises(ValueError, match="Complex data not supported"):
            cls().fit(X + 1j)
        with pytest.raises(ValueError):
            cls().fit(np.array([["a", "b"]], dtype=object))
        with pytest.raises(ValueError, match="is expecting 3 features"):
            cls().fit(X).transform(np.ones((2, 4)))
    with pytest.raises(InvalidParameterError, match="'with_mean' parameter"):
        P.StandardScaler(with_mean="yes").fit(X)
    with pytest.raises(InvalidParameterError, match="'norm' parameter"):
        P.Normalizer("l3").fit(X)
    with pytest.raises(P.NotFittedError):
        P.StandardScaler().transform(X)
    with pytest.raises(ValueError, match="Minimum of desired feature range"):
        P.MinMaxScaler((1, 1)).fit_transform(X)
    with pytest.raises(ValueError, match="Invalid quantile range"):
        P.RobustScaler(quantile_range=(60.0, 40.0)).fit_transform(X)


def test_copy_semantics():
    X = _nan_data((30, 4), np.float64, frac=0.1)
    for cls in (P.StandardScaler, P.MinMaxScaler, P.RobustScaler):
        Xc = X.copy()
        Y = cls(copy=False).fit_transform(Xc)
        assert Y is Xc
        np.testing.assert_allclose(Y, cls().fit_transform(X), equal_nan=True, rtol=0, atol=0)
        Xc = X.copy()
        Y = cls().fit(Xc).transform(Xc)
        assert Y is not Xc
        np.testing.assert_array_equal(Xc, X)
    s = P.StandardScaler().fit(X)
    Xc = X.copy()
    assert s.transform(Xc, copy=False) is Xc
    Xr = X.copy()
    Xr.flags.writeable = False
    Y = P.StandardScaler(copy=False).fit_transform(Xr)
    assert Y is not Xr and Y.flags.writeable  # scikit-learn's force_writeable: a copy


_NO_SKLEARN = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("No module named 'sklearn' (blocked)")
sys.meta_path.insert(0, Block())
import nnkernels as nk
import numpy as np
assert nk.relu(np.array([-1.0, 2.0])).tolist() == [0.0, 2.0]
try:
    import nnkernels.preprocessing
except ImportError as e:
    assert "pip install" in str(e) and "scikit-learn" in str(e), str(e)
    print("ok")
else:
    raise SystemExit("imported without scikit-learn")
"""


def test_import_without_sklearn():
    import os
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", _NO_SKLEARN], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_nan_weighted_paths_isa_threads_bitwise(isa, threads, dtype, order):
    """The NaN-skipping / weighted moments, NaN-skipping min/max and NaN-dropping percentiles:
    several row blocks, bitwise equal for 1 and 2 threads at every ISA level, and equal to
    scikit-learn within tolerance."""
    X = np.asarray(_nan_data((70001, 5), dtype, frac=0.05, mean=1e4, seed=11), order=order)
    X[:, 3] = np.where(np.arange(70001) % 1000 == 0, 2.5, np.nan)  # a sparse column of equal values
    w = np.random.default_rng(1).uniform(0, 2, X.shape[0])
    res = []
    for t in (1, 2):
        threads(t)
        out = []
        for est, kw in ((P.StandardScaler(), {}), (P.StandardScaler(), {"sample_weight": w}),
                        (P.MinMaxScaler(), {}), (P.RobustScaler(), {})):
            Y = est.fit_transform(X, **kw)
            out += [Y] + [np.asarray(getattr(est, a)) for a in ("mean_", "var_", "scale_", "data_min_", "center_")
                          if getattr(est, a, None) is not None]
        res.append(out)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
    ours = P.StandardScaler().fit(X, sample_weight=w)
    assert ours.var_[3] == 0.0
    with warnings.catch_warnings():
        # scikit-learn's weighted variance of the constant column comes out slightly negative
        # (sqrt warns); the two-pass kernel gives 0
        warnings.simplefilter("ignore", RuntimeWarning)
        theirs = sk.StandardScaler().fit(X, sample_weight=w)
        _assert_attrs_like(ours, theirs, ["mean_", "var_"], np.float64, scale=1e4)
        np.testing.assert_allclose(P.RobustScaler().fit(X).center_, sk.RobustScaler().fit(X).center_, rtol=0, atol=0)


def test_misaligned_fitted_statistics_are_read_safely():
    """Fitted statistics replaced by a buffer at an odd address (np.frombuffer at offset 1,
    which NumPy marks unaligned) are copied before the kernel reads them as doubles (no UB)."""
    X = np.random.default_rng(3).standard_normal((50, 7))
    s = P.StandardScaler().fit(X)
    expect = s.transform(X)
    odd = np.frombuffer(bytearray(7 * 8 + 1), np.float64, count=7, offset=1)
    odd[:] = s.mean_
    assert not odd.flags.aligned
    s.mean_ = odd
    np.testing.assert_array_equal(s.transform(X), expect)
