"""PCA and ZCAWhitening: scikit-learn's estimator checks, agreement with scikit-learn's PCA
(both solver paths, float32/float64, whiten, n_components variants), the centred cross-product
kernel against its NumPy reference (awkward sizes and layouts, every ISA level, thread-count
determinism), transform accuracy for data far from zero, and refusal of NaN/inf/complex."""
from __future__ import annotations

import numpy as np
import pytest

from nnkernels import _core
from nnkernels import reference as ref

skd = pytest.importorskip("sklearn.decomposition")
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nnkernels import preprocessing as P  # noqa: E402

DTYPES = [np.float32, np.float64]


def spectrum_data(n, d, dtype, mean=3.0, seed=0):
    """Correlated data with well separated variances (stable eigenvectors to compare)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.geomspace(10.0, 0.5, d)
    return ((rng.standard_normal((n, d)) * scales) @ Q.T + mean).astype(dtype)


# ---------------------------------------------------------------- scikit-learn's checks

@parametrize_with_checks([P.PCA(), P.PCA(n_components=2, whiten=True), P.PCA(svd_solver="full"),
                          P.PCA(0.8, svd_solver="covariance_eigh"), P.ZCAWhitening()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------- kernel vs reference

def _gram_bound(M_ref, dtype, float64_products):
    """Per-entry bound |M - M_ref|_ij <= c sqrt(M_ii M_jj): float32 products summed over one
    128-row chunk (c ~ 128 u worst case), float64 products (c ~ 1e-12)."""
    d = np.sqrt(np.clip(np.diag(M_ref), 0, None))
    c = 2e-5 if (np.dtype(dtype) == np.float32 and not float64_products) else 1e-12
    return c * np.outer(d, d) + 1e-300


def _check_gram(X, float64_products=False):
    mean, M = _core.prep_centered_gram(X, float64_products)
    mean_ref, M_ref = ref.prep_centered_gram(X)
    assert mean.dtype == np.float64 and M.shape == (X.shape[1],) * 2
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-14, atol=1e-14 * np.abs(mean_ref).max())
    assert np.array_equal(M, M.T)
    assert np.all(np.abs(M - M_ref) <= _gram_bound(M_ref, X.dtype, float64_products)), np.abs(M - M_ref).max()
    return mean, M


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (2, 3), (3, 1), (127, 5), (129, 33), (257, 17),
                                   (1021, 100), (70001, 1), (100003, 7), (4099, 131),
                                   # last column block of 5..15 (one or two transposed row tiles)
                                   # and exact multiples of the vector width
                                   (263, 15), (301, 29), (130, 16), (131, 48)])
@pytest.mark.parametrize("float64_products", [False, True])
def test_gram_matches_reference(isa, dtype, shape, float64_products):
    if dtype == np.float64 and float64_products:
        pytest.skip("float64 data always forms float64 products")
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    X = (rng.standard_normal(shape) * np.linspace(0.5, 3, shape[1]) + 1e4).astype(dtype)  # mean 1e4
    _check_gram(X, float64_products)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_layouts_bitwise(dtype):
    rng = np.random.default_rng(5)
    base = (rng.standard_normal((4099 * 2, 37 * 3)) * 2 + 1e4).astype(dtype)
    X = np.ascontiguousarray(base[::2, ::3])
    mean, M = _check_gram(X)
    # every memory order of the same values gives the same bits (summation order fixed by rows)
    for view in (np.asfortranarray(X), base[::2, ::3], np.ascontiguousarray(X[:, ::-1])[:, ::-1]):
        m2, M2 = _core.prep_centered_gram(view)
        assert np.array_equal(m2, mean) and np.array_equal(M2, M)
    # rows reversed: another chunking of the values, still within the bound
    _check_gram(X[::-1])
    _check_gram(base[::-3, ::-5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_threads_bitwise(threads, dtype):
    X = spectrum_data(300007, 23, dtype, mean=1e4, seed=3)
    out = []
    for t in (1, 2):
        threads(t)
        out.append(_core.prep_centered_gram(X))
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])


def test_gram_extreme_magnitudes():
    """Per-column power-of-two scaling: float32 products neither overflow (1e30) nor underflow (1e-30)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((5000, 4)) * np.array([1e30, 1e-30, 1.0, 1e15]) + np.array([0, 0, 1e4, 0])
    X = X.astype(np.float32)
    _check_gram(X)


