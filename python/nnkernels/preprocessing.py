"""Data preprocessing with scikit-learn's estimator interface: scalers, PCA, ZCA whitening,
image zero-centering.

    from nnkernels.preprocessing import StandardScaler
    Xs = StandardScaler().fit_transform(X)           # drop-in for sklearn.preprocessing

Estimators follow scikit-learn: ``fit``, ``transform``, ``fit_transform``, ``inverse_transform``
(where scikit-learn has it), ``partial_fit`` (StandardScaler, MinMaxScaler, image centering),
``get_params``/``set_params``, ``n_features_in_`` and the same fitted attribute names.
``transform`` before ``fit`` raises :class:`NotFittedError` (a ValueError/AttributeError, as in
scikit-learn); a wrong number of features raises ValueError. Inputs are 2-D float32/float64
arrays (other numeric types are converted to float64), C- or F-ordered; results keep the dtype
and the memory order of the input.

NaN or infinite values in the input raise ValueError (scikit-learn's NaN-ignoring statistics
are not implemented). Constant features get scale 1 (no inf/NaN), as in scikit-learn.

Heavy loops run in C++ (csrc/cpu/preprocessing.cpp): blocked two-pass column moments merged
with Chan's update (bitwise independent of the thread count), min/max, per-column percentiles by
quickselect, fused per-column affine transforms and row normalisation. PCA/ZCA use NumPy's
LAPACK (``np.linalg.svd`` / ``eigh``) and BLAS for the products. GPU arrays (CuPy, PyTorch CUDA)
are accepted by StandardScaler, MinMaxScaler and Normalizer (CUDA kernels), and by
RobustScaler's transform. References: :mod:`nnkernels.reference.preprocessing`.
"""
from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np

from . import _core, _gpu

__all__ = [
    "StandardScaler", "MinMaxScaler", "RobustScaler", "Normalizer", "PCA", "ZCAWhitening",
    "ImageZeroCentering", "zero_center", "NotFittedError",
]

_EPS64 = np.finfo(np.float64).eps


class NotFittedError(ValueError, AttributeError):
    """Raised when an estimator is used before ``fit`` (same bases as scikit-learn's)."""


# ---------------------------------------------------------------- helpers

def _is_gpu(X) -> bool:
    return type(X) is not np.ndarray and _gpu.is_gpu_array(X)


def _as_float_2d(X, name: str = "X", estimator: str = "") -> np.ndarray:
    if X is None:
        raise TypeError(f"{name}: expected a 2-D array, got None")
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        raise TypeError(f"{name}: sparse input is not supported; pass a dense array")
    arr = np.asarray(X)
    if arr.dtype.kind in "OUSV" or arr.dtype.kind == "c":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array (n_samples, n_features), got a {arr.ndim}-D array; "
            "reshape 1-D data with X.reshape(-1, 1) (one feature) or X.reshape(1, -1) (one sample)")
    if arr.shape[0] < 1:
        raise ValueError(f"{name}: found an array with 0 samples; {estimator} needs at least 1".rstrip("; "))
    if arr.shape[1] < 1:
        raise ValueError(f"{name}: found an array with 0 features; {estimator} needs at least 1".rstrip("; "))
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _empty_like_order(X: np.ndarray) -> np.ndarray:
    order = "F" if (X.flags.f_contiguous and not X.flags.c_contiguous) else "C"
    return np.empty(X.shape, dtype=X.dtype, order=order)


def _nonfinite_error(X) -> ValueError:
    return ValueError("X: input contains NaN or infinity; nnkernels.preprocessing does not ignore NaN "
                      "(remove or impute missing values first)")


def _handle_zeros_in_scale(scale: np.ndarray, constant_mask=None) -> np.ndarray:
    """Scale 1 for constant features (as scikit-learn)."""
    scale = np.array(scale, dtype=np.float64, copy=True)
    if constant_mask is None:
        constant_mask = scale < 10 * np.finfo(scale.dtype).eps
    scale[constant_mask] = 1.0
    return scale


