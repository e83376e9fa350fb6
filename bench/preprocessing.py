"""Benchmark rows for the preprocessing estimators: fit_transform of StandardScaler,
MinMaxScaler, RobustScaler, Normalizer, PCA(n_components=50) and ZCAWhitening on
(n_samples x 100) float32 data.

Sizes: "small" 1,000 x 100 (call overhead), "large" 1,000,000 x 100 (400 MB, the issue's
targets). Peers: scikit-learn (Impl "sklearn"), a plain NumPy implementation (reference
formulas) and the CUDA kernels when a GPU is present. bytes_moved counts the passes the op
must make: statistics read X once (Robust: plus the column gather), the transform reads X and
writes Y.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ._harness import Case, Context, Impl

try:  # nnkernels.preprocessing is built on scikit-learn (the sklearn / bench extras)
    from nnkernels import preprocessing as P
except ImportError:
    P = None

COLS = 100
SCALER_ROWS = ("StandardScaler", "MinMaxScaler", "RobustScaler", "Normalizer")
ROWS = SCALER_ROWS + ("PCA", "ZCAWhitening")
MAIN_ROWS = ("MinMaxScaler",)


def _rows(ctx: Context, label) -> int:
    if isinstance(label, int):
        return max(1, label // COLS)
    if ctx.quick:
        return {"small": 1000, "medium": 10000, "large": 20000}[label]
    return {"small": 1000, "medium": 100000, "large": 1000000}[label]


def _numpy(name, X):
    if name == "StandardScaler":
        def f():
            m = X.mean(axis=0, dtype=np.float64)
            s = X.std(axis=0, dtype=np.float64)
            return ((X - m) / np.where(s == 0, 1, s)).astype(X.dtype)
    elif name == "MinMaxScaler":
        def f():
            mn, mx = X.min(axis=0), X.max(axis=0)
            r = np.where(mx - mn == 0, 1, mx - mn)
            return (X - mn) / r
    elif name == "RobustScaler":
        def f():
            q = np.percentile(X, [25, 50, 75], axis=0)
            r = np.where(q[2] - q[0] == 0, 1, q[2] - q[0])
            return ((X - q[1]) / r).astype(X.dtype)
    else:
        def f():
            n = np.sqrt(np.einsum("ij,ij->i", X, X))
            return X / np.where(n == 0, 1, n)[:, None]
    return f


def cases(ctx: Context) -> Iterator[Case]:
    if P is None:
        return
    import sklearn.preprocessing as skp

    dt = np.dtype(ctx.dtype)
    for label in ctx.sizes:
        names = [name for name in SCALER_ROWS if ctx.wants(name, label)]
        decomposition = [name for name in ("PCA", "ZCAWhitening") if ctx.wants(name, label)]
        if not names and not decomposition:
            continue
        n = _rows(ctx, label)
        X = ctx.rng.standard_normal((n, COLS), dtype=np.float64).astype(dt) * 3 + 1
        nbytes = X.nbytes
        for name in names:
            ours = getattr(P, name)
            impls = [Impl("nnkernels", lambda c=ours: c().fit_transform(X))]
            theirs = getattr(skp, name)
            impls.append(Impl("sklearn", lambda c=theirs: c().fit_transform(X)))
            # NumPy percentiles sort every column: skip that peer at the large size unless quick
            if not (name == "RobustScaler" and n > 100000):
                impls.append(Impl("numpy", _numpy(name, X)))
            if ctx.gpu and name != "RobustScaler":
                impls += _gpu_impls(ctx, ours, X)
            passes = 2 if name == "Normalizer" else 3
            yield Case("preprocessing", name, f"{n}x{COLS}", dt.name, impls, bytes_moved=passes * nbytes,
                       note="fit_transform")
        if decomposition:
            yield from _decomposition_cases(X, decomposition)


def _gpu_impls(ctx: Context, cls, X) -> list:
    """nnkernels CUDA fit_transform (PyTorch CUDA tensors, or CuPy arrays without PyTorch CUDA); no
    GPU peer (scikit-learn has none)."""
    dev = ctx.device_arrays()
    if dev is None:
        return []
    g = dev.asarray(X)
    return [Impl("nnkernels-cuda", lambda: cls().fit_transform(g), "cuda", dev.sync)]


def _decomposition_cases(X, names) -> Iterator[Case]:
    """PCA(50) and ZCAWhitening fit_transform against scikit-learn's default PCA solver
    (covariance_eigh for tall data) and a plain NumPy implementation. ZCA's scikit-learn peer is
    PCA(whiten=True) rotated back to the original basis (the same product, eps = 0). bytes_moved:
    the covariance pass reads X, the transform reads X and writes Y."""
    try:
        import sklearn.decomposition as skd
    except ImportError:
        skd = None
    n, d = X.shape
    shape = f"{n}x{d}"

    def numpy_pca():
        m = X.mean(axis=0, dtype=np.float64)
        Xc = X - m.astype(X.dtype)
        _, V = np.linalg.eigh(Xc.T @ Xc)
        return Xc @ V[:, ::-1][:, :50]

    def numpy_zca():
        m = X.mean(axis=0, dtype=np.float64)
        Xc = X - m.astype(X.dtype)
        S, U = np.linalg.eigh((Xc.T @ Xc) / n)
        return Xc @ ((U / np.sqrt(np.clip(S, 0, None) + 1e-5)) @ U.T).astype(X.dtype)

    def sklearn_zca():
        p = skd.PCA(whiten=True).fit(X)
        return p.transform(X) @ p.components_

    if "PCA" in names:
        impls = [Impl("nnkernels", lambda: P.PCA(50).fit_transform(X)), Impl("numpy", numpy_pca)]
        if skd is not None:
            impls.append(Impl("sklearn", lambda: skd.PCA(50).fit_transform(X)))
        yield Case("preprocessing", "PCA", shape, X.dtype.name, impls, bytes_moved=2 * X.nbytes + n * 50 * X.itemsize,
                   note="fit_transform, n_components=50")
    if "ZCAWhitening" in names:
        impls = [Impl("nnkernels", lambda: P.ZCAWhitening().fit_transform(X)), Impl("numpy", numpy_zca)]
        if skd is not None:
            impls.append(Impl("sklearn", sklearn_zca))
        yield Case("preprocessing", "ZCAWhitening", shape, X.dtype.name, impls, bytes_moved=3 * X.nbytes,
                   note="fit_transform; sklearn: PCA(whiten=True), rotated back")
