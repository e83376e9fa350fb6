"""A small, honest training stack on top of the kernels (CPU, NumPy arrays).

Layers hold their parameters and the tensors their backward pass needs:

    model = nn.mlp([64, 256, 256, 10], activation="relu", norm="batch", init="kaiming", seed=0)
    logits = model.forward(x)                       # training mode: batch statistics
    loss, dlogits = nk.softmax_cross_entropy(logits, y)
    model.backward(dlogits)                         # fills model.grads()
    opt.step(model.grads())                         # any nnkernels.optim optimizer over model.params()

- :class:`Linear`: ``y = x @ W + b`` with ``W`` of shape (fan_in, fan_out) (cs231n's layout, the
  fan convention of :mod:`nnkernels.init`); the matrix products go through NumPy's BLAS.
- :class:`BatchNorm` / :class:`LayerNorm`: the normalization kernels, with ReLU / leaky ReLU fused
  into the same pass (``activation=``); backward works from the saved output.
- :class:`ReLU`, :class:`LeakyReLU`, :class:`Tanh`, :class:`Sigmoid`: the activation kernels.
- :class:`Sequential`: forward / backward through a list of layers, ``params()`` / ``grads()``
  (one flat list for a multi-tensor optimizer step), ``state()`` / ``load_state()`` (parameters
  and running statistics, for snapshots), ``train()`` / ``eval()``.
- :class:`EMA`: exponential moving average of the parameters (``nnkernels.ema_update``), swapped
  in for evaluation with ``with ema.applied(model): ...``.
- :func:`evaluate` / :func:`predict_proba`: batched inference in eval mode.

Synchronized batch norm for data-parallel training: :class:`BatchNorm` with ``comm`` set (see
:mod:`nnkernels.distributed`) computes its statistics with the separable kernels
(``batchnorm_stats`` / ``batchnorm_merge_stats`` / ``batchnorm_normalize`` and the backward
reductions), so every rank normalises with the statistics of the whole global batch.
"""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from . import _arraylib
from . import activations as _act
from .losses import softmax_cross_entropy

__all__ = [
    "blas_threads", "kernel_threads", "Layer", "Linear", "BatchNorm", "LayerNorm", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Sequential",
    "EMA", "mlp", "init_weight", "predict_proba", "evaluate", "ACTIVATIONS", "NORMS", "INITS",
]

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")
NORMS = ("batch", "layer", "none")
INITS = ("small", "xavier", "kaiming")
_FUSABLE = ("relu", "leaky_relu")


def _nk():
    import nnkernels

    return nnkernels


def blas_threads() -> int:
    """Threads NumPy's BLAS will use (threadpoolctl; 1 when it cannot tell)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 1
    return max([int(i.get("num_threads", 1)) for i in threadpool_info() if i.get("user_api") == "blas"] or [1])


@contextlib.contextmanager
def kernel_threads(n: Optional[int] = None) -> Iterator[None]:
    """Thread count of the nnkernels kernels inside a training loop.

    ``None`` (the training loop's default): one thread when NumPy's BLAS is multi-threaded.
    NumPy's OpenBLAS keeps its worker threads spinning for a while after each matrix product, and
    the kernels' OpenMP team spins the same way after each kernel; on a machine with few cores
    the two pools then time-slice against each other between every layer (measured on 2 cores:
    a 784-1024-1024-10 training step ran 2x slower with both pools at 2 threads). The matrix
    products dominate the step, so they keep the cores and the element-wise kernels (norms,
    activations, loss, optimizer, a few percent of the step) run on the calling thread.
    """
    nk = _nk()
    before = nk.get_num_threads()
    if n is None:
        n = 1 if blas_threads() > 1 else before
    nk.set_num_threads(int(n))
    try:
        yield
    finally:
        nk.set_num_threads(before)


def _buffer(cache: dict, key: str, shape: tuple, dtype) -> np.ndarray:
    """A reusable output buffer (reallocated when the batch shape changes)."""
    buf = cache.get(key)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = np.empty(shape, dtype)
        cache[key] = buf
    return buf


class Layer:
    """Base class: ``forward(x)``, ``backward(dout)``, parameter and gradient lists."""

    training = True

    def train(self, mode: bool = True) -> "Layer":
        """Training mode (``mode=False``: eval mode); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self) -> "Layer":
        return self.train(False)

    def params(self) -> list:
        return []

    def grads(self) -> list:
        return []

    def buffers(self) -> list:
        """Non-trainable state saved with the model (running statistics)."""
        return []

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__ + "()"