def _is_constant_feature(var, mean, n_samples):
    """scikit-learn's bound of the two-pass variance error (Chan, Golub, LeVeque)."""
    upper_bound = n_samples * _EPS64 * var + (n_samples * mean * _EPS64) ** 2
    return var <= upper_bound


class _Estimator:
    """get_params / set_params / repr from the constructor signature, as scikit-learn's BaseEstimator."""

    @classmethod
    def _param_names(cls) -> list:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self")

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params) -> "_Estimator":
        valid = self._param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"Invalid parameter {k!r} for estimator {type(self).__name__}. "
                                 f"Valid parameters are: {valid!r}.")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        args = [f"{k}={getattr(self, k)!r}" for k, p in sig.parameters.items()
                if k != "self" and getattr(self, k) != p.default]
        return f"{type(self).__name__}({', '.join(args)})"

    def _check_fitted(self, attr: str) -> None:
        if not hasattr(self, attr):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def _validate(self, X, reset: bool):
        name = type(self).__name__
        if _is_gpu(X):
            arr = X
            shape = tuple(X.shape)
            if len(shape) != 2:
                raise ValueError(f"X: expected a 2-D array, got {len(shape)}-D")
            if shape[0] < 1 or shape[1] < 1:
                raise ValueError("X: expected at least one sample and one feature")
        else:
            arr = _as_float_2d(X, "X", name)
            shape = arr.shape
        if reset:
            self.n_features_in_ = int(shape[1])
        else:
            self._check_fitted("n_features_in_")
            if shape[1] != self.n_features_in_:
                raise ValueError(f"X has {shape[1]} features, but {name} is expecting "
                                 f"{self.n_features_in_} features as input.")
        return arr

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X)


def _stats(X: np.ndarray, flags: int):
    mean, m2, mn, mx, finite = _core.prep_col_stats(X, flags)
    return mean, m2, mn, mx, finite


def _affine(X, shift, scale, offset, copy: bool):
    """(X - shift) * scale + offset per column; in place when copy is False and X allows it."""
    if _is_gpu(X):
        return _gpu.prep_affine(X, shift, scale, offset)
    if not copy and isinstance(X, np.ndarray) and X.flags.writeable and (X.flags.c_contiguous or X.flags.f_contiguous):
        out = X
    else:
        out = _empty_like_order(X)
    _core.prep_affine(X, np.asarray(shift, np.float64), np.asarray(scale, np.float64),
                      None if offset is None else np.asarray(offset, np.float64), out)
    return out


def _copy_flag(copy, default):
    return default if copy is None else bool(copy)


# ---------------------------------------------------------------- StandardScaler

