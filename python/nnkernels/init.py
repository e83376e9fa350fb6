"""Weight initialisation with a reproducible counter-based generator.

    W = nk.init.kaiming_normal((256, 128), seed=0)          # (fan_in, fan_out) for x @ W
    K = nk.init.xavier_uniform((64, 3, 3, 3), seed=1)       # (out_channels, in_channels, kh, kw)

Random numbers come from Philox4x32-10 (Salmon et al., SC'11) implemented in nnkernels:
element i of the output depends only on ``seed`` and i, so the same seed and shape give
bit-identical arrays for any thread count, instruction set, and on the GPU. ``out`` (keyword)
fills an existing array in place and returns it: a NumPy array, a torch tensor (CPU or CUDA,
``nn.Parameter`` included: its values are data), a CuPy array, of the requested shape, any strides
(a non-contiguous array gets the numbers of a C-contiguous one, in C order); without ``out`` the
result is a new NumPy array. Uniform numbers use the top 24 (float32) or 53 (float64) bits;
float16 and bfloat16 (``dtype=np.float16``, ``dtype="bfloat16"`` or ``ml_dtypes.bfloat16``, or such an
``out``: torch.float16/bfloat16 tensors too) are the float32 numbers of the same seed rounded to
nearest even; normal numbers use the Box-Muller transform with portable log/sin/cos polynomials (details
in csrc/cpu/init.hpp). ``seed=None`` draws a fresh seed from the operating system.

Fan convention: a 2-D weight is (fan_in, fan_out) as used by ``x @ W`` (cs231n's layout);
a weight with 3 or more dimensions is (out_channels, in_channels, *kernel) as in convolutions,
fan_in = in_channels * prod(kernel), fan_out = out_channels * prod(kernel).
Gains follow PyTorch's ``torch.nn.init.calculate_gain``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np

from . import _core

__all__ = [
    "normal", "uniform", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
    "calculate_gain", "fan_in_and_fan_out",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """Recommended gain for a nonlinearity (PyTorch's values).

    linear/conv*/sigmoid: 1, tanh: 5/3, relu: sqrt(2), leaky_relu: sqrt(2 / (1 + slope^2))
    (slope = param, default 0.01), selu: 3/4.
    """
    if nonlinearity in _LINEAR or nonlinearity == "sigmoid":
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        else:
            slope = _real(param, "param")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"nonlinearity: unsupported nonlinearity {nonlinearity!r}")


def _real(value, name: str) -> float:
    """A finite real number (int, float, NumPy real scalar): TypeError / ValueError naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def fan_in_and_fan_out(shape) -> tuple:
    """(fan_in, fan_out) of a weight shape (see the module docstring for the convention)."""
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"shape: fan in and fan out need a weight with at least 2 dimensions, got {shape}")
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = 1
    for k in shape[2:]:
        receptive *= k
    return shape[1] * receptive, shape[0] * receptive


def _shape(shape) -> tuple:
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape: expected an int or a tuple of ints, got {type(shape).__name__}") from None
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"shape: expected a tuple of ints, got {shape!r}")
        if d < 0:
            raise ValueError(f"shape: dimensions must be non-negative, got {shape!r}")
        out.append(int(d))
    return tuple(out)


def _seed(seed) -> int:
    if seed is None:
        return int(np.random.SeedSequence().entropy) & ((1 << 64) - 1)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an int in [0, 2**64) or None, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < (1 << 64):
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed}")
    return seed


def _fill(shape, dist: int, a: float, b: float, seed, dtype, out) -> Any:
    # dtype (None: out's, else float32) and out (type, dtype, shape, writeable, device) are checked
    # in C++ (csrc/bindings/init.cpp), which fills any array library's array in place
    return _core.init_fill(out, _shape(shape), dtype, dist, _seed(seed), a, b)


def normal(shape, std: float = 0.01, *, seed: Optional[int] = None, dtype=None, out: Any = None) -> Any:
    """Normal(0, std^2) numbers ("small random numbers"); float32 unless dtype/out say otherwise."""
    std = _real(std, "std")
    if std < 0:
        raise ValueError(f"std: expected a non-negative number, got {std}")
    return _fill(shape, 1, 0.0, std, seed, dtype, out)


def uniform(shape, low: float = 0.0, high: float = 1.0, *, seed: Optional[int] = None, dtype=None,
            out: Any = None) -> Any:
    """Uniform numbers in [low, high) computed as low + (high - low) * u, u in [0, 1)."""
    low, high = _real(low, "low"), _real(high, "high")
    if not high >= low:
        raise ValueError(f"high: expected high >= low, got low={low}, high={high}")
    return _fill(shape, 0, low, high - low, seed, dtype, out)


def xavier_uniform(shape, gain: float = 1.0, *, seed: Optional[int] = None, dtype=None, out: Any = None) -> Any:
    """U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    a = _real(gain, "gain") * math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return _fill(shape, 0, -a, 2 * a, seed, dtype, out)


def xavier_normal(shape, gain: float = 1.0, *, seed: Optional[int] = None, dtype=None, out: Any = None) -> Any:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(shape)
    std = _real(gain, "gain") * math.sqrt(2.0 / max(fan_in + fan_out, 1))
    return _fill(shape, 1, 0.0, std, seed, dtype, out)


def _kaiming_std(shape, a, mode, nonlinearity) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode: expected 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    if a is not None:
        a = _real(a, "a")
    return calculate_gain(nonlinearity, a) / math.sqrt(max(fan, 1))


def kaiming_uniform(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                    seed: Optional[int] = None, dtype=None, out: Any = None) -> Any:
    """U(-bound, bound), bound = sqrt(3) * gain / sqrt(fan) (He et al. 2015); a = leaky-ReLU slope."""
    bound = math.sqrt(3.0) * _kaiming_std(shape, a, mode, nonlinearity)
    return _fill(shape, 0, -bound, 2 * bound, seed, dtype, out)


def kaiming_normal(shape, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                   seed: Optional[int] = None, dtype=None, out: Any = None) -> Any:
    """N(0, std^2), std = gain / sqrt(fan) (He et al. 2015); a = leaky-ReLU slope."""
    std = _kaiming_std(shape, a, mode, nonlinearity)
    return _fill(shape, 1, 0.0, std, seed, dtype, out)
