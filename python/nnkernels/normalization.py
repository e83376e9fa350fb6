"""Batch norm and layer norm, forward and backward, with an optional fused ReLU / leaky ReLU.

Arrays are NumPy arrays, PyTorch tensors (CPU tensors are read and written in place, zero-copy;
CUDA tensors run the CUDA kernels), CuPy arrays or any DLPack producer, float32 or float64 (or
16-bit, below); the results are arrays of the main input's library (x, or dout for the backward
functions) on its device, in its dtype. Per-channel vectors (gamma, beta, running statistics,
mean, rstd) may be of the other float dtype and any stride, and must live on x's device (NumPy vectors with a torch
CPU x are fine; a host vector with a CUDA x is a ValueError: nothing is copied between host and
device inside an op). See "Array libraries" in the README.

Every op also takes the 16-bit storage dtypes float16 and bfloat16 (NumPy float16,
``ml_dtypes.bfloat16``, torch.float16/bfloat16 tensors): x, y, dout and dx in that dtype; gamma/beta
and batch norm's running statistics in it or in float32 (float64 refused, naming the argument);
arithmetic in float32 with one rounding to nearest even per result; mean/rstd always float32 (the
statistics of 16-bit data are never rounded to 16 bits; the ones given back may be float32 or
float64); running statistics updated in double and rounded once to their dtype; dgamma/dbeta in
gamma's dtype (float32 sums, combined in double); batchnorm_backward_reduce's sums float32;
batchnorm_stats float64 as for every dtype. Kernels: csrc/cpu/normalization.cpp
(driver csrc/drivers/normalization.cpp), csrc/cuda/normalization.cu; references:
:mod:`nnkernels.reference.normalization`.

Statistics are computed robustly (two passes over cache-resident blocks merged with Chan's
pairwise update; never E[x^2] - E[x]^2), so data with a large mean (1e4, std 1) normalise as
accurately as centred data. (bfloat16/float16 layer-norm rows are reduced in one pass around a
shift, the mean of their first 32 values, and keep it only when the shift is within 0.71 std of
the row's mean; other rows take the two passes.) A constant channel/row (zero variance) gives
y = beta.
Results are bitwise identical for any thread count (fixed work decomposition). On the GPU every
per-channel quantity (batch statistics, rstd, the kernel coefficients, the running-statistics
update) is computed on the device: no host transfer or stream synchronisation inside an op.

Separable batch-norm pieces (for synchronised / distributed batch norm)::

    n, mean, m2 = batchnorm_stats(x_local)                      # per process
    n, mean, m2 = batchnorm_merge_stats(all_n, all_mean, all_m2)  # after an all-gather (host)
    rstd = 1 / np.sqrt(m2 / n + eps)
    y = batchnorm_normalize(x_local, mean, rstd, gamma, beta)
    sum_dout, sum_dout_xhat = batchnorm_backward_reduce(dout, x_local, mean, rstd)  # then all-reduce
    dx = batchnorm_backward_elemt(dout, x_local, gamma, mean, rstd, sum_dout, sum_dout_xhat, n)
    dgamma, dbeta = sum_dout_xhat, sum_dout
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _core

__all__ = [
    "batchnorm_forward", "batchnorm_backward", "layernorm_forward", "layernorm_backward",
    "batchnorm_stats", "batchnorm_merge_stats", "batchnorm_normalize",
    "batchnorm_backward_reduce", "batchnorm_backward_elemt",
]  # the layer classes BatchNorm / LayerNorm live in nnkernels.nn (nk.BatchNorm is nk.nn.BatchNorm)

_ACT = {None: 0, "relu": 1, "leaky_relu": 2}


# ---------------------------------------------------------------- layer norm

def layernorm_forward(x: Any, gamma: Any = None, beta: Any = None, *, eps: float = 1e-5, activation: Any = None,
                      negative_slope: float = 0.01, out: Any = None) -> tuple:
    """Layer norm over the last axis: ``y = act((x - mean) * rstd * gamma + beta)``.

    x: NumPy array, torch tensor (CPU or CUDA), CuPy array or any DLPack producer, float32,
    float64, float16 or bfloat16, any layout. gamma/beta: None or shape ``(x.shape[-1],)`` on x's
    device (float32 or x's dtype for 16-bit x).
    activation: None, "relu" or "leaky_relu" (with ``negative_slope``), fused in the same pass.
    ``out`` (an array of x's shape and dtype on its device, e.g. a torch tensor written in place)
    may be x itself. Returns ``(y, mean, rstd)``, arrays of x's library on its device; mean/rstd
    have shape ``x.shape[:-1]`` and x's dtype (float32 for 16-bit x), ``rstd = 1 / sqrt(var + eps)``
    with the biased variance.
    """
    return _core.layernorm_forward(x, gamma, beta, eps, activation, negative_slope, out)


def layernorm_backward(dout: Any, x: Any, gamma: Any, mean: Any, rstd: Any, *, activation: Any = None,
                       y: Any = None, negative_slope: float = 0.01, out: Any = None) -> tuple:
    """Gradients of :func:`layernorm_forward`: ``(dx, dgamma, dbeta)``.

    Arrays as for :func:`layernorm_forward`, all on one device (mean/rstd: the forward's, any
    float32/float64 array of shape ``x.shape[:-1]``, any layout). dgamma/dbeta are None when gamma
    is None, else in x's dtype (gamma's for 16-bit x).
    With a fused activation, ``y`` (the forward output) is required: the activation is
    differentiated from it (``negative_slope >= 0``). ``out`` receives dx (x's shape and dtype);
    it may be dout itself (in place). The results are arrays of dout's library on its device.
    """
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
    ``unbiased_running_var=False``). In training mode the running stats must be writeable arrays
    (NumPy arrays, torch tensors, CuPy arrays; not lists) on x's device, apart from each other
    and from x, out, gamma and beta, and each channel needs more than one value (N * spatial
    size > 1, as in PyTorch): otherwise a ValueError / TypeError before anything is written. On
    a GPU the update runs on the device. training=False: normalise with the running statistics
    (both required; any array-like on the CPU). x: NumPy array, torch tensor (CPU or CUDA), CuPy
    array or any DLPack producer, float32, float64, float16 or bfloat16; gamma/beta/running stats:
    shape ``(C,)``, float32 or float64 (float32 or x's dtype for 16-bit x), on x's device. Returns
    ``(y, mean, rstd)``, arrays of x's library on its device (mean/rstd per channel, x's dtype;
    float32 for 16-bit x). Any finite input normalises correctly, including
    float32 values near 1e38 (the CPU redoes channels whose float statistics would overflow in a
    wider type; the GPU accumulates float32 statistics in double).
    """
    return _core.batchnorm_forward(x, gamma, beta, bool(training), running_mean, running_var, momentum,
                                   eps, bool(unbiased_running_var), activation, negative_slope, out)


def batchnorm_backward(dout: Any, x: Any, gamma: Any, mean: Any, rstd: Any, *, activation: Any = None,
                       y: Any = None, negative_slope: float = 0.01, out: Any = None) -> tuple:
    """Gradients of training-mode :func:`batchnorm_forward`: ``(dx, dgamma, dbeta)``.

    mean/rstd are the values forward returned. dgamma/dbeta are None when gamma is None, else in
    x's dtype (gamma's for 16-bit x).
    ``out`` receives dx (x's shape and dtype); it may be dout itself (in place).
    Runs :func:`batchnorm_backward_reduce` then :func:`batchnorm_backward_elemt` (same
    kernels), folding the rounding residual of a float32 mean back in. Arrays as for
    :func:`batchnorm_forward`, all on one device; the results are arrays of dout's library.
    """
    return _core.batchnorm_backward(dout, x, gamma, mean, rstd, activation, y, negative_slope, out)


def batchnorm_stats(x: Any) -> tuple:
    """Local per-channel statistics ``(count, mean, m2)`` of x ``(N, C, *spatial)``.

    count = N * prod(spatial) (an int), mean and m2 (sum of squared deviations from the mean)
    are float64 arrays of shape ``(C,)`` in x's library on its device (x: any array as for
    :func:`batchnorm_forward`), computed robustly (blockwise two-pass + Chan merge).
    Combine parts from several processes with :func:`batchnorm_merge_stats`; then
    ``var = m2 / count`` (biased) and ``rstd = 1 / sqrt(var + eps)``.
    """
    return _core.batchnorm_stats(x)


def batchnorm_merge_stats(counts: Any, means: Any, m2s: Any) -> tuple:
    """Merge per-part statistics with Chan et al.'s parallel update, in part order.

    counts: shape ``(P,)`` (or ``(P, C)``); means, m2s: shape ``(P, C)``, any strides. Returns
    ``(count, mean, m2)``: float64 mean/m2 of shape ``(C,)`` and the count, arrays of means'
    library on its device (NumPy for array-likes). Parts with count 0 are ignored. Inputs are
    real-valued (integer or float); complex, bool, object, bytes/str and datetime values are
    refused with a TypeError naming the argument. All three live on one device.

    - Host statistics (NumPy, torch CPU tensors, array-likes): the values are checked first
      (counts finite and non-negative, m2s non-negative: a ValueError naming the argument), and
      the count is an int (a float64 ``(C,)`` array when counts was ``(P, C)``).
    - GPU statistics (torch CUDA tensors, CuPy; e.g. an all-gather's result): merged on the
      device by one kernel on the library's current stream, nothing read back, so it can be
      captured in a CUDA graph. Other dtypes are converted to float64 on the device. The values
      cannot be checked without a synchronising read: a channel with a negative or non-finite
      count or a negative m2 comes out NaN. The count is a 0-d float64 array on the device (NaN
      when a per-part count is invalid), or a float64 ``(C,)`` array for per-channel counts.
    """
    return _core.batchnorm_merge_stats(counts, means, m2s)


def batchnorm_normalize(x: Any, mean: Any, rstd: Any, gamma: Any = None, beta: Any = None, *,
                        activation: Any = None, negative_slope: float = 0.01, out: Any = None) -> Any:
    """``y = act((x - mean) * rstd * gamma + beta)`` per channel with given (e.g. global) statistics.

    x: any array as for :func:`batchnorm_forward`; mean/rstd/gamma/beta: shape ``(C,)``,
    float32 or float64 (a float64 mean keeps its full precision for float32 x; gamma/beta float32
    or x's dtype for 16-bit x), on x's device.
    ``out`` may be x itself. Returns an array of x's library on its device.
    """
    return _core.batchnorm_normalize(x, mean, rstd, gamma, beta, activation, negative_slope, out)


def batchnorm_backward_reduce(dout: Any, x: Any, mean: Any, rstd: Any, *, activation: Any = None, y: Any = None,
                              negative_slope: float = 0.01) -> tuple:
    """Local per-channel reductions ``(sum_dout, sum_dout_xhat)`` for the batch-norm backward.

    With g = dout passed back through the fused activation (from ``y``) and
    ``xhat = (x - mean) * rstd``: ``sum_dout = sum(g)``, ``sum_dout_xhat = sum(g * xhat)``
    over N and spatial axes (x's dtype, float32 for 16-bit x; shape ``(C,)``, arrays of dout's
    library on its device).
    After summing them over processes, ``dgamma = sum_dout_xhat`` and ``dbeta = sum_dout``.
    """
    return _core.batchnorm_backward_reduce(dout, x, mean, rstd, activation, y, negative_slope)


def batchnorm_backward_elemt(dout: Any, x: Any, gamma: Any, mean: Any, rstd: Any, sum_dout: Any,
                             sum_dout_xhat: Any, count: int, *, activation: Any = None, y: Any = None,
                             negative_slope: float = 0.01) -> Any:
    """Elementwise batch-norm input gradient from global reductions and the global count:

    ``dx = gamma * rstd * (g - sum_dout / count - xhat * sum_dout_xhat / count)``
    (gamma None means 1). The per-channel vectors live on x's device; count is a Python/NumPy
    integer. Returns an array of dout's library on its device.
    """
    return _core.batchnorm_backward_elemt(dout, x, gamma, mean, rstd, sum_dout, sum_dout_xhat, count, activation, y,
                                          negative_slope)
