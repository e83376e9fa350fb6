"""Benchmark rows for the activations (forward and backward).

Bytes moved: forward reads x and writes y (2 streams); backward reads dout and x (or y)
and writes dx (3 streams). The nnkernels impl returns a fresh result (``y = nk.tanh(x)``, what
a user calls); "nnkernels-out" writes into a preallocated `out`, as do the peers where they
can (NumPy `out=`, PyTorch `out=`), so the speed-ups compare fresh nnkernels results with the
peers' best. "nnkernels-torch" is the fresh-result call on torch CPU tensors (zero-copy in, a tensor out):
its difference from "nnkernels" is the cost of the torch interop. GPU rows (with a GPU): nnkernels
CUDA on PyTorch CUDA tensors (CuPy arrays without PyTorch CUDA) and PyTorch CUDA, both into a
reused out=.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

import nnkernels as nk
from nnkernels import reference as ref

from ._harness import NK_TORCH, OUT, Case, Context, Impl, np_dtype, size_label, torch_view

DTYPES = ("float32", "float64", "float16", "bfloat16")
OPS = ["relu", "leaky_relu", "sigmoid", "tanh"]
ROWS = tuple(name for op in OPS for name in (op, op + "_backward"))
MAIN_ROWS = ("relu", "tanh_backward")


def _numpy_forward(op, x, y):
    if op == "relu":
        return lambda: np.maximum(x, 0, out=y)
    if op == "leaky_relu":
        return lambda: np.multiply(x, np.where(x > 0, 1.0, 0.01).astype(x.dtype), out=y)
    if op == "sigmoid":
        return lambda: ref.sigmoid(x)
    return lambda: np.tanh(x, out=y)


def _numpy_backward(op, d, s, dx):
    if op == "relu":
        return lambda: np.multiply(d, s > 0, out=dx)
    if op == "leaky_relu":
        return lambda: ref.leaky_relu_backward(d, s)
    if op == "sigmoid":
        return lambda: ref.sigmoid_backward(d, s)
    return lambda: ref.tanh_backward(d, s)


def _torch_forward(torch, op, xt, yt):
    if op == "relu":
        return lambda: torch.clamp_min(xt, 0, out=yt)
    if op == "leaky_relu":
        return lambda: torch._C._nn.leaky_relu(xt, 0.01, out=yt)
    if op == "sigmoid":
        return lambda: torch.sigmoid(xt, out=yt)
    return lambda: torch.tanh(xt, out=yt)


def _torch_backward(torch, op, dt, st, dxt):
    if op == "relu":
        return lambda: torch.ops.aten.threshold_backward.grad_input(dt, st, 0.0, grad_input=dxt)
    if op == "leaky_relu":
        return lambda: torch.ops.aten.leaky_relu_backward.grad_input(dt, st, 0.01, False, grad_input=dxt)
    if op == "sigmoid":
        return lambda: torch.ops.aten.sigmoid_backward.grad_input(dt, st, grad_input=dxt)
    return lambda: torch.ops.aten.tanh_backward.grad_input(dt, st, grad_input=dxt)


def _nk_forward(op):
    return getattr(nk, op)


def _nk_backward(op):
    return getattr(nk, op + "_backward")


def cases(ctx: Context) -> Iterator[Case]:
    dt = np_dtype(ctx.dtype)
    for label in ctx.sizes:
        wanted = {name for name in ROWS if ctx.wants(name, label)}
        if not wanted:
            continue
        n = ctx.elements(label)
        x = ctx.rng.standard_normal(n).astype(dt)
        y = np.empty_like(x)
        d = ctx.rng.standard_normal(n).astype(dt)
        dx = np.empty_like(x)
        torch = ctx.torch
        if torch is not None:
            xt, yt, dtt, dxt = (torch_view(torch, a) for a in (x, y, d, dx))
        for op in OPS:
            if op not in wanted and op + "_backward" not in wanted:
                continue
            fwd, bwd = _nk_forward(op), _nk_backward(op)
            s = fwd(x)  # saved tensor for backward: x for relu/leaky, y for sigmoid/tanh
            saved = x if op in ("relu", "leaky_relu") else s
            if op in wanted:
                impls = [Impl("numpy", _numpy_forward(op, x, y)), Impl("nnkernels", lambda f=fwd: f(x)),
                         Impl(OUT, lambda f=fwd: f(x, out=y))]
                if torch is not None:
                    impls.append(Impl("torch", _torch_forward(torch, op, xt, yt)))
                    impls.append(Impl(NK_TORCH, lambda f=fwd: f(xt)))
                impls += _gpu_impls(ctx, op, x, None)
                yield Case("activations", op, size_label(n), dt.name, impls, bytes_moved=2 * n * dt.itemsize)
            if op + "_backward" not in wanted:
                continue
            impls = [Impl("numpy", _numpy_backward(op, d, saved, dx)),
                     Impl("nnkernels", lambda f=bwd, sv=saved: f(d, sv)),
                     Impl(OUT, lambda f=bwd, sv=saved: f(d, sv, out=dx))]
            if torch is not None:
                st = torch_view(torch, saved)
                impls.append(Impl("torch", _torch_backward(torch, op, dtt, st, dxt)))
                impls.append(Impl(NK_TORCH, lambda f=bwd, st=st: f(dtt, st)))
            impls += _gpu_impls(ctx, op, d, saved)
            yield Case("activations", op + "_backward", size_label(n), dt.name, impls, bytes_moved=3 * n * dt.itemsize)


def _gpu_impls(ctx: Context, op: str, a: np.ndarray, saved) -> list:
    """nnkernels CUDA and PyTorch CUDA impls (only when a GPU is present), both writing into a
    device buffer allocated once (out=), as the CPU peers do."""
    out = []
    for name, dev in (("nnkernels-cuda", ctx.device_arrays()), ("torch-cuda", ctx.torch_cuda_arrays())):
        if dev is None:
            continue
        ga, gy = dev.asarray(a), dev.empty(a.shape, a.dtype)
        gs = None if saved is None else dev.asarray(saved)
        if name == "torch-cuda":
            fn = _torch_forward(ctx.torch, op, ga, gy) if saved is None else _torch_backward(ctx.torch, op, ga, gs, gy)
        elif saved is None:
            fn = lambda f=_nk_forward(op), ga=ga, gy=gy: f(ga, out=gy)  # noqa: E731
        else:
            fn = lambda f=_nk_backward(op), ga=ga, gs=gs, gy=gy: f(ga, gs, out=gy)  # noqa: E731
        out.append(Impl(name, fn, "cuda", dev.sync))
    return out
