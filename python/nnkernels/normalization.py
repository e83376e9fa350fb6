"""Batch norm and layer norm, forward and backward, with an optional fused ReLU / leaky ReLU.

NumPy in, NumPy out (float32 or float64; mean/rstd come back in the input dtype); CuPy arrays
and PyTorch CUDA tensors run the CUDA kernels. Kernels: csrc/cpu/normalization.cpp,
csrc/cuda/normalization.cu; references: :mod:`nnkernels.reference.normalization`.

Statistics are computed robustly (two passes over cache-resident blocks merged with Chan's
pairwise update; never E[x^2] - E[x]^2), so data with a large mean (1e4, std 1) normalise as
accurately as centred data. A constant channel/row (zero variance) gives y = beta.
Results are bitwise identical for any thread count (fixed work decomposition).

Separable batch-norm pieces (for synchronised / distributed batch norm)::

    n, mean, m2 = batchnorm_stats(x_local)                      # per process
    n, mean, m2 = batchnorm_merge_stats(all_n, all_mean, all_m2)  # after an all-gather
    rstd = 1 / np.sqrt(m2 / n + eps)
    y = batchnorm_normalize(x_local, mean, rstd, gamma, beta)
    sum_dout, sum_dout_xhat = batchnorm_backward_reduce(dout, x_local, mean, rstd)  # then all-reduce
    dx = batchnorm_backward_elemt(dout, x_local, gamma, mean, rstd, sum_dout, sum_dout_xhat, n)
    dgamma, dbeta = sum_dout_xhat, sum_dout
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _gpu

__all__ = [
    "batchnorm_forward", "batchnorm_backward", "layernorm_forward", "layernorm_backward",
    "batchnorm_stats", "batchnorm_merge_stats", "batchnorm_normalize",
    "batchnorm_backward_reduce", "batchnorm_backward_elemt",
    "BatchNorm", "LayerNorm",
]

_ndarray = np.ndarray
_ACT = {None: 0, "relu": 1, "leaky_relu": 2}


def _is_gpu(x: Any) -> bool:
    return type(x) is not _ndarray and _gpu.is_gpu_array(x)


# ---------------------------------------------------------------- layer norm

def layernorm_forward(x: Any, gamma: Any = None, beta: Any = None, *, eps: float = 1e-5, activation: Any = None,
                      negative_slope: float = 0.01, out: Any = None) -> tuple:
    """Layer norm over the last axis: ``y = act((x - mean) * rstd * gamma + beta)``.

    gamma/beta: None or shape ``(x.shape[-1],)``. activation: None, "relu" or "leaky_relu"
    (with ``negative_slope``), fused in the same pass. ``out`` may be x itself.
    Returns ``(y, mean, rstd)``; mean/rstd have shape ``x.shape[:-1]`` and x's dtype,
    ``rstd = 1 / sqrt(var + eps)`` with the biased variance.
    """
    if _is_gpu(x):
        return _gpu_layernorm_forward(x, gamma, beta, eps, activation, negative_slope, out)
    return _core.layernorm_forward(x, gamma, beta, eps, activation, negative_slope, out)


def layernorm_backward(dout: Any, x: Any, gamma: Any, mean: Any, rstd: Any, *, activation: Any = None,
                       y: Any = None, negative_slope: float = 0.01, out: Any = None) -> tuple:
    """Gradients of :func:`layernorm_forward`: ``(dx, dgamma, dbeta)``.

    dgamma/dbeta are None when gamma is None. With a fused activation, ``y`` (the forward
    output) is required: the activation is differentiated from it (``negative_slope >= 0``).
    ``out`` receives dx (x's shape and dtype); it may be dout itself (in place).
    """
    if _is_gpu(dout):
        return _gpu_layernorm_backward(dout, x, gamma, mean, rstd, activation, y, negative_slope, out)
    return _core.layernorm_backward(dout, x, gamma, mean, rstd, activation, y, negative_slope, out)


# ---------------------------------------------------------------- batch norm

def batchnorm_forward(x: Any, gamma: Any = None, beta: Any = None, *, training: bool = True,
                      running_mean: Any = None, running_var: Any = None, momentum: float = 0.1, eps: float = 1e-5,
                      unbiased_running_var: bool = True, activation: Any = None, negative_slope: float = 0.01,
                      out: Any = None) -> tuple:
    """Batch norm of x ``(N, C)`` or ``(N, C, *spatial)``, statistics per channel over N and spatial axes.

    training=True: normalise with the batch mean and biased variance; running stats (both or
    neither, shape ``(C,)``) are updated in place, ``running = (1 - momentum) * running +
    momentum * batch_stat``, the variance stored unbiased (``count / (count - 1)``; biased when
    ``unbiased_running_var=False``). In training mode the running stats must be writeable NumPy
    arrays (not lists), apart from each other and from x, out, gamma and beta, and each channel
    needs more than one value (N * spatial size > 1, as in PyTorch): otherwise a ValueError /
    TypeError before anything is written. training=False: normalise with the running statistics
    (both required; any array-like). Returns ``(y, mean, rstd)`` (per channel, x's dtype).
    Any finite input normalises correctly, including float32 values near 1e38 (channels whose
    float statistics would overflow are redone in a wider type).
    """
    if _is_gpu(x):
        return _gpu_batchnorm_forward(x, gamma, beta, training, running_mean, running_var, momentum, eps,
                                      unbiased_running_var, activation, negative_slope, out)
    return _core.batchnorm_forward(x, gamma, beta, bool(training), running_mean, running_var, momentum,
                                   eps, bool(unbiased_running_var), activation, negative_slope, out)


def batchnorm_backward(dout: Any, x: Any, gamma: Any, mean: Any, rstd: Any, *, activation: Any = None,
                       y: Any = None, negative_slope: float = 0.01, out: Any = None) -> tuple:
    """Gradients of training-mode :func:`batchnorm_forward`: ``(dx, dgamma, dbeta)``.

    mean/rstd are the values forward returned. dgamma/dbeta are None when gamma is None.
    ``out`` receives dx (x's shape and dtype); it may be dout itself (in place).
    Runs :func:`batchnorm_backward_reduce` then :func:`batchnorm_backward_elemt` (same
    kernels), folding the rounding residual of a float32 mean back in.
    """
    if _is_gpu(dout):
        return _gpu_batchnorm_backward(dout, x, gamma, mean, rstd, activation, y, negative_slope, out)
    return _core.batchnorm_backward(dout, x, gamma, mean, rstd, activation, y, negative_slope, out)


def batchnorm_stats(x: Any) -> tuple:
    """Local per-channel statistics ``(count, mean, m2)`` of x ``(N, C, *spatial)``.

    count = N * prod(spatial) (an int), mean and m2 (sum of squared deviations from the mean)
    are float64 arrays of shape ``(C,)``, computed robustly (blockwise two-pass + Chan merge).
    Combine parts from several processes with :func:`batchnorm_merge_stats`; then
    ``var = m2 / count`` (biased) and ``rstd = 1 / sqrt(var + eps)``.
    """
    if _is_gpu(x):
        return _gpu_batchnorm_stats(x)
    return _core.batchnorm_stats(x)


def batchnorm_merge_stats(counts: Any, means: Any, m2s: Any) -> tuple:
    """Merge per-part statistics with Chan et al.'s parallel update, in part order.

    counts: shape ``(P,)`` (or ``(P, C)``); means, m2s: shape ``(P, C)``. Returns
    ``(count, mean, m2)`` with count an int (an array when counts was ``(P, C)``) and
    float64 mean/m2 of shape ``(C,)``. Parts with count 0 are ignored. Inputs are real-valued
    (integer or float) arrays or array-likes; complex, bool, object, bytes/str and datetime
    values are refused with a TypeError naming the argument.
    """
    return _core.batchnorm_merge_stats(counts, means, m2s)


def batchnorm_normalize(x: Any, mean: Any, rstd: Any, gamma: Any = None, beta: Any = None, *,
                        activation: Any = None, negative_slope: float = 0.01, out: Any = None) -> Any:
    """``y = act((x - mean) * rstd * gamma + beta)`` per channel with given (e.g. global) statistics.

    mean/rstd/gamma/beta: shape ``(C,)``, float32 or float64 (a float64 mean keeps its full
    precision for float32 x). ``out`` may be x itself.
    """
    if _is_gpu(x):
        return _gpu_batchnorm_normalize(x, mean, rstd, gamma, beta, activation, negative_slope, out)
    return _core.batchnorm_normalize(x, mean, rstd, gamma, beta, activation, negative_slope, out)


def batchnorm_backward_reduce(dout: Any, x: Any, mean: Any, rstd: Any, *, activation: Any = None, y: Any = None,
                              negative_slope: float = 0.01) -> tuple:
    """Local per-channel reductions ``(sum_dout, sum_dout_xhat)`` for the batch-norm backward.

    With g = dout passed back through the fused activation (from ``y``) and
    ``xhat = (x - mean) * rstd``: ``sum_dout = sum(g)``, ``sum_dout_xhat = sum(g * xhat)``
    over N and spatial axes (x's dtype, shape ``(C,)``). After summing them over processes,
    ``dgamma = sum_dout_xhat`` and ``dbeta = sum_dout``.
    """
    if _is_gpu(dout):
        return _gpu_batchnorm_backward_reduce(dout, x, mean, rstd, activation, y, negative_slope)
    return _core.batchnorm_backward_reduce(dout, x, mean, rstd, activation, y, negative_slope)


def batchnorm_backward_elemt(dout: Any, x: Any, gamma: Any, mean: Any, rstd: Any, sum_dout: Any,
                             sum_dout_xhat: Any, count: int, *, activation: Any = None, y: Any = None,
                             negative_slope: float = 0.01) -> Any:
    """Elementwise batch-norm input gradient from global reductions and the global count:

    ``dx = gamma * rstd * (g - sum_dout / count - xhat * sum_dout_xhat / count)``
    (gamma None means 1).
    """
    if _is_gpu(dout):
        return _gpu_batchnorm_backward_elemt(dout, x, gamma, mean, rstd, sum_dout, sum_dout_xhat, count, activation,
                                             y, negative_slope)
    return _core.batchnorm_backward_elemt(dout, x, gamma, mean, rstd, sum_dout, sum_dout_xhat, count, activation, y,
                                          negative_slope)


# ---------------------------------------------------------------- CUDA paths
# Kernels: csrc/cuda/normalization.cu. Inputs are made contiguous; per-channel finalisation
# (rstd, params, running-stat update) is a few C-length vectors done on the host in float64.

def _act_code(activation: Any, negative_slope: float, backward: bool) -> int:
    if activation not in _ACT:
        raise ValueError(f"activation: expected None, 'relu' or 'leaky_relu', got {activation!r}")
    if backward and activation == "leaky_relu" and negative_slope < 0:
        raise ValueError("negative_slope: backward from the saved output y needs negative_slope >= 0")
    return _ACT[activation]


def _prep(arrays: tuple, names: tuple) -> tuple:
    _gpu._require_cuda()
    objs, cais = _gpu.prepare_inputs(arrays, names)
    return objs, cais


def _vec_host(v: Any, name: str, n: int, default: float | None) -> np.ndarray:
    if v is None:
        if default is None:
            raise ValueError(f"{name}: required (got None)")
        return np.full(n, default)
    a = _gpu.to_host(v) if _gpu.is_gpu_array(v) else np.asarray(v)
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {a.dtype}")
    if a.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {a.shape}")
    return a.astype(np.float64)


def _np_dtype(cai: dict) -> np.dtype:
    return np.dtype(cai["typestr"])


def _geom(cai: dict, name: str = "x") -> tuple:
    shape = tuple(cai["shape"])
    if len(shape) < 2:
        raise ValueError(f"{name}: expected an array of shape (N, C) or (N, C, *spatial), got shape {shape}")
    s = int(np.prod(shape[2:], dtype=np.int64))
    return shape[0], shape[1], s


def _stream(x: Any) -> int:
    return _gpu.current_stream(x)


def _gpu_out(out: Any, like: Any, cai: dict) -> tuple:
    return _gpu.prepare_output(out, like, cai)


def _gpu_layernorm_forward(x, gamma, beta, eps, activation, slope, out):
    act = _act_code(activation, slope, False)
    (xo,), (xc,) = _prep((x,), ("x",))
    shape = tuple(xc["shape"])
    if len(shape) < 1 or shape[-1] == 0:
        raise ValueError("x: expected a non-empty last axis")
    dt, d = _np_dtype(xc), shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    g = _gpu.from_host(xo, _vec_host(gamma, "gamma", d, 1.0).astype(dt))
    b = _gpu.from_host(xo, _vec_host(beta, "beta", d, 0.0).astype(dt))
    result, target, oc = _gpu_out(out, xo, xc)
    mean = _gpu.empty(xo, shape[:-1], dt)
    rstd = _gpu.empty(xo, shape[:-1], dt)
    with _gpu.on_device(xo):
        _core.cuda_layernorm_forward(_gpu.dtype_code(xc), xc["data"][0], _gpu.pointer(g, "gamma"),
                                     _gpu.pointer(b, "beta"), oc["data"][0], _gpu.pointer(mean, "mean"),
                                     _gpu.pointer(rstd, "rstd"), rows, d, float(eps), act, float(slope), _stream(xo))
    if target is not result:
        _gpu.copy_into(result, target)
    return result, mean, rstd


def _gpu_dx_out(out, objs, cais):
    """(result, target, target interface) for a backward dx: the CUDA backward reads its inputs
    again after writing dx (layer norm's dgamma/dbeta pass), so an `out` sharing memory with
    any input is written through a temporary."""
    result, target, oc = _gpu_out(out, objs[1], cais[1])
    if target is result and out is not None and any(c is not None and _gpu.overlaps(oc, c) for c in cais):
        target = _gpu.empty_like(objs[1])
        oc = _gpu.interface(target, "out")
    return result, target, oc


def _gpu_layernorm_backward(dout, x, gamma, mean, rstd, activation, y, slope, out=None):
    act = _act_code(activation, slope, True)
    if act and y is None:
        raise ValueError("y: the saved forward output is required when activation is given")
    arrays, names = ((dout, x, y), ("dout", "x", "y")) if act else ((dout, x), ("dout", "x"))
    objs, cais = _prep(arrays, names)
    shape = tuple(cais[1]["shape"])
    dt, d = _np_dtype(cais[1]), shape[-1]
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    g = _gpu.from_host(objs[1], _vec_host(gamma, "gamma", d, 1.0).astype(dt))
    m = _gpu.from_host(objs[1], np.asarray(_gpu.to_host(mean), dtype=dt).reshape(rows))
    r = _gpu.from_host(objs[1], np.asarray(_gpu.to_host(rstd), dtype=dt).reshape(rows))
    result, dx, oc = _gpu_dx_out(out, objs, cais)
    dg = _gpu.empty(objs[1], (d,), dt)
    db = _gpu.empty(objs[1], (d,), dt)
    work = _gpu.empty(objs[1], (max(1, _core.cuda_layernorm_backward_workspace(rows, d)),), np.float64)
    with _gpu.on_device(objs[1]):
        _core.cuda_layernorm_backward(_gpu.dtype_code(cais[1]), cais[0]["data"][0], cais[1]["data"][0],
                                      cais[2]["data"][0] if act else 0, _gpu.pointer(g, "gamma"),
                                      _gpu.pointer(m, "mean"), _gpu.pointer(r, "rstd"), oc["data"][0],
                                      _gpu.pointer(dg, "dgamma"), _gpu.pointer(db, "dbeta"),
                                      _gpu.pointer(work, "work"), rows, d, act, float(slope), _stream(objs[1]))
    if dx is not result:
        _gpu.copy_into(result, dx)
    if gamma is None:
        return result, None, None
    return result, dg, db


def _gpu_stats_raw(xo, xc):
    n, c, s = _geom(xc)
    mean = _gpu.empty(xo, (c,), np.float64)
    m2 = _gpu.empty(xo, (c,), np.float64)
    work = _gpu.empty(xo, (max(1, _core.cuda_batchnorm_workspace(n, c, s)),), np.float64)
    with _gpu.on_device(xo):
        _core.cuda_batchnorm_stats(_gpu.dtype_code(xc), xc["data"][0], n, c, s, _gpu.pointer(work, "work"),
                                   _gpu.pointer(mean, "mean"), _gpu.pointer(m2, "m2"), _stream(xo))
    return n * s, _gpu.to_host(mean), _gpu.to_host(m2)


def _gpu_batchnorm_stats(x):
    (xo,), (xc,) = _prep((x,), ("x",))
    return _gpu_stats_raw(xo, xc)


def _fwd_params(dt, mean, rstd, gamma, beta):
    mh = mean.astype(dt)
    ml = (mean - mh.astype(np.float64)).astype(dt)
    return np.stack([mh, ml, (gamma * rstd).astype(dt), beta.astype(dt)], axis=1).reshape(-1)


def _gpu_apply(xo, xc, params, act, slope, out):
    n, c, s = _geom(xc)
    result, target, oc = _gpu_out(out, xo, xc)
    p = _gpu.from_host(xo, params)
    with _gpu.on_device(xo):
        _core.cuda_batchnorm_apply(_gpu.dtype_code(xc), xc["data"][0], oc["data"][0], n, c, s,
                                   _gpu.pointer(p, "params"), act, float(slope), _stream(xo))
    if target is not result:
        _gpu.copy_into(result, target)
    return result


def _gpu_batchnorm_forward(x, gamma, beta, training, running_mean, running_var, momentum, eps, unbiased,
                           activation, slope, out):
    act = _act_code(activation, slope, False)
    (xo,), (xc,) = _prep((x,), ("x",))
    n, c, s = _geom(xc)
    dt = _np_dtype(xc)
    g = _vec_host(gamma, "gamma", c, 1.0)
    b = _vec_host(beta, "beta", c, 0.0)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_var: required when running_mean is given" if running_mean is not None
                         else "running_mean: required when running_var is given")
    if not training and running_mean is None:
        raise ValueError("running_mean: required when training=False")
    rm = _vec_host(running_mean, "running_mean", c, 0.0)
    rv = _vec_host(running_var, "running_var", c, 1.0)
    if training:
        _core.batchnorm_check_training_count(tuple(xc["shape"]), n * s)
        if running_mean is not None:  # updated in place below: as the CPU path requires (bindings)
            for name, arr in (("running_mean", running_mean), ("running_var", running_var)):
                if not (_gpu.is_gpu_array(arr) or (isinstance(arr, np.ndarray) and arr.flags.writeable)):
                    raise TypeError(f"{name}: expected a writeable array (updated in place in training mode)")
            if running_mean is running_var:
                raise ValueError("running_var: shares memory with running_mean (each is updated in place)")
        count, mean, m2 = _gpu_stats_raw(xo, xc)
        if not np.isfinite(m2).all():
            # Extreme magnitudes (the float M2 overflowed): the CPU statistics redo such channels in
            # a wider type (csrc/bindings/normalization.cpp). Constant channels are exact here already
            # (the CUDA statistics are taken relative to the channel's first value).
            count, mean, m2 = _core.batchnorm_stats(np.ascontiguousarray(_gpu.to_host(x)))
        var = m2 / count
    else:
        mean, var = rm, rv
    rstd = (1.0 / np.sqrt(var + eps)).astype(dt).astype(np.float64)
    y = _gpu_apply(xo, xc, _fwd_params(dt, mean, rstd, g, b), act, slope, out)
    if training and running_mean is not None:
        vu = m2 / (count - 1) if unbiased and count > 1 else var
        new_m = (1 - momentum) * rm + momentum * mean
        new_v = (1 - momentum) * rv + momentum * vu
        for arr, val in ((running_mean, new_m), (running_var, new_v)):
            if _gpu.is_gpu_array(arr):
                _gpu.copy_into(arr, _gpu.from_host(arr, val.astype(_np_dtype(_gpu.interface(arr, "running")))))
            else:
                arr[...] = val
    return y, _gpu.from_host(xo, mean.astype(dt)), _gpu.from_host(xo, rstd.astype(dt))


def _gpu_batchnorm_normalize(x, mean, rstd, gamma, beta, activation, slope, out):
    act = _act_code(activation, slope, False)
    (xo,), (xc,) = _prep((x,), ("x",))
    n, c, s = _geom(xc)
    dt = _np_dtype(xc)
    params = _fwd_params(dt, _vec_host(mean, "mean", c, None), _vec_host(rstd, "rstd", c, None),
                         _vec_host(gamma, "gamma", c, 1.0), _vec_host(beta, "beta", c, 0.0))
    return _gpu_apply(xo, xc, params, act, slope, out)


def _gpu_bwd_prep(dout, x, activation, y, slope):
    act = _act_code(activation, slope, True)
    if act and y is None:
        raise ValueError("y: the saved forward output is required when activation is given")
    arrays, names = ((dout, x, y), ("dout", "x", "y")) if act else ((dout, x), ("dout", "x"))
    objs, cais = _prep(arrays, names)
    if len(objs) == 2:
        objs, cais = objs + [None], cais + [None]
    return act, objs, cais


def _gpu_reduce_raw(act, objs, cais, mh, slope):
    n, c, s = _geom(cais[1])
    m = _gpu.from_host(objs[1], mh)
    out3 = _gpu.empty(objs[1], (3 * c,), np.float64)
    work = _gpu.empty(objs[1], (max(1, 3 * _core.cuda_batchnorm_workspace(n, c, s)),), np.float64)
    with _gpu.on_device(objs[1]):
        _core.cuda_batchnorm_backward_reduce(_gpu.dtype_code(cais[1]), cais[0]["data"][0], cais[1]["data"][0],
                                             cais[2]["data"][0] if act else 0, _gpu.pointer(m, "mean"), n, c, s,
                                             _gpu.pointer(work, "work"), _gpu.pointer(out3, "out"), act,
                                             float(slope), _stream(objs[1]))
    return _gpu.to_host(out3).reshape(c, 3)


def _gpu_elemt_raw(act, objs, cais, params, slope, out=None):
    n, c, s = _geom(cais[1])
    result, dx, oc = _gpu_dx_out(out, objs, cais)
    p = _gpu.from_host(objs[1], params)
    with _gpu.on_device(objs[1]):
        _core.cuda_batchnorm_backward_apply(_gpu.dtype_code(cais[1]), cais[0]["data"][0], cais[1]["data"][0],
                                            cais[2]["data"][0] if act else 0, oc["data"][0], n, c, s,
                                            _gpu.pointer(p, "params"), act, float(slope), _stream(objs[1]))
    if dx is not result:
        _gpu.copy_into(result, dx)
    return result


def _elemt_params(dt, mh, ml, gamma, rstd, sg, sgxh, count):
    a = gamma * rstd
    return np.stack([mh, ml, a, -a * rstd * sgxh / count, -a * sg / count], axis=1).astype(dt).reshape(-1)


def _gpu_batchnorm_backward(dout, x, gamma, mean, rstd, activation, y, slope, out=None):
    act, objs, cais = _gpu_bwd_prep(dout, x, activation, y, slope)
    n, c, s = _geom(cais[1])
    dt = _np_dtype(cais[1])
    g = _vec_host(gamma, "gamma", c, 1.0)
    mean_h, rstd_h = _vec_host(mean, "mean", c, None), _vec_host(rstd, "rstd", c, None)
    mh = mean_h.astype(dt)
    red = _gpu_reduce_raw(act, objs, cais, mh, slope)
    count = n * s
    cres = red[:, 2] / count if count else np.zeros(c)
    sg = red[:, 0]
    sgxh = (red[:, 1] - cres * red[:, 0]) * rstd_h
    dx = _gpu_elemt_raw(act, objs, cais, _elemt_params(dt, mh.astype(np.float64), cres, g, rstd_h, sg, sgxh,
                                                        max(count, 1)), slope, out)
    if gamma is None:
        return dx, None, None
    return dx, _gpu.from_host(objs[1], sgxh.astype(dt)), _gpu.from_host(objs[1], sg.astype(dt))


def _gpu_batchnorm_backward_reduce(dout, x, mean, rstd, activation, y, slope):
    act, objs, cais = _gpu_bwd_prep(dout, x, activation, y, slope)
    n, c, s = _geom(cais[1])
    dt = _np_dtype(cais[1])
    mean_h, rstd_h = _vec_host(mean, "mean", c, None), _vec_host(rstd, "rstd", c, None)
    mh = mean_h.astype(dt)
    red = _gpu_reduce_raw(act, objs, cais, mh, slope)
    sgxh = (red[:, 1] - (mean_h - mh.astype(np.float64)) * red[:, 0]) * rstd_h
    return _gpu.from_host(objs[1], red[:, 0].astype(dt)), _gpu.from_host(objs[1], sgxh.astype(dt))


def _gpu_batchnorm_backward_elemt(dout, x, gamma, mean, rstd, sum_dout, sum_dout_xhat, count, activation, y, slope):
    act, objs, cais = _gpu_bwd_prep(dout, x, activation, y, slope)
    n, c, s = _geom(cais[1])
    dt = _np_dtype(cais[1])
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count: expected a positive integer, got {count!r}")
    mean_h = _vec_host(mean, "mean", c, None)
    mh = mean_h.astype(dt).astype(np.float64)
    params = _elemt_params(dt, mh, mean_h - mh, _vec_host(gamma, "gamma", c, 1.0), _vec_host(rstd, "rstd", c, None),
                           _vec_host(sum_dout, "sum_dout", c, None), _vec_host(sum_dout_xhat, "sum_dout_xhat", c, None),
                           int(count))
    return _gpu_elemt_raw(act, objs, cais, params, slope)
