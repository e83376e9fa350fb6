"""Benchmark rows for layer norm and batch norm (float32 by default; --dtype bfloat16/float16: 16-bit
x, y, dout, dx with parameters in the same dtype, NumPy's row left out: its arithmetic on
ml_dtypes' bfloat16 runs element by element, minutes per call at the large size; no CUDA rows).

Bytes moved (what each op must stream through DRAM at the large size, counted per pass):
  layernorm_forward      read x, write y                                  2 * N*D
  layernorm_fwd_bwd      forward (2) + backward read dout, x, write dx    5 * N*D
  batchnorm_forward      stats pass read x, normalise read x + write y    3 * N*D
  batchnorm_relu_forward same passes as batchnorm_forward                 3 * N*D
  batchnorm_fwd_bwd      forward (3) + reduce (read dout, x) + elementwise (read dout, x, write dx) = 8 * N*D
batchnorm_relu_forward also times batch norm alone (impl "nnkernels-no-act") in the same row;
the run records their ratio as ``time_vs_no_act`` (the fused activation's cost).
Per-row / per-channel vectors (mean, rstd, gamma, partial sums) are ignored. PyTorch rows use
torch.nn.functional (layer_norm, batch_norm) and autograd for forward+backward. The nnkernels
impl returns fresh results (``y = nk.layernorm_forward(x)``), as PyTorch and NumPy do; impl
"nnkernels-out" writes y and dx into buffers allocated once (``out=``, the results of a first
call), as a training loop can, timed interleaved in the same row. With a GPU every sized row also has
"nnkernels-cuda" (the same calls on PyTorch CUDA tensors, or CuPy arrays without PyTorch CUDA) and
"torch-cuda" (the PyTorch calls on CUDA tensors), timed in the same row.

layernorm_growth: layer norm forward at 1, 8, 64, ..., 256Ki rows of 1,024 (fresh and out=),
one row per size, so a per-call cost that does not grow with the bytes (allocation, page
faults, thread start-up) shows as a GB/s that falls away from the large sizes' (--quick: up to
4Ki rows). Its arrays are built on the first (warm-up) call, so unselected sizes cost nothing.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

import nnkernels as nk
from nnkernels import reference as ref

from ._harness import NK_TORCH, NO_ACT, OUT, Case, Context, Impl, np_dtype, torch_view

DTYPES = ("float32", "float64", "float16", "bfloat16")

GROWTH_ROWS = (1, 8, 64, 512, 4096, 16384, 65536, 262144)
GROWTH_D = 1024


def _shape(ctx: Context, label) -> tuple:
    if isinstance(label, int):
        return (max(1, label // 1024), 1024)
    if ctx.quick:
        return {"small": (32, 256), "medium": (1024, 256), "large": (4096, 256)}[label]
    return {"small": (32, 256), "medium": (4096, 1024), "large": (65536, 1024)}[label]


SIZED_ROWS = ("layernorm_forward", "layernorm_fwd_bwd", "batchnorm_forward", "batchnorm_relu_forward",
              "batchnorm_fwd_bwd")  # one row per --sizes label
ROWS = SIZED_ROWS + ("layernorm_growth",)  # the growth set has its own sizes
MAIN_ROWS = ("layernorm_forward", "batchnorm_forward")


def cases(ctx: Context) -> Iterator[Case]:
    dt = np_dtype(ctx.dtype)
    half = dt.itemsize == 2
    torch = ctx.torch
    for label in ctx.sizes:
        wanted = {op for op in SIZED_ROWS if ctx.wants(op, label)}
        if not wanted:
            continue
        n, d = _shape(ctx, label)
        lab = f"{n}x{d}"
        x = ctx.rng.standard_normal((n, d), dtype=np.float32).astype(dt)
        dout = ctx.rng.standard_normal((n, d), dtype=np.float32).astype(dt)
        g = np.ones(d, dt)
        b = np.zeros(d, dt)
        # output buffers from a first call (as a training loop reuses its last step's results):
        # nnkernels places its large results apart from their input (see empty_array)
        y, m0, r0 = nk.layernorm_forward(x, g, b)
        dx = nk.layernorm_backward(dout, x, g, m0, r0)[0]
        rm, rv = np.zeros(d, dt), np.ones(d, dt)
        e = x.size * dt.itemsize
        if torch is not None:
            F = torch.nn.functional
            xt, dt_t, gt, bt = (torch_view(torch, a) for a in (x, dout, g, b))
            trm, trv = torch_view(torch, rm.copy()), torch_view(torch, rv.copy())
        gpu = {} if half else _gpu_impls(ctx, x, dout, g, b, wanted)
        numpy_impl = (lambda fn: []) if half else (lambda fn: [Impl("numpy", fn)])

        # ---- layer norm forward
        impls = numpy_impl(lambda: ref.layernorm_forward(x, g, b)) + [
            Impl("nnkernels", lambda: nk.layernorm_forward(x, g, b)),
            Impl(OUT, lambda: nk.layernorm_forward(x, g, b, out=y))]
        if torch is not None:
            impls.append(Impl("torch", lambda: F.layer_norm(xt, (d,), gt, bt, 1e-5)))
            impls.append(Impl(NK_TORCH, lambda: nk.layernorm_forward(xt, gt, bt)))
        impls += gpu.get("layernorm_forward", [])
        if "layernorm_forward" in wanted:
            yield Case("normalization", "layernorm_forward", lab, dt.name, impls, bytes_moved=2 * e)

        # ---- layer norm forward + backward
        def nk_ln_fb():
            yy, m, r = nk.layernorm_forward(x, g, b)
            return nk.layernorm_backward(dout, x, g, m, r)

        def nk_ln_fb_out():
            yy, m, r = nk.layernorm_forward(x, g, b, out=y)
            return nk.layernorm_backward(dout, x, g, m, r, out=dx)

        def np_ln_fb():
            yy, m, r = ref.layernorm_forward(x, g, b)
            return ref.layernorm_backward(dout, x, g, m, r)

        impls = numpy_impl(np_ln_fb) + [Impl("nnkernels", nk_ln_fb), Impl(OUT, nk_ln_fb_out)]
        if torch is not None:
            def torch_ln_fb():
                xg = xt.detach().requires_grad_()
                gg = gt.detach().requires_grad_()
                bg = bt.detach().requires_grad_()
                F.layer_norm(xg, (d,), gg, bg, 1e-5).backward(dt_t)
            impls.append(Impl("torch", torch_ln_fb))
        impls += gpu.get("layernorm_fwd_bwd", [])
        if "layernorm_fwd_bwd" in wanted:
            yield Case("normalization", "layernorm_fwd_bwd", lab, dt.name, impls, bytes_moved=5 * e)

        # ---- batch norm forward (training) and with fused ReLU
        for op, act in (("batchnorm_forward", None), ("batchnorm_relu_forward", "relu")):
            if op not in wanted:
                continue
            impls = numpy_impl(lambda a=act: ref.batchnorm_forward(x, g, b, running_mean=rm.copy(),
                                                                   running_var=rv.copy(), activation=a)) + [
                     Impl("nnkernels", lambda a=act: nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv,
                                                                          activation=a)),
                     Impl(OUT, lambda a=act: nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv,
                                                                  activation=a, out=y))]
            if act is not None:
                # the same op without the activation, timed interleaved in this row: the fused
                # activation's cost is a ratio within one row, not across rows minutes apart
                impls.append(Impl(NO_ACT, lambda: nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv)))
            if torch is not None:
                if act is None:
                    impls.append(Impl("torch", lambda: F.batch_norm(xt, trm, trv, gt, bt, True, 0.1, 1e-5)))
                else:
                    impls.append(Impl("torch", lambda: torch.relu_(F.batch_norm(xt, trm, trv, gt, bt, True, 0.1,
                                                                                1e-5))))
            impls += gpu.get(op, [])
            yield Case("normalization", op, lab, dt.name, impls, bytes_moved=3 * e)

        # ---- batch norm forward + backward
        def nk_bn_fb():
            yy, m, r = nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv)
            return nk.batchnorm_backward(dout, x, g, m, r)

        def nk_bn_fb_out():
            yy, m, r = nk.batchnorm_forward(x, g, b, running_mean=rm, running_var=rv, out=y)
            return nk.batchnorm_backward(dout, x, g, m, r, out=dx)

        def np_bn_fb():
            yy, m, r = ref.batchnorm_forward(x, g, b)
            return ref.batchnorm_backward(dout, x, g, m, r)

        impls = numpy_impl(np_bn_fb) + [Impl("nnkernels", nk_bn_fb), Impl(OUT, nk_bn_fb_out)]
        if torch is not None:
            def torch_bn_fb():
                xg = xt.detach().requires_grad_()
                gg = gt.detach().requires_grad_()
                bg = bt.detach().requires_grad_()
                F.batch_norm(xg, trm, trv, gg, bg, True, 0.1, 1e-5).backward(dt_t)
            impls.append(Impl("torch", torch_bn_fb))
        impls += gpu.get("batchnorm_fwd_bwd", [])
        if "batchnorm_fwd_bwd" in wanted:
            yield Case("normalization", "batchnorm_fwd_bwd", lab, dt.name, impls, bytes_moved=8 * e)
    if ctx.wants("layernorm_growth"):
        yield from _growth_cases(ctx)


def _growth_cases(ctx: Context) -> Iterator[Case]:
    """layernorm_growth rows (see the module docstring)."""
    dt = np_dtype(ctx.dtype)
    d = GROWTH_D
    for n in GROWTH_ROWS[:5] if ctx.quick else GROWTH_ROWS:
        arrays: dict = {}

        def prepared(arrays=arrays, n=n):
            if not arrays:
                x = ctx.rng.standard_normal((n, d), dtype=np.float32).astype(dt, copy=False)
                g, b = np.ones(d, dt), np.zeros(d, dt)
                arrays.update(x=x, g=g, b=b, y=nk.layernorm_forward(x, g, b)[0])
            return arrays

        def fresh(a=prepared):
            p = a()
            return nk.layernorm_forward(p["x"], p["g"], p["b"])

        def into_out(a=prepared):
            p = a()
            return nk.layernorm_forward(p["x"], p["g"], p["b"], out=p["y"])

        yield Case("normalization", "layernorm_growth", f"{n}x{d}", dt.name, [Impl("nnkernels", fresh), Impl(OUT, into_out)],
                   bytes_moved=2 * n * d * dt.itemsize)


def _gpu_impls(ctx: Context, x, dout, g, b, wanted) -> dict:
    """{row: [nnkernels CUDA impl, PyTorch CUDA impl]} for the rows in `wanted` (empty without a GPU):
    the same calls as the CPU impls of the row (fresh results, running statistics on the device,
    autograd for PyTorch's forward + backward) on device copies of the row's arrays."""
    out: dict = {op: [] for op in wanted}
    dev, tdev = ctx.device_arrays(), ctx.torch_cuda_arrays()
    d = x.shape[1]
    if dev is not None:
        xc, dc, gc, bc = (dev.asarray(a) for a in (x, dout, g, b))
        rmc, rvc = dev.asarray(np.zeros(d, x.dtype)), dev.asarray(np.ones(d, x.dtype))

        def ln_fb():
            _, m, r = nk.layernorm_forward(xc, gc, bc)
            return nk.layernorm_backward(dc, xc, gc, m, r)

        def bn_fb():
            _, m, r = nk.batchnorm_forward(xc, gc, bc, running_mean=rmc, running_var=rvc)
            return nk.batchnorm_backward(dc, xc, gc, m, r)

        calls = {"layernorm_forward": lambda: nk.layernorm_forward(xc, gc, bc),
                 "layernorm_fwd_bwd": ln_fb,
                 "batchnorm_forward": lambda: nk.batchnorm_forward(xc, gc, bc, running_mean=rmc, running_var=rvc),
                 "batchnorm_relu_forward": lambda: nk.batchnorm_forward(xc, gc, bc, running_mean=rmc,
                                                                        running_var=rvc, activation="relu"),
                 "batchnorm_fwd_bwd": bn_fb}
        for op in wanted:
            out[op].append(Impl("nnkernels-cuda", calls[op], "cuda", dev.sync))
    if tdev is not None:
        torch = ctx.torch
        F = torch.nn.functional
        xt, dt_t, gt, bt = (tdev.asarray(a) for a in (x, dout, g, b))
        trm, trv = tdev.asarray(np.zeros(d, x.dtype)), tdev.asarray(np.ones(d, x.dtype))

        def leaves():
            return (a.detach().requires_grad_() for a in (xt, gt, bt))

        def ln_fb_t():
            xg, gg, bg = leaves()
            F.layer_norm(xg, (d,), gg, bg, 1e-5).backward(dt_t)

        def bn_fb_t():
            xg, gg, bg = leaves()
            F.batch_norm(xg, trm, trv, gg, bg, True, 0.1, 1e-5).backward(dt_t)

        calls = {"layernorm_forward": lambda: F.layer_norm(xt, (d,), gt, bt, 1e-5),
                 "layernorm_fwd_bwd": ln_fb_t,
                 "batchnorm_forward": lambda: F.batch_norm(xt, trm, trv, gt, bt, True, 0.1, 1e-5),
                 "batchnorm_relu_forward": lambda: torch.relu_(F.batch_norm(xt, trm, trv, gt, bt, True, 0.1, 1e-5)),
                 "batchnorm_fwd_bwd": bn_fb_t}
        for op in wanted:
            out[op].append(Impl("torch-cuda", calls[op], "cuda", tdev.sync))
    return out
