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
    if name in ("l1", "l2", "max") and case in ("tinyvar", "mean1e6"):
        pass  # fine: row norms
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
            for bad_value in (np.nan, np.inf):
                bad = X.copy()
                bad[11, C - 1] = bad_value
                with pytest.raises(ValueError, match="NaN"):
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
    assert set(P.RobustScaler().get_params()) == {"with_centering", "with_scaling", "quantile_range", "copy"}
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


@pytest.mark.parametrize("name", list(SCALERS))  # PCA/ZCA: tests/test_preprocessing_pca.py
def test_errors_not_fitted_features_nan(name):
    ctor = SCALERS[name][0]
    X = make("random", np.float64)
    est = ctor()
    if name not in ("l1", "l2", "max"):
        with pytest.raises(P.NotFittedError, match="not fitted"):
            est.transform(X)
    est.fit(X)
    with pytest.raises(ValueError, match="features"):
        est.transform(X[:, :5])
    bad = X.copy()
    bad[3, 2] = np.nan
    keep = bad.copy()
    with pytest.raises(ValueError, match="NaN"):
        ctor().fit_transform(bad)
    np.testing.assert_array_equal(bad, keep)  # refused calls leave the input alone
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        ctor().fit_transform(bad)
    with pytest.raises(ValueError, match="2-D"):
        ctor().fit(X[:, 0])
    with pytest.raises(ValueError, match="0 samples"):
        ctor().fit(X[:0])
    with pytest.raises(TypeError, match="X"):
        ctor().fit(np.array([["a", "b"]]))


def test_int_input_and_invalid_params():
    Xi = np.arange(12).reshape(4, 3)
    assert P.StandardScaler().fit_transform(Xi).dtype == np.float64
    with pytest.raises(ValueError, match="feature_range"):
        P.MinMaxScaler((1, 0)).fit(Xi)
    with pytest.raises(ValueError, match="quantile_range"):
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
    for cls in (P.StandardScaler, P.MinMaxScaler, P.RobustScaler, P.Normalizer):
        est_g, est_c = cls().fit(to_gpu(X)), cls().fit(X)
        Yg = to_numpy(est_g.transform(to_gpu(X)))
        assert_close(Yg, est_c.transform(X), dtype, atol=10 * TOL[np.dtype(dtype)]["atol"])


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
