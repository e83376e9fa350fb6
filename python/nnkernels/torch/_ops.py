"""nnkernels' kernels as PyTorch operators: ``torch.ops.nnkernels.*``.

Each forward op is a ``torch.library.custom_op`` with a fake (meta) implementation, so that
``torch.compile`` traces through it without a graph break, and an autograd formula whose
backward is again an nnkernels op (the kernels' own backward passes):

    layer_norm(x, weight?, bias?, eps, activation, negative_slope) -> (y, mean, rstd)
    batch_norm(x, weight?, bias?, running_mean?, running_var?, training, momentum, eps,
               activation, negative_slope) -> (y, mean, rstd, new_running_mean, new_running_var)
    relu(x), leaky_relu(x, negative_slope), tanh(x), sigmoid(x) -> y
    softmax_cross_entropy(logits, target) -> (loss, dlogits)

``activation`` is "none", "relu" or "leaky_relu" (fused into the normalisation; its backward
works from the saved output y). Layer norm and batch norm save mean and rstd for backward.
batch_norm is functional, like ATen's ``_native_batch_norm_legit_functional``: in training mode
with running statistics it returns the updated statistics (empty tensors otherwise) and the caller
copies them into its buffers (:func:`nnkernels.torch.functional.batch_norm`), because an operator
that mutates its inputs cannot carry an autograd formula. The backward ops have no autograd
formula of their own: a second derivative raises.

Two ways in, one implementation: the module-level callables (``layer_norm``, ``relu``, ...) are
:class:`_Op` objects. Under ``torch.compile``/``torch.export`` or any dispatch mode (fake tensors,
tracing) they call the registered operator; in plain eager mode they run the same implementation
and the same autograd formula through one ``torch.autograd.Function``, which skips the custom-op
layers' per-call Python work (measured 3-4x less overhead per call than the operator's, the part
that dominates small tensors). ``torch.ops.nnkernels.*`` are the operators themselves.

The activations, the norms and the loss take torch tensors directly (CPU tensors zero-copy, CUDA
tensors on the CUDA kernels, results in torch), float32/float64 and torch.float16/bfloat16 (16-bit
storage, float32 math: y/dx in x's dtype, mean/rstd float32, dweight/dbias in the weight's dtype,
which may be float32 next to a 16-bit input, as torch's mixed CPU kernels allow; the loss and its
gradient in the logits' dtype).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

import nnkernels as nk


_ACT = {"none": None, "relu": "relu", "leaky_relu": "leaky_relu"}


def _act(activation: str):
    if activation not in _ACT:
        raise ValueError(f"activation: expected 'none', 'relu' or 'leaky_relu', got {activation!r}")
    return _ACT[activation]


def _setup(ctx) -> None:
    # Outputs nobody differentiates (mean, rstd, the new running statistics) get None, not zeros.
    ctx.set_materialize_grads(False)


def _custom_op(name: str, impl: Callable, fake: Callable):
    op = torch.library.custom_op(f"nnkernels::{name}", mutates_args=())(impl)
    op.register_fake(fake)
    return op


# ---------------------------------------------------------------- implementations (tensors in and out)
_HALF = (torch.float16, torch.bfloat16)


def _d(t: Optional[Tensor]) -> Optional[Tensor]:
    """A tensor as the norm kernels take it (they read and write tensors themselves): detached."""
    return None if t is None else t.detach()


def _stats_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the statistics the norm kernels return for x: x's, float32 for 16-bit x."""
    return torch.float32 if x.dtype in _HALF else x.dtype


def _param_grad_fake(x: Tensor, weight: Optional[Tensor], n: int) -> Tensor:
    """dweight/dbias as the kernels return them: x's dtype, the weight's for 16-bit x."""
    dt = weight.dtype if weight is not None and x.dtype in _HALF else x.dtype
    return x.new_empty((n,), dtype=dt)


def _layer_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float, activation: str,
                negative_slope: float) -> tuple[Tensor, Tensor, Tensor]:
    return nk.layernorm_forward(_d(x), _d(weight), _d(bias), eps=eps, activation=_act(activation),
                                negative_slope=negative_slope)


def _layer_norm_fake(x, weight, bias, eps, activation, negative_slope):
    stats = x.new_empty(x.shape[:-1], dtype=_stats_dtype(x))
    return x.new_empty(x.shape), stats, torch.empty_like(stats)


