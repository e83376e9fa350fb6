"""``torch.optim`` optimizers on nnkernels' fused multi-tensor kernels: SGD, Adam, AdamW, RMSprop, Adagrad.

    opt = nnkernels.torch.optim.Adam(model.parameters(), lr=1e-3)   # torch.optim.Adam's arguments
    loss.backward(); opt.step(); opt.zero_grad()

Each class subclasses ``torch.optim.Optimizer`` (param groups, ``zero_grad``, ``step(closure)``,
hooks, ``add_param_group``) and keeps torch.optim's hyperparameter names, defaults and state names
(``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``, ``square_avg``, ``grad_avg``,
``sum``), so a ``state_dict`` of torch.optim's optimizer loads into ours and ours into torch's.
Parameters without a gradient are skipped. One ``step`` makes ONE fused kernel call per param
group (:mod:`nnkernels.optim_steps`, which takes the tensors themselves, nn.Parameters included:
every tensor of the group in one parallel region, each element read and written once); a group is
split only where the update differs per tensor: per device, per distinct ``step`` count for
Adam/AdamW (bias correction) and Adagrad (``lr_decay``), and SGD's first momentum step (PyTorch's
``buf = d``).
Trajectories equal torch.optim's (its default, per-tensor CPU implementation) to float rounding.

16-bit parameters (torch.float16 / torch.bfloat16, CPU or CUDA; issue 15): the kernels compute in
float32 (eps and the division too) and round the updated parameter to nearest; the states are the
params' dtype as in torch.optim unless ``state_dtype=torch.float32``. Keyword options of every class
(for the whole optimizer; they are not in ``param_groups``, which keep torch.optim's keys):

* ``master_params=True``: a float32 master copy of each 16-bit parameter (state ``master_param``,
  made from the parameter at its first step; float32 states): the update runs on it, bitwise the
  float32 update, and the parameter becomes it rounded to nearest. float32/float64 parameters of
  the group are updated as usual.
* ``stochastic_rounding=True, seed=None``: the updated 16-bit parameter is rounded stochastically
  (unbiased) with Philox random bits keyed by ``seed`` (None: drawn from the operating system),
  the parameter's step count and the element's index in the kernel call, as :mod:`nnkernels.optim`
  keys them (param group ``i`` offsets the seed by ``i * 0xD1B54A32D192ED03``): bitwise reproducible
  for any thread count, on the CPU's FMA levels and the GPU. SGD then keeps a ``step`` state too;
  ``state_dict()["nnkernels"]["seed"]`` holds the seed, and loading it continues the same bits.

A state_dict keeps float32 states and master copies in float32 when loaded (torch.optim's loading
casts floating-point state to the parameter's dtype; this class casts each state back to the dtype
its update uses, from the saved values).

Not supported (ValueError when set): ``capturable`` and ``differentiable``; sparse gradients. ``foreach`` and ``fused`` are accepted and ignored (the
update is always fused and multi-tensor). Parameters must be C-contiguous (updated in place).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Optional

import numpy as np
import torch

import nnkernels as nk


__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]

_HALF = (torch.float16, torch.bfloat16)
_GOLDEN = 0x9E3779B97F4A7C15  # step t's key of the step functions without a step count (nnkernels.optim's)
_GROUP_STRIDE = 0xD1B54A32D192ED03  # param group i's offset of the seed (distinct random words per group)


def _written(ts: list) -> None:
    """Tell autograd that a kernel wrote these tensors in place (what torch's own in-place ops do;
    nnkernels' C++ writes through the tensor's data pointer), so that a tensor saved for a backward
    and modified since is still detected."""
    torch.autograd.graph.increment_version(ts)


def _low_precision(master_params, stochastic_rounding, seed, state_dtype) -> dict:
    """The 16-bit options of a class, validated (see the module docstring)."""
    for flag, v in (("master_params", master_params), ("stochastic_rounding", stochastic_rounding)):
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{flag}: expected a bool, got {type(v).__name__}")
    if master_params and stochastic_rounding:
        raise ValueError("stochastic_rounding: not with master_params (the params are then the float32 master "
                         "copies rounded to nearest)")
    if state_dtype not in (None, torch.float32):
        raise TypeError(f"state_dtype: expected None (the params' dtype, as torch.optim) or torch.float32, got "
                        f"{state_dtype!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) & ((1 << 64) - 1) if stochastic_rounding else 0
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < (1 << 64):
        raise ValueError(f"seed: expected an int in [0, 2**64) or None, got {seed!r}")
    return dict(master_params=bool(master_params), stochastic_rounding=bool(stochastic_rounding), seed=int(seed),
                state_dtype=state_dtype)


def _value(x: Any) -> Any:
    return x.item() if isinstance(x, torch.Tensor) else x


def _step_tensor() -> torch.Tensor:
    # torch.optim's convention for the non-capturable, non-fused step: a 0-d CPU tensor, float64 when
    # that is the default dtype, else float32 (torch.optim.optimizer._get_scalar_dtype).
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return torch.tensor(0.0, dtype=dtype)


class _Optimizer(torch.optim.Optimizer):
    """Common machinery: hyperparameter checks per group, gradient collection, buckets."""

    _check_op: str = ""  # the kernel's hyperparameter check (nnkernels._core.check_optimizer_scalars)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._validate(self.param_groups[-1])

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for k, v in self.defaults.items():
                group.setdefault(k, v)

    def _validate(self, group: dict) -> None:
        for flag in ("capturable", "differentiable"):
            if group.get(flag):
                raise ValueError(f"{flag}: not supported by nnkernels.torch.optim (use torch.optim for {flag}=True)")
        nk._core.check_optimizer_scalars(self._check_op, self._kernel_kw(group, step=1))

    def __getstate__(self) -> dict:
        # torch.optim.Optimizer pickles defaults / state / param_groups only: keep the 16-bit options too
        return dict(super().__getstate__(), _lp=self._lp)

    def state_dict(self) -> dict:
        d = super().state_dict()
        if self._lp["stochastic_rounding"]:
            d["nnkernels"] = {"seed": self._lp["seed"]}  # the random bits of the next steps (torch.optim ignores it)
        return d

    # -------------------------------------------------------------- 16-bit parameters
    def _state_dtype(self, group: dict, p: torch.Tensor) -> torch.dtype:
        """The dtype of p's states: float32 for 16-bit params with master copies or state_dtype=float32."""
        if p.dtype in _HALF and (self._lp["master_params"] or self._lp["state_dtype"] == torch.float32):
            return torch.float32
        return p.dtype

    def _zeros(self, group: dict, p: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        return torch.full(tuple(p.shape), fill, dtype=self._state_dtype(group, p), device=p.device)

    def _uses_master(self, group: dict, p: torch.Tensor) -> bool:
        return self._lp["master_params"] and p.dtype in _HALF

    def _masters(self, group: dict, ps: list) -> list:
        """The float32 master copies of ps (16-bit, master_params): made from the params at their first step."""
        out = []
        for p in ps:
            st = self.state[p]
            if "master_param" not in st:
                st["master_param"] = p.detach().to(dtype=torch.float32, memory_format=torch.contiguous_format,
                                                   copy=True)
            out.append(st["master_param"])
        return out

    def _rounding(self, group: dict, gi: int, ps: list, step: Optional[int], with_step: bool) -> tuple:
        """(keywords of the kernel call for bucket ps, tensors it writes besides ps and their states):
        master copies, or stochastic rounding keyed by (seed, group, step) as nnkernels.optim keys it."""
        if self._uses_master(group, ps[0]):  # buckets never mix master and plain params
            m = self._masters(group, ps)
            return {"master_params": m}, m
        if self._lp["stochastic_rounding"]:
            seed = (self._lp["seed"] + gi * _GROUP_STRIDE) % (1 << 64)
            if not with_step:
                seed = (seed + (step - 1) * _GOLDEN) % (1 << 64)
            return {"stochastic_rounding": True, "seed": seed}, []
        return {}, []

    def _key(self, group: dict, p: torch.Tensor) -> tuple:
        """What splits a group into kernel calls besides the device: master copies or not; with
        stochastic rounding the step count (one key per call)."""
        step = int(_value(self.state[p]["step"])) if self._lp["stochastic_rounding"] else None
        return self._uses_master(group, p), step

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict["state"]
        extra = state_dict.get("nnkernels", {})
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "nnkernels"})
        if self._lp["stochastic_rounding"] and "seed" in extra:
            self._lp["seed"] = int(extra["seed"])
        # torch.optim casts floating-point state to the param's dtype: float32 states and master
        # copies of 16-bit params go back to float32 from the saved values (never through 16 bits).
        params = [p for g in self.param_groups for p in g["params"]]
        groups = [g for g in self.param_groups for _ in g["params"]]
        for idx, st in saved.items():
            p, group = params[int(idx)], groups[int(idx)]
            if p.dtype not in _HALF:
                continue
            for k, v in st.items():
                if k == "step" or not torch.is_tensor(v) or not v.is_floating_point():
                    continue
                want = torch.float32 if k == "master_param" else self._state_dtype(group, p)
                self.state[p][k] = v.to(device=p.device, dtype=want, memory_format=torch.contiguous_format,
                                        copy=True)

    def _kernel_kw(self, group: dict, step: int) -> dict:
        raise NotImplementedError

    @staticmethod
    def _with_grads(group: dict) -> list:
        params = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("nnkernels.torch.optim does not support sparse gradients")
            params.append(p)
        return params

    @staticmethod
    def _buckets(params: list, key: Callable) -> list:
        """params split by device (one device per kernel call) and ``key(p)``."""
        out: dict = defaultdict(list)
        for p in params:
            out[(p.device, key(p))].append(p)
        return list(out.items())

    def _steps(self, params: list) -> None:
        for p in params:
            self.state[p]["step"] += 1

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = self._with_grads(group)
            if params:
                self._group_step(group, params, gi)
        return loss

    def _group_step(self, group: dict, params: list, gi: int) -> None:
        raise NotImplementedError