def test_gram_float32_sum_overflow():
    """A chunk whose float32 column sum overflows (values near 3e38) is centred on its midrange
    instead: still finite, within the bound, and the same bits in every memory order."""
    rng = np.random.default_rng(4)
    X = np.stack([rng.uniform(1e38, 3e38, 1000), rng.standard_normal(1000),
                  rng.uniform(-3e38, 3e38, 1000)], axis=1).astype(np.float32)
    mean, M = _check_gram(X)
    assert np.isfinite(mean).all() and np.isfinite(M).all()
    m2, M2 = _core.prep_centered_gram(np.asfortranarray(X))
    assert np.array_equal(m2, mean) and np.array_equal(M2, M)


def test_gram_errors():
    with pytest.raises(ValueError, match="X: expected a 2-D"):
        _core.prep_centered_gram(np.zeros(5))
    with pytest.raises(ValueError, match="X: expected at least one row"):
        _core.prep_centered_gram(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="X"):
        _core.prep_centered_gram(np.zeros((3, 3), np.complex64))
    mean, M = _core.prep_centered_gram(np.array([[1.0, np.nan], [2.0, 3.0]]))
    assert np.isnan(mean[1]) and np.isnan(M[1, 1])


# ---------------------------------------------------------------- PCA vs scikit-learn

def _tol(dtype):
    return 2e-4 if np.dtype(dtype) == np.float32 else 1e-9


def _compare_pca(ours, theirs, X, dtype):
    t = _tol(dtype)
    assert ours.n_components_ == theirs.n_components_ and ours.n_samples_ == theirs.n_samples_
    assert ours.components_.dtype == dtype and ours.mean_.dtype == dtype
    np.testing.assert_allclose(ours.components_, theirs.components_, rtol=t, atol=t)  # same signs
    for a in ("explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_"):
        np.testing.assert_allclose(getattr(ours, a), getattr(theirs, a), rtol=t, atol=t * 1e-3, err_msg=a)
    np.testing.assert_allclose(ours.noise_variance_, theirs.noise_variance_, rtol=t * 10, atol=t * 1e-3)
    Y = ours.transform(X)
    assert Y.dtype == dtype
    Yt = theirs.transform(X.astype(np.float64))
    scale = np.abs(Yt).max()
    np.testing.assert_allclose(Y, Yt, rtol=t, atol=t * scale)
    np.testing.assert_allclose(ours.inverse_transform(Y), theirs.inverse_transform(Yt), rtol=t,
                               atol=t * np.abs(X).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["covariance_eigh", "full"])
@pytest.mark.parametrize("n_components", [None, 4, 0.8, "mle"])
@pytest.mark.parametrize("whiten", [False, True])
def test_pca_matches_sklearn(dtype, solver, n_components, whiten):
    X = spectrum_data(997, 11, dtype)
    ours = P.PCA(n_components, whiten=whiten, svd_solver=solver).fit(X)
    theirs = skd.PCA(n_components, whiten=whiten, svd_solver=solver).fit(X.astype(np.float64))
    _compare_pca(ours, theirs, X, dtype)
    Yft = P.PCA(n_components, whiten=whiten, svd_solver=solver).fit_transform(X)
    np.testing.assert_allclose(Yft, ours.transform(X), rtol=_tol(dtype), atol=_tol(dtype) * np.abs(Yft).max())