def _layer_norm_backward(dout: Tensor, x: Tensor, weight: Optional[Tensor], mean: Tensor, rstd: Tensor,
                         y: Optional[Tensor], activation: str, negative_slope: float) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias); dweight/dbias are empty when weight is None."""
    dx, dw, db = nk.layernorm_backward(_d(dout), _d(x), _d(weight), _d(mean), _d(rstd), activation=_act(activation),
                                       y=_d(y), negative_slope=negative_slope)
    if dw is None:
        return dx, x.new_empty((0,)), x.new_empty((0,))
    return dx, dw, db


def _layer_norm_backward_fake(dout, x, weight, mean, rstd, y, activation, negative_slope):
    n = 0 if weight is None else x.shape[-1]
    return x.new_empty(x.shape), _param_grad_fake(x, weight, n), _param_grad_fake(x, weight, n)


def _batch_norm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], running_mean: Optional[Tensor],
                running_var: Optional[Tensor], training: bool, momentum: float, eps: float, activation: str,
                negative_slope: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    update = training and running_mean is not None
    # The kernel updates running statistics in place: it gets copies, returned as the new values.
    new_mean = running_mean.clone() if update else running_mean
    new_var = running_var.clone() if update and running_var is not None else running_var
    y, mean, rstd = nk.batchnorm_forward(_d(x), _d(weight), _d(bias), training=training, running_mean=_d(new_mean),
                                         running_var=_d(new_var), momentum=momentum, eps=eps,
                                         activation=_act(activation), negative_slope=negative_slope)
    if not update:
        new_mean, new_var = x.new_empty((0,)), x.new_empty((0,))
    return y, mean, rstd, new_mean, new_var


def _batch_norm_fake(x, weight, bias, running_mean, running_var, training, momentum, eps, activation, negative_slope):
    c = x.shape[1] if x.dim() >= 2 else 0
    stats = x.new_empty((c,), dtype=_stats_dtype(x))
    if training and running_mean is not None:
        new = torch.empty_like(running_mean), torch.empty_like(running_var)
    else:
        new = x.new_empty((0,)), x.new_empty((0,))
    return x.new_empty(x.shape), stats, torch.empty_like(stats), *new


def _batch_norm_backward(dout: Tensor, x: Tensor, weight: Optional[Tensor], mean: Tensor, rstd: Tensor,
                         y: Optional[Tensor], batch_stats: bool, activation: str,
                         negative_slope: float) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias); dweight/dbias are empty when weight is None. ``batch_stats``: the forward
    normalised with the batch statistics (training mode); otherwise mean/rstd were constants (the
    running statistics) and ``dx = g * weight * rstd``."""
    act = dict(activation=_act(activation), y=_d(y), negative_slope=negative_slope)
    d, xa, w = _d(dout), _d(x), _d(weight)
    m, r = _d(mean), _d(rstd)
    if batch_stats:
        dx, dw, db = nk.batchnorm_backward(d, xa, w, m, r, **act)
    else:
        # Constant statistics: the elementwise backward with zero batch sums is g * weight * rstd.
        db, dw = nk.batchnorm_backward_reduce(d, xa, m, r, **act)
        zeros = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
        dx = nk.batchnorm_backward_elemt(d, xa, w, m, r, zeros, zeros, max(1, x.numel() // max(1, x.shape[1])),
                                         **act)
        if w is None:
            dw = db = None
        elif x.dtype in _HALF:  # the sums are float32 for 16-bit x; the gradients are in the weight's dtype
            dw, db = dw.to(weight.dtype), db.to(weight.dtype)
    if dw is None:
        return dx, x.new_empty((0,)), x.new_empty((0,))
    return dx, dw, db


def _batch_norm_backward_fake(dout, x, weight, mean, rstd, y, batch_stats, activation, negative_slope):
    n = 0 if weight is None else x.shape[1]
    return x.new_empty(x.shape), _param_grad_fake(x, weight, n), _param_grad_fake(x, weight, n)


# The activations take and return torch tensors themselves (issue 14's operand core: CPU tensors
# zero-copy, CUDA tensors on the CUDA kernels); detached, as the results carry no autograd history.
def _relu(x: Tensor) -> Tensor:
    return nk.relu(x.detach())


def _relu_backward(dout: Tensor, x: Tensor) -> Tensor:
    return nk.relu_backward(dout.detach(), x.detach())


def _leaky_relu(x: Tensor, negative_slope: float) -> Tensor:
    return nk.leaky_relu(x.detach(), negative_slope)


def _leaky_relu_backward(dout: Tensor, x: Tensor, negative_slope: float) -> Tensor:
    return nk.leaky_relu_backward(dout.detach(), x.detach(), negative_slope)


def _tanh(x: Tensor) -> Tensor:
    return nk.tanh(x.detach())


def _tanh_backward(dout: Tensor, y: Tensor) -> Tensor:
    return nk.tanh_backward(dout.detach(), y.detach())


def _sigmoid(x: Tensor) -> Tensor:
    return nk.sigmoid(x.detach())


def _sigmoid_backward(dout: Tensor, y: Tensor) -> Tensor:
    return nk.sigmoid_backward(dout.detach(), y.detach())


def _like_first(x, *args):
    return x.new_empty(x.shape)


def _softmax_cross_entropy(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(mean loss as a 0-d tensor of logits' dtype, dlogits = (softmax - onehot) / N), one fused pass.
    The kernel takes the tensors themselves (float32/float64/float16/bfloat16 logits, CPU zero-copy or
    CUDA; dlogits a tensor of the logits' dtype); the loss is a Python float for CPU logits, a 0-d
    float64 tensor on the device for CUDA ones."""
    loss, dlogits = nk.softmax_cross_entropy(logits.detach(), target.detach())
    if isinstance(loss, Tensor):
        return loss.to(logits.dtype), dlogits
    return torch.tensor(loss, dtype=logits.dtype, device=logits.device), dlogits


def _softmax_cross_entropy_fake(logits, target):
    return logits.new_empty(()), logits.new_empty(logits.shape)


def _softmax_cross_entropy_backward(dlogits: Tensor, dloss: Tensor, logits: Tensor) -> Tensor:
    """The forward's gradient scaled by the incoming one. An op without an autograd formula, taking
    ``logits`` (unread) so that autograd sees the gradient depend on them: a second derivative then
    raises here instead of silently missing the softmax's curvature."""
    return dlogits * dloss


def _softmax_cross_entropy_backward_fake(dlogits, dloss, logits):
    return dlogits.new_empty(dlogits.shape)


# The backward passes, as operators (what a traced graph records) and as plain implementations
# (what the eager path calls): the autograd formulas below take one of these two namespaces.
_BACKWARD_IMPLS = dict(
    layer_norm_backward=(_layer_norm_backward, _layer_norm_backward_fake),
    batch_norm_backward=(_batch_norm_backward, _batch_norm_backward_fake),
    relu_backward=(_relu_backward, _like_first), leaky_relu_backward=(_leaky_relu_backward, _like_first),
    tanh_backward=(_tanh_backward, _like_first), sigmoid_backward=(_sigmoid_backward, _like_first),
    softmax_cross_entropy_backward=(_softmax_cross_entropy_backward, _softmax_cross_entropy_backward_fake),
)
_TRACED = SimpleNamespace(**{name: _custom_op(name, impl, fake) for name, (impl, fake) in _BACKWARD_IMPLS.items()})
_EAGER = SimpleNamespace(**{name: impl for name, (impl, _) in _BACKWARD_IMPLS.items()})


# ---------------------------------------------------------------- autograd formulas
def _layer_norm_setup(ctx, inputs, output):
    x, weight, bias, _, activation, negative_slope = inputs
    y, mean, rstd = output
    _setup(ctx)
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(x, weight, mean, rstd, y if activation != "none" else None)
    ctx.activation, ctx.negative_slope = activation, negative_slope
    ctx.has_bias = bias is not None


def _layer_norm_grad(B, ctx, dy, _dmean, _drstd):
    if dy is None:
        return None, None, None, None, None, None
    x, weight, mean, rstd, y = ctx.saved_tensors
    dx, dw, db = B.layer_norm_backward(dy, x, weight, mean, rstd, y, ctx.activation, ctx.negative_slope)
    if weight is None:
        return dx, None, None, None, None, None
    return dx, dw, (db if ctx.has_bias else None), None, None, None


def _batch_norm_setup(ctx, inputs, output):
    x, weight, bias, running_mean, _, training, _, _, activation, negative_slope = inputs
    y, mean, rstd, new_mean, new_var = output
    _setup(ctx)
    ctx.mark_non_differentiable(mean, rstd, new_mean, new_var)
    ctx.save_for_backward(x, weight, mean, rstd, y if activation != "none" else None)
    ctx.batch_stats = bool(training)
    ctx.activation, ctx.negative_slope = activation, negative_slope
    ctx.has_bias = bias is not None


def _batch_norm_grad(B, ctx, dy, *_unused):
    if dy is None:
        return (None,) * 10
    x, weight, mean, rstd, y = ctx.saved_tensors
    dx, dw, db = B.batch_norm_backward(dy, x, weight, mean, rstd, y, ctx.batch_stats, ctx.activation,
                                       ctx.negative_slope)
    if weight is None:
        dw = db = None
    elif not ctx.has_bias:
        db = None
    return (dx, dw, db) + (None,) * 7


# ReLU and leaky ReLU differentiate from their input (any slope), tanh and sigmoid from their output.
def _save_input(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.scalars = tuple(inputs[1:])


def _save_output(ctx, inputs, output):
    ctx.save_for_backward(output)


def _relu_grad(B, ctx, g):
    return B.relu_backward(g, *ctx.saved_tensors)


def _leaky_relu_grad(B, ctx, g):
    return B.leaky_relu_backward(g, *ctx.saved_tensors, *ctx.scalars), None


def _tanh_grad(B, ctx, g):
    return B.tanh_backward(g, *ctx.saved_tensors)


def _sigmoid_grad(B, ctx, g):
    return B.sigmoid_backward(g, *ctx.saved_tensors)


def _ce_setup(ctx, inputs, output):
    _setup(ctx)
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(inputs[0], output[1])


def _ce_grad(B, ctx, dloss, _ddlogits):
    if dloss is None:
        return None, None
    logits, dlogits = ctx.saved_tensors
    return B.softmax_cross_entropy_backward(dlogits, dloss, logits), None


# ---------------------------------------------------------------- the two ways in
def _eager(x) -> bool:
    """Plain eager execution on real tensors: no compiler tracing and no dispatch mode (fake tensors,
    functionalization, make_fx), which must see the operator itself."""
    return isinstance(x, Tensor) and not torch.compiler.is_compiling() and _get_current_dispatch_mode() is None


class _EagerFunction(torch.autograd.Function):
    """An operator's implementation and autograd formula without the dispatcher (see the module doc)."""

    @staticmethod
    def forward(ctx, spec, *inputs):
        output = spec.impl(*inputs)
        spec.setup(ctx, inputs, output)
        ctx.spec = spec
        return output

    @staticmethod
    def backward(ctx, *grads):
        # create_graph=True (grad mode on here): the backward operators, so that a second derivative
        # raises as on the operator path instead of being silently zero.
        grads = ctx.spec.grad(_TRACED if torch.is_grad_enabled() else _EAGER, ctx, *grads)
        return (None,) + (grads if isinstance(grads, tuple) else (grads,))


class _Op:
    """One forward operator: registered (custom op, fake, autograd formula on the backward operators)
    and callable, choosing the operator or the eager path per call."""

    def __init__(self, name: str, impl: Callable, fake: Callable, setup: Callable, grad: Callable):
        self.impl, self.setup, self.grad = impl, setup, grad
        self.op = _custom_op(name, impl, fake)
        self.op.register_autograd(lambda ctx, *grads: grad(_TRACED, ctx, *grads), setup_context=setup)
        # One Function class per op, so that profilers and grad_fn name it (nnkernels_layer_norm, ...Backward).
        self.function = type(f"nnkernels_{name}", (_EagerFunction,), {})

    def __call__(self, *args):
        if _eager(args[0]):
            return self.function.apply(self, *args)
        return self.op(*args)


layer_norm = _Op("layer_norm", _layer_norm, _layer_norm_fake, _layer_norm_setup, _layer_norm_grad)
batch_norm = _Op("batch_norm", _batch_norm, _batch_norm_fake, _batch_norm_setup, _batch_norm_grad)
relu = _Op("relu", _relu, _like_first, _save_input, _relu_grad)
leaky_relu = _Op("leaky_relu", _leaky_relu, _like_first, _save_input, _leaky_relu_grad)
tanh = _Op("tanh", _tanh, _like_first, _save_output, _tanh_grad)
sigmoid = _Op("sigmoid", _sigmoid, _like_first, _save_output, _sigmoid_grad)
softmax_cross_entropy = _Op("softmax_cross_entropy", _softmax_cross_entropy, _softmax_cross_entropy_fake, _ce_setup,
                            _ce_grad)