class SGD(_Optimizer):
    """``torch.optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
    maximize=False, foreach=None, differentiable=False, fused=None)``; state ``momentum_buffer``."""

    _check_op = "sgd"

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None, master_params=False,
                 stochastic_rounding=False, seed=None, state_dtype=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        self._lp = _low_precision(master_params, stochastic_rounding, seed, state_dtype)
        super().__init__(params, defaults)

    def _kernel_kw(self, group, step=None):
        return dict(lr=_value(group["lr"]), momentum=group["momentum"], nesterov=group["nesterov"],
                    dampening=group["dampening"], weight_decay=_value(group["weight_decay"]),
                    maximize=group["maximize"])

    def _group_step(self, group, params, gi):
        kw = self._kernel_kw(group)
        state = self.state
        if self._lp["stochastic_rounding"]:  # the step count keys the random bits (torch.optim.SGD has none)
            for p in params:
                state[p].setdefault("step", _step_tensor())
            self._steps(params)
        if not kw["momentum"]:
            for (_, key), ps in self._buckets(params, lambda p: self._key(group, p)):
                rkw, extra = self._rounding(group, gi, ps, key[1], with_step=False)
                nk.sgd_step(ps, [p.grad for p in ps], **kw, **rkw)
                _written(ps + extra)
            return
        # PyTorch's first momentum step sets buf = d (no dampening): a zero buffer with dampening 0.
        first = lambda p: (state[p].get("momentum_buffer") is None,) + self._key(group, p)  # noqa: E731
        for (_, (is_first, *key)), ps in self._buckets(params, first):
            if is_first:
                for p in ps:
                    state[p]["momentum_buffer"] = self._zeros(group, p)
            bufs = [state[p]["momentum_buffer"] for p in ps]
            rkw, extra = self._rounding(group, gi, ps, key[1], with_step=False)
            nk.sgd_step(ps, [p.grad for p in ps], velocity=bufs,
                        **dict(kw, dampening=0.0 if is_first else kw["dampening"]), **rkw)
            _written(ps + bufs + extra)


