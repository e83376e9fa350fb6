"""Fused multi-tensor optimizer steps, the stateless layer: SGD, Adagrad, RMSprop, Adam/AdamW, EMA, gradient clipping.

Two layers, two modules: this one holds the **step functions** (no state of their own: the
caller passes the parameters, gradients and every state array, and they update them in place;
also exported at the top level, ``nk.adam_step`` etc.); :mod:`nnkernels.optim` holds the
**optimizer objects** (``Adam``, ``SGD``...: they own the state arrays, the step count and the
hyperparameters, and each ``step`` is one call of a function here). The kernels behind both:
csrc/cpu/optimizers.cpp, csrc/cuda/optimizers.cu (driver: csrc/drivers/optimizers.cpp);
references: :mod:`nnkernels.reference.optimizers`.

Every function updates its arrays **in place** and returns ``None`` (``clip_grad_norm``
returns the norm). Every array argument is either one array or a list (or tuple) of arrays;
entry ``i`` of each list belongs to parameter ``i`` and must have its shape and dtype. One
call updates the whole list in ONE parallel region: the tensors are laid end to end and
the total element range is cut into fixed chunks (small tensors are batched together;
results never depend on the thread count). Each element is read and written once
(fused: parameter, gradient and state in one pass).

Arrays: NumPy arrays, torch tensors (CPU or CUDA; CPU tensors are read and written in place,
zero-copy, ``nn.Parameter`` leaves that require grad included, as ``torch.optim`` updates them:
here a tensor's values are data, autograd does not see the update), CuPy arrays, or other
DLPack producers; libraries may be mixed, but every array of a call lives on one device.
CUDA arrays run the CUDA kernels on the library's current stream (of the first parameter's
library), with no host<->device copy and no synchronisation.

Validation happens before any memory is touched, so a refused call changes nothing:
list lengths, dtypes (float32/float64/float16/bfloat16; param, gradient and state of one tensor
must agree, but see 16-bit parameters below; different tensors may differ), shapes, read-only arrays (params and state must be
writeable; gradients may be read-only), the device, memory shared between an updated
array and any other operand (the same range sweep on every device), and the
hyperparameters (``lr >= 0``, betas in [0, 1), ``step >= 1``...).
**Strided (non-C-contiguous) arrays are refused with ValueError**: the update is in place,
so a silent contiguous copy would update the copy, not your array.

Numeric conventions (identical to ``torch.optim`` with constant lr, float32 math for
float32 arrays; the state arrays start at zero unless stated):

* SGD: ``d = g + wd*p``; with momentum ``b = momentum*b + (1-dampening)*d``, update
  ``u = d + momentum*b`` (nesterov) or ``u = b``; ``p -= lr*u``. PyTorch's very first step
  sets ``b = d`` (no dampening): with zero-initialised velocity that is exactly a call with
  ``dampening=0``, which :class:`nnkernels.optim.SGD` does on its first step.
  cs231n's momentum ``v = mu*v - lr*dx; x += v`` keeps lr inside the velocity: at constant
  lr it is the same trajectory with ``v_cs231n = -lr * b``, ``mu = momentum``, dampening 0.
  cs231n's Nesterov variant (``x += -mu*v_prev + (1+mu)*v``) likewise equals ``nesterov=True``.
  With a changing lr the two differ (PyTorch applies the new lr to the whole velocity).
* Adagrad: ``s += d*d``; ``p -= lr * d / (sqrt(s) + eps)`` (cs231n: ``cache += dx**2;
  x += -lr*dx/(sqrt(cache)+eps)``, the same).
* RMSprop: ``v = alpha*v + (1-alpha)*d*d``; ``p -= lr * d / (sqrt(v) + eps)`` (centered: ``v - ga*ga``
  in place of ``v``, ``ga`` the running average of ``d``; momentum: ``b = momentum*b + d/den``,
  ``p -= lr*b``); with
  ``eps_in_sqrt=True``: ``/ sqrt(v + eps)`` (TensorFlow's placement). cs231n's ``decay_rate``
  is ``alpha``.
* Adam: ``m = m + (1-beta1)*(d-m)``, ``v = beta2*v + (1-beta2)*d*d``,
  ``p -= lr/(1-beta1**step) * m / (sqrt(v)/sqrt(1-beta2**step) + eps)`` with the 1-based
  ``step`` after incrementing (cs231n's ``t``, its ``mt``/``vt`` are the same bias
  corrections). ``weight_decay`` is added to the gradient (L2) unless
  ``decoupled_weight_decay=True`` (AdamW: ``p *= 1 - lr*weight_decay`` first). AMSGrad
  (``max_exp_avg_sq`` given): ``vmax = max(vmax, v)`` replaces ``v`` in the denominator.
* ``maximize=True`` (SGD, Adagrad, RMSprop, Adam): ``d`` starts from ``-g`` (gradient ascent),
  as in torch.optim.
* EMA: ``avg = decay*avg + (1-decay)*p``.
* clip_grad_norm: ``norm = sqrt(sum of g**2 over all grads)`` accumulated in float64
  (per-chunk partials combined in a fixed order); when ``norm > max_norm`` every gradient is
  multiplied by ``max_norm / (norm + 1e-6)`` (torch.nn.utils.clip_grad_norm_). A NaN norm
  scales by NaN, as PyTorch does, so NaN is never masked; an infinite norm zeroes finite
  entries and turns infinite ones into NaN (PyTorch likewise). For CUDA gradients the norm
  is returned as a 0-d float64 array of their library on their device (the clip coefficient is
  computed there from it: nothing waits for the GPU); for CPU gradients it is a Python float.

NaN/inf in gradients propagate exactly as the formulas say (no masking).

16-bit parameters (NumPy float16, ``ml_dtypes.bfloat16``, torch.float16/bfloat16 CPU or CUDA
tensors, CuPy float16): gradients in the params' dtype, states (velocity, sum_sq, sq_avg, exp_avg,
exp_avg_sq, max_exp_avg_sq; an EMA's averages) in float32 or the params' dtype (the states of one
parameter alike), all arithmetic in float32 (eps and the division too, so float16 parameters with
zero gradients never meet 0/0), results rounded to nearest even. Two more keywords on every step
function:

* ``master_params=``: float32 arrays, one per parameter (states then float32). The update runs
  on the master copy, which follows bitwise the float32 update with the upcast gradients, and
  the 16-bit parameter becomes the master rounded to nearest. (EMA: keep float32 averages.)
* ``stochastic_rounding=True, seed=``: without master copies, the updated parameter is rounded
  stochastically (unbiased: up with probability equal to the fraction of the dropped bits), the
  random bits from Philox4x32-10 keyed by ``seed``, counted by (element index in the tensors laid
  end to end, ``step`` for adam_step, 0 otherwise): bitwise identical for any thread count, on
  the CPU's FMA levels (AVX2, AVX-512) and on the GPU, which compute the float32 update in the
  same operations (the baseline level has no FMA instruction: it rounds the fused products
  separately, so its float32 updates, and rarely their stochastic rounding, can differ). The
  functions without a step count need a new seed per call (the optim classes do that). States
  in a 16-bit dtype are rounded to nearest.

The float32/float64 updates are the same on the CPU's FMA levels and on the GPU too (bit for bit);
the baseline level differs from them by the roundings of the fused products.
"""
from __future__ import annotations

