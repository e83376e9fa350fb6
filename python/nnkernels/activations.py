"""Activations and their backward passes: ReLU, leaky ReLU, sigmoid, tanh.

NumPy semantics: any shape (0-d and empty included), dtype preserved (float32/float64, or the
16-bit storage dtypes float16 and ``ml_dtypes.bfloat16``: loaded into float32, computed in float32
and rounded to nearest even once, within 1 ulp of the correctly rounded result, ReLU exact),
a new array unless ``out`` is given; ``out`` may be the input itself (in place); strided
inputs are fine. Arrays come from NumPy, PyTorch (CPU tensors zero-copy, CUDA tensors),
CuPy or any DLPack producer; the result is an array of the input's library on its device
(see "Array libraries" in the README). Kernels: csrc/cpu/activations.cpp, csrc/cuda/activations.cu;
references: :mod:`nnkernels.reference.activations`.
"""
from __future__ import annotations

from typing import Any

from . import _core

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
]


def relu(x: Any, out: Any = None) -> Any:
    """ReLU, elementwise: ``max(x, 0)``; NaN propagates.

    Parameters
    ----------
    x : array_like
        Input, float32, float64, float16 or bfloat16 (any shape and strides; NumPy, torch tensor, CuPy or DLPack array).
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be x itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        max(x, 0), the dtype of x (``out`` when given).
    """
    return _core.relu(x, out)


def relu_backward(dout: Any, x: Any, out: Any = None) -> Any:
    """Gradient of :func:`relu`: ``dout`` where ``x > 0``, else 0.

    Parameters
    ----------
    dout : array_like
        Gradient of the loss with respect to the forward output, float32, float64, float16 or bfloat16.
    x : array_like
        The forward input (the shape and dtype of ``dout``).
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be dout itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        dx, the dtype of dout (``out`` when given).
    """
    return _core.relu_backward(dout, x, out)


def leaky_relu(x: Any, negative_slope: float = 0.01, out: Any = None) -> Any:
    """Leaky ReLU, elementwise: ``x`` where ``x > 0``, else ``negative_slope * x`` (the slope applies at
    exactly 0, as in PyTorch).

    Parameters
    ----------
    x : array_like
        Input, float32, float64, float16 or bfloat16 (any shape and strides; NumPy, torch tensor, CuPy or DLPack array).
    negative_slope : float, default=0.01
        Slope for ``x <= 0``.
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be x itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        The activation, the dtype of x (``out`` when given).
    """
    return _core.leaky_relu(x, negative_slope, out)


def leaky_relu_backward(dout: Any, x: Any, negative_slope: float = 0.01, out: Any = None) -> Any:
    """Gradient of :func:`leaky_relu`: ``dout`` where ``x > 0``, else ``negative_slope * dout``.

    Parameters
    ----------
    dout : array_like
        Gradient of the loss with respect to the forward output, float32, float64, float16 or bfloat16.
    x : array_like
        The forward input (the shape and dtype of ``dout``).
    negative_slope : float, default=0.01
        Slope for ``x <= 0``.
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be dout itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        dx, the dtype of dout (``out`` when given).
    """
    return _core.leaky_relu_backward(dout, x, negative_slope, out)


def sigmoid(x: Any, out: Any = None) -> Any:
    """Logistic sigmoid, elementwise: ``1 / (1 + exp(-x))``, evaluated without overflow for any x
    (float32/float64 within 3 ULP; float16/bfloat16 within 1 ulp, and on CPUs without AVX-512 the
    correctly rounded result, looked up per input pattern).

    Parameters
    ----------
    x : array_like
        Input, float32, float64, float16 or bfloat16 (any shape and strides; NumPy, torch tensor, CuPy or DLPack array).
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be x itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        Values in [0, 1], the dtype of x (``out`` when given).
    """
    return _core.sigmoid(x, out)


def sigmoid_backward(dout: Any, y: Any, out: Any = None) -> Any:
    """Gradient of :func:`sigmoid` from its output: ``dx = dout * y * (1 - y)``.

    Parameters
    ----------
    dout : array_like
        Gradient of the loss with respect to the forward output, float32, float64, float16 or bfloat16.
    y : array_like
        The forward output ``sigmoid(x)`` (the shape and dtype of ``dout``).
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be dout itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        dx, the dtype of dout (``out`` when given).
    """
    return _core.sigmoid_backward(dout, y, out)


def tanh(x: Any, out: Any = None) -> Any:
    """Hyperbolic tangent, elementwise (within 3 ULP, no overflow for any x).

    Parameters
    ----------
    x : array_like
        Input, float32, float64, float16 or bfloat16 (any shape and strides; NumPy, torch tensor, CuPy or DLPack array).
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be x itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        Values in [-1, 1], the dtype of x (``out`` when given).
    """
    return _core.tanh(x, out)


def tanh_backward(dout: Any, y: Any, out: Any = None) -> Any:
    """Gradient of :func:`tanh` from its output: ``dx = dout * (1 - y**2)``.

    Parameters
    ----------
    dout : array_like
        Gradient of the loss with respect to the forward output, float32, float64, float16 or bfloat16.
    y : array_like
        The forward output ``tanh(x)`` (the shape and dtype of ``dout``).
    out : array, default=None
        Where to write the result (the shape and dtype of the result; it may be dout itself, in place);
        None allocates a new C-contiguous array.

    Returns
    -------
    array
        dx, the dtype of dout (``out`` when given).
    """
    return _core.tanh_backward(dout, y, out)