def init_weight(scheme: str, fan_in: int, fan_out: int, *, seed: int, dtype=np.float32,
                nonlinearity: str = "relu") -> np.ndarray:
    """Weight (fan_in, fan_out) by ``scheme``: 'small' (N(0, 0.01^2), the lecture's small random
    numbers), 'xavier' (Glorot normal), 'kaiming' (He normal for ``nonlinearity``, fan_in mode)."""
    from . import init

    shape = (int(fan_in), int(fan_out))
    if scheme == "small":
        return init.normal(shape, std=0.01, seed=seed, dtype=dtype)
    if scheme == "xavier":
        return init.xavier_normal(shape, gain=1.0, seed=seed, dtype=dtype)
    if scheme == "kaiming":
        nl = nonlinearity if nonlinearity in ("relu", "leaky_relu", "tanh", "sigmoid", "linear") else "relu"
        return init.kaiming_normal(shape, mode="fan_in", nonlinearity=nl, seed=seed, dtype=dtype)
    raise ValueError(f"scheme: expected one of {INITS}, got {scheme!r}")


class Linear(Layer):
    """``y = x @ W (+ b)``; W (in_features, out_features). ``input_grad=False`` skips dx (first layer)."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, init: str = "kaiming",
                 nonlinearity: str = "relu", seed: int = 0, dtype=np.float32, weight: Optional[np.ndarray] = None):
        self.in_features, self.out_features = int(in_features), int(out_features)
        dtype = _arraylib.as_dtype(dtype)
        if weight is not None:
            w = np.array(weight, dtype=dtype, copy=True)
            if w.shape != (self.in_features, self.out_features):
                raise ValueError(f"weight: expected shape {(self.in_features, self.out_features)}, got {w.shape}")
            self.W = w
        else:
            self.W = np.ascontiguousarray(init_weight(init, in_features, out_features, seed=seed, dtype=dtype,
                                                      nonlinearity=nonlinearity))
        self.b = np.zeros(self.out_features, dtype) if bias else None
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b) if bias else None
        self.input_grad = True
        self._x: Optional[np.ndarray] = None
        self._buf: dict = {}

    def params(self) -> list:
        return [self.W] if self.b is None else [self.W, self.b]

    def grads(self) -> list:
        return [self.dW] if self.b is None else [self.dW, self.db]

    def forward(self, x):
        y = _buffer(self._buf, "y", (x.shape[0], self.out_features), self.W.dtype)
        np.matmul(x, self.W, out=y)
        if self.b is not None:
            y += self.b
        self._x = x
        return y

    def backward(self, dout):
        x = self._x
        np.matmul(x.T, dout, out=self.dW)
        if self.b is not None:
            np.sum(dout, axis=0, out=self.db)
        if not self.input_grad:
            return None
        dx = _buffer(self._buf, "dx", x.shape, self.W.dtype)
        np.matmul(dout, self.W.T, out=dx)
        return dx

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features}, bias={self.b is not None})"


class _Activation(Layer):
    name = ""

    def __init__(self):
        self._buf: dict = {}
        self._saved = None

    def __repr__(self):
        return type(self).__name__ + "()"


class ReLU(_Activation):
    name = "relu"

    def forward(self, x):
        self._saved = x
        return _act.relu(x, out=_buffer(self._buf, "y", x.shape, x.dtype))

    def backward(self, dout):
        return _act.relu_backward(dout, self._saved, out=_buffer(self._buf, "dx", dout.shape, dout.dtype))


class LeakyReLU(_Activation):
    name = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        self._saved = x
        return _act.leaky_relu(x, self.negative_slope, out=_buffer(self._buf, "y", x.shape, x.dtype))

    def backward(self, dout):
        return _act.leaky_relu_backward(dout, self._saved, self.negative_slope,
                                        out=_buffer(self._buf, "dx", dout.shape, dout.dtype))

    def __repr__(self):
        return f"LeakyReLU({self.negative_slope})"


class Tanh(_Activation):
    name = "tanh"

    def forward(self, x):
        self._saved = _act.tanh(x, out=_buffer(self._buf, "y", x.shape, x.dtype))
        return self._saved

    def backward(self, dout):
        return _act.tanh_backward(dout, self._saved, out=_buffer(self._buf, "dx", dout.shape, dout.dtype))


class Sigmoid(_Activation):
    name = "sigmoid"

    def forward(self, x):
        self._saved = _act.sigmoid(x, out=_buffer(self._buf, "y", x.shape, x.dtype))
        return self._saved

    def backward(self, dout):
        return _act.sigmoid_backward(dout, self._saved, out=_buffer(self._buf, "dx", dout.shape, dout.dtype))


def activation_layer(name: str, negative_slope: float = 0.01) -> Layer:
    if name == "relu":
        return ReLU()
    if name == "leaky_relu":
        return LeakyReLU(negative_slope)
    if name == "tanh":
        return Tanh()
    if name == "sigmoid":
        return Sigmoid()
    raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {name!r}")


class _AffineNorm(Layer):
    """Shared parts of the norm layers: affine parameters and the fused-activation keywords."""

    def params(self):
        return [self.gamma, self.beta]

    def grads(self):
        return [self.dgamma, self.dbeta]

    def _act_kw(self) -> dict:
        kw = {"activation": self.activation}
        if self.activation == "leaky_relu":
            kw["negative_slope"] = self.negative_slope
        return kw


def _store(dst: np.ndarray, src) -> None:
    """dst[...] = src for a layer's NumPy gradient buffer; src an array of the input's library (a torch
    CPU bfloat16 tensor has no NumPy conversion of its own: _arraylib.to_numpy gives ml_dtypes' bfloat16)."""
    if isinstance(src, np.ndarray):
        dst[...] = src
    else:
        dst[...] = _arraylib.to_numpy(src)


def _check_norm_args(num_features, activation, dtype, name="num_features") -> np.dtype:
    """The dtype of the layer's parameters (and running statistics): float32, float64, or float16 /
    bfloat16 (16-bit storage, issue 15: x in any of the four dtypes, parameters in float32 or x's)."""
    if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
        raise ValueError(f"{name}: expected a positive int, got {num_features!r}")
    if activation not in (None,) + _FUSABLE:
        raise ValueError(f"activation: expected None, 'relu' or 'leaky_relu', got {activation!r}")
    dt = _arraylib.as_dtype(dtype)
    if dt not in (np.float32, np.float64, np.float16) and dt.name != "bfloat16":
        raise TypeError(f"dtype: expected float32, float64, float16 or bfloat16 (of the parameters), got {dt}")
    return dt
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32, float64, float16 or bfloat16 (of gamma/beta), got {dt}" if half
                        else f"dtype: expected float32 or float64, got {dt}")
    return dt