class StandardScaler(_Estimator):
    """Standardise features: (x - mean_) / scale_, scale_ = sqrt(var_) (population variance).

    ``partial_fit`` merges batches exactly (Chan et al.'s pairwise update), so data larger than
    memory can be fitted in pieces. Attributes: mean_, var_, scale_, n_samples_seen_, n_features_in_.
    """

    def __init__(self, *, copy: bool = True, with_mean: bool = True, with_std: bool = True):
        self.copy = copy
        self.with_mean = with_mean
        self.with_std = with_std

    def _reset(self):
        for a in ("mean_", "var_", "scale_", "n_samples_seen_", "_m2", "_mean_acc"):
            if hasattr(self, a):
                delattr(self, a)

    def fit(self, X, y=None, sample_weight=None):
        if sample_weight is not None:
            raise NotImplementedError("sample_weight: not supported by nnkernels.preprocessing.StandardScaler")
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X, y=None, sample_weight=None):
        if sample_weight is not None:
            raise NotImplementedError("sample_weight: not supported by nnkernels.preprocessing.StandardScaler")
        first = not hasattr(self, "n_samples_seen_")
        X = self._validate(X, reset=first)
        n = int(X.shape[0])
        if _is_gpu(X):
            mean, m2, _, _ = _gpu.prep_col_stats(X)
        else:
            mean, m2, _, _, _ = _stats(X, 2)
        if not (np.isfinite(mean).all() and np.isfinite(m2).all()):
            if _is_gpu(X) or not np.isfinite(X).all():
                raise _nonfinite_error(X)
        if first:
            tot_mean, tot_m2, tot_n = mean, m2, n
        else:
            na = self.n_samples_seen_
            tot_n = na + n
            d = mean - self._mean_acc
            tot_mean = self._mean_acc + d * (n / tot_n)
            tot_m2 = self._m2 + m2 + d * d * (na * n / tot_n)
        self._mean_acc, self._m2, self.n_samples_seen_ = tot_mean, tot_m2, np.int64(tot_n)
        if self.with_mean or self.with_std:
            self.mean_ = tot_mean.copy()
        else:
            self.mean_ = None
        if self.with_std:
            self.var_ = tot_m2 / tot_n
            constant = _is_constant_feature(self.var_, self.mean_, tot_n)
            self.scale_ = _handle_zeros_in_scale(np.sqrt(self.var_), constant)
        else:
            self.var_ = None
            self.scale_ = None
        return self

    def _params(self, inverse: bool):
        d = self.n_features_in_
        mean = self.mean_ if self.with_mean else np.zeros(d)
        scale = self.scale_ if self.with_std else np.ones(d)
        if inverse:
            return np.zeros(d), scale, mean
        return mean, 1.0 / scale, None

    def transform(self, X, copy=None):
        self._check_fitted("n_samples_seen_")
        X = self._validate(X, reset=False)
        shift, scale, offset = self._params(False)
        return _affine(X, shift, scale, offset, _copy_flag(copy, self.copy))

    def inverse_transform(self, X, copy=None):
        self._check_fitted("n_samples_seen_")
        X = self._validate(X, reset=False)
        shift, scale, offset = self._params(True)
        return _affine(X, shift, scale, offset, _copy_flag(copy, self.copy))


# ---------------------------------------------------------------- MinMaxScaler

class MinMaxScaler(_Estimator):
    """Scale each feature to ``feature_range``: X * scale_ + min_.

    Attributes: data_min_, data_max_, data_range_, scale_, min_, n_samples_seen_, n_features_in_.
    """

    def __init__(self, feature_range=(0, 1), *, copy: bool = True, clip: bool = False):
        self.feature_range = feature_range
        self.copy = copy
        self.clip = clip

    def fit(self, X, y=None):
        for a in ("data_min_", "data_max_", "n_samples_seen_"):
            if hasattr(self, a):
                delattr(self, a)
        return self.partial_fit(X, y)

    def partial_fit(self, X, y=None):
        lo, hi = self.feature_range
        if not lo < hi:
            raise ValueError(f"feature_range: minimum of desired feature range must be smaller than maximum, "
                             f"got {self.feature_range!r}")
        first = not hasattr(self, "n_samples_seen_")
        X = self._validate(X, reset=first)
        if _is_gpu(X):
            mean, _, mn, mx = _gpu.prep_col_stats(X)
            finite = bool(np.isfinite(mean).all())
        else:
            _, _, mn, mx, finite = _stats(X, 4)
        if not finite:
            raise _nonfinite_error(X)
        if not first:
            mn = np.minimum(self.data_min_.astype(np.float64), mn)
            mx = np.maximum(self.data_max_.astype(np.float64), mx)
            n = self.n_samples_seen_ + X.shape[0]
        else:
            n = X.shape[0]
        dt = np.dtype(str(X.dtype).replace("torch.", ""))
        rng = mx - mn
        scale = (hi - lo) / _handle_zeros_in_scale(rng)
        self.data_min_ = mn.astype(dt)
        self.data_max_ = mx.astype(dt)
        self.data_range_ = rng.astype(dt)
        self.scale_ = scale.astype(dt)
        self.min_ = (lo - mn * scale).astype(dt)
        self.n_samples_seen_ = np.int64(n)
        # the kernels use float64 parameters in the form (x - data_min) * scale + low, which
        # avoids the cancellation of x * scale_ + min_ for data far from zero
        self._mn64, self._scale64 = mn.astype(np.float64), scale.astype(np.float64)
        return self

    def transform(self, X):
        self._check_fitted("scale_")
        X = self._validate(X, reset=False)
        d = self.n_features_in_
        Y = _affine(X, self._mn64, self._scale64, np.full(d, float(self.feature_range[0])), self.copy)
        if self.clip:
            lo, hi = self.feature_range
            if _is_gpu(Y):
                _gpu.clip_(Y, lo, hi)
            else:
                np.clip(Y, lo, hi, out=Y)
        return Y

    def inverse_transform(self, X):
        self._check_fitted("scale_")
        X = self._validate(X, reset=False)
        d = self.n_features_in_
        return _affine(X, np.full(d, float(self.feature_range[0])), 1.0 / self._scale64, self._mn64, self.copy)