from typing import Any

from . import _core

__all__ = ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "ema_update", "clip_grad_norm"]


def sgd_step(params, grads, *, lr, momentum=0.0, velocity=None, nesterov=False, dampening=0.0, weight_decay=0.0,
             maximize=False, master_params=None, stochastic_rounding=False, seed=None):
    """SGD with optional momentum / Nesterov and L2 weight decay (PyTorch's formulation), in place.

    ``d = g + weight_decay*p``; with momentum ``b = momentum*b + (1-dampening)*d`` and
    ``p -= lr * (d + momentum*b if nesterov else b)``; without momentum ``p -= lr*d``.

    Parameters
    ----------
    params : array or list of arrays
        Parameters, float32/float64/float16/bfloat16, C-contiguous and writeable; updated in place. NumPy
        arrays, torch tensors (``nn.Parameter`` included; CPU ones updated zero-copy), CuPy arrays or
        other DLPack arrays; every array of the call on one device.
    grads : array or list of arrays
        Gradients, one per parameter (same shape and dtype); only read.
    lr : float
        Learning rate, ``>= 0`` (keyword, required).
    momentum : float, default=0.0
        Momentum factor, ``>= 0``; 0 is plain SGD.
    velocity : array or list of arrays, default=None
        Momentum buffers ``b`` (zeros to start), one per parameter; updated in place. Required
        when ``momentum > 0``, left untouched when ``momentum == 0``.
    nesterov : bool, default=False
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    dampening : float, default=0.0
        Dampening of the gradient's contribution to the momentum buffer, in [0, 1].
    weight_decay : float, default=0.0
        L2 penalty added to the gradient, ``>= 0``.
    maximize : bool, default=False
        Ascend: the update uses ``-g`` in place of ``g`` (torch.optim's ``maximize``).
    master_params : array or list of arrays, default=None
        float32 master copies of 16-bit params (see the module docstring): updated in place, the
        params set to them rounded to nearest.
    stochastic_rounding : bool, default=False
        Round updated 16-bit params stochastically (not with ``master_params``).
    seed : int, default=None
        The Philox key of stochastic rounding, in [0, 2**64) (required with it).

    Returns
    -------
    None
        Every array is updated in place; a refused call (ValueError/TypeError) changes nothing.
    """
    _core.sgd_step(params, grads, lr, momentum, velocity, nesterov, dampening, weight_decay, maximize, master_params,
                   stochastic_rounding, seed)