class BatchNorm(_AffineNorm):
    """Batch norm layer (``nnkernels.BatchNorm`` is this class): x of shape (N, C) or (N, C, *spatial), with
    gamma/beta, running statistics and an optional fused ReLU / leaky ReLU.

    The arguments are PyTorch's ``BatchNorm1d``/``2d`` ones in their order, plus the fused activation.
    ``forward(x)`` normalises with the batch statistics in training mode (and updates the running ones:
    PyTorch's convention, ``momentum`` weight of the new batch, unbiased running variance unless
    ``unbiased_running_var=False``), with the running statistics after ``eval()``; ``backward(dout)``
    returns dx and writes ``dgamma``/``dbeta`` in place (arrays that optimizers hold). Results are fresh
    arrays of x's library. With ``comm`` (an mpi4py communicator wrapper from :mod:`nnkernels.distributed`),
    training statistics and backward reductions are merged across ranks (synchronized batch norm).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True, activation: Optional[str] = None, negative_slope: float = 0.01,
                 unbiased_running_var: bool = True, dtype=np.float32):
        dtype = _check_norm_args(num_features, activation, dtype)
        self.num_features = int(num_features)
        self.momentum, self.eps = float(momentum), float(eps)
        self.activation, self.negative_slope = activation, float(negative_slope)
        self.unbiased_running_var = bool(unbiased_running_var)
        self.gamma = np.ones(self.num_features, dtype) if affine else None
        self.beta = np.zeros(self.num_features, dtype) if affine else None
        self.dgamma = np.zeros(self.num_features, dtype) if affine else None
        self.dbeta = np.zeros(self.num_features, dtype) if affine else None
        self.running_mean = np.zeros(self.num_features, dtype) if track_running_stats else None
        self.running_var = np.ones(self.num_features, dtype) if track_running_stats else None
        self.comm = None  # set by nnkernels.distributed for synchronized batch norm
        self._saved = None

    def params(self):
        return [] if self.gamma is None else [self.gamma, self.beta]

    def grads(self):
        return [] if self.gamma is None else [self.dgamma, self.dbeta]

    def buffers(self):
        return [] if self.running_mean is None else [self.running_mean, self.running_var]

    def forward(self, x):
        nk = _nk()
        batch_stats = self.training or self.running_mean is None
        if batch_stats and self.comm is not None:
            return self._forward_sync(x)
        y, mean, rstd = nk.batchnorm_forward(
            x, self.gamma, self.beta, training=batch_stats, running_mean=self.running_mean,
            running_var=self.running_var, momentum=self.momentum, eps=self.eps,
            unbiased_running_var=self.unbiased_running_var, **self._act_kw())
        self._saved = (x, y, mean, rstd, None, batch_stats)
        return y

    __call__ = forward

    def _forward_sync(self, x):
        nk = _nk()
        count, mean, m2 = nk.batchnorm_stats(x)
        counts, means, m2s = self.comm.allgather_stats(count, mean, m2)
        gcount, gmean, gm2 = nk.batchnorm_merge_stats(counts, means, m2s)
        gcount = int(gcount)
        nk._core.batchnorm_check_training_count(np.shape(x), gcount)  # the check of batchnorm_forward(training=True)
        gmean = np.asarray(gmean)
        var = np.asarray(gm2) / gcount
        rstd = 1.0 / np.sqrt(var + self.eps)
        rstd = rstd.astype(gmean.dtype, copy=False)
        y = nk.batchnorm_normalize(x, gmean, rstd, self.gamma, self.beta, **self._act_kw())
        if self.running_mean is not None:
            m = self.momentum
            unbiased = np.asarray(gm2) / (max(gcount - 1, 1) if self.unbiased_running_var else gcount)
            self.running_mean[...] = (1 - m) * self.running_mean + m * gmean
            self.running_var[...] = (1 - m) * self.running_var + m * unbiased
        self._saved = (x, y, gmean, rstd, gcount, True)
        return y

    def backward(self, dout):
        if self._saved is None:
            raise RuntimeError("backward: call forward first")
        nk = _nk()
        x, y, mean, rstd, gcount, batch_stats = self._saved
        kw = dict(self._act_kw(), y=y if self.activation else None)
        if not batch_stats:
            # Running statistics are constants: dx = g * gamma * rstd (the batch sums do not enter).
            sg, sgx = nk.batchnorm_backward_reduce(dout, x, mean, rstd, **kw)
            zeros = rstd * 0  # per-channel zeros of x's library, on its device
            n = max(int(np.prod(np.shape(x))) // self.num_features, 1)
            dx = nk.batchnorm_backward_elemt(dout, x, self.gamma, mean, rstd, zeros, zeros, n, **kw)
            if self.gamma is not None:
                _store(self.dgamma, sgx)
                _store(self.dbeta, sg)
            return dx
        if gcount is None:
            dx, dgamma, dbeta = nk.batchnorm_backward(dout, x, self.gamma, mean, rstd, **kw)
            if self.gamma is not None:
                _store(self.dgamma, dgamma)
                _store(self.dbeta, dbeta)
            return dx
        sum_dout, sum_dout_xhat = nk.batchnorm_backward_reduce(dout, x, mean, rstd, **kw)
        # Local contributions are the parameter gradients (summed over ranks with the others);
        # dx needs the global sums now.
        if self.gamma is not None:
            _store(self.dgamma, sum_dout_xhat)
            _store(self.dbeta, sum_dout)
        g_sum_dout, g_sum_dout_xhat = self.comm.allreduce_pair(np.asarray(sum_dout), np.asarray(sum_dout_xhat))
        return nk.batchnorm_backward_elemt(dout, x, self.gamma, mean, rstd, g_sum_dout, g_sum_dout_xhat, gcount,
                                           **kw)

    def __repr__(self):
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"BatchNorm({self.num_features}{act})"


class LayerNorm(_AffineNorm):
    """Layer norm over the last axis (``nnkernels.LayerNorm`` is this class) with gamma/beta and an optional
    fused ReLU / leaky ReLU.

    The arguments are PyTorch's ``LayerNorm`` ones (``normalized_shape``: the last axis' length, an int or a
    1-tuple) plus the fused activation. ``forward(x)`` returns a fresh array of x's library; ``backward(dout)``
    returns dx and writes ``dgamma``/``dbeta`` in place. Layer norm behaves the same in training and eval mode.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 activation: Optional[str] = None, negative_slope: float = 0.01, dtype=np.float32):
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if len(shape) != 1:
            raise ValueError(f"normalized_shape: expected a positive int (the last axis), got {normalized_shape!r}")
        dtype = _check_norm_args(shape[0], activation, dtype, "normalized_shape")
        self.num_features = int(shape[0])
        self.normalized_shape = (self.num_features,)
        self.eps = float(eps)
        self.activation, self.negative_slope = activation, float(negative_slope)
        self.gamma = np.ones(self.num_features, dtype) if elementwise_affine else None
        self.beta = np.zeros(self.num_features, dtype) if elementwise_affine else None
        self.dgamma = np.zeros(self.num_features, dtype) if elementwise_affine else None
        self.dbeta = np.zeros(self.num_features, dtype) if elementwise_affine else None
        self._saved = None

    def params(self):
        return [] if self.gamma is None else [self.gamma, self.beta]

    def grads(self):
        return [] if self.gamma is None else [self.dgamma, self.dbeta]

    def forward(self, x):
        nk = _nk()
        y, mean, rstd = nk.layernorm_forward(x, self.gamma, self.beta, eps=self.eps, **self._act_kw())
        self._saved = (x, y, mean, rstd)
        return y

    __call__ = forward

    def backward(self, dout):
        if self._saved is None:
            raise RuntimeError("backward: call forward first")
        nk = _nk()
        x, y, mean, rstd = self._saved
        dx, dgamma, dbeta = nk.layernorm_backward(dout, x, self.gamma, mean, rstd,
                                                  y=y if self.activation else None, **self._act_kw())
        if self.gamma is not None:
            _store(self.dgamma, dgamma)
            _store(self.dbeta, dbeta)
        return dx

    def __repr__(self):
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"LayerNorm({self.num_features}{act})"


