"""Optimizer objects, the stateful layer: SGD, Adagrad, RMSprop, Adam, AdamW over lists of arrays.

    opt = nnkernels.optim.Adam(params, lr=1e-3)      # params: list of float arrays (updated in place)
    for batch in data:
        grads = ...                                  # one gradient array per parameter
        opt.step(grads)
    opt.lr = 1e-4                                    # settable (schedules: nnkernels.schedules)
    np.savez("opt.npz", **opt.state_dict()); opt.load_state_dict(np.load("opt.npz"))

An object owns what the stateless step functions of :mod:`nnkernels.optim_steps` take as
arguments: the state arrays, the step count, the hyperparameters; each ``step`` is one fused
multi-tensor call of one of those functions (one parallel region for the whole model). The
numerics, hyperparameter names and defaults follow ``torch.optim`` (constant-lr trajectories
coincide).

Parameters may be NumPy arrays, torch tensors (CPU or CUDA; ``nn.Parameter`` leaves included,
updated in place as ``torch.optim`` updates them) or CuPy arrays, all on one device; they are
validated in the constructor by the same C++ check the steps run. State arrays live in the
object, zero-initialised, of each parameter's library, device, dtype and shape.
``state_dict()`` is a flat dict of plain NumPy arrays (host copies) and Python numbers (keys
like ``"exp_avg.3"``), so ``np.savez`` can store it and ``load_state_dict`` accepts the
``np.load`` result; loading validates everything first and then copies into the existing state
arrays.

16-bit parameters (NumPy float16, ``ml_dtypes.bfloat16``, torch.float16/bfloat16 tensors, CuPy
float16): the states are float32 unless ``state_dtype`` says the params' dtype;
``master_params=True`` keeps float32 master copies (made from the params; or pass your own float32
arrays, one per parameter), saved in ``state_dict`` as ``master.<i>``; ``stochastic_rounding=True``
rounds the updated params stochastically with Philox random bits from ``seed`` (None: a fresh seed
from the operating system), advanced by the object every step (Adam: the step count joins the
counter; the others: step ``t`` uses the key ``seed + t * 0x9E3779B97F4A7C15`` mod 2**64, the seed
saved in ``state_dict``), so a run is reproducible for any thread count, and the same on the CPU's
FMA levels (AVX2, AVX-512) and the GPU. See :mod:`nnkernels.optim_steps`.

Hyperparameters are validated in the constructor (as ``torch.optim`` does), by the same C++
check that the step functions run (``_core.check_optimizer_scalars``), so a bad value fails at
construction, not at some later step. A loaded state is validated the same way, and state
arrays that cannot come from these updates (a negative or NaN sum or average of squared
gradients) are refused.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _arraylib, _core
from . import optim_steps as _steps

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]


def _is_half(dt: Any) -> bool:
    """dt is float16 or ml_dtypes.bfloat16. ml_dtypes is imported only for a 2-byte dtype that NumPy does
    not know by itself (importing ml_dtypes 0.7 takes about a second: not on the float32 path)."""
    if not isinstance(dt, np.dtype):
        return False
    if dt == np.float16:
        return True
    if dt.itemsize != 2 or dt.kind != "V":
        return False
    import ml_dtypes

    return dt == np.dtype(ml_dtypes.bfloat16)


_GOLDEN = 0x9E3779B97F4A7C15  # the seed of stochastic-rounding step t of the step functions without a step count


class Optimizer:
    """Base class: parameter list, settable ``lr``, state arrays, ``state_dict``/``load_state_dict``."""

    _state_names: tuple = ()
    _hyper_names: tuple = ()
    _op: str = ""  # the step function's hyperparameter check in C++ (_core.check_optimizer_scalars)
    _nonneg_states: tuple = ()  # states that are sums / averages of squares: >= 0 by construction

    def __init__(self, params, lr: float, master_params: Any = None, stochastic_rounding: bool = False,
                 seed: Any = None, state_dtype: Any = None):
        self.params = _core.optimizer_param_list(params)  # a new list; refused as the steps refuse it
        self.lr = lr
        self.steps = 0
        self.state: dict = {}
        self._low_precision(master_params, stochastic_rounding, seed, state_dtype)

    def _low_precision(self, master_params: Any, stochastic_rounding: Any, seed: Any, state_dtype: Any) -> None:
        """16-bit parameters: master copies, stochastic rounding, the states' dtype (see the module docstring)."""
        if not isinstance(stochastic_rounding, (bool, np.bool_)):
            raise TypeError(f"stochastic_rounding: expected a bool, got {type(stochastic_rounding).__name__}")
        self.stochastic_rounding = bool(stochastic_rounding)
        if state_dtype is not None:
            try:
                sd = _arraylib.as_dtype(state_dtype)
            except TypeError:
                sd = state_dtype
            if not (sd == np.dtype(np.float32) or _is_half(sd)):
                raise TypeError(f"state_dtype: expected float32, float16 or bfloat16 (None: float32 for 16-bit "
                                f"params, the params' dtype otherwise), got {sd}")
            state_dtype = sd
        self._state_dtype = state_dtype
        with_master = master_params is not None and master_params is not False
        if self.stochastic_rounding and with_master:
            raise ValueError("stochastic_rounding: not with master_params (the params are then the float32 master "
                             "copies rounded to nearest)")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) & ((1 << 64) - 1) if self.stochastic_rounding else 0
        elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < (1 << 64):
            raise ValueError(f"seed: expected an int in [0, 2**64) or None, got {seed!r}")
        self.seed = int(seed)
        self._master = None
        if not with_master:
            return
        if master_params is True:
            for i, p in enumerate(self.params):
                dt = _arraylib.numpy_dtype(p)
                if not _is_half(dt):
                    raise TypeError(f"master_params: master copies are for float16/bfloat16 params, params[{i}] is {dt}")
            master_params = [_arraylib.astype_copy(p, "float32") for p in self.params]
        elif not isinstance(master_params, (list, tuple)):
            master_params = [master_params]
        if len(master_params) != len(self.params):
            raise ValueError(f"master_params: expected True or a list of {len(self.params)} float32 arrays (one per "
                             "param)")
        if self._state_dtype is not None and self._state_dtype != np.float32:
            raise ValueError("state_dtype: the states are float32 with master_params (the master update runs in "
                             "float32)")
        self._master = list(master_params)

    def _state_dtype_of(self, p: Any) -> Any:
        """The dtype name of p's states: None (p's own dtype) unless p is 16-bit."""
        if not _is_half(_arraylib.numpy_dtype(p)):
            return None
        return "float32" if self._state_dtype is None else self._state_dtype.name

    def _rounding(self, with_step: bool) -> dict:
        """Keywords of this step's call: master copies or stochastic rounding with this step's seed."""
        if self._master is not None:
            return {"master_params": self._master}
        if self.stochastic_rounding:
            seed = self.seed if with_step else (self.seed + self.steps * _GOLDEN) % (1 << 64)
            return {"stochastic_rounding": True, "seed": seed}
        return {}

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
            self.state[name] = [_arraylib.full_like(p, fill, self._state_dtype_of(p)) for p in self.params]
        if self._master is not None:
            self.state["master"] = self._master

    def step(self, grads) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Flat dict: ``type``, ``lr``, hyperparameters, ``steps``, ``<state>.<i>`` arrays (copies)."""
        d = {"type": type(self).__name__, "lr": self.lr, "steps": int(self.steps)}
        if self.stochastic_rounding:
            d["seed"] = np.uint64(self.seed)  # the random bits of the next steps
        for h in self._hyper_names:
            d[h] = getattr(self, h)
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                d[f"{name}.{i}"] = _arraylib.to_numpy(a)
        return d

    def load_state_dict(self, state: Any) -> None:
        """Restore from :meth:`state_dict` (or its ``np.load`` of an ``np.savez`` file). Nothing changes on error."""
        keys = set(state.keys())
        t = state["type"] if "type" in keys else None
        if t is None or str(np.asarray(t)) != type(self).__name__:
            raise ValueError(f"state: expected a {type(self).__name__} state_dict, got type {t!r}")
        expect = {"type", "lr", "steps", *self._hyper_names} | ({"seed"} if self.stochastic_rounding else set())
        names = self._state_names + (("master",) if self._master is not None else ())
        for name in names:
            expect |= {f"{name}.{i}" for i in range(len(self.params))}
        if keys != expect:
            raise ValueError(f"state: keys do not match this optimizer (missing {sorted(expect - keys)}, "
                             f"unexpected {sorted(keys - expect)})")
        new_arrays = {}
        for name in names:
            for i, p in enumerate(self.params):
                a = np.asarray(state[f"{name}.{i}"])
                own = _arraylib.numpy_dtype(self.state[name][i])  # the dtype this state array has
                if tuple(a.shape) != tuple(p.shape) or a.dtype != own:
                    raise ValueError(f"state: {name}.{i} has shape {a.shape} dtype {a.dtype}, expected the "
                                     f"shape {tuple(p.shape)} of params[{i}] and dtype {own}")
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
        if self.stochastic_rounding:
            self.seed = int(np.asarray(state["seed"]).astype(np.uint64))
        if not self.state:
            self._init_state()
        for (name, i), a in new_arrays.items():
            _arraylib.copy_from_numpy(self.state[name][i], a)

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
                 weight_decay: float = 0.0, nesterov: bool = False, *, master_params: Any = None,
                 stochastic_rounding: bool = False, seed: Any = None, state_dtype: Any = None):
        # Nesterov needs momentum > 0 and dampening == 0 (checked here, not at the second step,
        # the first one running without dampening)
        self._check_hyper(lr, dict(momentum=momentum, dampening=dampening, nesterov=nesterov,
                                   weight_decay=weight_decay))
        super().__init__(params, lr, master_params, stochastic_rounding, seed, state_dtype)
        self.momentum, self.dampening, self.weight_decay, self.nesterov = momentum, dampening, weight_decay, nesterov
        self._state_names = ("velocity",) if momentum > 0 else ()
        self._init_state()

    def step(self, grads) -> None:
        _steps.sgd_step(self.params, grads, lr=self.lr, momentum=self.momentum,
                        velocity=self.state.get("velocity"), nesterov=self.nesterov,
                        dampening=self.dampening if self.steps > 0 else 0.0, weight_decay=self.weight_decay,
                        **self._rounding(False))
        self.steps += 1


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad with lr_decay=0)."""

    _state_names = ("sum_sq",)
    _hyper_names = ("eps", "weight_decay", "initial_accumulator_value")
    _op = "adagrad"
    _nonneg_states = ("sum_sq",)

    def __init__(self, params, lr: float = 1e-2, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, *, master_params: Any = None,
                 stochastic_rounding: bool = False, seed: Any = None, state_dtype: Any = None):
        self._check_hyper(lr, dict(eps=eps, weight_decay=weight_decay,
                                   initial_accumulator_value=initial_accumulator_value))
        super().__init__(params, lr, master_params, stochastic_rounding, seed, state_dtype)
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
        _steps.adagrad_step(self.params, grads, self.state["sum_sq"], lr=self.lr, eps=self.eps,
                            weight_decay=self.weight_decay, **self._rounding(False))
        self.steps += 1


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop), optionally ``centered`` and with ``momentum``; ``eps_in_sqrt`` for
    TensorFlow's placement of eps. States ``sq_avg``, ``grad_avg`` (centered), ``velocity`` (momentum > 0)."""

    _hyper_names = ("alpha", "eps", "weight_decay", "eps_in_sqrt", "momentum", "centered")
    _op = "rmsprop"
    _nonneg_states = ("sq_avg",)

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 eps_in_sqrt: bool = False, momentum: float = 0.0, centered: bool = False, *,
                 master_params: Any = None, stochastic_rounding: bool = False, seed: Any = None,
                 state_dtype: Any = None):
        self._check_hyper(lr, dict(alpha=alpha, eps=eps, weight_decay=weight_decay, eps_in_sqrt=eps_in_sqrt,
                                   momentum=momentum, centered=centered))
        super().__init__(params, lr, master_params, stochastic_rounding, seed, state_dtype)
        self.alpha, self.eps, self.weight_decay, self.eps_in_sqrt = alpha, eps, weight_decay, eps_in_sqrt
        self.momentum, self.centered = momentum, bool(centered)
        # the states are fixed at construction (load_state_dict keeps them: momentum and centered
        # must stay what they were, as the state arrays exist or not)
        self._state_names = ("sq_avg",) + (("grad_avg",) if self.centered else ()) + (
            ("velocity",) if momentum > 0 else ())
        self._init_state()

    def _hyper_value(self, name: str, v: Any) -> Any:
        value = super()._hyper_value(name, v)
        if name == "centered" and value != self.centered:
            raise ValueError(f"state: centered={value} does not match this optimizer's centered={self.centered}")
        if name == "momentum" and (value > 0) != (self.momentum > 0):
            raise ValueError(f"state: momentum={value} does not match this optimizer's momentum={self.momentum} "
                             "(the velocity state exists only with momentum > 0)")
        return value

    def step(self, grads) -> None:
        _steps.rmsprop_step(self.params, grads, self.state["sq_avg"], lr=self.lr, alpha=self.alpha,
                            eps=self.eps, weight_decay=self.weight_decay, eps_in_sqrt=self.eps_in_sqrt,
                            momentum=self.momentum, velocity=self.state.get("velocity"), centered=self.centered,
                            grad_avg=self.state.get("grad_avg"), **self._rounding(False))
        self.steps += 1


