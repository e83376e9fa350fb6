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

# PCA and ZCAWhitening are built on scikit-learn's estimator classes and validation (fitted
# checks, feature names, set_output, estimator tags): import them here, next to their users.
from sklearn.base import BaseEstimator as _SkBaseEstimator  # noqa: E402
from sklearn.base import ClassNamePrefixFeaturesOutMixin as _SkPrefixFeaturesOut  # noqa: E402
from sklearn.base import TransformerMixin as _SkTransformerMixin  # noqa: E402
from sklearn.utils import assert_all_finite as _sk_assert_all_finite  # noqa: E402
from sklearn.utils.extmath import svd_flip as _sk_svd_flip  # noqa: E402
from sklearn.utils.validation import check_array as _sk_check_array  # noqa: E402
from sklearn.utils.validation import check_is_fitted as _sk_check_is_fitted  # noqa: E402
from sklearn.utils.validation import validate_data as _sk_validate_data  # noqa: E402

# Rows of one block of the centred product (X - mean) @ W: 8 MB of float32 at 100 features,
# resident in L3 between the centring and the GEMM that reads it.
_MATMUL_BLOCK_ELEMS = 1 << 21


def _validate_dense(est, X, reset: bool):
    """scikit-learn's validation (2-D, >= 1 sample and feature, float32/float64, no complex, no
    sparse, feature names); finiteness is checked by the callers on their results, which the
    kernels compute anyway, instead of a separate pass over X."""
    return _sk_validate_data(est, X, dtype=[np.float64, np.float32], ensure_all_finite=False, reset=reset)


def _nonfinite_input(X, name: str):
    """Raise scikit-learn's own message for NaN/inf in X; otherwise the data overflowed."""
    _sk_assert_all_finite(X, input_name="X", estimator_name=name)
    raise ValueError(f"X: values too large: the covariance of the data overflows float64 in {name}")


