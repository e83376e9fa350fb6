"""``torch.optim`` optimizers on nnkernels' fused multi-tensor kernels: SGD, Adam, AdamW, RMSprop, Adagrad.

    opt = nnkernels.torch.optim.Adam(model.parameters(), lr=1e-3)   # torch.optim.Adam's arguments
    loss.backward(); opt.step(); opt.zero_grad()

Each class subclasses ``torch.optim.Optimizer`` (param groups, ``zero_grad``, ``step(closure)``,
hooks, ``add_param_group``) and keeps torch.optim's hyperparameter names, defaults and state names
(``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``, ``momentum_buffer``, ``square_avg``,
``sum``), so a ``state_dict`` of torch.optim's optimizer loads into ours and ours into torch's.
Parameters without a gradient are skipped. One ``step`` makes ONE fused kernel call per param
group (:mod:`nnkernels.optim_steps`, which takes the tensors themselves, nn.Parameters included:
every tensor of the group in one parallel region, each element read and written once); a group is
split only where the update differs per tensor: per device, per distinct ``step`` count for
Adam/AdamW (bias correction) and Adagrad (``lr_decay``), and SGD's first momentum step (PyTorch's
``buf = d``).
Trajectories equal torch.optim's (its default, per-tensor CPU implementation) to float rounding.

Not supported (ValueError when set): RMSprop's ``momentum`` and ``centered``; ``capturable`` and
``differentiable``; sparse gradients. ``foreach`` and ``fused`` are accepted and ignored (the
update is always fused and multi-tensor). Parameters must be C-contiguous (updated in place).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Optional

import torch

import nnkernels as nk

from ._bridge import written

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]


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
        for group in self.param_groups:
            params = self._with_grads(group)
            if params:
                self._group_step(group, params)
        return loss

    def _group_step(self, group: dict, params: list) -> None:
        raise NotImplementedError


class SGD(_Optimizer):
    """``torch.optim.SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
    maximize=False, foreach=None, differentiable=False, fused=None)``; state ``momentum_buffer``."""

    _check_op = "sgd"

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def _kernel_kw(self, group, step=None):
        return dict(lr=_value(group["lr"]), momentum=group["momentum"], nesterov=group["nesterov"],
                    dampening=group["dampening"], weight_decay=_value(group["weight_decay"]),
                    maximize=group["maximize"])

    def _group_step(self, group, params):
        kw = self._kernel_kw(group)
        if not kw["momentum"]:
            for _, ps in self._buckets(params, lambda p: None):
                nk.sgd_step(ps, [p.grad for p in ps], **kw)
                written(ps)
            return
        state = self.state
        # PyTorch's first momentum step sets buf = d (no dampening): a zero buffer with dampening 0.
        first = lambda p: state[p].get("momentum_buffer") is None  # noqa: E731
        for (*_, is_first), ps in self._buckets(params, first):
            if is_first:
                for p in ps:
                    state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            bufs = [state[p]["momentum_buffer"] for p in ps]
            nk.sgd_step(ps, [p.grad for p in ps], velocity=bufs,
                        **dict(kw, dampening=0.0 if is_first else kw["dampening"]))
            written(ps + bufs)


class Adam(_Optimizer):
    """``torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
    foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
    decoupled_weight_decay=False)``; state ``step``, ``exp_avg``, ``exp_avg_sq`` (``max_exp_avg_sq``)."""

    _check_op = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _kernel_kw(self, group, step=1):
        beta1, beta2 = group["betas"]
        return dict(step=step, lr=_value(group["lr"]), beta1=_value(beta1), beta2=_value(beta2), eps=group["eps"],
                    weight_decay=group["weight_decay"], decoupled_weight_decay=group["decoupled_weight_decay"],
                    maximize=group["maximize"])

    def _group_step(self, group, params):
        state, amsgrad = self.state, group["amsgrad"]
        for p in params:
            st = state[p]
            if not st:
                st["step"] = _step_tensor()
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                if amsgrad:
                    st["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        self._steps(params)
        for (*_, step), ps in self._buckets(params, lambda p: int(_value(state[p]["step"]))):
            m = [state[p]["exp_avg"] for p in ps]
            v = [state[p]["exp_avg_sq"] for p in ps]
            vmax = [state[p]["max_exp_avg_sq"] for p in ps] if amsgrad else []
            nk.adam_step(ps, [p.grad for p in ps], m, v, max_exp_avg_sq=vmax if amsgrad else None,
                         **self._kernel_kw(group, step))
            written(ps + m + v + vmax)


class AdamW(Adam):
    """``torch.optim.AdamW`` (``weight_decay=1e-2``, decoupled): Adam with ``decoupled_weight_decay=True``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


class RMSprop(_Optimizer):
    """``torch.optim.RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
    capturable=False, foreach=None, maximize=False, differentiable=False)``; state ``step``, ``square_avg``.
    ``momentum`` and ``centered`` are not supported (ValueError)."""

    _check_op = "rmsprop"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered, weight_decay=weight_decay,
                        capturable=capturable, foreach=foreach, maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def _validate(self, group):
        if group["momentum"] != 0:
            raise ValueError(f"momentum: the nnkernels RMSprop kernel has no momentum (got {group['momentum']!r}); "
                             "use torch.optim.RMSprop")
        if group["centered"]:
            raise ValueError("centered: the nnkernels RMSprop kernel is not centered; use torch.optim.RMSprop")
        super()._validate(group)

    def _kernel_kw(self, group, step=None):
        return dict(lr=_value(group["lr"]), alpha=group["alpha"], eps=group["eps"],
                    weight_decay=group["weight_decay"], eps_in_sqrt=False, maximize=group["maximize"])

    def _group_step(self, group, params):
        state = self.state
        for p in params:
            st = state[p]
            if not st:
                st["step"] = _step_tensor()
                st["square_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
        self._steps(params)
        for _, ps in self._buckets(params, lambda p: None):
            v = [state[p]["square_avg"] for p in ps]
            nk.rmsprop_step(ps, [p.grad for p in ps], v, **self._kernel_kw(group))
            written(ps + v)


class Adagrad(_Optimizer):
    """``torch.optim.Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
    eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None)``; state ``step``, ``sum``
    (created at construction, as torch does). ``lr_decay``: the step's rate is ``lr / (1 + (step - 1) * lr_decay)``."""

    _check_op = "adagrad"

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach, maximize=maximize,
                        differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                st["step"] = _step_tensor()
                st["sum"] = torch.full_like(p, _value(group["initial_accumulator_value"]),
                                            memory_format=torch.contiguous_format)

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

    def _group_step(self, group, params):
        state = self.state
        for p in params:
            if not state[p]:  # a param group added after construction
                state[p]["step"] = _step_tensor()
                state[p]["sum"] = torch.full_like(p, _value(group["initial_accumulator_value"]),
                                                  memory_format=torch.contiguous_format)
        self._steps(params)
        for (*_, step), ps in self._buckets(params, lambda p: int(_value(state[p]["step"]))):
            s = [state[p]["sum"] for p in ps]
            nk.adagrad_step(ps, [p.grad for p in ps], s, **self._kernel_kw(group, step))
            written(ps + s)