def adagrad_step(params, grads, sum_sq, *, lr=0.01, eps=1e-10, weight_decay=0.0, maximize=False, master_params=None,
                 stochastic_rounding=False, seed=None):
    """Adagrad (PyTorch's formulation), in place: ``s += d*d; p -= lr * d / (sqrt(s) + eps)``
    with ``d = g + weight_decay*p``.

    Parameters
    ----------
    params : array or list of arrays
        Parameters, float32/float64/float16/bfloat16, C-contiguous and writeable; updated in place. NumPy
        arrays, torch tensors (``nn.Parameter`` included; CPU ones updated zero-copy), CuPy arrays or
        other DLPack arrays; every array of the call on one device.
    grads : array or list of arrays
        Gradients, one per parameter (same shape and dtype); only read.
    sum_sq : array or list of arrays
        Accumulated squared gradients ``s``, one per parameter (zeros, or PyTorch's
        ``initial_accumulator_value``, to start); updated in place.
    lr : float, default=0.01
        Learning rate, ``>= 0``.
    eps : float, default=1e-10
        Added to ``sqrt(s)`` in the denominator, ``>= 0``.
    weight_decay : float, default=0.0
        L2 penalty added to the gradient, ``>= 0``.
    maximize : bool, default=False
        Ascend: the update uses ``-g`` in place of ``g`` (torch.optim's ``maximize``).
    master_params : array or list of arrays, default=None
        float32 master copies of 16-bit params (see the module docstring): updated in place, the
        params set to them rounded to nearest.
    stochastic_rounding : bool, default=False
        Round updated 16-bit params stochastically (not with ``master_params``).
    seed : int, default=None
        The Philox key of stochastic rounding, in [0, 2**64) (required with it).

    Returns
    -------
    None
        Every array is updated in place; a refused call (ValueError/TypeError) changes nothing.
    """
    _core.adagrad_step(params, grads, sum_sq, lr, eps, weight_decay, maximize, master_params, stochastic_rounding, seed)


