"""Benchmark rows for the fused multi-tensor optimizer steps (float32).

Shapes (issue 4): one 16M-element tensor ("large", DRAM-bound) and 500 tensors of 4,000
elements ("model": a realistic small model, 2M elements in all); "small" is one tensor of
1,000 elements (call overhead). Peers step the same tensors: the NumPy reference
(nnkernels.reference.optimizers) and torch.optim with fused=True where PyTorch supports it
on CPU (Adam, SGD, Adagrad), else foreach=True (RMSprop); a "torch-foreach" row is added
where fused exists, so PyTorch's best is visible.
Bytes moved per element: Adam 7 streams (read p, g, m, v; write p, m, v); SGD momentum,
RMSprop, Adagrad 5 (read p, g, state; write p, state); all times are one optimizer step.
--dtype bfloat16/float16: 16-bit params and gradients with float32 states (and for Adam float32
master weights), what mixed-precision training keeps; PyTorch's peer steps its own copies of the
16-bit params (its optimizers keep 16-bit states). Bytes per element: Adam 28 (read master, g,
m, v; write master, p, m, v), the others 14 (read p, g, state; write p, state).
On CPU (float32/float64), nnkernels and the fused torch optimizer update the very same memory (torch's params
wrap our arrays, and we step torch's state tensors): on the shared 2-core VM this was measured
on, the same kernel ran 10-30% faster or slower depending only on which freshly allocated
buffers it was given (physical page placement), so separate copies made the ratio a lottery.
GPU rows (with a GPU): nnkernels CUDA and torch.optim on CUDA tensors (fused=True where PyTorch has
a fused CUDA kernel, else foreach=True; the row's note says which), each on its own device copies.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

import nnkernels as nk
from nnkernels import reference as ref

from ._harness import Case, Context, Impl, np_dtype, torch_view

DTYPES = ("float32", "float64", "float16", "bfloat16")

# op: (streams, nnkernels call, reference call, torch class, torch kwargs, fused supported)
OPS = ["adam", "sgd_momentum", "rmsprop", "adagrad"]
STREAMS = {"adam": 7, "sgd_momentum": 5, "rmsprop": 5, "adagrad": 5}
ROWS = tuple(OPS)
MAIN_ROWS = ("adam",)


def _shapes(ctx: Context, label):
    if isinstance(label, int):
        return [label], str(label)
    if ctx.quick:
        return {"small": ([1000], "1K"), "medium": ([4000] * 50, "50x4000"), "large": ([1 << 18], "256K")}[label]
    return {"small": ([1000], "1K"), "medium": ([4000] * 500, "500x4000"), "large": ([16 << 20], "16M")}[label]


def _step(mod, op, p, g, s1, s2):
    """One optimizer step of `mod` (nnkernels or nnkernels.reference), same hyperparameters."""
    t = [0]
    if op == "adam":
        def f():
            t[0] += 1
            mod.adam_step(p, g, s1, s2, step=t[0], lr=1e-3)
        return f
    if op == "sgd_momentum":
        return lambda: mod.sgd_step(p, g, lr=1e-3, momentum=0.9, velocity=s1)
    if op == "rmsprop":
        return lambda: mod.rmsprop_step(p, g, s1, lr=1e-3)
    return lambda: mod.adagrad_step(p, g, s1, lr=1e-3)


def _torch_opt(torch, op, tparams, **mode):
    if op == "adam":
        return torch.optim.Adam(tparams, lr=1e-3, **mode)
    if op == "sgd_momentum":
        return torch.optim.SGD(tparams, lr=1e-3, momentum=0.9, **mode)
    if op == "rmsprop":
        return torch.optim.RMSprop(tparams, lr=1e-3, **mode)
    return torch.optim.Adagrad(tparams, lr=1e-3, **mode)


# torch.optim state entries holding our s1 / s2 (same shape as the param).
_TORCH_STATE = {"adam": ("exp_avg", "exp_avg_sq"), "sgd_momentum": ("momentum_buffer",),
                "rmsprop": ("square_avg",), "adagrad": ("sum",)}


def _shared_torch_impls(ctx, op, p, g):
    """(torch Impls, nnkernels state s1, s2) over the same memory: torch's params wrap `p`
    and its grads `g`; one torch step creates its state, whose NumPy views nnkernels then steps."""
    torch = ctx.torch
    tparams = [torch.from_numpy(x).requires_grad_() for x in p]
    for t, gg in zip(tparams, g):
        t.grad = torch.from_numpy(gg)
    mode = {"foreach": True} if op == "rmsprop" else {"fused": True}
    best = _torch_opt(torch, op, tparams, **mode)
    best.step()
    keys = _TORCH_STATE[op]
    s1 = [best.state[t][keys[0]].numpy() for t in tparams]
    s2 = [best.state[t][keys[-1]].numpy() for t in tparams] if len(keys) > 1 else [np.zeros_like(x) for x in p]
    out = [Impl("torch", best.step)]
    if op != "rmsprop":
        out.append(Impl("torch-foreach", _torch_opt(torch, op, tparams, foreach=True).step))
    return out, s1, s2


def _torch_cuda_impls(ctx, op, p, g):
    """torch.optim on PyTorch CUDA tensors: fused=True where this PyTorch has a fused CUDA kernel for
    the optimizer (Adam, SGD; Adagrad in newer versions), else foreach=True. Returns (impls, mode)."""
    torch, tdev = ctx.torch, ctx.torch_cuda_arrays()
    tparams = [tdev.asarray(x).requires_grad_() for x in p]
    for t, gg in zip(tparams, g):
        t.grad = tdev.asarray(gg)
    try:
        opt = _torch_opt(torch, op, tparams, fused=True)
        opt.step()  # the device/dtype check of fused runs in the first step
        mode = "fused"
    except (TypeError, RuntimeError):  # no fused kernel for this optimizer on CUDA in this PyTorch
        opt = _torch_opt(torch, op, tparams, foreach=True)
        mode = "foreach"
    return [Impl("torch-cuda", opt.step, "cuda", tdev.sync)], mode


def _gpu_impls(ctx, op, p, g):
    """(impls, note) of the GPU rows: nnkernels CUDA on device copies of p, g (PyTorch CUDA tensors,
    or CuPy arrays without PyTorch CUDA) and torch.optim on PyTorch CUDA tensors."""
    out = []
    dev = ctx.device_arrays()
    if dev is not None:
        gp, gg = [dev.asarray(x) for x in p], [dev.asarray(x) for x in g]
        s1, s2 = [dev.asarray(np.zeros_like(x)) for x in p], [dev.asarray(np.zeros_like(x)) for x in p]
        out.append(Impl("nnkernels-cuda", _step(nk, op, gp, gg, s1, s2), "cuda", dev.sync))
    note = ""
    if ctx.torch_cuda:
        impls, mode = _torch_cuda_impls(ctx, op, p, g)
        out += impls
        note = f"; torch-cuda: {mode}=True"
    return out, note


def _half_cases(ctx: Context, label, dt) -> Iterator[Case]:
    """16-bit params (see the module docstring)."""
    sizes, shape = _shapes(ctx, label)
    n = sum(sizes)
    torch = ctx.torch
    for op in OPS:
        if not ctx.wants(op, label):
            continue
        p = [ctx.rng.standard_normal(k, dtype=np.float32).astype(dt) for k in sizes]
        g = [(ctx.rng.standard_normal(k, dtype=np.float32) * 1e-2).astype(dt) for k in sizes]
        s1, s2 = [np.zeros(k, np.float32) for k in sizes], [np.zeros(k, np.float32) for k in sizes]
        t = [0]
        if op == "adam":
            master = [x.astype(np.float32) for x in p]

            def ours():
                t[0] += 1
                nk.adam_step(p, g, s1, s2, step=t[0], lr=1e-3, master_params=master)
            streams = 28
        else:
            f = _step(nk, op, p, g, s1, s2)
            ours, streams = f, 14
        impls = [Impl("nnkernels", ours)]
        if torch is not None:
            tparams = [torch_view(torch, x.copy()).requires_grad_() for x in p]
            for tp, gg in zip(tparams, g):
                tp.grad = torch_view(torch, gg)
            topt = _torch_opt(torch, op, tparams, **({"foreach": True} if op == "rmsprop" else {"fused": True}))
            topt.step()
            impls.append(Impl("torch", topt.step))
        note = f"{len(sizes)} tensor(s), one step; float32 states" + (" and master weights" if op == "adam" else "")
        yield Case("optimizers", op, shape, dt.name, impls, bytes_moved=streams * n, note=note)


def cases(ctx: Context) -> Iterator[Case]:
    dt = np_dtype(ctx.dtype)
    if dt.itemsize == 2:
        for label in ctx.sizes:
            yield from _half_cases(ctx, label, dt)
        return
    labels = list(ctx.sizes)
    if "large" in labels and "medium" not in labels:
        labels.insert(labels.index("large"), "medium")  # the 500 x 4,000 model rides with the large rows
    for label in labels:
        sizes, shape = _shapes(ctx, label)
        n = sum(sizes)
        for op in OPS:
            if not ctx.wants(op, label):
                continue
            p = [ctx.rng.standard_normal(k).astype(dt) for k in sizes]
            g = [(ctx.rng.standard_normal(k) * 1e-2).astype(dt) for k in sizes]
            rp = [x.copy() for x in p]
            r1, r2 = [np.zeros_like(x) for x in p], [np.zeros_like(x) for x in p]
            gpu_impls, gpu_note = _gpu_impls(ctx, op, p, g)  # before torch CPU steps p in place
            if ctx.torch is not None:
                torch_impls, s1, s2 = _shared_torch_impls(ctx, op, p, g)
            else:
                torch_impls, s1, s2 = [], [np.zeros_like(x) for x in p], [np.zeros_like(x) for x in p]
            impls = [Impl("numpy", _step(ref, op, rp, g, r1, r2)), Impl("nnkernels", _step(nk, op, p, g, s1, s2))]
            impls += torch_impls + gpu_impls
            yield Case("optimizers", op, shape, dt.name, impls, bytes_moved=STREAMS[op] * n * dt.itemsize,
                       note=f"{len(sizes)} tensor(s), one step" + gpu_note)
