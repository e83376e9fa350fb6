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

GPU arrays (CuPy arrays, torch CUDA tensors) are accepted by StandardScaler, MinMaxScaler,
RobustScaler and Normalizer; transforms return an array of X's library on its device. The ops run
on the device and never copy between host and device themselves; the fitted attributes stay NumPy
(scikit-learn's convention), so the estimators convert explicitly, at their level: ``fit`` copies
the per-column statistics to the host (2-3 vectors of n_features values; RobustScaler's percentiles
have no CUDA kernel, so its ``fit`` copies X itself to the host), and ``transform`` /
``inverse_transform`` use float64 device copies of the fitted parameters, made on the first call
on a device and kept until the estimator is fitted again. Normalizer's ``transform`` copies the row
norms to the host to check them for NaN / infinity. On the GPU NaN is not ignored (ValueError), and
``sample_weight`` is not supported. References: :mod:`nnkernels.reference.preprocessing`.

Requires scikit-learn >= 1.6 (``pip install 'nnkernels[sklearn]'``); the rest of nnkernels does not.
"""
from __future__ import annotations

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

from . import _arraylib, _core  # noqa: E402

__all__ = [
    "StandardScaler", "MinMaxScaler", "RobustScaler", "Normalizer", "PCA", "ZCAWhitening",
    "ImageZeroCentering", "zero_center", "NotFittedError",
]

_EPS64 = np.finfo(np.float64).eps
_FLAGS_MEAN, _FLAGS_MOMENTS, _FLAGS_MINMAX = 1, 2, 4
_PRESERVED = ["float64", "float32"]


# ---------------------------------------------------------------- shared helpers

# A CUDA X runs the same ops as a host X; the three helpers below are the estimators' only contact
# with array libraries (all library knowledge is nnkernels._arraylib): _gpu tells a GPU array (its
# (library, device) key) from host data, _host_stats copies the small statistics of a GPU fit to the
# host, _params_for places the fitted per-column parameters where X is.
_gpu = _arraylib.device_key


def _host_stats(*stats) -> list:
    """NumPy copies of the per-column statistics (or row norms) a GPU op returned (a visible device ->
    host copy of a few vectors, never of X), checked for NaN / infinity."""
    host = [_arraylib.to_host(s) for s in stats]
    if not all(np.isfinite(h).all() for h in host):
        raise ValueError("Input X contains NaN or infinity: NaN-ignoring statistics run on the CPU only; "
                         "pass a NumPy array or impute missing values first")
    return host


def _params_for(est, X, which: str, params: tuple) -> tuple:
    """The fitted per-column kernel parameters (shift, scale, offset or None) for X: as they are (NumPy)
    for host X; for a GPU X float64 copies on X's device, made by its library once per device and kept
    on the estimator until it is fitted again (_forget_device_params)."""
    key = _gpu(X)
    if key is None:
        return params
    cache = est.__dict__.setdefault("_device_params", {})
    if (which, key) not in cache:
        cache[(which, key)] = tuple(None if p is None else _arraylib.to_device_like(np.asarray(p, np.float64), X)
                                    for p in params)
    return cache[(which, key)]


def _forget_device_params(est) -> None:
    est.__dict__.pop("_device_params", None)


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


def _inf_error(X) -> ValueError:
    return ValueError(f"Input X contains infinity or a value too large for {X.dtype!r}.")


def _in_place(X, copy: bool):
    """X itself as the output of an in-place transform (copy=False, a writeable C or F contiguous
    NumPy array: scikit-learn writes into X then too), else None: the kernel returns a new array in
    X's memory order (placed apart from X, written with ordinary stores into its fresh pages)."""
    if not copy and isinstance(X, np.ndarray) and X.flags.writeable and (X.flags.c_contiguous or X.flags.f_contiguous):
        return X
    return None


def _affine(X, shift, scale, offset, copy: bool):
    """(X - shift) * scale + offset per column in one pass (float64 arithmetic), NaN kept; the
    parameters live where X does (_params_for)."""
    return _core.prep_affine(X, shift, scale, offset, _in_place(X, copy))


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


def _validate_inverse(est, X):
    """inverse_transform's validation: scikit-learn's check_array (as its scalers do there, NaN
    allowed) and the fitted feature count."""
    X = check_array(X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite="allow-nan")
    if X.shape[1] != est.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
                         f"{est.n_features_in_} features as input.")
    return X


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
        if _gpu(X):
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
        _forget_device_params(self)
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
        mean, m2, _, _, _ = _core.prep_col_stats(X, _FLAGS_MOMENTS)  # device arrays
        mean, m2 = _host_stats(mean, m2)
        count = np.full(mean.shape, float(X.shape[0]))
        if not first:
            # the same pairwise update as the kernels' block merge, on the host copies of the per-column
            # vectors (the CUDA statistics take no prior)
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
        if _gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *_params_for(self, X, "transform", self._params(False)),
                           True)
        X = _validate_transform(self, X, copy)
        return _affine(X, *self._params(False), copy)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, sample_weight=None):
        # X is validated once: the statistics' pass found no infinity, so transform it directly
        if _gpu(X):
            return self.fit(X, y, sample_weight).transform(X)
        self._reset()
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        self._update(X, True, sample_weight)
        return _affine(X, *self._params(False), self.copy)

    def inverse_transform(self, X, copy=None):
        check_is_fitted(self)
        copy = self.copy if copy is None else copy
        if _gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *_params_for(self, X, "inverse", self._params(True)),
                           True)
        X = _validate_inverse(self, X)
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
        if not _gpu(X):
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
        _forget_device_params(self)
        lo, hi = self.feature_range
        if _gpu(X):
            _gpu_validate(self, X, reset=first)
            # the mean as well: min/max skip NaN, the mean shows it (NaN is not ignored on the GPU)
            mean, _, mn, mx, _ = _core.prep_col_stats(X, _FLAGS_MEAN | _FLAGS_MINMAX)
            _, mn, mx = _host_stats(mean, mn, mx)
            dt = np.dtype(np.float32 if X.dtype.itemsize == 4 else np.float64)  # the op took float32/float64 only
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
            _arraylib.clip_(Y, *self.feature_range)  # in place, where Y is
        return Y

    def transform(self, X):
        check_is_fitted(self)
        if _gpu(X):
            return self._finish(_affine(_gpu_validate(self, X, reset=False),
                                        *_params_for(self, X, "transform", self._kernel_params()), True))
        X = _validate_transform(self, X, self.copy)
        return self._finish(_affine(X, *self._kernel_params(), self.copy))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        # X is validated once: the min/max pass found no infinity, so transform it directly
        if _gpu(X):
            return self.fit(X, y).transform(X)
        self._reset()
        self._check_range()
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        self._update(X, True)
        return self._finish(_affine(X, *self._kernel_params(), self.copy))

    def inverse_transform(self, X):
        check_is_fitted(self)
        mn, scale, low = self._kernel_params()
        if _gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *_params_for(self, X, "inverse", (low, 1.0 / scale, mn)),
                           True)
        X = _validate_inverse(self, X)
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
        if _gpu(X):  # percentiles have no CUDA kernel: X is copied to the host; transforms run on the device
            _gpu_validate(self, X, reset=True)
            X = _arraylib.to_host(X)
        else:
            X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        return self._fit_validated(X)

    def _fit_validated(self, X):
        _forget_device_params(self)
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
        if _gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *_params_for(self, X, "transform", self._params(False)),
                           True)
        X = _validate_transform(self, X, self.copy)
        return _affine(X, *self._params(False), self.copy)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        # X is validated once: the percentile pass found no infinity, so transform it directly
        if _gpu(X):
            return self.fit(X, y).transform(X)
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        self._fit_validated(X)
        return _affine(X, *self._params(False), self.copy)

    def inverse_transform(self, X):
        check_is_fitted(self)
        if _gpu(X):
            return _affine(_gpu_validate(self, X, reset=False), *_params_for(self, X, "inverse", self._params(True)),
                           True)
        X = _validate_inverse(self, X)
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
        if _gpu(X):
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
        if _gpu(X):
            _gpu_validate(self, X, reset=False)
            Y, norms = _core.prep_normalize(X, self.norm)
            _host_stats(norms)  # a host copy of the n_samples norms: NaN / infinity in X raise, as on the CPU
            return Y
        X = validate_data(self, X, accept_sparse=False, reset=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        return self._normalize(X, copy)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        if _gpu(X):
            return self.fit(X, y).transform(X)
        X = validate_data(self, X, accept_sparse=False, dtype=FLOAT_DTYPES, ensure_all_finite=False)
        return self._normalize(X, self.copy)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
        return tags


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
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
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
        tags.transformer_tags.preserves_dtype = list(_PRESERVED)
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
