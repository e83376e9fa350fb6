"""Reference activations (NumPy)."""
from __future__ import annotations

import numpy as np

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
]


def relu(x):
    x = np.asarray(x)
    return np.where(x < 0, np.zeros_like(x), x)  # NaN stays NaN


def relu_backward(dout, x):
    return np.where(np.asarray(x) > 0, dout, np.zeros_like(dout))


def leaky_relu(x, negative_slope=0.01):
    x = np.asarray(x)
    return np.where(x > 0, x, x * x.dtype.type(negative_slope))


def leaky_relu_backward(dout, x, negative_slope=0.01):
    dout = np.asarray(dout)
    return np.where(np.asarray(x) > 0, dout, dout * dout.dtype.type(negative_slope))


def sigmoid(x):
    # exp(-|x|) <= 1 never overflows; x < 0 uses e / (1 + e) for relative accuracy.
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(dout, y):
    return dout * y * (1 - y)


def tanh(x):
    return np.tanh(x)


def tanh_backward(dout, y):
    return dout * (1 - y * y)
