"""Optimizer objects over lists of arrays: SGD, Adagrad, RMSprop, Adam, AdamW.

    opt = nnkernels.optim.Adam(params, lr=1e-3)      # params: list of float arrays (updated in place)
    for batch in data:
        grads = ...                                  # one gradient array per parameter
        opt.step(grads)
    opt.lr = 1e-4                                    # settable (schedules: nnkernels.schedules)
    np.savez("opt.npz", **opt.state_dict()); opt.load_state_dict(np.load("opt.npz"))

Each ``step`` is one fused multi-tensor call of :mod:`nnkernels.optimizers` (one parallel
region for the whole model); the numerics, hyperparameter names and defaults follow
``torch.optim`` (constant-lr trajectories coincide). State arrays live in the object,
zero-initialised, same dtype and shape as each parameter. ``state_dict()`` is a flat dict
of plain NumPy arrays and Python numbers (keys like ``"exp_avg.3"``), so ``np.savez`` can
store it and ``load_state_dict`` accepts the ``np.load`` result; loading validates
everything first and then copies into the existing state arrays.

Hyperparameters are validated in the constructor (as ``torch.optim`` does), by the same C++
check that the step functions run (``_core.check_optimizer_scalars``), so a bad value fails at
construction, not at some later step. A loaded state is validated the same way, and state
arrays that cannot come from these updates (a negative or NaN sum or average of squared
gradients) are refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _gpu
from . import optimizers as _ops

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]


def _zeros_like(p: Any, fill: float = 0.0) -> Any:
    if isinstance(p, np.ndarray):
        return np.full(p.shape, fill, dtype=p.dtype)
    lib = type(p).__module__.split(".")[0]
    if lib == "cupy":
        import cupy

        with p.device:
            return cupy.full(p.shape, fill, dtype=p.dtype)
    if lib == "torch":
        import torch

        return torch.full_like(p, fill, memory_format=torch.contiguous_format)
    raise TypeError(f"params: unsupported array type {type(p).__name__}")


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a.copy()
    lib = type(a).__module__.split(".")[0]
    if lib == "cupy":
        import cupy

        return cupy.asnumpy(a)
    return a.detach().cpu().numpy()


def _copy_into(dst: Any, src: np.ndarray) -> None:
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src)
    else:
        lib = type(dst).__module__.split(".")[0]
        if lib == "cupy":
            import cupy

            dst[...] = cupy.asarray(src)
        else:
            import torch

            dst.copy_(torch.from_numpy(np.ascontiguousarray(src)))


class Optimizer:
    """Base class: parameter list, settable ``lr``, state arrays, ``state_dict``/``load_state_dict``."""

    _state_names: tuple = ()
    _hyper_names: tuple = ()
    _op: str = ""  # the step function's hyperparameter check in C++ (_core.check_optimizer_scalars)
    _nonneg_states: tuple = ()  # states that are sums / averages of squares: >= 0 by construction

    def __init__(self, params, lr: float):
        if isinstance(params, np.ndarray) or _gpu.is_gpu_array(params):
            params = [params]
        if not isinstance(params, (list, tuple)):
            raise TypeError(f"params: expected a list of arrays, got {type(params).__name__}")
        for i, p in enumerate(params):
            if not (isinstance(p, np.ndarray) or _gpu.is_gpu_array(p)):
                raise TypeError(f"params[{i}]: expected an array, got {type(p).__name__}")
            if isinstance(p, np.ndarray):
                if p.dtype not in (np.float32, np.float64):
                    raise TypeError(f"params[{i}]: expected a float32 or float64 array, got dtype {p.dtype}")
                if not p.flags.c_contiguous:
                    raise ValueError(f"params[{i}]: expected a C-contiguous array (updated in place)")
                if not p.flags.writeable:
                    raise ValueError(f"params[{i}]: array is read-only")
        self.params = list(params)
        self.lr = lr
        self.steps = 0
        self.state: dict = {}

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TypeError(f"lr: expected a real number, got {type(value).__name__}")
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"lr: expected a finite number >= 0, got {value}")
        self._lr = value

    def _step_scalars(self, lr: float, hyper: dict) -> dict:
        """The keyword arguments of the step function's hyperparameter check for these values."""
        return dict(hyper, lr=lr)

    def _check_hyper(self, lr: Any, hyper: dict) -> None:
        """Refuse hyperparameters the step would refuse (one check, in C++), before any state exists."""
        _core.check_optimizer_scalars(self._op, self._step_scalars(lr, hyper))

    def _hyper(self) -> dict:
        return {h: getattr(self, h) for h in self._hyper_names}

    def _init_state(self, fill: float = 0.0) -> None:
        for name in self._state_names:
            self.state[name] = [_zeros_like(p, fill) for p in self.params]

    def step(self, grads) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _grads(self, grads) -> list:
        if isinstance(grads, np.ndarray) or _gpu.is_gpu_array(grads):
            grads = [grads]
        if not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads: expected a list of arrays, got {type(grads).__name__}")
        return grads

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Flat dict: ``type``, ``lr``, hyperparameters, ``steps``, ``<state>.<i>`` arrays (copies)."""
        d = {"type": type(self).__name__, "lr": self.lr, "steps": int(self.steps)}
        for h in self._hyper_names:
            d[h] = getattr(self, h)
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                d[f"{name}.{i}"] = _to_numpy(a)
        return d

    def load_state_dict(self, state: Any) -> None:
        """Restore from :meth:`state_dict` (or its ``np.load`` of an ``np.savez`` file). Nothing changes on error."""
        keys = set(state.keys())
        t = state["type"] if "type" in keys else None
        if t is None or str(np.asarray(t)) != type(self).__name__:
            raise ValueError(f"state: expected a {type(self).__name__} state_dict, got type {t!r}")
        expect = {"type", "lr", "steps", *self._hyper_names}
        for name in self._state_names:
            expect |= {f"{name}.{i}" for i in range(len(self.params))}
        if keys != expect:
            raise ValueError(f"state: keys do not match this optimizer (missing {sorted(expect - keys)}, "
                             f"unexpected {sorted(keys - expect)})")
        new_arrays = {}
        for name in self._state_names:
            for i, p in enumerate(self.params):
                a = np.asarray(state[f"{name}.{i}"])
                if tuple(a.shape) != tuple(p.shape) or a.dtype != np.dtype(str(p.dtype).replace("torch.", "")):
                    raise ValueError(f"state: {name}.{i} has shape {a.shape} dtype {a.dtype}, expected the "
                                     f"shape {tuple(p.shape)} and dtype of params[{i}]")
                if name in self._nonneg_states and a.size and not (a >= 0).all():  # NaN fails too
                    raise ValueError(f"state: {name}.{i} has negative or NaN entries (a sum or average of "
                                     "squared gradients is >= 0)")
                new_arrays[(name, i)] = a
        hyper = {h: self._hyper_value(h, state[h]) for h in self._hyper_names}
        lr = float(np.asarray(state["lr"]))
        steps = int(np.asarray(state["steps"]))
        if steps < 0:
            raise ValueError(f"state: steps must be >= 0, got {steps}")
        self._check_hyper(lr, hyper)
        self.lr = lr  # validates
        for h, v in hyper.items():
            setattr(self, h, v)
        self.steps = steps
        if not self.state:
            self._init_state()
        for (name, i), a in new_arrays.items():
            _copy_into(self.state[name][i], a)

    def _hyper_value(self, name: str, v: Any) -> Any:
        cur = getattr(self, name)
        v = np.asarray(v)
        if isinstance(cur, bool):
            return bool(v)
        if isinstance(cur, tuple):
            return tuple(float(x) for x in v)
        return float(v)


class SGD(Optimizer):
    """SGD with optional momentum / dampening / Nesterov / L2 weight decay (torch.optim.SGD).

    The velocity starts at zero; the first step uses no dampening, so the velocity after it
    is the gradient (PyTorch's ``buf = clone(grad)``)."""

    _hyper_names = ("momentum", "dampening", "nesterov", "weight_decay")
    _op = "sgd"

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        # Nesterov needs momentum > 0 and dampening == 0 (checked here, not at the second step,
        # the first one running without dampening)
        self._check_hyper(lr, dict(momentum=momentum, dampening=dampening, nesterov=nesterov,
                                   weight_decay=weight_decay))
        super().__init__(params, lr)
        self.momentum, self.dampening, self.weight_decay, self.nesterov = momentum, dampening, weight_decay, nesterov
        self._state_names = ("velocity",) if momentum > 0 else ()
        self._init_state()

    def step(self, grads) -> None:
        grads = self._grads(grads)
        _ops.sgd_step(self.params, grads, lr=self.lr, momentum=self.momentum,
                      velocity=self.state.get("velocity"), nesterov=self.nesterov,
                      dampening=self.dampening if self.steps > 0 else 0.0, weight_decay=self.weight_decay)
        self.steps += 1


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad with lr_decay=0)."""

    _state_names = ("sum_sq",)
    _hyper_names = ("eps", "weight_decay", "initial_accumulator_value")
    _op = "adagrad"
    _nonneg_states = ("sum_sq",)

    def __init__(self, params, lr: float = 1e-2, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10):
        self._check_hyper(lr, dict(eps=eps, weight_decay=weight_decay,
                                   initial_accumulator_value=initial_accumulator_value))
        super().__init__(params, lr)
        self.eps, self.weight_decay, self.initial_accumulator_value = eps, weight_decay, initial_accumulator_value
        self._init_state(initial_accumulator_value)

    def _step_scalars(self, lr: float, hyper: dict) -> dict:
        # The accumulator's starting value is this class's own argument (not one of the step's):
        # it fills sum_sq, which must be a finite sum of squares (torch.optim.Adagrad refuses < 0 too).
        v = hyper["initial_accumulator_value"]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"initial_accumulator_value: expected a real number, got {type(v).__name__}")
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"initial_accumulator_value: expected a finite number >= 0, got {float(v)}")
        return dict(lr=lr, eps=hyper["eps"], weight_decay=hyper["weight_decay"])

    def step(self, grads) -> None:
        _ops.adagrad_step(self.params, self._grads(grads), self.state["sum_sq"], lr=self.lr, eps=self.eps,
                          weight_decay=self.weight_decay)
        self.steps += 1


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop, not centered, no momentum); ``eps_in_sqrt`` for TensorFlow's placement."""

    _state_names = ("sq_avg",)
    _hyper_names = ("alpha", "eps", "weight_decay", "eps_in_sqrt")
    _op = "rmsprop"
    _nonneg_states = ("sq_avg",)

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 eps_in_sqrt: bool = False):
        self._check_hyper(lr, dict(alpha=alpha, eps=eps, weight_decay=weight_decay, eps_in_sqrt=eps_in_sqrt))
        super().__init__(params, lr)
        self.alpha, self.eps, self.weight_decay, self.eps_in_sqrt = alpha, eps, weight_decay, eps_in_sqrt
        self._init_state()

    def step(self, grads) -> None:
        _ops.rmsprop_step(self.params, self._grads(grads), self.state["sq_avg"], lr=self.lr, alpha=self.alpha,
                          eps=self.eps, weight_decay=self.weight_decay, eps_in_sqrt=self.eps_in_sqrt)
        self.steps += 1


class Adam(Optimizer):
    """Adam (torch.optim.Adam; ``weight_decay`` is L2 added to the gradient)."""

    _state_names = ("exp_avg", "exp_avg_sq")
    _hyper_names = ("betas", "eps", "weight_decay")
    _decoupled = False
    _op = "adam"
    _nonneg_states = ("exp_avg_sq",)

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self._check_hyper(lr, dict(betas=betas, eps=eps, weight_decay=weight_decay))
        super().__init__(params, lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps, self.weight_decay = eps, weight_decay
        self._init_state()

    def _step_scalars(self, lr: float, hyper: dict) -> dict:
        betas = hyper["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        return dict(step=1, lr=lr, beta1=betas[0], beta2=betas[1], eps=hyper["eps"],
                    weight_decay=hyper["weight_decay"], decoupled_weight_decay=self._decoupled)

    def step(self, grads) -> None:
        _ops.adam_step(self.params, self._grads(grads), self.state["exp_avg"], self.state["exp_avg_sq"],
                       step=self.steps + 1, lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                       weight_decay=self.weight_decay, decoupled_weight_decay=self._decoupled)
        self.steps += 1


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): decoupled weight decay ``p *= 1 - lr*weight_decay``."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