@pytest.mark.parametrize("shape, n_components, solver", [
    ((2000, 13), 5, "covariance_eigh"),  # tall: n >= 10 d, d <= 1000
    ((60, 40), 5, "full"),               # small
    ((510, 505), 5, "randomized"),       # large, few components
    ((510, 505), 450, "full"),           # large, many components
    ((40, 60), None, "full"),            # wide
])
def test_pca_auto_solver_rule(shape, n_components, solver):
    X = spectrum_data(*shape, np.float64, seed=1) if shape[0] >= shape[1] else \
        np.random.default_rng(1).standard_normal(shape)
    ours = P.PCA(n_components, random_state=0).fit(X)
    theirs = skd.PCA(n_components, random_state=0).fit(X)
    assert ours._fit_svd_solver == theirs._fit_svd_solver == solver
    if solver == "randomized":  # same algorithm and random stream: close, not bitwise
        np.testing.assert_allclose(ours.explained_variance_, theirs.explained_variance_, rtol=1e-6)
        np.testing.assert_allclose(np.abs(ours.components_ @ theirs.components_.T), np.eye(5), atol=1e-6)
        np.testing.assert_allclose(ours.noise_variance_, theirs.noise_variance_, rtol=1e-6)
    else:
        k = min(ours.n_components_, 5)  # leading components of a random spectrum are well separated
        np.testing.assert_allclose(ours.explained_variance_, theirs.explained_variance_, rtol=1e-9)
        np.testing.assert_allclose(ours.components_[:k], theirs.components_[:k], atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pca_large_mean_transform_accuracy(dtype):
    """Mean 1e4, spread ~1: the transform centres X block by block; X @ W - mean @ W would
    keep the GEMM's rounding at the mean's magnitude."""
    X = spectrum_data(20011, 9, dtype, mean=1e4, seed=4)
    p = P.PCA(3, svd_solver="covariance_eigh").fit(X)
    assert not p._direct
    X64 = X.astype(np.float64)
    exact = (X64 - p._mean64) @ p.components_.astype(np.float64).T
    err = np.abs(p.transform(X) - exact).max() / np.abs(exact).max()
    naive = np.abs((X @ p.components_.T - p.mean_ @ p.components_.T) - exact).max() / np.abs(exact).max()
    eps = np.finfo(dtype).eps
    assert err < 30 * eps
    assert naive > 10 * err  # the form not taken would have been worse
    # data centred to within its spread takes the direct GEMM, as accurate there
    Xc = (X64 - X64.mean(0)).astype(dtype)
    q = P.PCA(3).fit(Xc)
    assert q._direct
    exact = (Xc.astype(np.float64) - q._mean64) @ q.components_.astype(np.float64).T
    assert np.abs(q.transform(Xc) - exact).max() / np.abs(exact).max() < 30 * eps


@pytest.mark.parametrize("dtype", DTYPES)
def test_pca_strided_and_fortran_inputs(dtype):
    base = spectrum_data(3001 * 2, 8 * 2, dtype)
    X = base[::2, ::2]
    ref_fit = P.PCA(4).fit(np.ascontiguousarray(X))
    for view in (X, np.asfortranarray(X)):
        p = P.PCA(4).fit(view)
        np.testing.assert_array_equal(p.components_, ref_fit.components_)
        np.testing.assert_allclose(p.transform(view), ref_fit.transform(np.ascontiguousarray(X)),
                                   rtol=_tol(dtype), atol=_tol(dtype))


def test_pca_threads_bitwise(threads):
    X = spectrum_data(200003, 12, np.float32, seed=7)
    res = []
    for t in (1, 2):
        threads(t)
        p = P.PCA(5).fit(X)
        res.append((p.components_, p.explained_variance_, p.mean_))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- ZCA whitening

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mean", [0.0, 1e4])
def test_zca_matches_reference(dtype, mean):
    X = spectrum_data(5003, 7, dtype, mean=mean, seed=2)
    z = P.ZCAWhitening(eps=1e-5).fit(X)
    Y = z.transform(X)
    assert Y.dtype == dtype and z.whitening_.dtype == dtype
    Yr = ref.prep_zca_whiten(X.astype(np.float64), eps=1e-5)
    t = 5e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(Y, Yr, rtol=t, atol=t)
    np.testing.assert_allclose(P.ZCAWhitening().fit_transform(X), Y, rtol=t, atol=t)
    U, S = z.components_.T.astype(np.float64), z.explained_variance_.astype(np.float64)
    np.testing.assert_allclose(np.cov(Y.astype(np.float64).T, bias=True), (U * (S / (S + 1e-5))) @ U.T,
                               atol=t * 10)  # identity up to eps
    np.testing.assert_allclose(z.whitening_, z.whitening_.T, atol=t)  # symmetric: original basis
    np.testing.assert_allclose(z.inverse_transform(Y), X, rtol=t, atol=t * np.abs(X).max())
    # components_: eigenvectors by decreasing variance, scikit-learn's PCA signs
    pca = skd.PCA(svd_solver="full").fit(X.astype(np.float64))  # its covariance_eigh is uncentred: X^T X - n m m^T
    np.testing.assert_allclose(z.components_, pca.components_, atol=t * 10)
    np.testing.assert_allclose(z.explained_variance_, pca.explained_variance_ * (5002 / 5003), rtol=t)


def test_zca_params():
    assert P.ZCAWhitening().get_params() == {"eps": 1e-5}
    for bad in (-1.0, float("nan"), "a", None):
        with pytest.raises(ValueError, match="eps"):
            P.ZCAWhitening(eps=bad).fit(np.eye(3))


# ---------------------------------------------------------------- errors, names, set_output

@pytest.mark.parametrize("ctor", [P.PCA, lambda: P.PCA(svd_solver="full"), P.ZCAWhitening])
def test_nan_inf_complex_refused(ctor):
    X = spectrum_data(200, 5, np.float64)
    est = ctor()
    with pytest.raises(NotFittedError):
        est.transform(X)
    for v, msg in ((np.nan, "Input X contains NaN"), (np.inf, "Input X contains infinity")):
        bad = X.copy()
        bad[3, 2] = v
        keep = bad.copy()
        with pytest.raises(ValueError, match=msg):
            ctor().fit(bad)
        with pytest.raises(ValueError, match=msg):
            ctor().fit_transform(bad)
        fitted = ctor().fit(X)
        with pytest.raises(ValueError, match=msg):
            fitted.transform(bad)
        np.testing.assert_array_equal(bad, keep)  # refused calls leave the input alone
    with pytest.raises(ValueError, match="Complex data not supported"):
        ctor().fit(X + 1j)
    with pytest.raises(ValueError, match="Complex data not supported"):
        ctor().fit(X).transform(X + 1j)
    fitted = ctor().fit(X)
    Y = fitted.transform(X)
    with pytest.raises(ValueError, match="Complex data not supported"):
        fitted.inverse_transform(Y + 1j)
    Yn = Y.copy()
    Yn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.inverse_transform(Yn)
    with pytest.raises(ValueError, match="features"):
        fitted.inverse_transform(Y[:, :1])
    with pytest.raises(ValueError, match="features"):
        fitted.transform(X[:, :3])


def test_pca_invalid_params():
    X = spectrum_data(50, 4, np.float64)
    for nc in (-1, 1.5, 1.0, "x", True):
        with pytest.raises(ValueError, match="n_components"):
            P.PCA(nc).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        P.PCA(5).fit(X)
    with pytest.raises(ValueError, match="svd_solver: 'arpack' is not supported"):
        P.PCA(2, svd_solver="arpack").fit(X)
    with pytest.raises(ValueError, match="svd_solver"):
        P.PCA(2, svd_solver="lobpcg").fit(X)
    with pytest.raises(ValueError, match="n_samples=1"):
        P.PCA().fit(X[:1])
    with pytest.raises(ValueError, match="mle"):
        P.PCA("mle").fit(X.T)


def test_feature_names_and_set_output():
    pd = pytest.importorskip("pandas")
    X = spectrum_data(300, 4, np.float64)
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    p = P.PCA(2).fit(df)
    assert list(p.feature_names_in_) == ["a", "b", "c", "d"]
    assert list(p.get_feature_names_out()) == ["pca0", "pca1"]
    out = P.PCA(2).set_output(transform="pandas").fit_transform(df)
    assert list(out.columns) == ["pca0", "pca1"]
    z = P.ZCAWhitening().set_output(transform="pandas").fit(df)
    assert list(z.transform(df).columns) == [f"zcawhitening{i}" for i in range(4)]
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler as SkScaler

    pipe = make_pipeline(SkScaler(), P.PCA(3)).set_output(transform="pandas")
    assert list(pipe.fit_transform(df).columns) == ["pca0", "pca1", "pca2"]