class Sequential(Layer):
    """Layers applied in order. The first layer's input gradient is not computed."""

    def __init__(self, layers: Sequence[Layer]):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Linear):
                layer.input_grad = i > 0
        self.training = True

    def train(self, mode: bool = True) -> "Sequential":
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def params(self) -> list:
        return [p for layer in self.layers for p in layer.params()]

    def grads(self) -> list:
        return [g for layer in self.layers for g in layer.grads()]

    def buffers(self) -> list:
        return [b for layer in self.layers for b in layer.buffers()]

    def state(self) -> list:
        """Copies of every parameter and running statistic (a snapshot)."""
        return [a.copy() for a in self.params() + self.buffers()]

    def load_state(self, state: Sequence[np.ndarray]) -> None:
        targets = self.params() + self.buffers()
        if len(state) != len(targets):
            raise ValueError(f"state: expected {len(targets)} arrays, got {len(state)}")
        for t, s in zip(targets, state):
            if t.shape != np.shape(s):
                raise ValueError(f"state: expected an array of shape {t.shape}, got {np.shape(s)}")
        for t, s in zip(targets, state):
            t[...] = s

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dout):
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params()))

    def __repr__(self):
        return "Sequential(\n  " + ",\n  ".join(repr(layer) for layer in self.layers) + "\n)"