def rmsprop_step(params, grads, sq_avg, *, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, eps_in_sqrt=False,
                 maximize=False, momentum=0.0, velocity=None, centered=False, grad_avg=None, master_params=None,
                 stochastic_rounding=False, seed=None):
    """RMSprop (PyTorch's formulation; Tieleman & Hinton 2012), optionally centered (Graves 2013) and with
    momentum, in place.

    ``d = g + weight_decay*p``, ``v = alpha*v + (1-alpha)*d*d``; centered: ``ga += (1-alpha)*(d - ga)`` and
    ``var = v - ga*ga``, otherwise ``var = v``; ``den = sqrt(var) + eps``; with momentum
    ``b = momentum*b + d/den`` and ``p -= lr*b``, without ``p -= lr * d/den``.

    Parameters
    ----------
    params : array or list of arrays
        Parameters, float32/float64/float16/bfloat16, C-contiguous and writeable; updated in place. NumPy
        arrays, torch tensors (``nn.Parameter`` included; CPU ones updated zero-copy), CuPy arrays or
        other DLPack arrays; every array of the call on one device.
    grads : array or list of arrays
        Gradients, one per parameter (same shape and dtype); only read.
    sq_avg : array or list of arrays
        Running average ``v`` of the squared gradients (zeros to start), one per parameter;
        updated in place (torch.optim's ``square_avg``).
    lr : float, default=0.01
        Learning rate, ``>= 0``.
    alpha : float, default=0.99
        Decay of the running averages, in [0, 1] (cs231n's ``decay_rate``).
    eps : float, default=1e-8
        Added to the denominator, ``>= 0``.
    weight_decay : float, default=0.0
        L2 penalty added to the gradient, ``>= 0``.
    eps_in_sqrt : bool, default=False
        Divide by ``sqrt(var + eps)`` (TensorFlow's placement) instead of ``sqrt(var) + eps``.
    maximize : bool, default=False
        Ascend: the update uses ``-g`` in place of ``g`` (torch.optim's ``maximize``).
    momentum : float, default=0.0
        Momentum factor, ``>= 0``; 0 is plain RMSprop.
    velocity : array or list of arrays, default=None
        Momentum buffers ``b`` (zeros to start; torch.optim's ``momentum_buffer``), one per parameter; updated
        in place. Required when ``momentum > 0``, left untouched when ``momentum == 0``.
    centered : bool, default=False
        Divide by the square root of the gradient's estimated variance, ``v - ga*ga``, instead of ``v``.
    grad_avg : array or list of arrays, default=None
        Running average ``ga`` of the gradients (zeros to start), one per parameter; updated in place.
        Required when ``centered=True``, left untouched otherwise. The states of one parameter share a dtype.
    master_params : array or list of arrays, default=None
        float32 master copies of 16-bit params (see the module docstring): updated in place, the
        params set to them rounded to nearest.
    stochastic_rounding : bool, default=False
        Round updated 16-bit params stochastically (not with ``master_params``).
    seed : int, default=None
        The Philox key of stochastic rounding, in [0, 2**64) (required with it).

    Returns
    -------
    None
        Every array is updated in place; a refused call (ValueError/TypeError) changes nothing.
    """
    _core.rmsprop_step(params, grads, sq_avg, lr, alpha, eps, weight_decay, eps_in_sqrt, maximize, momentum,
                       velocity, centered, grad_avg, master_params, stochastic_rounding, seed)