class Adam(_Optimizer):
    """``torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
    foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
    decoupled_weight_decay=False)``; state ``step``, ``exp_avg``, ``exp_avg_sq`` (``max_exp_avg_sq``)."""

    _check_op = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False, master_params=False, stochastic_rounding=False, seed=None,
                 state_dtype=None):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        self._lp = _low_precision(master_params, stochastic_rounding, seed, state_dtype)
        super().__init__(params, defaults)

    def _kernel_kw(self, group, step=1):
        beta1, beta2 = group["betas"]
        return dict(step=step, lr=_value(group["lr"]), beta1=_value(beta1), beta2=_value(beta2), eps=group["eps"],
                    weight_decay=group["weight_decay"], decoupled_weight_decay=group["decoupled_weight_decay"],
                    maximize=group["maximize"])

    def _group_step(self, group, params, gi):
        state, amsgrad = self.state, group["amsgrad"]
        for p in params:
            st = state[p]
            if "exp_avg" not in st:
                st["step"] = _step_tensor()
                st["exp_avg"] = self._zeros(group, p)
                st["exp_avg_sq"] = self._zeros(group, p)
                if amsgrad:
                    st["max_exp_avg_sq"] = self._zeros(group, p)
        self._steps(params)
        key = lambda p: (int(_value(state[p]["step"])), self._uses_master(group, p))  # noqa: E731
        for (_, (step, _)), ps in self._buckets(params, key):
            m = [state[p]["exp_avg"] for p in ps]
            v = [state[p]["exp_avg_sq"] for p in ps]
            vmax = [state[p]["max_exp_avg_sq"] for p in ps] if amsgrad else []
            rkw, extra = self._rounding(group, gi, ps, step, with_step=True)
            nk.adam_step(ps, [p.grad for p in ps], m, v, max_exp_avg_sq=vmax if amsgrad else None,
                         **self._kernel_kw(group, step), **rkw)
            _written(ps + m + v + vmax + extra)


