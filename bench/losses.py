"""Benchmark rows for the fused softmax cross-entropy (loss + dlogits in one call).

Sizes: "small" = (256, 10) (a classifier head: call overhead), "large" = (65536, 1024) float32
(256 MB of logits, DRAM-bound). Bytes moved: logits read once and dlogits written once (the
kernel re-reads each row from L1), plus the int64 labels. PyTorch row: ``cross_entropy`` forward
and ``autograd.grad`` (what a training step does); NumPy row: the reference. The nnkernels impl
returns a fresh dlogits; "nnkernels-out" writes it into a reused ``out=``. GPU rows (with a GPU):
nnkernels CUDA into a reused out= (PyTorch CUDA tensors, or CuPy arrays without PyTorch CUDA), and
PyTorch CUDA's cross_entropy + autograd.grad.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

import nnkernels as nk
from nnkernels import reference as ref

from ._harness import OUT, Case, Context, Impl, np_dtype, torch_view

DTYPES = ("float32", "float64", "float16", "bfloat16")


def _shape(ctx: Context, label):
    if isinstance(label, int):
        return (max(1, label // 1024), 1024)
    if ctx.quick:
        return {"small": (256, 10), "medium": (1024, 100), "large": (4096, 256)}[label]
    return {"small": (256, 10), "medium": (8192, 1024), "large": (65536, 1024)}[label]


ROWS = ("softmax_cross_entropy",)
MAIN_ROWS = ROWS


def cases(ctx: Context) -> Iterator[Case]:
    dt = np_dtype(ctx.dtype)
    half = dt.itemsize == 2  # NumPy's arithmetic on ml_dtypes' bfloat16 is elementwise Python-speed: no NumPy row
    for label in ctx.sizes:
        if not ctx.wants("softmax_cross_entropy", label):
            continue
        n, c = _shape(ctx, label)
        x = ctx.rng.standard_normal((n, c), dtype=np.float32).astype(dt)
        y = ctx.rng.integers(0, c, n)
        d = np.empty_like(x)
        impls = ([] if half else [Impl("numpy", lambda: ref.softmax_cross_entropy(x, y))]) + [
            Impl("nnkernels", lambda: nk.softmax_cross_entropy(x, y)),
            Impl(OUT, lambda: nk.softmax_cross_entropy(x, y, out=d))]
        torch = ctx.torch
        if torch is not None:
            F = torch.nn.functional
            xt = torch_view(torch, x).requires_grad_(True)
            yt = torch.from_numpy(y)

            def torch_step(xt=xt, yt=yt):
                loss = F.cross_entropy(xt, yt)
                return torch.autograd.grad(loss, xt)

            impls.append(Impl("torch", torch_step))
        dev = ctx.device_arrays()
        if dev is not None and not half:  # the device copies go through NumPy: no bfloat16 there
            gx, gy, gd = dev.asarray(x), dev.asarray(y), dev.empty(x.shape, x.dtype)
            impls.append(Impl("nnkernels-cuda", lambda: nk.softmax_cross_entropy(gx, gy, out=gd), "cuda", dev.sync))
        tdev = ctx.torch_cuda_arrays()
        if tdev is not None and not half:
            F = torch.nn.functional
            gxt, gyt = tdev.asarray(x).requires_grad_(True), tdev.asarray(y)
            impls.append(Impl("torch-cuda", lambda: torch.autograd.grad(F.cross_entropy(gxt, gyt), gxt), "cuda",
                              tdev.sync))
        yield Case("losses", "softmax_cross_entropy", f"{n}x{c}", dt.name, impls,
                   bytes_moved=2 * n * c * dt.itemsize + 8 * n)
