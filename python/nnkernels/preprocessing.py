"""Data preprocessing estimators built on scikit-learn: scalers, PCA, ZCA whitening, image
zero-centering. Drop-in replacements for the scikit-learn estimators of the same name:

    from nnkernels.preprocessing import StandardScaler   # instead of sklearn.preprocessing
    Xs = StandardScaler().fit_transform(X)

The estimators derive from scikit-learn's ``BaseEstimator``, ``TransformerMixin`` and
``OneToOneFeatureMixin`` and validate their input with scikit-learn's own ``validate_data`` /
``check_is_fitted``, so parameters, fitted attributes, ``partial_fit``, ``set_output``
(pandas, polars), ``get_feature_names_out``, ``feature_names_in_``, error messages and
``sklearn.utils.estimator_checks.check_estimator`` behave as scikit-learn's. Only the heavy
loops differ: they run in C++ (csrc/cpu/preprocessing.cpp, float64 accumulation, bitwise
independent of the thread count): blocked two-pass column moments merged with Chan, Golub &
LeVeque's pairwise update (weighted for ``sample_weight``, NaN skipped with per-column counts),
min/max, per-column percentiles by selection instead of sorting, and fused per-column affine
transforms and row normalisation in one pass (scikit-learn copies X and then updates it in place
once per operation).

NaN, as in scikit-learn: StandardScaler, MinMaxScaler and RobustScaler ignore NaN in ``fit`` /
``partial_fit`` (per-column counts: ``n_samples_seen_`` is per column when they differ) and keep
it in ``transform``; infinite values raise ValueError. Normalizer, PCA, ZCAWhitening and
ImageZeroCentering raise ValueError for NaN or infinity. Sparse input is refused with
scikit-learn's message (scikit-learn accepts it for StandardScaler(with_mean=False),
RobustScaler(with_centering=False) and Normalizer; convert with ``.toarray()``).

GPU arrays (CuPy, PyTorch CUDA) are accepted by StandardScaler, MinMaxScaler and Normalizer
(CUDA kernels) and by RobustScaler's transform; on the GPU NaN is not ignored (ValueError).
References: :mod:`nnkernels.reference.preprocessing`.

Requires scikit-learn >= 1.6 (``pip install 'nnkernels[sklearn]'``); the rest of nnkernels does not.
"""
from __future__ import annotations

import inspect
import numbers

import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, _fit_context
    from sklearn.exceptions import NotFittedError
    from sklearn.preprocessing import MinMaxScaler as _SkMinMaxScaler
    from sklearn.preprocessing import Normalizer as _SkNormalizer
    from sklearn.preprocessing import RobustScaler as _SkRobustScaler
    from sklearn.preprocessing import StandardScaler as _SkStandardScaler
    from sklearn.utils._param_validation import StrOptions
    from sklearn.utils.validation import (
        FLOAT_DTYPES,
        _assert_all_finite,
        _check_sample_weight,
        check_array,
        check_is_fitted,
        validate_data,
    )
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "nnkernels.preprocessing needs scikit-learn >= 1.6 (its estimators are built on scikit-learn's base "
        "classes and validation): pip install 'nnkernels[sklearn]' or pip install 'scikit-learn>=1.6'") from exc

_SKLEARN_MIN = (1, 6)
if tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit()) < _SKLEARN_MIN:  # pragma: no cover
    raise ImportError(f"nnkernels.preprocessing needs scikit-learn >= 1.6, found {sklearn.__version__}: "
                      "pip install 'nnkernels[sklearn]'")

from . import _core, _gpu  # noqa: E402

__all__ = [
    "StandardScaler", "MinMaxScaler", "RobustScaler", "Normalizer", "PCA", "ZCAWhitening",
    "ImageZeroCentering", "zero_center", "NotFittedError",
]

_EPS64 = np.finfo(np.float64).eps
_FLAGS_MEAN, _FLAGS_MOMENTS, _FLAGS_MINMAX = 1, 2, 4
_PRESERVED = ["float64", "float32"]


# ---------------------------------------------------------------- shared helpers

def _is_gpu(X) -> bool:
    return type(X) is not np.ndarray and _gpu.is_gpu_array(X)


