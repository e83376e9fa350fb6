"""Reference layer norm and batch norm (NumPy), forward and backward, with the fused activation.

Plain two-pass formulas written for clarity; pass float64 arrays for a high-accuracy reference.
Batch norm takes x of shape (N, C) or (N, C, *spatial) and normalises per channel over every
axis except 1; layer norm normalises over the last axis.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "layernorm_forward", "layernorm_backward", "batchnorm_forward", "batchnorm_backward",
    "batchnorm_stats", "batchnorm_merge_stats", "batchnorm_normalize",
    "batchnorm_backward_reduce", "batchnorm_backward_elemt",
]


def _act(v, activation, negative_slope):
    if activation is None:
        return v
    if activation == "relu":
        return np.where(v < 0, np.zeros_like(v), v)
    if activation == "leaky_relu":
        return np.where(v > 0, v, v * v.dtype.type(negative_slope))
    raise ValueError(f"activation: expected None, 'relu' or 'leaky_relu', got {activation!r}")


def _act_backward(dout, y, activation, negative_slope):
    if activation is None:
        return dout
    if activation == "relu":
        return np.where(y > 0, dout, np.zeros_like(dout))
    return np.where(y > 0, dout, dout * dout.dtype.type(negative_slope))


def layernorm_forward(x, gamma=None, beta=None, *, eps=1e-5, activation=None, negative_slope=0.01):
    x = np.asarray(x)
    mean = x.mean(axis=-1)
    xc = x - mean[..., None]
    var = (xc * xc).mean(axis=-1)
    rstd = 1 / np.sqrt(var + eps)
    y = xc * rstd[..., None]
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return _act(y, activation, negative_slope), mean, rstd


def layernorm_backward(dout, x, gamma, mean, rstd, *, activation=None, y=None, negative_slope=0.01):
    x = np.asarray(x)
    g = _act_backward(np.asarray(dout), y, activation, negative_slope)
    xhat = (x - mean[..., None]) * rstd[..., None]
    wdy = g * gamma if gamma is not None else g
    dx = rstd[..., None] * (wdy - wdy.mean(axis=-1, keepdims=True)
                            - xhat * (wdy * xhat).mean(axis=-1, keepdims=True))
    if gamma is None:
        return dx, None, None
    d = x.shape[-1]
    return dx, (g * xhat).reshape(-1, d).sum(axis=0), g.reshape(-1, d).sum(axis=0)


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _bcast(v, x):
    return np.asarray(v).reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm_stats(x):
    """(count, mean, m2) per channel; m2 = sum of squared deviations (float64)."""
    x = np.asarray(x, dtype=np.float64)
    ax = _axes(x)
    count = x.size // x.shape[1] if x.shape[1] else 0
    mean = x.mean(axis=ax) if count else np.zeros(x.shape[1])
    m2 = ((x - _bcast(mean, x)) ** 2).sum(axis=ax)
    return count, mean, m2


def batchnorm_merge_stats(counts, means, m2s):
    """Merge per-part (count, mean, m2) over the first axis (pooled formula)."""
    counts = np.asarray(counts, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    m2s = np.asarray(m2s, dtype=np.float64)
    c = counts if counts.ndim == 2 else counts[:, None] * np.ones_like(means)
    n = c.sum(axis=0)
    mean = (c * means).sum(axis=0) / n
    m2 = (m2s + c * (means - mean) ** 2).sum(axis=0)
    return (int(n[0]) if counts.ndim == 1 else n), mean, m2


def batchnorm_normalize(x, mean, rstd, gamma=None, beta=None, *, activation=None, negative_slope=0.01):
    x = np.asarray(x)
    y = (x - _bcast(mean, x)) * _bcast(rstd, x)
    if gamma is not None:
        y = y * _bcast(gamma, x)
    if beta is not None:
        y = y + _bcast(beta, x)
    return _act(y, activation, negative_slope).astype(x.dtype, copy=False)


def batchnorm_forward(x, gamma=None, beta=None, *, training=True, running_mean=None, running_var=None,
                      momentum=0.1, eps=1e-5, unbiased_running_var=True, activation=None, negative_slope=0.01):
    """Returns (y, mean, rstd); updates running stats in place in training mode."""
    x = np.asarray(x)
    ax = _axes(x)
    if training:
        mean = x.mean(axis=ax)
        var = ((x - _bcast(mean, x)) ** 2).mean(axis=ax)
        if running_mean is not None:
            count = x.size // x.shape[1]
            vu = var * count / (count - 1) if unbiased_running_var and count > 1 else var
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            running_var[...] = (1 - momentum) * running_var + momentum * vu
    else:
        mean = np.asarray(running_mean, dtype=x.dtype)
        var = np.asarray(running_var, dtype=x.dtype)
    rstd = 1 / np.sqrt(var + eps)
    y = batchnorm_normalize(x, mean, rstd, gamma, beta, activation=activation, negative_slope=negative_slope)
    return y, mean, rstd


def batchnorm_backward_reduce(dout, x, mean, rstd, *, activation=None, y=None, negative_slope=0.01):
    g = _act_backward(np.asarray(dout), y, activation, negative_slope)
    xhat = (np.asarray(x) - _bcast(mean, x)) * _bcast(rstd, x)
    ax = _axes(g)
    return g.sum(axis=ax), (g * xhat).sum(axis=ax)


def batchnorm_backward_elemt(dout, x, gamma, mean, rstd, sum_dout, sum_dout_xhat, count, *, activation=None,
                             y=None, negative_slope=0.01):
    g = _act_backward(np.asarray(dout), y, activation, negative_slope)
    xhat = (np.asarray(x) - _bcast(mean, x)) * _bcast(rstd, x)
    a = _bcast(rstd, x) * (_bcast(gamma, x) if gamma is not None else 1)
    return a * (g - _bcast(sum_dout, x) / count - xhat * _bcast(sum_dout_xhat, x) / count)


def batchnorm_backward(dout, x, gamma, mean, rstd, *, activation=None, y=None, negative_slope=0.01):
    x = np.asarray(x)
    sg, sgx = batchnorm_backward_reduce(dout, x, mean, rstd, activation=activation, y=y,
                                        negative_slope=negative_slope)
    count = x.size // x.shape[1]
    dx = batchnorm_backward_elemt(dout, x, gamma, mean, rstd, sg, sgx, count, activation=activation, y=y,
                                  negative_slope=negative_slope)
    if gamma is None:
        return dx, None, None
    return dx, sgx, sg
