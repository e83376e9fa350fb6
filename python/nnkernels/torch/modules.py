"""Drop-in ``torch.nn`` modules on nnkernels' kernels, and :func:`replace_modules`.

Each class subclasses its ``torch.nn`` counterpart: same constructor arguments, parameters,
buffers and ``state_dict`` keys (``load_state_dict`` works both ways), ``isinstance`` checks keep
holding; only ``forward`` runs the nnkernels operators. ``LayerNorm``/``BatchNorm1d``/``BatchNorm2d``
take two keyword-only extras, ``activation=None | "relu" | "leaky_relu"`` and ``negative_slope``,
for a ReLU / leaky ReLU fused into the same pass (forward and backward), which is what
:func:`replace_modules` builds from a norm followed by an activation inside ``nn.Sequential``.
The norms run in float32/float64 and on torch.bfloat16/float16 input (float32 arithmetic, the
output in the input's dtype), with parameters and running statistics in the input's dtype
(``module.to(torch.bfloat16)``) or float32 (a float32 module fed 16-bit activations).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from . import functional as F

__all__ = ["LayerNorm", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "replace_modules"]


def _check_activation(activation: Optional[str], negative_slope: float) -> None:
    if activation not in (None, "relu", "leaky_relu"):
        raise ValueError(f"activation: expected None, 'relu' or 'leaky_relu', got {activation!r}")
    if activation == "leaky_relu" and not negative_slope >= 0:
        # The fused backward differentiates the activation from its output y, which needs slope >= 0.
        raise ValueError(f"negative_slope: a fused leaky ReLU needs negative_slope >= 0, got {negative_slope!r}")


class _Fusable:
    activation: Optional[str] = None
    negative_slope: float = 0.01

    def _act_repr(self) -> str:
        if self.activation is None:
            return ""
        slope = f", negative_slope={self.negative_slope}" if self.activation == "leaky_relu" else ""
        return f", activation={self.activation!r}{slope}"

    @property
    def _op_activation(self) -> str:
        return self.activation or "none"


class LayerNorm(_Fusable, nn.LayerNorm):
    """``torch.nn.LayerNorm`` (``normalized_shape, eps, elementwise_affine, bias, device, dtype``)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None, *, activation: Optional[str] = None, negative_slope: float = 0.01):
        _check_activation(activation, negative_slope)
        super().__init__(normalized_shape, eps, elementwise_affine, bias, device, dtype)
        self.activation, self.negative_slope = activation, float(negative_slope)

    def forward(self, input: Tensor) -> Tensor:
        return F._layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps, self._op_activation,
                             self.negative_slope)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()


def _batch_norm_bookkeeping(m: nn.modules.batchnorm._NormBase, input: Tensor) -> tuple:
    """torch.nn.modules.batchnorm._BatchNorm.forward's bookkeeping for batch-norm module ``m``
    (ours and SyncBatchNorm): checks the input, counts the batch, and returns (running_mean,
    running_var, batch_stats, factor) for the nnkernels operator."""
    m._check_input_dim(input)
    factor = 0.0 if m.momentum is None else m.momentum
    if m.training and m.track_running_stats and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        factor = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
    batch_stats = m.training or (m.running_mean is None and m.running_var is None)
    use_running = not m.training or m.track_running_stats
    return (m.running_mean if use_running else None, m.running_var if use_running else None, batch_stats, factor)


class _BatchNorm(_Fusable):

    def forward(self, input: Tensor) -> Tensor:
        rm, rv, batch_stats, factor = _batch_norm_bookkeeping(self, input)
        return F._batch_norm(input, rm, rv, self.weight, self.bias, batch_stats, factor, self.eps,
                             self._op_activation, self.negative_slope)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()


class BatchNorm1d(_BatchNorm, nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` (``num_features, eps, momentum, affine, track_running_stats, device,
    dtype, *, bias``); input ``(N, C)`` or ``(N, C, L)``. ``momentum=None``: cumulative average."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True,
                 activation: Optional[str] = None, negative_slope: float = 0.01):
        _check_activation(activation, negative_slope)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.activation, self.negative_slope = activation, float(negative_slope)


class BatchNorm2d(_BatchNorm, nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` (same arguments as :class:`BatchNorm1d`); input ``(N, C, H, W)``."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True,
                 activation: Optional[str] = None, negative_slope: float = 0.01):
        _check_activation(activation, negative_slope)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.activation, self.negative_slope = activation, float(negative_slope)


