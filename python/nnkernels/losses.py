"""Fused softmax cross-entropy: loss and gradient in one pass over the logits.

``softmax_cross_entropy(logits, labels) -> (loss, dlogits)``: logits (N, C) float32/float64
(any strides), labels (N,) integers in [0, C). ``loss`` is the mean over the batch of
-log softmax(logits)[label] as a Python float (accumulated in float64, row partials added in a
fixed order: bitwise identical for any thread count); ``dlogits = (softmax(logits) - onehot) / N``
has the dtype of logits. Numerically stable: the row maximum is subtracted before ``exp``.
An empty batch gives ``nan`` (as PyTorch's mean reduction). ``out`` (keyword) receives dlogits
and may be the logits array itself (in place). CuPy / PyTorch CUDA logits run the CUDA kernel
(labels must then be an integer array on the same device).
Kernels: csrc/cpu/losses.cpp, csrc/cuda/losses.cu; reference: :mod:`nnkernels.reference.losses`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _gpu

__all__ = ["softmax_cross_entropy"]


def softmax_cross_entropy(logits: Any, labels: Any, *, out: Any = None) -> tuple:
    """Mean softmax cross-entropy of ``logits`` against ``labels`` and its gradient, in one pass.

    Parameters
    ----------
    logits : array_like
        Scores of shape (N, C), float32 or float64, any strides (a CuPy / PyTorch CUDA array runs on
        the GPU; ``labels`` must then be on the same device).
    labels : array_like
        Integer class labels of shape (N,), each in [0, C).
    out : array, default=None
        Where to write dlogits (shape (N, C), the dtype of logits; it may be ``logits`` itself, in
        place); None allocates a new array.

    Returns
    -------
    loss : float
        Mean over the batch of ``-log softmax(logits)[label]`` (float64 accumulation; NaN for N = 0).
    dlogits : array
        ``(softmax(logits) - onehot(labels)) / N``, the dtype of logits (``out`` when given).
    """
    if type(logits) is not np.ndarray and _gpu.is_gpu_array(logits):
        return _gpu_softmax_cross_entropy(logits, labels, out)
    return _core.softmax_cross_entropy(logits, labels, out)


def _gpu_softmax_cross_entropy(logits: Any, labels: Any, out: Any) -> tuple:
    _gpu._require_cuda()
    objs, cais = _gpu.prepare_inputs((logits,), ("logits",))
    x, cai = objs[0], cais[0]
    shape = tuple(cai["shape"])
    if len(shape) != 2:
        raise ValueError(f"logits: expected a 2-D array (batch, classes), got ndim {len(shape)}")
    n, c = shape
    if c < 1:
        raise ValueError("logits: expected at least one class (column), got 0")
    lib = _gpu._library(x)
    if not _gpu.is_gpu_array(labels):
        raise TypeError("labels: expected an integer array on the same GPU as logits")
    if lib == "cupy":
        import cupy as xp_lib

        lab = xp_lib.asarray(labels)
        _gpu.check_same_device(lab, "labels", x, "logits")
        if lab.dtype.kind not in "iu":
            raise TypeError(f"labels: expected an integer array, got dtype {lab.dtype}")
        if lab.shape != (n,):
            raise ValueError(f"labels: expected shape ({n},) matching logits' rows, got {tuple(lab.shape)}")
        if n and (int(lab.min()) < 0 or int(lab.max()) >= c):
            raise ValueError(f"labels: expected values in [0, {c})")
        lab = xp_lib.ascontiguousarray(lab, dtype=xp_lib.int64)
        with x.device:
            row_loss = xp_lib.empty(max(n, 1), dtype=xp_lib.float64)
            loss = xp_lib.full(1, np.nan, dtype=xp_lib.float64)
    else:
        import torch

        lab = labels
        if lab.dtype.is_floating_point or lab.dtype == torch.bool or lab.dtype.is_complex:
            raise TypeError(f"labels: expected an integer tensor, got dtype {lab.dtype}")
        if tuple(lab.shape) != (n,):
            raise ValueError(f"labels: expected shape ({n},) matching logits' rows, got {tuple(lab.shape)}")
        if n and (int(lab.min()) < 0 or int(lab.max()) >= c):
            raise ValueError(f"labels: expected values in [0, {c})")
        lab = lab.to(device=x.device, dtype=torch.int64).contiguous()
        row_loss = torch.empty(max(n, 1), dtype=torch.float64, device=x.device)
        loss = torch.full((1,), float("nan"), dtype=torch.float64, device=x.device)
    result, target, out_cai = _gpu.prepare_output(out, x, cai)
    # Labels that share memory with the gradient would be overwritten by other rows' blocks
    # before those rows read them: the kernel then reads a private copy. (The kernel also
    # bounds-checks every label it reads: a label changed after the check gives a NaN row.)
    lab_lo, out_lo = _gpu.interface_ptr(lab), out_cai["data"][0]
    if n and lab_lo < out_lo + n * c * (8 if _gpu.dtype_code(cai) else 4) and out_lo < lab_lo + 8 * n:
        lab = lab.copy() if lib == "cupy" else lab.clone()
    with _gpu.on_device(x):
        _core.cuda_softmax_cross_entropy(
            _gpu.dtype_code(cai), cai["data"][0], _gpu.interface_ptr(lab), out_cai["data"][0], n, c,
            _gpu.interface_ptr(row_loss), _gpu.interface_ptr(loss), _gpu.current_stream(x),
        )
    if target is not result:
        _gpu.copy_into(result, target)
    return float(loss[0].item()), result