def _finite_sum(Y) -> bool:
    """False when Y holds NaN or inf (a NaN/inf in X reaches every product it enters)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.isfinite(Y.sum(dtype=np.float64)))


def _centered_gram(X, name: str):
    """(mean, sum of centred cross-products) in float64 by the blocked kernel; one pass over X."""
    mean, m2 = _core.prep_centered_gram(X)
    if not (np.isfinite(mean).all() and np.isfinite(m2).all()):
        _nonfinite_input(X, name)
    return mean, m2


def _direct_product_ok(mean64: np.ndarray, std64: np.ndarray, W: np.ndarray) -> bool:
    """Whether X @ W - mean @ W is as accurate as (X - mean) @ W, up to a factor 2.

    The GEMM's rounding error in output column c is ~u sum_k |x_k| |W_kc|, i.e. u sum_k
    (|mean_k| + std_k) |W_kc| for X @ W against u sum_k std_k |W_kc| for centred data: the direct
    form is used when sum_k |mean_k| |W_kc| <= sum_k std_k |W_kc| for every column (data centred
    to within its spread, as after a StandardScaler); otherwise X is centred block by block.
    """
    absW = np.abs(W.astype(np.float64))
    return bool(np.all(np.abs(mean64) @ absW <= std64 @ absW))


def _centered_matmul(X: np.ndarray, mean64: np.ndarray, W: np.ndarray, name: str, check_finite: bool,
                     direct: bool = False):
    """(X - mean) @ W, in X's dtype, with BLAS.

    direct (see _direct_product_ok): X @ W - mean @ W, one GEMM on X as it is (scikit-learn's
    form). Otherwise not that: with a mean far from zero (1e4 in float32) the GEMM's products
    are rounded at the mean's magnitude and the subtraction leaves only that error. X is centred
    block by block instead (blocks stay in cache for the GEMM that reads them, no copy of X):
    X - m, with m the mean rounded to X's dtype, is exact for values within a factor 2 of m
    (Sterbenz) and otherwise a rounding of the input's size; the rounding of m itself is a
    constant shift, removed by subtracting (mean - m) @ W computed in float64.
    """
    dt = X.dtype
    n, d = X.shape
    rows = max(1, _MATMUL_BLOCK_ELEMS // d)
    if direct:
        # by row blocks, so that each block of Y is corrected while it is still in cache
        # (a separate Y -= c pass over 1e6 x 50 float32 cost 22-28 ms, a tenth of the GEMM)
        c = (mean64 @ W.astype(np.float64)).astype(dt)
        Y = np.empty((n, W.shape[1]), dtype=dt)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            np.matmul(X[r0:r1], W, out=Y[r0:r1])
            np.subtract(Y[r0:r1], c, out=Y[r0:r1])
        if check_finite and not _finite_sum(Y):
            _nonfinite_input(X, name)
        return Y
    m = mean64.astype(dt)
    corr = ((mean64 - m.astype(np.float64)) @ W.astype(np.float64)).astype(dt)
    Y = np.empty((n, W.shape[1]), dtype=dt)
    buf = np.empty((min(rows, n), d), dtype=dt)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        b = buf[: r1 - r0]
        np.subtract(X[r0:r1], m, out=b)
        np.matmul(b, W, out=Y[r0:r1])
    if corr.any():
        Y -= corr
    if check_finite and not _finite_sum(Y):
        _nonfinite_input(X, name)
    return Y


_PCA_SOLVERS = ("auto", "full", "covariance_eigh", "randomized")


class PCA(_SkPrefixFeaturesOut, _SkTransformerMixin, _SkBaseEstimator):
    """Principal component analysis with scikit-learn's ``PCA`` semantics: same parameters
    (except ``svd_solver="arpack"`` and its ``tol``), fitted attributes, component signs
    (``svd_flip`` on the components, as scikit-learn >= 1.5) and solver rule.

    Solvers. ``"covariance_eigh"``: the centred cross-product matrix of X is formed in one
    blocked, multi-threaded pass (C++ kernel ``prep_centered_gram``: per-chunk corrected
    two-pass centring, Chan's pairwise merge, float64 result) and decomposed with
    ``numpy.linalg.eigh``; X is never copied. ``"full"``: LAPACK SVD (``numpy.linalg.svd``)
    of the centred data in float64. ``"randomized"``: scikit-learn's ``randomized_svd`` on the
    centred data. ``"auto"`` follows scikit-learn's rule: ``covariance_eigh`` when
    n_features <= 1000 and n_samples >= 10 * n_features; else ``full`` when max(shape) <= 500
    or n_components == "mle"; else ``randomized`` when 1 <= n_components < 0.8 * min(shape);
    else ``full``. ``transform`` is ``(X - mean_) @ components_.T`` by BLAS on blocks of X
    centred in cache (accurate for data far from zero, see ``_centered_matmul``).

    n_components: None (min(n_samples, n_features)), an int, a float in (0, 1) (fraction of
    explained variance) or "mle" (Minka's estimate, scikit-learn's ``_infer_dimension``).
    NaN or infinite values raise ValueError (as scikit-learn); complex input raises
    "Complex data not supported". Fitting needs at least 2 samples. ``copy`` is accepted for
    compatibility: no solver modifies X.
    """

    def __init__(self, n_components=None, *, copy=True, whiten=False, svd_solver="auto",
                 iterated_power="auto", n_oversamples=10, power_iteration_normalizer="auto",
                 random_state=None):
        self.n_components = n_components
        self.copy = copy
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.iterated_power = iterated_power
        self.n_oversamples = n_oversamples
        self.power_iteration_normalizer = power_iteration_normalizer
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def _check_params(self):
        nc = self.n_components
        if nc is None or isinstance(nc, str):
            ok = nc is None or nc == "mle"
        elif isinstance(nc, bool) or not isinstance(nc, numbers.Real):
            ok = False
        elif isinstance(nc, numbers.Integral):
            ok = nc >= 0
        else:
            ok = 0 < nc < 1
        if not ok:
            raise ValueError(f"n_components: expected None, 'mle', an int >= 0 or a float in (0, 1), got {nc!r}")
        if self.svd_solver == "arpack":
            raise ValueError("svd_solver: 'arpack' is not supported by nnkernels.preprocessing.PCA; "
                             f"use one of {_PCA_SOLVERS}")
        if self.svd_solver not in _PCA_SOLVERS:
            raise ValueError(f"svd_solver: expected one of {_PCA_SOLVERS}, got {self.svd_solver!r}")

    def _choose_solver(self, n, d, nc):
        if self.svd_solver != "auto":
            return self.svd_solver
        if d <= 1000 and n >= 10 * d:
            return "covariance_eigh"
        if max(n, d) <= 500 or nc == "mle":
            return "full"
        if isinstance(nc, numbers.Integral) and 1 <= nc < 0.8 * min(n, d):
            return "randomized"
        return "full"

    def _fit(self, X):
        """Fit; returns (X validated, U of the full/randomized SVD or None, S)."""
        self._check_params()
        X = _validate_dense(self, X, reset=True)
        n, d = X.shape
        if n < 2:
            raise ValueError(f"X: n_samples={n}; PCA needs at least 2 samples to estimate variances")
        nc = min(n, d) if self.n_components is None else self.n_components
        solver = self._choose_solver(n, d, nc)
        k_max = min(n, d)
        if nc == "mle":
            if n < d:
                raise ValueError("n_components='mle' is only supported if n_samples >= n_features")
        elif solver == "randomized":
            if not (isinstance(nc, numbers.Integral) and 1 <= nc <= k_max):
                raise ValueError(f"n_components={nc!r} must be between 1 and min(n_samples, n_features)={k_max} "
                                 "with svd_solver='randomized'")
        elif not 0 <= nc <= k_max:
            raise ValueError(f"n_components={nc!r} must be between 0 and min(n_samples, n_features)={k_max} "
                             f"with svd_solver={solver!r}")
        U = None
        if solver == "covariance_eigh":
            mean, m2 = _centered_gram(X, "PCA")
            evals, evecs = np.linalg.eigh(m2 / (n - 1))
            ev = np.clip(evals[::-1], 0.0, None)
            S = np.sqrt(ev * (n - 1))
            _, Vt = _sk_svd_flip(None, np.ascontiguousarray(evecs[:, ::-1].T), u_based_decision=False)
            std = np.sqrt(np.diag(m2) / (n - 1))
        else:
            # SVD solvers: small or wide data, a separate finiteness pass costs little here
            _sk_assert_all_finite(X, input_name="X", estimator_name="PCA")
            mean = X.mean(axis=0, dtype=np.float64)
            Xc = X.astype(np.float64) - mean
            std = Xc.std(axis=0, ddof=1)
            if solver == "full":
                U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
            else:
                from sklearn.utils.extmath import randomized_svd

                U, S, Vt = randomized_svd(Xc, n_components=nc, n_oversamples=self.n_oversamples,
                                          n_iter=self.iterated_power,
                                          power_iteration_normalizer=self.power_iteration_normalizer,
                                          flip_sign=False, random_state=self.random_state)
            U, Vt = _sk_svd_flip(U, Vt, u_based_decision=False)
            ev = S ** 2 / (n - 1)
        if solver == "randomized":
            total = float(np.square(Xc).sum() / (n - 1))
        else:
            total = float(ev.sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = ev / total
        if nc == "mle":
            from sklearn.decomposition._pca import _infer_dimension

            nc = int(_infer_dimension(ev, n))
        elif 0 < nc < 1:
            nc = int(np.searchsorted(np.cumsum(ratio), nc, side="right")) + 1
        nc = int(nc)
        if solver == "randomized":
            self.noise_variance_ = (total - ev.sum()) / (k_max - nc) if nc < k_max else 0.0
        else:
            self.noise_variance_ = float(ev[nc:].mean()) if nc < k_max else 0.0
        dt = X.dtype
        self._fit_svd_solver = solver
        self.n_samples_ = n
        self.n_components_ = nc
        self.mean_ = mean.astype(dt)
        self.components_ = np.ascontiguousarray(Vt[:nc]).astype(dt)
        self.explained_variance_ = ev[:nc].astype(dt)
        self.explained_variance_ratio_ = ratio[:nc].astype(dt)
        self.singular_values_ = S[:nc].astype(dt)
        self.noise_variance_ = dt.type(self.noise_variance_)
        self._mean64 = mean
        self._W = self._projection(Vt[:nc], ev[:nc], dt)
        self._direct = _direct_product_ok(mean, std, self._W)
        return X, U, S

    def _projection(self, Vt, ev, dt):
        """components^T, with whitening folded in (scikit-learn's 1 / max(sqrt(ev), eps))."""
        W = Vt.T
        if self.whiten:
            W = W / np.maximum(np.sqrt(ev.astype(dt)).astype(np.float64), np.finfo(dt).eps)
        return np.asarray(W, dtype=dt, order="F")

    def fit(self, X, y=None):
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        X, U, S = self._fit(X)
        if U is not None:  # full / randomized SVD: the projection is U S (U sqrt(n - 1) whitened)
            U = U[:, : self.n_components_]
            Y = U * (np.sqrt(X.shape[0] - 1) if self.whiten else S[: self.n_components_])
            return Y.astype(X.dtype)
        return _centered_matmul(X, self._mean64, self._W, "PCA", check_finite=False, direct=self._direct)

    def transform(self, X):
        _sk_check_is_fitted(self)
        X = _validate_dense(self, X, reset=False)
        return _centered_matmul(X, self._mean64, self._W, "PCA", check_finite=True, direct=self._direct)

    def inverse_transform(self, X):
        _sk_check_is_fitted(self)
        X = _sk_check_array(X, input_name="X", dtype=[np.float64, np.float32])
        if X.shape[1] != self.n_components_:
            raise ValueError(f"X has {X.shape[1]} features, but PCA.inverse_transform is expecting "
                             f"{self.n_components_} (n_components_) features as input.")
        W = self.components_
        if self.whiten:
            W = np.sqrt(self.explained_variance_[:, None]) * W
        return X @ W + self.mean_

    def get_covariance(self):
        """Covariance of the data under the fitted probabilistic PCA model (as scikit-learn)."""
        _sk_check_is_fitted(self)
        comp = self.components_
        ev = self.explained_variance_
        if self.whiten:
            comp = comp * np.sqrt(ev[:, None])
        ev_diff = np.maximum(ev - self.noise_variance_, 0.0)
        cov = (comp.T * ev_diff) @ comp
        cov.flat[:: len(cov) + 1] += self.noise_variance_
        return cov


# ---------------------------------------------------------------- ZCA whitening

class ZCAWhitening(_SkPrefixFeaturesOut, _SkTransformerMixin, _SkBaseEstimator):
    """ZCA whitening in the original basis (cs231n notes): with X centred and
    cov = X^T X / N = U diag(S) U^T, transform(X) = (X - mean_) U diag(1 / sqrt(S + eps)) U^T.

    The covariance comes from the blocked C++ kernel (one pass over X, float64, Chan-merged,
    deterministic; the same as PCA's ``covariance_eigh``), its eigendecomposition from
    ``numpy.linalg.eigh``, and the transform is a BLAS GEMM on blocks of X centred in cache.
    Attributes: mean_, components_ (U^T, rows by decreasing variance, scikit-learn's svd_flip
    signs), explained_variance_ (S), whitening_ (the d x d matrix applied), dewhitening_ (its
    inverse), n_samples_, n_features_in_ (feature_names_in_ for DataFrames). NaN or infinite
    input raises ValueError; output feature names are zcawhitening0, zcawhitening1, ...
    """

    def __init__(self, eps: float = 1e-5):
        self.eps = eps

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self):
        return self.whitening_.shape[1]

    def fit(self, X, y=None):
        self._fit(X)
        return self

    def _fit(self, X):
        eps = self.eps
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not float(eps) >= 0:
            raise ValueError(f"eps: expected a non-negative number, got {eps!r}")
        X = _validate_dense(self, X, reset=True)
        n = X.shape[0]
        mean, m2 = _centered_gram(X, "ZCAWhitening")
        evals, evecs = np.linalg.eigh(m2 / n)
        S = np.clip(evals[::-1], 0.0, None)
        _, Ut = _sk_svd_flip(None, np.ascontiguousarray(evecs[:, ::-1].T), u_based_decision=False)
        U = Ut.T
        dt = X.dtype
        self.n_samples_ = n
        self.mean_ = mean.astype(dt)
        self._mean64 = mean
        self.components_ = Ut.astype(dt)
        self.explained_variance_ = S.astype(dt)
        self.whitening_ = ((U / np.sqrt(S + float(eps))) @ U.T).astype(dt)
        self.dewhitening_ = ((U * np.sqrt(S + float(eps))) @ U.T).astype(dt)
        self._W = np.asfortranarray(self.whitening_)
        self._direct = _direct_product_ok(mean, np.sqrt(np.diag(m2) / n), self._W)
        return X

    def fit_transform(self, X, y=None):
        X = self._fit(X)
        return _centered_matmul(X, self._mean64, self._W, "ZCAWhitening", check_finite=False,
                                direct=self._direct)

    def transform(self, X):
        _sk_check_is_fitted(self)
        X = _validate_dense(self, X, reset=False)
        return _centered_matmul(X, self._mean64, self._W, "ZCAWhitening", check_finite=True,
                                direct=self._direct)

    def inverse_transform(self, X):
        _sk_check_is_fitted(self)
        X = _validate_dense(self, X, reset=False)
        Y = X @ self.dewhitening_ + self.mean_
        if not _finite_sum(Y):
            _nonfinite_input(X, "ZCAWhitening")
        return Y


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
