"""PyTorch-style functions on nnkernels' kernels (the signatures of ``torch.nn.functional``).

    import nnkernels.torch.functional as NF
    y = NF.layer_norm(x, (1024,), weight, bias)          # autograd, torch.compile, CPU and CUDA tensors
    loss = NF.cross_entropy(logits, target)

Extra fused functions: :func:`batch_norm_relu`, :func:`layer_norm_relu` (one pass for the
normalisation and the activation, forward and backward). The operators themselves are
``torch.ops.nnkernels.*`` (:mod:`nnkernels.torch._ops`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import _ops

__all__ = ["layer_norm", "batch_norm", "relu", "leaky_relu", "tanh", "sigmoid", "cross_entropy",
           "layer_norm_relu", "batch_norm_relu"]

_Shape = Union[int, Sequence[int], torch.Size]


def _layer_norm(input: Tensor, normalized_shape: _Shape, weight: Optional[Tensor], bias: Optional[Tensor],
                eps: float, activation: str, negative_slope: float) -> Tensor:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or tuple(input.shape[input.dim() - k:]) != shape:
        raise ValueError(f"normalized_shape: expected the trailing dimensions of input {tuple(input.shape)}, "
                         f"got {shape}")
    if weight is None and bias is not None:  # the kernel's dbias comes with dweight
        weight = torch.ones_like(bias)
    if k > 1:  # the kernel normalises over the last axis: fold the normalised dimensions into it
        flat = input.reshape(input.shape[:-k] + (-1,))
        y = _ops.layer_norm(flat, None if weight is None else weight.reshape(-1),
                            None if bias is None else bias.reshape(-1), eps, activation, negative_slope)[0]
        return y.reshape(input.shape)
    return _ops.layer_norm(input, weight, bias, eps, activation, negative_slope)[0]


def layer_norm(input: Tensor, normalized_shape: _Shape, weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """``torch.nn.functional.layer_norm`` on the nnkernels kernel (statistics over the trailing
    ``normalized_shape`` dimensions; biased variance; float32/float64, or float16/bfloat16 input with
    weight/bias in its dtype or float32: the output in the input's dtype, float32 arithmetic)."""
    return _layer_norm(input, normalized_shape, weight, bias, eps, "none", 0.0)


def layer_norm_relu(input: Tensor, normalized_shape: _Shape, weight: Optional[Tensor] = None,
                    bias: Optional[Tensor] = None, eps: float = 1e-5,
                    negative_slope: Optional[float] = None) -> Tensor:
    """``relu(layer_norm(...))`` in one pass (``leaky_relu`` with ``negative_slope >= 0`` when given)."""
    act, slope = ("relu", 0.0) if negative_slope is None else ("leaky_relu", float(negative_slope))
    return _layer_norm(input, normalized_shape, weight, bias, eps, act, slope)


def _batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                weight: Optional[Tensor], bias: Optional[Tensor], training: bool, momentum: float, eps: float,
                activation: str, negative_slope: float) -> Tensor:
    if weight is None and bias is not None:
        weight = torch.ones_like(bias)
    y, _, _, new_mean, new_var = _ops.batch_norm(input, weight, bias, running_mean, running_var, bool(training),
                                                 float(momentum), float(eps), activation, negative_slope)
    if training and running_mean is not None:
        with torch.no_grad():
            running_mean.copy_(new_mean)
            running_var.copy_(new_var)
    return y


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``torch.nn.functional.batch_norm`` on the nnkernels kernel: input ``(N, C, *spatial)``.

    training=True normalises with the batch statistics and, when running statistics are given,
    updates them in place (``(1 - momentum) * running + momentum * batch``, unbiased variance);
    training=False normalises with the running statistics. float32/float64, or float16/bfloat16
    input with weight, bias and running statistics in its dtype or float32 (the output in the
    input's dtype, float32 arithmetic, running statistics updated in double and rounded once).
    """
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, "none", 0.0)


def batch_norm_relu(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                    weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
                    momentum: float = 0.1, eps: float = 1e-5, negative_slope: Optional[float] = None) -> Tensor:
    """``relu(batch_norm(...))`` in one pass (``leaky_relu`` with ``negative_slope >= 0`` when given)."""
    act, slope = ("relu", 0.0) if negative_slope is None else ("leaky_relu", float(negative_slope))
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, act, slope)


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(input, 0)``. ``inplace`` is accepted for torch's signature; the result is always a new tensor."""
    return _ops.relu(input)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``input`` where positive, else ``negative_slope * input``; ``inplace`` as in :func:`relu`."""
    return _ops.leaky_relu(input, float(negative_slope))


def tanh(input: Tensor) -> Tensor:
    return _ops.tanh(input)


def sigmoid(input: Tensor) -> Tensor:
    return _ops.sigmoid(input)


def cross_entropy(input: Tensor, target: Tensor, weight: Optional[Tensor] = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """``torch.nn.functional.cross_entropy`` for logits ``(N, C)`` and class indices ``(N,)``, one fused
    pass (loss and gradient). ``reduction`` "mean" or "sum". Class weights, label smoothing, class
    probabilities as targets, ``reduction="none"`` and targets equal to ``ignore_index`` are not
    supported (ValueError; the kernel refuses labels outside [0, C))."""
    if weight is not None:
        raise ValueError("weight: class weights are not supported by the nnkernels kernel")
    if size_average is not None or reduce is not None:
        raise ValueError("size_average/reduce: deprecated; use reduction='mean' or 'sum'")
    if label_smoothing != 0.0:
        raise ValueError(f"label_smoothing: only 0.0 is supported, got {label_smoothing!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    if target.is_floating_point():
        raise ValueError("target: expected class indices (an integer tensor), got class probabilities")
    loss = _ops.softmax_cross_entropy(input, target)[0]
    return loss * input.shape[0] if reduction == "sum" else loss
