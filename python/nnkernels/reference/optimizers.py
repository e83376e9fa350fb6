"""Reference optimizer updates (NumPy), written for clarity: one array at a time, in place.

Each function mirrors nnkernels.optimizers (same names, same arguments, lists allowed) and
follows torch.optim's formulas; pass float64 arrays for a high-accuracy reference.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "ema_update", "clip_grad_norm"]


def _lists(*xs):
    if isinstance(xs[0], np.ndarray):
        return [[x] for x in xs]
    return [list(x) if x is not None else None for x in xs]


def sgd_step(params, grads, *, lr, momentum=0.0, velocity=None, nesterov=False, dampening=0.0, weight_decay=0.0,
             maximize=False):
    ps, gs, vs = _lists(params, grads, velocity)
    for i, (p, g) in enumerate(zip(ps, gs)):
        t = p.dtype.type
        g = -g if maximize else g
        d = g + t(weight_decay) * p if weight_decay else g.copy()
        if momentum > 0:
            b = vs[i]
            b[...] = t(momentum) * b + t(1 - dampening) * d
            d = d + t(momentum) * b if nesterov else b
        p -= t(lr) * d


def adagrad_step(params, grads, sum_sq, *, lr=0.01, eps=1e-10, weight_decay=0.0, maximize=False):
    for p, g, s in zip(*_lists(params, grads, sum_sq)):
        t = p.dtype.type
        g = -g if maximize else g
        d = g + t(weight_decay) * p if weight_decay else g
        s += d * d
        p -= t(lr) * (d / (np.sqrt(s) + t(eps)))


def rmsprop_step(params, grads, sq_avg, *, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, eps_in_sqrt=False,
                 maximize=False, momentum=0.0, velocity=None, centered=False, grad_avg=None):
    ps, gs, vs = _lists(params, grads, sq_avg)
    gas = _lists(grad_avg)[0] if centered else [None] * len(ps)
    bs = _lists(velocity)[0] if momentum > 0 else [None] * len(ps)
    for p, g, v, ga, b in zip(ps, gs, vs, gas, bs):
        t = p.dtype.type
        g = -g if maximize else g
        d = g + t(weight_decay) * p if weight_decay else g
        v[...] = t(alpha) * v + t(1 - alpha) * (d * d)
        var = v
        if ga is not None:
            ga += t(1 - alpha) * (d - ga)
            var = v - ga * ga
        den = np.sqrt(var + t(eps)) if eps_in_sqrt else np.sqrt(var) + t(eps)
        if b is not None:
            b[...] = t(momentum) * b + d / den
            p -= t(lr) * b
        else:
            p -= t(lr) * (d / den)


def adam_step(params, grads, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled_weight_decay=False, max_exp_avg_sq=None, maximize=False):
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    ps, gs, ms, vs = _lists(params, grads, exp_avg, exp_avg_sq)
    vmaxs = _lists(max_exp_avg_sq)[0] if max_exp_avg_sq is not None else [None] * len(ps)
    for p, g, m, v, vmax in zip(ps, gs, ms, vs, vmaxs):
        t = p.dtype.type
        d = -g if maximize else g
        if weight_decay:
            if decoupled_weight_decay:
                p *= t(1 - lr * weight_decay)
            else:
                d = g + t(weight_decay) * p
        m += t(1 - beta1) * (d - m)
        v[...] = t(beta2) * v + t(1 - beta2) * (d * d)
        if vmax is not None:  # AMSGrad: the running maximum (NaN propagating) replaces v below
            np.maximum(vmax, v, out=vmax)
        den_v = v if vmax is None else vmax
        p -= t(lr / bc1) * (m / (np.sqrt(den_v) * t(1 / np.sqrt(bc2)) + t(eps)))


def ema_update(averages, params, *, decay):
    for a, p in zip(*_lists(averages, params)):
        t = a.dtype.type
        a[...] = t(decay) * a + t(1 - decay) * p


def clip_grad_norm(grads, max_norm):
    (gs,) = _lists(grads)
    total = float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in gs)))
    if total > max_norm or np.isnan(total):
        coef = max_norm / (total + 1e-6)
        for g in gs:
            g *= g.dtype.type(coef)
    return total