class AdamW(Adam):
    """``torch.optim.AdamW`` (``weight_decay=1e-2``, decoupled): Adam with ``decoupled_weight_decay=True``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None,
                 master_params=False, stochastic_rounding=False, seed=None, state_dtype=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, master_params=master_params,
                         stochastic_rounding=stochastic_rounding, seed=seed, state_dtype=state_dtype)


class RMSprop(_Optimizer):
    """``torch.optim.RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
    capturable=False, foreach=None, maximize=False, differentiable=False)``; state ``step``, ``square_avg``,
    ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered)."""

    _check_op = "rmsprop"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False, *, master_params=False,
                 stochastic_rounding=False, seed=None, state_dtype=None):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        self._lp = _low_precision(master_params, stochastic_rounding, seed, state_dtype)
        super().__init__(params, defaults)

    def _kernel_kw(self, group, step=None):
        return dict(lr=_value(group["lr"]), alpha=group["alpha"], eps=group["eps"],
                    weight_decay=group["weight_decay"], eps_in_sqrt=False, maximize=group["maximize"],
                    momentum=group["momentum"], centered=group["centered"])

    def _group_step(self, group, params, gi):
        state = self.state
        momentum, centered = group["momentum"] > 0, bool(group["centered"])
        for p in params:
            st = state[p]
            if "square_avg" not in st:
                st["step"] = _step_tensor()
                st["square_avg"] = self._zeros(group, p)
            # torch.optim creates these with square_avg; a group whose momentum / centered was switched on
            # later (or a state loaded from such a group) gets them from zero, as a fresh torch state would
            if momentum and "momentum_buffer" not in st:
                st["momentum_buffer"] = self._zeros(group, p)
            if centered and "grad_avg" not in st:
                st["grad_avg"] = self._zeros(group, p)
        self._steps(params)
        for (_, key), ps in self._buckets(params, lambda p: self._key(group, p)):
            v = [state[p]["square_avg"] for p in ps]
            b = [state[p]["momentum_buffer"] for p in ps] if momentum else []
            ga = [state[p]["grad_avg"] for p in ps] if centered else []
            rkw, extra = self._rounding(group, gi, ps, key[1], with_step=False)
            nk.rmsprop_step(ps, [p.grad for p in ps], v, velocity=b if momentum else None,
                            grad_avg=ga if centered else None, **self._kernel_kw(group), **rkw)
            _written(ps + v + b + ga + extra)


class Adagrad(_Optimizer):
    """``torch.optim.Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
    eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None)``; state ``step``, ``sum``
    (created at construction, as torch does). ``lr_decay``: the step's rate is ``lr / (1 + (step - 1) * lr_decay)``."""

    _check_op = "adagrad"

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None, master_params=False,
                 stochastic_rounding=False, seed=None, state_dtype=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        self._lp = _low_precision(master_params, stochastic_rounding, seed, state_dtype)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                st["step"] = _step_tensor()
                st["sum"] = self._zeros(group, p, _value(group["initial_accumulator_value"]))

    def _validate(self, group):
        if not group["lr_decay"] >= 0:
            raise ValueError(f"lr_decay: expected a number >= 0, got {group['lr_decay']!r}")
        if not group["initial_accumulator_value"] >= 0:
            raise ValueError(f"initial_accumulator_value: expected a number >= 0, got "
                             f"{group['initial_accumulator_value']!r}")
        super()._validate(group)

    def _kernel_kw(self, group, step=1):
        # torch.optim.Adagrad: clr = lr / (1 + (step - 1) * lr_decay) with the 1-based step.
        lr = _value(group["lr"]) / (1 + (step - 1) * group["lr_decay"])
        return dict(lr=lr, eps=group["eps"], weight_decay=group["weight_decay"], maximize=group["maximize"])

    def _group_step(self, group, params, gi):
        state = self.state
        for p in params:
            if "sum" not in state[p]:  # a param group added after construction
                state[p]["step"] = _step_tensor()
                state[p]["sum"] = self._zeros(group, p, _value(group["initial_accumulator_value"]))
        self._steps(params)
        key = lambda p: (int(_value(state[p]["step"])), self._uses_master(group, p))  # noqa: E731
        for (_, (step, _)), ps in self._buckets(params, key):
            s = [state[p]["sum"] for p in ps]
            rkw, extra = self._rounding(group, gi, ps, step, with_step=False)
            nk.adagrad_step(ps, [p.grad for p in ps], s, **self._kernel_kw(group, step), **rkw)
            _written(ps + s + extra)