def adam_step(params, grads, exp_avg, exp_avg_sq, *, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled_weight_decay=False, max_exp_avg_sq=None, maximize=False, master_params=None,
              stochastic_rounding=False, seed=None):
    """Adam, or AdamW with ``decoupled_weight_decay=True`` (PyTorch's formulation), in place.

    ``m = beta1*m + (1-beta1)*d``, ``v = beta2*v + (1-beta2)*d*d``,
    ``p -= lr/(1-beta1**step) * m / (sqrt(v)/sqrt(1-beta2**step) + eps)``, where
    ``d = g + weight_decay*p`` (Adam) or ``p *= 1 - lr*weight_decay`` first (AdamW).
    AMSGrad (Reddi et al., 2018) when ``max_exp_avg_sq`` is given: ``vmax = max(vmax, v)``
    (NaN propagating, as ``torch.maximum``) is stored and used in place of ``v`` in the denominator.

    Parameters
    ----------
    params : array or list of arrays
        Parameters, float32/float64/float16/bfloat16, C-contiguous and writeable; updated in place. NumPy
        arrays, torch tensors (``nn.Parameter`` included; CPU ones updated zero-copy), CuPy arrays or
        other DLPack arrays; every array of the call on one device.
    grads : array or list of arrays
        Gradients, one per parameter (same shape and dtype); only read.
    exp_avg : array or list of arrays
        First moments ``m`` (zeros to start), one per parameter; updated in place.
    exp_avg_sq : array or list of arrays
        Second moments ``v`` (zeros to start), one per parameter; updated in place.
    step : int
        The 1-based step count after incrementing (1 on the first call; cs231n's ``t``); sets the
        bias corrections. Keyword, required.
    lr : float, default=1e-3
        Learning rate, ``>= 0``.
    beta1 : float, default=0.9
        Decay of the first moment, in [0, 1).
    beta2 : float, default=0.999
        Decay of the second moment, in [0, 1).
    eps : float, default=1e-8
        Added to the bias-corrected ``sqrt(v)``, ``>= 0``.
    weight_decay : float, default=0.0
        L2 penalty added to the gradient, or with ``decoupled_weight_decay`` the decoupled decay.
    decoupled_weight_decay : bool, default=False
        AdamW: decay the parameters (``p *= 1 - lr*weight_decay``) instead of adding to the gradient.
    max_exp_avg_sq : array or list of arrays, default=None
        AMSGrad's running maxima of ``v`` (zeros to start), one per parameter; updated in place.
        None: plain Adam.
    maximize : bool, default=False
        Ascend: the update uses ``-g`` in place of ``g`` (torch.optim's ``maximize``).
    master_params : array or list of arrays, default=None
        float32 master copies of 16-bit params (see the module docstring): updated in place, the
        params set to them rounded to nearest.
    stochastic_rounding : bool, default=False
        Round updated 16-bit params stochastically (not with ``master_params``).
    seed : int, default=None
        The Philox key of stochastic rounding, in [0, 2**64) (required with it).

    Returns
    -------
    None
        Every array is updated in place; a refused call (ValueError/TypeError) changes nothing.
    """
    _core.adam_step(params, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
                    decoupled_weight_decay, max_exp_avg_sq, maximize, master_params, stochastic_rounding, seed)


def ema_update(averages, params, *, decay, stochastic_rounding=False, seed=None):
    """Exponential moving average (Polyak averaging) in place: ``avg = decay*avg + (1-decay)*p``.

    Parameters
    ----------
    averages : array or list of arrays
        The averages, float32/float64 (float32 or the params' dtype for 16-bit params), C-contiguous
        and writeable; updated in place. NumPy arrays, torch tensors, CuPy arrays or other DLPack
        arrays; every array of the call on one device.
    params : array or list of arrays
        The current parameters, one per average (the averages' shape; float32/float64 params of the
        averages' dtype); only read.
    decay : float
        Weight of the old average, in [0, 1] (keyword, required; e.g. 0.999).
    stochastic_rounding : bool, default=False
        Round updated 16-bit averages stochastically.
    seed : int, default=None
        The Philox key of stochastic rounding, in [0, 2**64) (required with it).

    Returns
    -------
    None
        The averages are updated in place; a refused call (ValueError/TypeError) changes nothing.
    """
    _core.ema_update(averages, params, decay, stochastic_rounding, seed)


def clip_grad_norm(grads, max_norm) -> Any:
    """Clip gradients by their global L2 norm, in place (``torch.nn.utils.clip_grad_norm_``).

    ``norm = sqrt(sum of g**2 over all grads)``, accumulated in float64; when ``norm > max_norm``
    every gradient is multiplied by ``max_norm / (norm + 1e-6)``.

    Parameters
    ----------
    grads : array or list of arrays
        Gradients, float32/float64/float16/bfloat16 (16-bit: the squares summed exactly in float64,
        scaled in float32 and rounded to nearest), C-contiguous; they must be writeable (checked up front,
        whether or not scaling turns out to be needed). NumPy arrays, torch tensors, CuPy arrays
        or other DLPack arrays, all on one device.
    max_norm : float
        The largest global norm to keep, ``>= 0``.

    Returns
    -------
    float or 0-d array
        The global norm before clipping (NaN or inf propagate as in PyTorch): a Python float for
        CPU gradients (and an empty list); for CUDA gradients a 0-d float64 array of their library
        (torch tensor, CuPy array) on their device, so that nothing waits for the GPU (the clip
        coefficient is computed and applied there).
    """
    return _core.clip_grad_norm(grads, max_norm)