class Adam(Optimizer):
    """Adam (torch.optim.Adam; ``weight_decay`` is L2 added to the gradient)."""

    _state_names = ("exp_avg", "exp_avg_sq")
    _hyper_names = ("betas", "eps", "weight_decay")
    _decoupled = False
    _op = "adam"
    _nonneg_states = ("exp_avg_sq",)

    def _check_hyper(self, lr: Any, hyper: dict) -> None:
        # The step's C++ check names beta1/beta2; this class takes them as `betas`.
        try:
            super()._check_hyper(lr, hyper)
        except (TypeError, ValueError) as e:
            msg = str(e)
            for i, name in enumerate(("beta1", "beta2")):
                if msg.startswith(name + ":"):
                    raise type(e)(f"betas[{i}] ({name}){msg[len(name):]}") from None
            raise

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, master_params: Any = None,
                 stochastic_rounding: bool = False, seed: Any = None, state_dtype: Any = None):
        self._check_hyper(lr, dict(betas=betas, eps=eps, weight_decay=weight_decay))
        super().__init__(params, lr, master_params, stochastic_rounding, seed, state_dtype)
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
        _steps.adam_step(self.params, grads, self.state["exp_avg"], self.state["exp_avg_sq"],
                         step=self.steps + 1, lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                         weight_decay=self.weight_decay, decoupled_weight_decay=self._decoupled,
                         **self._rounding(True))
        self.steps += 1


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): decoupled weight decay ``p *= 1 - lr*weight_decay``."""

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, master_params: Any = None,
                 stochastic_rounding: bool = False, seed: Any = None, state_dtype: Any = None):
        super().__init__(params, lr, betas, eps, weight_decay, master_params=master_params,
                         stochastic_rounding=stochastic_rounding, seed=seed, state_dtype=state_dtype)