def mlp(sizes: Sequence[int], *, activation: str = "relu", norm: str = "batch", init: str = "kaiming",
        seed: int = 0, dtype=np.float32, negative_slope: float = 0.01, momentum: float = 0.1,
        eps: float = 1e-5) -> Sequential:
    """Multi-layer perceptron ``sizes[0] -> ... -> sizes[-1]``: Linear, norm (with the activation fused
    when it is ReLU / leaky ReLU), activation, ..., final Linear (logits). Linear layers followed by a
    norm have no bias (the norm's beta plays that role). Layer k's weight uses seed ``seed * 1000 + k``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {init!r}")
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes: expected at least two positive layer sizes, got {sizes}")
    layers: list = []
    for k in range(len(sizes) - 1):
        last = k == len(sizes) - 2
        nl = "linear" if last else activation
        layers.append(Linear(sizes[k], sizes[k + 1], bias=last or norm == "none", init=init, nonlinearity=nl,
                             seed=seed * 1000 + k, dtype=dtype))
        if last:
            break
        fused = activation if activation in _FUSABLE else None
        if norm == "batch":
            layers.append(BatchNorm(sizes[k + 1], activation=fused, negative_slope=negative_slope,
                                    momentum=momentum, eps=eps, dtype=dtype))
        elif norm == "layer":
            layers.append(LayerNorm(sizes[k + 1], activation=fused, negative_slope=negative_slope, eps=eps,
                                    dtype=dtype))
        if norm == "none" or fused is None:
            layers.append(activation_layer(activation, negative_slope))
    return Sequential(layers)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def predict_proba(model: Sequential, X: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Class probabilities in eval mode (the model's mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        out = [_softmax(np.array(model.forward(X[i:i + batch_size]), dtype=np.float64))
               for i in range(0, len(X), batch_size)]
    finally:
        if was_training:
            model.train()
    return np.concatenate(out) if out else np.zeros((0, 0))


def evaluate(model: Sequential, X: np.ndarray, y: np.ndarray, *, batch_size: int = 1024) -> tuple:
    """(mean cross-entropy, accuracy) in eval mode."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    try:
        for i in range(0, len(X), batch_size):
            logits = model.forward(X[i:i + batch_size])
            yb = y[i:i + batch_size]
            loss, _ = softmax_cross_entropy(logits, yb)
            total += loss * len(yb)
            correct += int((np.argmax(logits, axis=1) == yb).sum())
    finally:
        if was_training:
            model.train()
    n = max(len(X), 1)
    return total / n, correct / n


