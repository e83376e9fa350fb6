"""Benchmark rows for the fused multi-tensor optimizer steps (float32).

Shapes (issue 4): one 16M-element tensor ("large", DRAM-bound) and 500 tensors of 4,000
elements ("model": a realistic small model, 2M elements in all); "small" is one tensor of
1,000 elements (call overhead). Peers step the same tensors: the NumPy reference
(nnkernels.reference.optimizers) and torch.optim with fused=True where PyTorch supports it
on CPU (Adam, SGD, Adagrad), else foreach=True (RMSprop, also centered with momentum); a "torch-foreach" row is added
where fused exists, so PyTorch's best is visible.
Bytes moved per element: Adam 7 streams (read p, g, m, v; write p, m, v); SGD momentum,
RMSprop, Adagrad 5 (read p, g, state; write p, state); centered RMSprop with momentum 9 (three
states); all times are one optimizer step.
--dtype bfloat16/float16: 16-bit params and gradients with float32 states (and for Adam float32
master weights), what mixed-precision training keeps; PyTorch's peer steps its own copies of the
16-bit params (its optimizers keep 16-bit states). Bytes per element: Adam 28 (read master, g,
m, v; write master, p, m, v), the others 6 + 8 per state (read p, g, states; write p, states).
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
OPS = ["adam", "sgd_momentum", "rmsprop", "rmsprop_centered_momentum", "adagrad"]
NSTATES = {"adam": 2, "sgd_momentum": 1, "rmsprop": 1, "rmsprop_centered_momentum": 3, "adagrad": 1}
STREAMS = {op: 3 + 2 * k for op, k in NSTATES.items()}  # read p, g, states; write p, states
ROWS = tuple(OPS)
MAIN_ROWS = ("adam",)


def _shapes(ctx: Context, label):
    if isinstance(label, int):
        return [label], str(label)
    if ctx.quick:
        return {"small": ([1000], "1K"), "medium": ([4000] * 50, "50x4000"), "large": ([1 << 18], "256K")}[label]
    return {"small": ([1000], "1K"), "medium": ([4000] * 500, "500x4000"), "large": ([16 << 20], "16M")}[label]


def _step(mod, op, p, g, states):
    """One optimizer step of `mod` (nnkernels or nnkernels.reference), same hyperparameters;
    states: NSTATES[op] lists of state arrays (torch.optim's order, _TORCH_STATE)."""
    t = [0]
    if op == "adam":
        def f():
            t[0] += 1
            mod.adam_step(p, g, states[0], states[1], step=t[0], lr=1e-3)
        return f
    if op == "sgd_momentum":
        return lambda: mod.sgd_step(p, g, lr=1e-3, momentum=0.9, velocity=states[0])
    if op == "rmsprop":
        return lambda: mod.rmsprop_step(p, g, states[0], lr=1e-3)
    if op == "rmsprop_centered_momentum":
        return lambda: mod.rmsprop_step(p, g, states[0], lr=1e-3, centered=True, grad_avg=states[1], momentum=0.9,
                                        velocity=states[2])
    return lambda: mod.adagrad_step(p, g, states[0], lr=1e-3)


def _torch_opt(torch, op, tparams, **mode):
    if op == "adam":
        return torch.optim.Adam(tparams, lr=1e-3, **mode)
    if op == "sgd_momentum":
        return torch.optim.SGD(tparams, lr=1e-3, momentum=0.9, **mode)
    if op == "rmsprop":
        return torch.optim.RMSprop(tparams, lr=1e-3, **mode)
    if op == "rmsprop_centered_momentum":
        return torch.optim.RMSprop(tparams, lr=1e-3, centered=True, momentum=0.9, **mode)
    return torch.optim.Adagrad(tparams, lr=1e-3, **mode)


# torch.optim state entries holding our states (same shape as the param), in _step's order.
_TORCH_STATE = {"adam": ("exp_avg", "exp_avg_sq"), "sgd_momentum": ("momentum_buffer",),
                "rmsprop": ("square_avg",), "rmsprop_centered_momentum": ("square_avg", "grad_avg", "momentum_buffer"),
                "adagrad": ("sum",)}
_FOREACH_ONLY = ("rmsprop", "rmsprop_centered_momentum")  # no fused CPU torch.optim kernel


def _shared_torch_impls(ctx, op, p, g):
    """(torch Impls, nnkernels states) over the same memory: torch's params wrap `p`
    and its grads `g`; one torch step creates its state, whose NumPy views nnkernels then steps."""
    torch = ctx.torch
    tparams = [torch.from_numpy(x).requires_grad_() for x in p]
    for t, gg in zip(tparams, g):
        t.grad = torch.from_numpy(gg)
    mode = {"foreach": True} if op in _FOREACH_ONLY else {"fused": True}
    best = _torch_opt(torch, op, tparams, **mode)
    best.step()
    states = [[best.state[t][k].numpy() for t in tparams] for k in _TORCH_STATE[op]]
    out = [Impl("torch", best.step)]
    if op not in _FOREACH_ONLY:
        out.append(Impl("torch-foreach", _torch_opt(torch, op, tparams, foreach=True).step))
    return out, states


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
        states = [[dev.asarray(np.zeros_like(x)) for x in p] for _ in range(NSTATES[op])]
        out.append(Impl("nnkernels-cuda", _step(nk, op, gp, gg, states), "cuda", dev.sync))
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
        states = [[np.zeros(k, np.float32) for k in sizes] for _ in range(NSTATES[op])]
        t = [0]
        if op == "adam":
            master = [x.astype(np.float32) for x in p]

            def ours():
                t[0] += 1
                nk.adam_step(p, g, states[0], states[1], step=t[0], lr=1e-3, master_params=master)
            streams = 28
        else:  # read p, g (2 bytes each) and the float32 states; write p and the states
            ours, streams = _step(nk, op, p, g, states), 6 + 8 * NSTATES[op]
        impls = [Impl("nnkernels", ours)]
        if torch is not None:
            tparams = [torch_view(torch, x.copy()).requires_grad_() for x in p]
            for tp, gg in zip(tparams, g):
                tp.grad = torch_view(torch, gg)
            topt = _torch_opt(torch, op, tparams, **({"foreach": True} if op in _FOREACH_ONLY else {"fused": True}))
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
            rstates = [[np.zeros_like(x) for x in p] for _ in range(NSTATES[op])]
            gpu_impls, gpu_note = _gpu_impls(ctx, op, p, g)  # before torch CPU steps p in place
            if ctx.torch is not None:
                torch_impls, states = _shared_torch_impls(ctx, op, p, g)
            else:
                torch_impls, states = [], [[np.zeros_like(x) for x in p] for _ in range(NSTATES[op])]
            impls = [Impl("numpy", _step(ref, op, rp, g, rstates)), Impl("nnkernels", _step(nk, op, p, g, states))]
            impls += torch_impls + gpu_impls
            yield Case("optimizers", op, shape, dt.name, impls, bytes_moved=STREAMS[op] * n * dt.itemsize,
                       note=f"{len(sizes)} tensor(s), one step" + gpu_note)
