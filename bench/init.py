"""Benchmark rows for weight initialisation: filling n float32 numbers, normal and uniform.

Sizes: "small" 1000 numbers (call overhead), "large" 64M (the issue's target). Peers:
``torch.nn.init.normal_`` / ``uniform_`` (in place), NumPy ``Generator.standard_normal`` /
``random`` with ``out=``; nnkernels fills a preallocated ``out`` too. Compute-bound:
kind="compute", elements=n.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from nnkernels import init

from ._harness import Case, Context, Impl, np_dtype, size_label, torch_view

DTYPES = ("float32", "float64", "float16", "bfloat16")


ROWS = ("normal", "uniform")
MAIN_ROWS = ("normal",)


def cases(ctx: Context) -> Iterator[Case]:
    dt = np_dtype(ctx.dtype)
    half = dt.itemsize == 2  # NumPy's generators make float32/float64 only: no NumPy row
    for label in ctx.sizes:
        ops = [op for op in ROWS if ctx.wants(op, label)]
        if not ops:
            continue
        n = ctx.elements(label)
        out = np.empty(n, dt)
        rng = np.random.default_rng(0)
        torch = ctx.torch
        t = torch_view(torch, out) if torch is not None else None
        for op in ops:
            if op == "normal":
                impls = [Impl("nnkernels", lambda: init.normal((n,), 1.0, seed=1, out=out))]
                if not half:
                    impls.append(Impl("numpy", lambda: rng.standard_normal(n, dtype=dt, out=out)))
                if t is not None:
                    impls.append(Impl("torch", lambda: torch.nn.init.normal_(t)))
            else:
                impls = [Impl("nnkernels", lambda: init.uniform((n,), 0.0, 1.0, seed=1, out=out))]
                if not half:
                    impls.append(Impl("numpy", lambda: rng.random(n, dtype=dt, out=out)))
                if t is not None:
                    impls.append(Impl("torch", lambda: torch.nn.init.uniform_(t)))
            impls += [] if half else _gpu_impls(ctx, op, n, dt)
            yield Case("init", op, size_label(n), dt.name, impls, kind="compute", elements=n,
                       bytes_moved=n * dt.itemsize)


def _gpu_impls(ctx: Context, op: str, n: int, dt) -> list:
    """nnkernels CUDA (into a device `out`) and torch.nn.init on a PyTorch CUDA tensor (with a GPU)."""
    res = []
    fn = init.normal if op == "normal" else init.uniform
    dev = ctx.device_arrays()
    if dev is not None:
        g = dev.empty((n,), dt)
        res.append(Impl("nnkernels-cuda", lambda: fn((n,), seed=1, out=g), "cuda", dev.sync))
    tdev = ctx.torch_cuda_arrays()
    if tdev is not None:
        tg = tdev.empty((n,), dt)
        f = ctx.torch.nn.init.normal_ if op == "normal" else ctx.torch.nn.init.uniform_
        res.append(Impl("torch-cuda", lambda: f(tg), "cuda", tdev.sync))
    return res
