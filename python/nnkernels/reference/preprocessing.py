"""Reference preprocessing in plain NumPy (float64 recommended): scaler statistics and
transforms, row normalisation, PCA by SVD (scikit-learn's sign convention), ZCA whitening as in
the cs231n notes, image zero-centering. Names carry a ``prep_`` prefix."""
from __future__ import annotations

import numpy as np

__all__ = [
    "prep_standard_stats", "prep_standard_scale", "prep_minmax_scale", "prep_robust_stats",
    "prep_normalize_rows", "prep_pca", "prep_zca_whiten", "prep_image_zero_center", "prep_centered_gram",
]


def prep_standard_stats(X):
    """(mean, population variance) per column, two-pass."""
    mean = X.mean(axis=0)
    var = ((X - mean) ** 2).mean(axis=0)
    return mean, var


def prep_standard_scale(X):
    mean, var = prep_standard_stats(X)
    n = X.shape[0]
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.where(constant, 1.0, np.sqrt(var))
    return (X - mean) / scale


def prep_minmax_scale(X, feature_range=(0.0, 1.0)):
    lo, hi = feature_range
    mn, mx = X.min(axis=0), X.max(axis=0)
    rng = mx - mn
    rng = np.where(rng < 10 * np.finfo(np.float64).eps, 1.0, rng)
    scale = (hi - lo) / rng
    return X * scale + (lo - mn * scale)


def prep_robust_stats(X, quantile_range=(25.0, 75.0)):
    """(median, quantile range with 0 -> 1) per column, NumPy 'linear' percentiles."""
    q = np.percentile(X, [quantile_range[0], 50.0, quantile_range[1]], axis=0)
    scale = q[2] - q[0]
    scale = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
    return q[1], scale


def prep_normalize_rows(X, norm="l2"):
    if norm == "l2":
        n = np.sqrt((X * X).sum(axis=1))
    elif norm == "l1":
        n = np.abs(X).sum(axis=1)
    else:
        n = np.abs(X).max(axis=1)
    n = np.where(n == 0, 1.0, n)
    return X / n[:, None]


def prep_pca(X, n_components=None):
    """(components, explained_variance, singular_values, mean) by SVD of the centred data;
    each component's largest |entry| is positive (scikit-learn's svd_flip, v-based)."""
    mean = X.mean(axis=0)
    _, S, Vt = np.linalg.svd(X - mean, full_matrices=False)
    idx = np.argmax(np.abs(Vt), axis=1)
    Vt = Vt * np.sign(Vt[np.arange(len(idx)), idx])[:, None]
    k = len(S) if n_components is None else n_components
    return Vt[:k], (S ** 2 / (X.shape[0] - 1))[:k], S[:k], mean


def prep_zca_whiten(X, eps=1e-5):
    """cs231n: Xc = X - mean, cov = Xc^T Xc / N, U S = svd(cov), Xc U diag(1/sqrt(S+eps)) U^T."""
    Xc = X - X.mean(axis=0)
    cov = Xc.T @ Xc / X.shape[0]
    U, S, _ = np.linalg.svd(cov)
    Xrot = Xc @ U
    Xwhite = Xrot / np.sqrt(S + eps)
    return Xwhite @ U.T


def prep_image_zero_center(X, mode="channel", data_format="NCHW"):
    """(centred images, mean): per-channel mean over N and the spatial axes, or the mean image."""
    if mode == "image":
        mean = X.mean(axis=0)
        return X - mean, mean
    axes = (0, 2, 3) if data_format == "NCHW" else (0, 1, 2)
    mean = X.mean(axis=axes)
    shape = (1, -1, 1, 1) if data_format == "NCHW" else (1, 1, 1, -1)
    return X - mean.reshape(shape), mean


def prep_centered_gram(X):
    """(mean, M) with M = (X - mean)^T (X - mean), two-pass in float64: the kernel behind PCA's
    covariance_eigh and ZCAWhitening (covariance = M / (n - 1) or M / n)."""
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    Xc = X - mean
    return mean, Xc.T @ Xc