def _gpu_validate(est, X, reset: bool):
    """GPU arrays bypass validate_data (it would copy them to the host): shape and feature count only."""
    shape = tuple(X.shape)
    if len(shape) != 2:
        raise ValueError(f"Expected 2D array, got {len(shape)}D array instead")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"Found array with shape {shape} while a minimum of 1 sample and 1 feature is required "
                         f"by {type(est).__name__}.")
    if reset:
        est.n_features_in_ = int(shape[1])
        if hasattr(est, "feature_names_in_"):
            del est.feature_names_in_
    elif getattr(est, "n_features_in_", shape[1]) != shape[1]:
        raise ValueError(f"X has {shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")
    return X


def _gpu_no_nan(stats) -> None:
    if not all(np.isfinite(s).all() for s in stats):
        raise ValueError("Input X contains NaN or infinity: NaN-ignoring statistics run on the CPU only; "
                         "pass a NumPy array or impute missing values first")


def _inf_error(X) -> ValueError:
    return ValueError(f"Input X contains infinity or a value too large for {X.dtype!r}.")


def _in_place(X: np.ndarray, copy: bool):
    """X itself as the output of an in-place transform (copy=False, writeable, C or F contiguous:
    scikit-learn writes into X then too), else None: the kernel returns a new array in X's
    memory order (placed apart from X, written with ordinary stores into its fresh pages)."""
    if not copy and X.flags.writeable and (X.flags.c_contiguous or X.flags.f_contiguous):
        return X
    return None


def _affine(X, shift, scale, offset, copy: bool):
    """(X - shift) * scale + offset per column in one pass (float64 arithmetic), NaN kept."""
    if _is_gpu(X):
        return _gpu.prep_affine(X, shift, scale, offset)
    return _core.prep_affine(X, np.asarray(shift, np.float64), np.asarray(scale, np.float64),
                             None if offset is None else np.asarray(offset, np.float64), _in_place(X, copy))


def _constant_features(var, mean, n_samples):
    """scikit-learn's test for a feature indistinguishable from a constant (the error bound of
    the two-pass variance, Chan, Golub & LeVeque; sklearn.preprocessing._data._is_constant_feature)."""
    return var <= n_samples * _EPS64 * var + (n_samples * mean * _EPS64) ** 2


def _zeros_to_one(scale, constant_mask=None):
    """Scale 1 for constant features (sklearn.preprocessing._data._handle_zeros_in_scale):
    ``constant_mask``, or scales below 10 eps of their dtype. Returns a new array."""
    scale = np.array(scale, copy=True)
    if constant_mask is None:
        constant_mask = scale < 10 * np.finfo(scale.dtype).eps
    scale[constant_mask] = 1.0
    return scale


def _validate_transform(est, X, copy: bool, allow_nan: bool = True, dtype=FLOAT_DTYPES):
    """scikit-learn's transform-time validation. copy is False here (the kernels write a new
    array themselves, so validate_data's copy would be a wasted pass), except for in-place
    transforms of arrays that validate_data must convert anyway."""
    return validate_data(est, X, reset=False, accept_sparse=False, dtype=dtype, copy=False,
                         ensure_all_finite="allow-nan" if allow_nan else True)


def _check_features(est, X) -> None:
    """Feature count for inverse_transform (which scikit-learn validates with check_array only)."""
    if X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")


# Helpers kept for PCA / ZCAWhitening below (rewritten separately on scikit-learn's base classes).

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


def _nonfinite_error(X) -> ValueError:
    return ValueError("X: input contains NaN or infinity; nnkernels.preprocessing does not ignore NaN "
                      "(remove or impute missing values first)")


class _Estimator:
    """get_params / set_params / repr from the constructor signature (PCA / ZCAWhitening until
    they move to scikit-learn's BaseEstimator)."""

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
    """(mean, m2, min, max, finite) of the columns, NaN not skipped (PCA / ZCAWhitening)."""
    return _core.prep_col_stats(X, flags)


# ---------------------------------------------------------------- StandardScaler

class StandardScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardise features: (x - mean_) / scale_, scale_ = sqrt(var_) (population variance),
    as :class:`sklearn.preprocessing.StandardScaler`.

    NaN is skipped in ``fit``/``partial_fit`` (per-column counts) and kept by ``transform``.
    ``sample_weight`` weights the samples (weighted two-pass moments, weighted Chan merge).
    ``partial_fit`` merges batches exactly (Chan, Golub & LeVeque's pairwise update), so data
    larger than memory can be fitted in pieces. Attributes: mean_, var_, scale_ (float64),
    n_samples_seen_ (int, per column when NaN made the counts differ; float with sample_weight),
    n_features_in_, feature_names_in_.
    """

    _parameter_constraints: dict = dict(_SkStandardScaler._parameter_constraints)

    def __init__(self, *, copy=True, with_mean=True, with_std=True):
        self.copy = copy
        self.with_mean = with_mean
        self.with_std = with_std

    def _reset(self):
        for a in ("mean_", "var_", "scale_", "n_samples_seen_", "_stats_"):
            if hasattr(self, a):
                delattr(self, a)

    def fit(self, X, y=None, sample_weight=None):
        self._reset()
        return self.partial_fit(X, y, sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        first = not hasattr(self, "n_samples_seen_")
        if _is_gpu(X):
            return self._partial_fit_gpu(X, first, sample_weight)
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False, reset=first)
        return self._update(X, first, sample_weight)

    def _update(self, X, first: bool, sample_weight):
        """Merge the statistics of validated X (NaN skipped; infinity raises) into the fit."""
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        if self.with_mean or self.with_std:
            count, mean, m2, _, _, finite = _core.prep_nan_col_stats(
                X, _FLAGS_MOMENTS, sample_weight, None if first else self._stats_)
        else:
            # scikit-learn counts the non-NaN values here, unweighted, and keeps no moments
            count, mean, _, _, _, finite = _core.prep_nan_col_stats(X, _FLAGS_MEAN)
            if not first:
                count = count + self._stats_[0]
            m2 = np.zeros_like(mean)
        if not finite:
            raise _inf_error(X)
        self._stats_ = (count, mean, m2)
        # n_samples_seen_'s dtype as scikit-learn's: float64 from its moment update, else the
        # counts' int64 (X's dtype for a weighted call)
        if self.with_mean or self.with_std:
            count_dtype = np.float64
        else:
            count_dtype = np.int64 if sample_weight is None else X.dtype
        self._set_attributes(count, mean, m2, count_dtype)
        return self

    def _set_attributes(self, count, mean, m2, count_dtype):
        n = count.astype(count_dtype)
        self.n_samples_seen_ = n[0] if n.max() == n.min() else n
        if count.min() > 0:
            var = m2 / count
        else:  # columns without values (all NaN): NaN statistics, as scikit-learn
            empty = ~(count > 0)
            mean, var = mean.copy(), m2 / np.where(empty, 1.0, count)
            mean[empty] = var[empty] = np.nan
        if self.with_mean or self.with_std:
            self.mean_ = mean
        else:
            self.mean_ = None
        if self.with_std:
            self.var_ = var
            self.scale_ = _zeros_to_one(np.sqrt(var), _constant_features(var, mean, self.n_samples_seen_))
        else:
            self.var_ = None
            self.scale_ = None

    def _partial_fit_gpu(self, X, first, sample_weight):
        if sample_weight is not None:
            raise ValueError("sample_weight: not supported for GPU arrays (pass NumPy arrays)")
        _gpu_validate(self, X, reset=first)
        mean, m2, _, _ = _gpu.prep_col_stats(X)
        _gpu_no_nan((mean, m2))
        count = np.full(mean.shape, float(X.shape[0]))
        if not first:
            # the same pairwise update as the kernels' block merge, on the per-column vectors
            na, ma, m2a = self._stats_
            n = na + count
            d = mean - ma
            mean, m2, count = ma + d * (count / n), m2a + m2 + d * d * (na * count / n), n
        self._stats_ = (count, mean, m2)
        self._set_attributes(count, mean, m2, np.float64)
        return self

    def _params(self, inverse: bool):
        d = self.n_features_in_
        mean = self.mean_ if self.with_mean else np.zeros(d)
        scale = self.scale_ if self.with_std else np.ones(d)
        if inverse:
            return np.zeros(d), scale, mean
        return mean, 1.0 / scale, None

    def transform(self, X, copy=None):
        check_is_fitted(self)
        copy = self.copy if copy is None else copy
        if _is_gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *self._params(False), True)
        X = _validate_transform(self, X, copy)
        return _affine(X, *self._params(False), copy)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, sample_weight=None):
        # X is validated once: the statistics' pass found no infinity, so transform it directly
        if _is_gpu(X):
            return self.fit(X, y, sample_weight).transform(X)
        self._reset()
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        self._update(X, True, sample_weight)
        return _affine(X, *self._params(False), self.copy)

    def inverse_transform(self, X, copy=None):
        check_is_fitted(self)
        copy = self.copy if copy is None else copy
        if _is_gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *self._params(True), True)
        X = check_array(X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan")
        _check_features(self, X)
        return _affine(X, *self._params(True), copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
        return tags


# ---------------------------------------------------------------- MinMaxScaler

class MinMaxScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale each feature to ``feature_range``: X * scale_ + min_, as
    :class:`sklearn.preprocessing.MinMaxScaler` (NaN skipped in fit, kept in transform).

    Attributes (dtype of X): data_min_, data_max_, data_range_, scale_, min_; n_samples_seen_,
    n_features_in_, feature_names_in_. The kernel evaluates (x - data_min_) * scale_ + low in
    float64, which avoids the cancellation of x * scale_ + min_ for data far from zero.
    """

    _parameter_constraints: dict = dict(_SkMinMaxScaler._parameter_constraints)

    def __init__(self, feature_range=(0, 1), *, copy=True, clip=False):
        self.feature_range = feature_range
        self.copy = copy
        self.clip = clip

    def _reset(self):
        for a in ("scale_", "min_", "n_samples_seen_", "data_min_", "data_max_", "data_range_"):
            if hasattr(self, a):
                delattr(self, a)

    def fit(self, X, y=None):
        self._reset()
        return self.partial_fit(X, y)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        first = not hasattr(self, "n_samples_seen_")
        if not _is_gpu(X):
            X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False,
                              reset=first)
        return self._update(X, first)

    def _check_range(self):
        if self.feature_range[0] >= self.feature_range[1]:
            raise ValueError("Minimum of desired feature range must be smaller than maximum. Got %s."
                             % str(self.feature_range))

    def _update(self, X, first: bool):
        """Merge the column minima/maxima of validated X (NaN skipped; infinity raises)."""
        self._check_range()
        lo, hi = self.feature_range
        if _is_gpu(X):
            _gpu_validate(self, X, reset=first)
            mean, _, mn, mx = _gpu.prep_col_stats(X)
            _gpu_no_nan((mean,))
            dt = np.dtype(str(X.dtype).replace("torch.", ""))
        else:
            _, _, _, mn, mx, finite = _core.prep_nan_col_stats(X, _FLAGS_MINMAX)
            if not finite:
                raise _inf_error(X)
            dt = X.dtype
        mn, mx = mn.astype(dt), mx.astype(dt)
        if not first:
            mn = np.minimum(self.data_min_, mn)
            mx = np.maximum(self.data_max_, mx)
            self.n_samples_seen_ += X.shape[0]
        else:
            self.n_samples_seen_ = X.shape[0]
        rng = mx - mn
        self.scale_ = ((hi - lo) / _zeros_to_one(rng)).astype(dt)
        self.min_ = (lo - mn * self.scale_).astype(dt)
        self.data_min_, self.data_max_, self.data_range_ = mn, mx, rng
        return self

    def _kernel_params(self):
        d = self.n_features_in_
        return (self.data_min_.astype(np.float64), self.scale_.astype(np.float64),
                np.full(d, float(self.feature_range[0])))

    def _finish(self, Y):
        if self.clip:
            lo, hi = self.feature_range
            if _is_gpu(Y):
                _gpu.clip_(Y, lo, hi)
            else:
                np.clip(Y, lo, hi, out=Y)
        return Y

    def transform(self, X):
        check_is_fitted(self)
        if _is_gpu(X):
            return self._finish(_affine(_gpu_validate(self, X, reset=False), *self._kernel_params(), True))
        X = _validate_transform(self, X, self.copy)
        return self._finish(_affine(X, *self._kernel_params(), self.copy))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        # X is validated once: the min/max pass found no infinity, so transform it directly
        if _is_gpu(X):
            return self.fit(X, y).transform(X)
        self._reset()
        self._check_range()
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        self._update(X, True)
        return self._finish(_affine(X, *self._kernel_params(), self.copy))

    def inverse_transform(self, X):
        check_is_fitted(self)
        mn, scale, low = self._kernel_params()
        if _is_gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), low, 1.0 / scale, mn, True)
        X = check_array(X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan")
        _check_features(self, X)
        return _affine(X, low, 1.0 / scale, mn, self.copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
        return tags


# ---------------------------------------------------------------- RobustScaler

class RobustScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Centre on the median and scale by a quantile range (default the interquartile range),
    as :class:`sklearn.preprocessing.RobustScaler`: NaN skipped in fit (np.nanpercentile's
    "linear" method), kept in transform.

    The percentiles are found per column by selection in C++ (Floyd-Rivest style sampling and
    quickselect), not by sorting. Attributes: center_, scale_ (dtype of X), n_features_in_,
    feature_names_in_.
    """

    _parameter_constraints: dict = dict(_SkRobustScaler._parameter_constraints)

    def __init__(self, *, with_centering=True, with_scaling=True, quantile_range=(25.0, 75.0), copy=True,
                 unit_variance=False):
        self.with_centering = with_centering
        self.with_scaling = with_scaling
        self.quantile_range = quantile_range
        self.copy = copy
        self.unit_variance = unit_variance

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        if _is_gpu(X):  # percentiles on the host; transforms run on the CUDA kernels
            _gpu_validate(self, X, reset=True)
            X = _gpu.to_host(X)
        else:
            X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        return self._fit_validated(X)

    def _fit_validated(self, X):
        q_min, q_max = self.quantile_range
        if not 0 <= q_min <= q_max <= 100:
            raise ValueError("Invalid quantile range: %s" % str(self.quantile_range))
        qs = sorted({float(q_min), 50.0, float(q_max)})
        Q = _core.prep_col_quantiles(X, qs)  # float64; ValueError for infinity
        byq = {q: Q[i] for i, q in enumerate(qs)}
        # dtypes as scikit-learn's: center_ from np.nanmedian (X's dtype), scale_ float64
        self.center_ = byq[50.0].astype(X.dtype) if self.with_centering else None
        if self.with_scaling:
            self.scale_ = _zeros_to_one(byq[float(q_max)] - byq[float(q_min)])
            if self.unit_variance:
                from scipy import stats  # a dependency of scikit-learn

                adjust = stats.norm.ppf(q_max / 100.0) - stats.norm.ppf(q_min / 100.0)
                self.scale_ = self.scale_ / adjust
        else:
            self.scale_ = None
        return self

    def _params(self, inverse: bool):
        d = self.n_features_in_
        center = self.center_ if self.with_centering else np.zeros(d)
        scale = self.scale_ if self.with_scaling else np.ones(d)
        if inverse:
            return np.zeros(d), scale, center
        return center, 1.0 / np.asarray(scale, np.float64), None

    def transform(self, X):
        check_is_fitted(self)
        if _is_gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *self._params(False), True)
        X = _validate_transform(self, X, self.copy)
        return _affine(X, *self._params(False), self.copy)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        # X is validated once: the percentile pass found no infinity, so transform it directly
        if _is_gpu(X):
            return self.fit(X, y).transform(X)
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        self._fit_validated(X)
        return _affine(X, *self._params(False), self.copy)

    def inverse_transform(self, X):
        check_is_fitted(self)
        if _is_gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *self._params(True), True)
        X = check_array(X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan")
        _check_features(self, X)
        return _affine(X, *self._params(True), self.copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
        return tags


# ---------------------------------------------------------------- Normalizer

class Normalizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale each sample (row) to unit norm ('l2', 'l1' or 'max'), as
    :class:`sklearn.preprocessing.Normalizer`: stateless (``fit`` only validates), rows of norm 0
    are unchanged, NaN and infinity raise ValueError. The row norm accumulates in float64."""

    _parameter_constraints: dict = dict(_SkNormalizer._parameter_constraints)

    def __init__(self, norm="l2", *, copy=True):
        self.norm = norm
        self.copy = copy

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        if _is_gpu(X):
            _gpu_validate(self, X, reset=True)
        else:
            validate_data(self, X, accept_sparse=False)
        return self

    def _normalize(self, X, copy: bool):
        out = _in_place(X, copy)
        if out is not None:  # in place: nothing may be written before the check
            _assert_all_finite(X, input_name="X", estimator_name=type(self).__name__)
        out, norms = _core.prep_normalize(X, self.norm, out)
        if not np.isfinite(norms).all():
            # NaN or infinity in X (the check runs on the norms, not as a pass of its own): raise
            # scikit-learn's error; a finite X whose norms overflow float64 is normalised anyway
            _assert_all_finite(X, input_name="X", estimator_name=type(self).__name__)
        return out

    def transform(self, X, copy=None):
        copy = self.copy if copy is None else copy
        if _is_gpu(X):
            _gpu_validate(self, X, reset=False)
            Y, norms = _gpu.prep_normalize(X, self.norm)
            _gpu_no_nan((norms,))
            return Y
        X = validate_data(self, X, accept_sparse=False, reset=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        return self._normalize(X, copy)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        if _is_gpu(X):
            return self.fit(X, y).transform(X)
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        return self._normalize(X, self.copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
        return tags


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

def _image_channels(shape, data_format: str):
    if len(shape) != 4:
        raise ValueError(f"Expected a 4-D batch of images ({data_format}), got an array of shape {tuple(shape)}")
    return shape[1] if data_format == "NCHW" else shape[3]


class ImageZeroCentering(TransformerMixin, BaseEstimator):
    """Zero-centre images by subtracting the per-channel mean (``mode="channel"``) or the mean
    image (``mode="image"``), as in the cs231n notes; batches are (N, C, H, W) (``"NCHW"``) or
    (N, H, W, C) (``"NHWC"``). scikit-learn estimator API on 4-D input (tags: not 2-D data);
    NaN or infinity raise ValueError. Attributes: mean_ (shape (C,) or the image shape),
    n_samples_seen_, n_features_in_ (values per image); ``partial_fit`` accumulates the mean
    over batches (exact pairwise merge).
    """

    _parameter_constraints: dict = {
        "mode": [StrOptions({"channel", "image"})],
        "data_format": [StrOptions({"NCHW", "NHWC"})],
    }

    def __init__(self, mode="channel", data_format="NCHW"):
        self.mode = mode
        self.data_format = data_format

    def _as_images(self, X) -> np.ndarray:
        X = check_array(X, allow_nd=True, dtype=FLOAT_DTYPES, ensure_min_features=1,
                        input_name="X", estimator=self)
        _image_channels(X.shape, self.data_format)
        return X

    def fit(self, X, y=None):
        for a in ("mean_", "n_samples_seen_", "_image_shape", "_mean_img"):
            if hasattr(self, a):
                delattr(self, a)
        return self.partial_fit(X, y)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        X = self._as_images(X)
        first = not hasattr(self, "n_samples_seen_")
        if not first and X.shape[1:] != self._image_shape:
            raise ValueError(f"X: expected images of shape {self._image_shape}, got {X.shape[1:]}")
        flat = X.reshape(X.shape[0], -1)
        _, mean_img, _, _, _, _ = _core.prep_nan_col_stats(
            flat, _FLAGS_MEAN, None, None if first else (np.full(flat.shape[1], float(self.n_samples_seen_)),
                                                         self._mean_img, np.zeros(flat.shape[1])))
        n = X.shape[0]
        if first:
            self._image_shape = X.shape[1:]
            self.n_features_in_ = int(flat.shape[1])
            self.n_samples_seen_ = n
        else:
            self.n_samples_seen_ += n
        self._mean_img = mean_img
        img = mean_img.reshape(self._image_shape)
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
        check_is_fitted(self)
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # 4-D image batches; scikit-learn's data checks do not apply
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
        return tags


def zero_center(X, mode: str = "channel", data_format: str = "NCHW"):
    """Subtract the per-channel mean or the mean image of a batch; returns (centred, mean)."""
    est = ImageZeroCentering(mode=mode, data_format=data_format).fit(X)
    return est.transform(X), est.mean_
