"""Fused softmax cross-entropy: loss and gradient in one pass over the logits.

``softmax_cross_entropy(logits, labels) -> (loss, dlogits)``: logits (N, C) float32/float64, or
float16/bfloat16 (float32 arithmetic, dlogits rounded once to the logits' dtype), any strides;
labels (N,) integers in [0, C). ``loss`` is the mean over the batch of -log softmax(logits)[label]
(accumulated in float64, row partials added in a fixed order:
bitwise identical for any thread count); ``dlogits = (softmax(logits) - onehot) / N`` has the
dtype of logits. Numerically stable: the row maximum is subtracted before ``exp``. An empty
batch gives ``nan`` (as PyTorch's mean reduction). ``out`` (keyword) receives dlogits and may be
the logits array itself (in place).
Arrays: NumPy, torch tensors (CPU or CUDA), CuPy arrays or any DLPack producer; validated and
dispatched in C++ (csrc/bindings/losses.cpp). Kernels: csrc/cpu/losses.cpp, csrc/cuda/losses.cu;
reference: :mod:`nnkernels.reference.losses`.
"""
from __future__ import annotations

from typing import Any

from . import _core

__all__ = ["softmax_cross_entropy"]


def softmax_cross_entropy(logits: Any, labels: Any, *, out: Any = None) -> tuple:
    """Mean softmax cross-entropy of ``logits`` against ``labels`` and its gradient, in one pass.

    Parameters
    ----------
    logits : array
        Scores of shape (N, C), float32, float64, float16 or bfloat16 (NumPy float16,
        ``ml_dtypes.bfloat16``, torch.float16/bfloat16), any strides: a NumPy array, torch tensor (CPU
        or CUDA), CuPy array, or any DLPack producer (array-likes are converted by NumPy).
    labels : array
        Integer class labels of shape (N,), each in [0, C), on the device of ``logits`` (NumPy
        arrays, CPU tensors or lists with CPU logits; a CUDA tensor / CuPy array with CUDA logits).
        Host labels are read once and checked (ValueError for a label outside [0, C), before
        anything is written). GPU labels are not copied to the host to be checked: the kernel
        checks each label it reads and gives that row a NaN loss and gradient instead.
    out : array, default=None
        Where to write dlogits (shape (N, C), the dtype of logits, unit stride along the classes,
        on the logits' device; it may be ``logits`` itself, in place); None allocates a new array.

    Returns
    -------
    loss : float or 0-d array
        Mean over the batch of ``-log softmax(logits)[label]`` (float64 accumulation; NaN for N = 0):
        a Python float for CPU logits; for CUDA logits a 0-d float64 array of the logits' library on
        their device (no copy to the host, no synchronisation: call ``float(loss)`` when the value
        is needed on the host).
    dlogits : array
        ``(softmax(logits) - onehot(labels)) / N``, the dtype of logits (``out`` when given, else an
        array of the logits' library on their device: NumPy for NumPy input, a tensor for a tensor).
    """
    return _core.softmax_cross_entropy(logits, labels, out)