# ---------------------------------------------------------------- RobustScaler

class RobustScaler(_Estimator):
    """Centre on the median and scale by a quantile range (default the interquartile range).

    The percentiles (NumPy's "linear" method, as scikit-learn) are found per column by
    quickselect in C++, not by sorting. Attributes: center_, scale_, n_features_in_.
    """

    def __init__(self, *, with_centering: bool = True, with_scaling: bool = True,
                 quantile_range=(25.0, 75.0), copy: bool = True):
        self.with_centering = with_centering
        self.with_scaling = with_scaling
        self.quantile_range = quantile_range
        self.copy = copy

    def fit(self, X, y=None):
        q_min, q_max = self.quantile_range
        if not 0 <= q_min <= q_max <= 100:
            raise ValueError(f"quantile_range: invalid quantile range {self.quantile_range!r}")
        X = self._validate(X, reset=True)
        if _is_gpu(X):  # percentiles through the array library; transforms run on our kernels
            Xh = _gpu.to_host(X)
        else:
            Xh = X
        qs = sorted({float(q_min), 50.0, float(q_max)})
        Q = _core.prep_col_quantiles(Xh, qs)
        byq = {q: Q[i] for i, q in enumerate(qs)}
        dt = Xh.dtype
        self.center_ = byq[50.0].astype(dt) if self.with_centering else None
        if self.with_scaling:
            self.scale_ = _handle_zeros_in_scale(byq[float(q_max)] - byq[float(q_min)])
        else:
            self.scale_ = None
        return self

    def _check(self):
        if not hasattr(self, "center_") or not hasattr(self, "scale_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def transform(self, X):
        self._check()
        X = self._validate(X, reset=False)
        d = self.n_features_in_
        shift = self.center_ if self.with_centering else np.zeros(d)
        scale = 1.0 / self.scale_ if self.with_scaling else np.ones(d)
        return _affine(X, shift, scale, None, self.copy)

    def inverse_transform(self, X):
        self._check()
        X = self._validate(X, reset=False)
        d = self.n_features_in_
        offset = self.center_ if self.with_centering else np.zeros(d)
        scale = self.scale_ if self.with_scaling else np.ones(d)
        return _affine(X, np.zeros(d), scale, offset, self.copy)


# ---------------------------------------------------------------- Normalizer

class Normalizer(_Estimator):
    """Scale each sample (row) to unit norm: 'l2', 'l1' or 'max'. Rows of norm 0 are unchanged."""

    def __init__(self, norm: str = "l2", *, copy: bool = True):
        self.norm = norm
        self.copy = copy

    def fit(self, X, y=None):
        if self.norm not in ("l1", "l2", "max"):
            raise ValueError(f"norm: expected 'l1', 'l2' or 'max', got {self.norm!r}")
        self._validate(X, reset=True)
        return self

    def transform(self, X, copy=None):
        if self.norm not in ("l1", "l2", "max"):
            raise ValueError(f"norm: expected 'l1', 'l2' or 'max', got {self.norm!r}")
        X = self._validate(X, reset=False)
        if _is_gpu(X):
            Y, norms = _gpu.prep_normalize(X, self.norm)
            if not np.isfinite(norms).all():
                raise _nonfinite_error(X)
            return Y
        copy = _copy_flag(copy, self.copy)
        if not copy and X.flags.writeable and (X.flags.c_contiguous or X.flags.f_contiguous):
            out = X
        else:
            out = _empty_like_order(X)
        norms = _core.prep_normalize(X, self.norm, out)
        if not np.isfinite(norms).all() and not np.isfinite(X).all():
            raise _nonfinite_error(X)
        return out


# ---------------------------------------------------------------- PCA

def _svd_flip_v(Vt: np.ndarray, U=None):
    """scikit-learn's sign convention (u_based_decision=False): the largest |entry| of each
    row of Vt is positive."""
    idx = np.argmax(np.abs(Vt), axis=1)
    signs = np.sign(Vt[np.arange(Vt.shape[0]), idx])
    signs[signs == 0] = 1
    Vt = Vt * signs[:, None]
    if U is not None:
        U = U * signs[None, :]
    return Vt, U


class PCA(_Estimator):
    """Principal component analysis by SVD of the centred data (NumPy LAPACK), or the eigen-
    decomposition of its covariance (NumPy BLAS + LAPACK) when n_samples >> n_features.

    Results match scikit-learn's ``PCA(svd_solver="full")`` including component signs (its
    ``svd_flip`` convention). n_components: None (all), an int, or a float in (0, 1) (smallest
    number of components explaining that fraction of the variance). Attributes: components_,
    explained_variance_, explained_variance_ratio_, singular_values_, mean_, n_components_,
    n_samples_, noise_variance_, n_features_in_.
    """

    def __init__(self, n_components=None, *, whiten: bool = False):
        self.n_components = n_components
        self.whiten = whiten

    def fit(self, X, y=None):
        self._fit(X)
        return self

    def _fit(self, X):
        X = self._validate(X, reset=True)
        if _is_gpu(X):
            X = _gpu.to_host(X)
        n, d = X.shape
        k_max = min(n, d)
        nc = self.n_components
        if nc is None:
            pass
        elif isinstance(nc, numbers.Integral) and not isinstance(nc, bool):
            if not 0 <= nc <= k_max:
                raise ValueError(f"n_components: expected an int in [0, {k_max}] (min(n_samples, n_features)), got {nc}")
        elif isinstance(nc, numbers.Real) and not isinstance(nc, bool):
            if not 0 < nc < 1:
                raise ValueError(f"n_components: a float must lie in (0, 1), got {nc}")
        else:
            raise ValueError(f"n_components: expected None, an int or a float in (0, 1), got {nc!r}")
        mean, _, _, _, _ = _stats(X, 2)
        if not np.isfinite(mean).all():
            raise _nonfinite_error(X)
        Xc = np.empty(X.shape, np.float64)
        _core.prep_affine(X.astype(np.float64, copy=False), mean, np.ones(d), None, Xc)
        if n >= 4 * d and d <= 4096 and n > 1:
            # covariance route: C = Xc^T Xc (BLAS), eigh (LAPACK); singular values sqrt(lambda (n-1))
            C = Xc.T @ Xc
            evals, evecs = np.linalg.eigh(C)
            evals = np.clip(evals[::-1], 0.0, None)
            S = np.sqrt(evals)
            Vt = evecs[:, ::-1].T
            Vt, _ = _svd_flip_v(Vt)
        else:
            _, S, Vt = np.linalg.svd(Xc, full_matrices=False)
            Vt, _ = _svd_flip_v(Vt)
        S = S[:k_max]
        Vt = Vt[:k_max]
        ev = S ** 2 / max(n - 1, 1)
        total = ev.sum()
        ratio = ev / total if total > 0 else np.zeros_like(ev)
        if nc is None:
            k = k_max
        elif isinstance(nc, numbers.Integral):
            k = int(nc)
        else:
            k = int(np.searchsorted(np.cumsum(ratio), nc, side="right")) + 1
            k = min(k, k_max)
        dt = X.dtype
        self.mean_ = mean.astype(dt)
        self.components_ = Vt[:k].astype(dt)
        self.explained_variance_ = ev[:k].astype(dt)
        self.explained_variance_ratio_ = ratio[:k].astype(dt)
        self.singular_values_ = S[:k].astype(dt)
        self.n_components_ = k
        self.n_samples_ = n
        self.noise_variance_ = float(ev[k:].mean()) if k < k_max else 0.0
        self._mean64 = mean
        return X

    def fit_transform(self, X, y=None):
        X = self._fit(X)
        return self.transform(X)

    def transform(self, X):
        self._check_fitted("components_")
        X = self._validate(X, reset=False)
        gpu_in = X if _is_gpu(X) else None
        if gpu_in is not None:
            X = _gpu.to_host(X)
        Xc = _affine(X, self._mean64, np.ones(X.shape[1]), None, True)
        Y = Xc @ self.components_.T
        if self.whiten:
            Y /= np.sqrt(self.explained_variance_)
        return _gpu.from_host(gpu_in, Y) if gpu_in is not None else Y

    def inverse_transform(self, X):
        self._check_fitted("components_")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_components_:
            raise ValueError(f"X: expected shape (n_samples, {self.n_components_}), got {X.shape}")
        if self.whiten:
            W = np.sqrt(self.explained_variance_)[:, None] * self.components_
        else:
            W = self.components_
        return X @ W + self.mean_


# ---------------------------------------------------------------- ZCA whitening

class ZCAWhitening(_Estimator):
    """ZCA whitening in the original basis (cs231n notes): with X centred and
    cov = X^T X / N = U diag(S) U^T, transform(X) = (X - mean_) U diag(1 / sqrt(S + eps)) U^T.

    Attributes: mean_, components_ (U^T), explained_variance_ (S), whitening_ (the d x d
    matrix applied), dewhitening_ (its inverse), n_features_in_.
    """

    def __init__(self, eps: float = 1e-5):
        self.eps = eps

    def fit(self, X, y=None):
        if not float(self.eps) >= 0:
            raise ValueError(f"eps: expected a non-negative number, got {self.eps!r}")
        X = self._validate(X, reset=True)
        if _is_gpu(X):
            X = _gpu.to_host(X)
        n, d = X.shape
        mean, _, _, _, _ = _stats(X, 2)
        if not np.isfinite(mean).all():
            raise _nonfinite_error(X)
        Xc = np.empty(X.shape, np.float64)
        _core.prep_affine(X.astype(np.float64, copy=False), mean, np.ones(d), None, Xc)
        cov = (Xc.T @ Xc) / n
        U, S, _ = np.linalg.svd(cov)
        dt = X.dtype
        self.mean_ = mean.astype(dt)
        self._mean64 = mean
        self.components_ = U.T.astype(dt)
        self.explained_variance_ = S.astype(dt)
        self.whitening_ = ((U / np.sqrt(S + self.eps)) @ U.T).astype(dt)
        self.dewhitening_ = ((U * np.sqrt(S + self.eps)) @ U.T).astype(dt)
        return self

    def transform(self, X):
        self._check_fitted("whitening_")
        X = self._validate(X, reset=False)
        gpu_in = X if _is_gpu(X) else None
        if gpu_in is not None:
            X = _gpu.to_host(X)
        Xc = _affine(X, self._mean64, np.ones(X.shape[1]), None, True)
        Y = Xc @ self.whitening_
        return _gpu.from_host(gpu_in, Y) if gpu_in is not None else Y

    def inverse_transform(self, X):
        self._check_fitted("whitening_")
        X = self._validate(X, reset=False)
        if _is_gpu(X):
            X = _gpu.to_host(X)
        return X @ self.dewhitening_ + self.mean_


# ---------------------------------------------------------------- image zero-centering

def _image_layout(shape, data_format: str):
    if data_format not in ("NCHW", "NHWC"):
        raise ValueError(f"data_format: expected 'NCHW' or 'NHWC', got {data_format!r}")
    if len(shape) != 4:
        raise ValueError(f"X: expected a 4-D batch of images ({data_format}), got shape {tuple(shape)}")
    if shape[0] < 1:
        raise ValueError("X: expected at least one image")
    return shape[1] if data_format == "NCHW" else shape[3]


class ImageZeroCentering(_Estimator):
    """Zero-centre images by subtracting the per-channel mean (``mode="channel"``) or the mean
    image (``mode="image"``), as in the cs231n notes; batches are (N, C, H, W) (``"NCHW"``) or
    (N, H, W, C) (``"NHWC"``). Attributes: mean_ (shape (C,) or the image shape),
    n_samples_seen_; ``partial_fit`` accumulates the mean over batches.
    """

    def __init__(self, mode: str = "channel", data_format: str = "NCHW"):
        self.mode = mode
        self.data_format = data_format

    def _check_params(self):
        if self.mode not in ("channel", "image"):
            raise ValueError(f"mode: expected 'channel' or 'image', got {self.mode!r}")

    def _as_images(self, X) -> np.ndarray:
        arr = np.asarray(X)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"X: expected a real numeric array, got dtype {arr.dtype}")
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        _image_layout(arr.shape, self.data_format)
        return arr

    def fit(self, X, y=None):
        for a in ("mean_", "n_samples_seen_"):
            if hasattr(self, a):
                delattr(self, a)
        return self.partial_fit(X, y)

    def partial_fit(self, X, y=None):
        self._check_params()
        X = self._as_images(X)
        first = not hasattr(self, "n_samples_seen_")
        if not first and X.shape[1:] != self._image_shape:
            raise ValueError(f"X: expected images of shape {self._image_shape}, got {X.shape[1:]}")
        flat = X.reshape(X.shape[0], -1)
        mean_img, _, _, _, _ = _stats(flat, 2)
        if not np.isfinite(mean_img).all():
            raise _nonfinite_error(X)
        n = X.shape[0]
        if first:
            self._mean_img, self.n_samples_seen_, self._image_shape = mean_img, np.int64(n), X.shape[1:]
            self.n_features_in_ = int(flat.shape[1])
        else:
            tot = self.n_samples_seen_ + n
            self._mean_img = self._mean_img + (mean_img - self._mean_img) * (n / tot)
            self.n_samples_seen_ = np.int64(tot)
        img = self._mean_img.reshape(self._image_shape)
        if self.mode == "image":
            self.mean_ = img.astype(X.dtype)
        else:
            c_axis = 0 if self.data_format == "NCHW" else 2
            self.mean_ = img.mean(axis=tuple(a for a in range(3) if a != c_axis)).astype(X.dtype)
        return self

    def _shift(self) -> np.ndarray:
        if self.mode == "image":
            return self._mean_img
        C = self._image_shape[0] if self.data_format == "NCHW" else self._image_shape[2]
        m = self.mean_.astype(np.float64)
        if self.data_format == "NCHW":
            return np.repeat(m, int(np.prod(self._image_shape)) // C)
        return np.tile(m, int(np.prod(self._image_shape)) // C)

    def _apply(self, X, inverse: bool):
        self._check_fitted("mean_")
        X = self._as_images(X)
        if X.shape[1:] != self._image_shape:
            raise ValueError(f"X: expected images of shape {self._image_shape}, got {X.shape[1:]}")
        flat = np.ascontiguousarray(X).reshape(X.shape[0], -1)
        shift = self._shift()
        d = flat.shape[1]
        if inverse:
            out = _affine(flat, np.zeros(d), np.ones(d), shift, True)
        else:
            out = _affine(flat, shift, np.ones(d), None, True)
        return out.reshape(X.shape)

    def transform(self, X):
        return self._apply(X, False)

    def inverse_transform(self, X):
        return self._apply(X, True)


def zero_center(X, mode: str = "channel", data_format: str = "NCHW"):
    """Subtract the per-channel mean or the mean image of a batch; returns (centred, mean)."""
    est = ImageZeroCentering(mode=mode, data_format=data_format).fit(X)
    return est.transform(X), est.mean_