class ReLU(nn.ReLU):
    """``torch.nn.ReLU``; ``inplace`` is accepted, the result is always a new tensor."""

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)


class LeakyReLU(nn.LeakyReLU):
    """``torch.nn.LeakyReLU(negative_slope=0.01, inplace=False)``; ``inplace`` as in :class:`ReLU`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope)


class Tanh(nn.Tanh):
    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class Sigmoid(nn.Sigmoid):
    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


# torch.nn class -> ours (exact types only: a user's subclass may have its own forward).
_REPLACEMENTS = {nn.LayerNorm: LayerNorm, nn.BatchNorm1d: BatchNorm1d, nn.BatchNorm2d: BatchNorm2d, nn.ReLU: ReLU,
                 nn.LeakyReLU: LeakyReLU, nn.Tanh: Tanh, nn.Sigmoid: Sigmoid}
_NORMS = (LayerNorm, BatchNorm1d, BatchNorm2d)


def _adopt(cls: type, module: nn.Module) -> nn.Module:
    """A ``cls`` instance with module's attributes: the same Parameter and buffer objects, hooks,
    training flag (each container copied, so the two modules do not share dicts)."""
    new = cls.__new__(cls)
    new.__dict__.update({k: copy.copy(v) if isinstance(v, dict) else v for k, v in module.__dict__.items()})
    return new


def _fuse_target(act: nn.Module) -> Optional[tuple]:
    if type(act) in (nn.ReLU, ReLU):
        return "relu", 0.01
    if type(act) in (nn.LeakyReLU, LeakyReLU) and act.negative_slope >= 0:
        return "leaky_relu", float(act.negative_slope)
    return None


def replace_modules(model: nn.Module, *, fuse: bool = True) -> nn.Module:
    """Swap, in place, every ``torch.nn`` LayerNorm, BatchNorm1d, BatchNorm2d, ReLU, LeakyReLU, Tanh
    and Sigmoid of ``model`` for the nnkernels module of the same class.

    The new modules hold the very same Parameter and buffer objects, so an optimizer built on
    ``model.parameters()`` before the call keeps working, and ``state_dict`` keys are unchanged; a
    module used in several places is replaced by one new module. With ``fuse``, a norm directly
    followed by a ReLU / LeakyReLU (``negative_slope >= 0``) inside an ``nn.Sequential`` becomes one
    fused module (unless the norm is also used elsewhere); the activation's slot holds an
    ``nn.Identity`` (indices and keys stay). Returns ``model`` (or its replacement when ``model``
    itself is such a module).
    """
    model = _replace(model, {})
    if fuse:
        uses: dict = {}
        for _, m in model.named_modules(remove_duplicate=False):
            uses[id(m)] = uses.get(id(m), 0) + 1
        for m in model.modules():
            if isinstance(m, nn.Sequential):
                _fuse(m, uses)
    return model


def _replace(module: nn.Module, done: dict) -> nn.Module:
    if id(module) in done:
        return done[id(module)]
    new = module
    if type(module) in _REPLACEMENTS:
        new = _adopt(_REPLACEMENTS[type(module)], module)
    else:
        for name, child in list(module.named_children()):
            replaced = _replace(child, done)
            if replaced is not child:
                setattr(module, name, replaced)
    done[id(module)] = new
    return new


def _fuse(seq: nn.Sequential, uses: dict) -> None:
    names = list(seq._modules)
    for first, second in zip(names, names[1:]):
        norm, act = seq._modules[first], seq._modules[second]
        target = _fuse_target(act)
        if isinstance(norm, _NORMS) and norm.activation is None and target is not None and uses[id(norm)] == 1:
            norm.activation, norm.negative_slope = target
            seq._modules[second] = nn.Identity()