class EMA:
    """Exponential moving average of a model's parameters: ``avg = decay * avg + (1 - decay) * p``
    after each optimizer step (``nnkernels.ema_update``, one fused multi-tensor call)."""

    def __init__(self, model: Sequential, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a value in [0, 1), got {decay}")
        self.model, self.decay = model, float(decay)
        self.averages = [p.copy() for p in model.params()]

    def update(self) -> None:
        _nk().ema_update(self.averages, self.model.params(), decay=self.decay)

    @contextlib.contextmanager
    def applied(self, model: Optional[Sequential] = None) -> Iterator[None]:
        """Swap the averaged weights into the model for the enclosed block."""
        model = model or self.model
        params = model.params()
        saved = [p.copy() for p in params]
        for p, a in zip(params, self.averages):
            p[...] = a
        try:
            yield
        finally:
            for p, s in zip(params, saved):
                p[...] = s


def iterate_minibatches(n: int, batch_size: int, rng: np.random.Generator, *, shuffle: bool = True,
                        drop_last: bool = False) -> Iterable[np.ndarray]:
    """Index arrays of the mini-batches of one epoch (a permutation drawn from ``rng``)."""
    idx = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - (n % batch_size) if drop_last else n
    for i in range(0, stop, batch_size):
        yield idx[i:i + batch_size]
