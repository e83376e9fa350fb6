"""Synchronized batch norm over ``torch.distributed``: :class:`SyncBatchNorm`, :func:`convert_sync_batchnorm`.

In training mode every process computes its local per-channel statistics ``(count, mean, M2)``
(``nnkernels.batchnorm_stats``: blockwise two-pass sums of squared deviations), all-gathers them
(one float64 tensor of ``1 + 2C`` values per process) and merges them with Chan et al.'s pairwise
update (``nnkernels.batchnorm_merge_stats``; "Algorithms for computing the sample variance",
1979), so the global variance is as accurate as a one-process computation: PyTorch's
SyncBatchNorm gathers mean and invstd and rebuilds each variance from ``1 / invstd**2 - eps``.
The backward all-reduces the per-channel sums of ``dout`` and ``dout * xhat``
(``nnkernels.batchnorm_backward_reduce``), then ``nnkernels.batchnorm_backward_elemt`` forms dx
with the global sums and count. As in PyTorch, ``weight.grad``/``bias.grad`` are the local
contributions (data-parallel training sums or averages them across processes with the other
gradients). Eval mode, or a world of one process, is plain batch norm.

With CUDA tensors (NCCL) the gathered table is merged on the device and the global count stays
there as a 0-d tensor: no host copy or synchronisation per step. So, as in torch's SyncBatchNorm
with more than one process, the global count is not checked there (host statistics raise
batchnorm_forward's ValueError for a global count of 0 or 1 per channel; on CUDA such a batch
gives NaN statistics).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

import nnkernels as nk

from . import functional as F
from .modules import _adopt, _batch_norm_bookkeeping, _check_activation, _Fusable

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]


def _d(t: Optional[Tensor]) -> Optional[Tensor]:
    """A tensor as the norm kernels take it (they read and write tensors themselves, CPU or CUDA, any
    float dtype they support: bfloat16/float16 inputs too): detached."""
    return None if t is None else t.detach()


class _SyncBatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group, world, activation, slope):
        xa = _d(x)
        count, mean, m2 = nk.batchnorm_stats(xa)
        c = x.shape[1]
        local = torch.empty(1 + 2 * c, dtype=torch.float64, device=x.device)
        local[0] = count
        local[1:1 + c] = mean
        local[1 + c:] = m2
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local, group=group)
        table = torch.stack(parts)  # world x (1 + 2C) float64 values, on x's device
        # Merged where they are: host statistics (gloo) with their values checked, CUDA ones by one kernel
        # on the device, where the global count n stays too (a 0-d tensor: reading it would synchronise).
        n, gmean, gm2 = nk.batchnorm_merge_stats(table[:, 0], table[:, 1:1 + c], table[:, 1 + c:])
        if isinstance(n, int):  # batchnorm_forward(training=True)'s check (on a GPU, as torch: not done)
            nk._core.batchnorm_check_training_count(tuple(x.shape), n)
            unbiased = gm2 / max(n - 1, 1)
        else:
            unbiased = gm2 / (n - 1).clamp(min=1)
        rstd = torch.rsqrt(gm2 / n + eps)
        y = nk.batchnorm_normalize(xa, gmean, rstd, _d(weight), _d(bias), activation=activation, negative_slope=slope)
        if running_mean is not None:
            running_mean.mul_(1 - momentum).add_(gmean.to(running_mean.dtype), alpha=momentum)
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        ctx.save_for_backward(x, weight, gmean, rstd, y if activation else None)
        ctx.n, ctx.group, ctx.bias_dtype = n, group, None if bias is None else bias.dtype
        ctx.act = dict(activation=activation, negative_slope=slope)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd, y = ctx.saved_tensors
        d, xa, m, r = _d(dy), _d(x), _d(mean), _d(rstd)
        act = dict(ctx.act, y=_d(y))
        sum_dout, sum_dout_xhat = nk.batchnorm_backward_reduce(d, xa, m, r, **act)  # float32 for 16-bit x
        c = x.shape[1]
        sums = torch.cat([sum_dout, sum_dout_xhat]).to(torch.float64)
        dist.all_reduce(sums, group=ctx.group)
        if isinstance(ctx.n, int):
            dx = nk.batchnorm_backward_elemt(d, xa, _d(weight), m, r, sums[:c], sums[c:], ctx.n, **act)
        else:  # the global count on the device: the per-value means of the sums there, and count 1
            sums = sums / ctx.n
            dx = nk.batchnorm_backward_elemt(d, xa, _d(weight), m, r, sums[:c], sums[c:], 1, **act)
        # the local parameter gradients, in the parameters' dtype
        dw = sum_dout_xhat.to(weight.dtype) if weight is not None else None
        db = sum_dout.to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
        return dx, dw, db, None, None, None, None, None, None, None, None


class SyncBatchNorm(_Fusable, nn.SyncBatchNorm):
    """``torch.nn.SyncBatchNorm(num_features, eps, momentum, affine, track_running_stats, process_group,
    device, dtype, *, bias)`` on nnkernels' kernels; input ``(N, C, *spatial)``, CPU (e.g. gloo) or CUDA.
    ``activation``/``negative_slope`` (keyword-only) fuse a ReLU / leaky ReLU as in :class:`BatchNorm1d`."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group=None, device=None, dtype=None, *,
                 bias: bool = True, activation: Optional[str] = None, negative_slope: float = 0.01):
        _check_activation(activation, negative_slope)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, process_group, device, dtype,
                         bias=bias)
        self.activation, self.negative_slope = activation, float(negative_slope)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._act_repr()

    def forward(self, input: Tensor) -> Tensor:
        rm, rv, batch_stats, factor = _batch_norm_bookkeeping(self, input)
        world, group = 1, None
        if self.training and batch_stats and dist.is_available() and dist.is_initialized():
            group = self.process_group or dist.group.WORLD
            world = dist.get_world_size(group)
        if world == 1:
            return F._batch_norm(input, rm, rv, self.weight, self.bias, batch_stats, factor, self.eps,
                                 self._op_activation, self.negative_slope)
        return _SyncBatchNormFunction.apply(input, self.weight, self.bias, rm, rv, self.eps, factor, group, world,
                                            self.activation, self.negative_slope)

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group=None) -> nn.Module:
        return convert_sync_batchnorm(module, process_group)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every batch-norm layer of ``module`` (torch.nn's ``BatchNorm*d`` or nnkernels') by a
    :class:`SyncBatchNorm` holding the same parameters and buffers; returns the converted module
    (``torch.nn.SyncBatchNorm.convert_sync_batchnorm``'s contract)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        new = _adopt(SyncBatchNorm, module)  # the same Parameter and buffer objects (a fused activation too)
        new.process_group = process_group
        return new
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child, process_group)
        if new is not child:
            module.add_module(name, new)
    return module
