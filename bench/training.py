"""Benchmark row: training throughput (samples/s) of an MLP with batch norm + ReLU and Adam.

Model 784-1024-1024-10 (``--quick``: 64-128-128-10), batch 256 (quick: 64), float32. One timed call
is one full training step on a fixed batch: forward, softmax cross-entropy, backward, Adam update.
- nnkernels: :func:`nnkernels.nn.mlp` (NumPy BLAS matrix products, fused batch norm + ReLU kernels,
  fused softmax cross-entropy, one multi-tensor Adam call), with the training loop's thread policy
  (:func:`nnkernels.nn.kernel_threads`: BLAS keeps the cores, the element-wise kernels run on the
  calling thread when BLAS is multi-threaded).
- torch: the same model in PyTorch CPU eager mode (Linear without bias before BatchNorm1d, ReLU,
  ``F.cross_entropy``, ``torch.optim.Adam`` with its CPU defaults), ``zero_grad(set_to_none=True)``.
- numpy: the cs231n way, layer functions from :mod:`nnkernels.reference` (batch norm, ReLU, softmax
  cross-entropy, Adam) around the same NumPy matrix products.
- torch-cuda (with a GPU): the same PyTorch model and step on the GPU (PyTorch's CUDA defaults). There
  is no nnkernels CUDA impl: nnkernels.nn runs its matrix products with NumPy on the host.
The models are built on the first call (the warm-up), so an unselected row costs nothing.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from ._harness import Case, Context, Impl, lazy


def _nnkernels_step(sizes, X, y):
    import nnkernels as nk
    from nnkernels import nn, optim

    model = nn.mlp(sizes, activation="relu", norm="batch", init="kaiming", seed=0, dtype=np.float32)
    opt = optim.Adam(model.params(), lr=1e-3)
    dl = np.empty((len(X), sizes[-1]), np.float32)
    threads = 1 if nn.blas_threads() > 1 else nk.get_num_threads()  # the training loop's policy

    def step():
        with nn.kernel_threads(threads):
            logits = model.forward(X)
            loss, d = nk.softmax_cross_entropy(logits, y, out=dl)
            model.backward(d)
            opt.step(model.grads())
        return loss

    return step


def _torch_step(torch, sizes, X, y, device="cpu"):
    layers = []
    for k in range(len(sizes) - 1):
        last = k == len(sizes) - 2
        layers.append(torch.nn.Linear(sizes[k], sizes[k + 1], bias=last))
        if not last:
            layers += [torch.nn.BatchNorm1d(sizes[k + 1]), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    F = torch.nn.functional

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step


def _numpy_step(sizes, X, y):
    from nnkernels import reference as ref

    rng = np.random.default_rng(0)
    Ws = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    b_last = np.zeros(sizes[-1], np.float32)
    gammas = [np.ones(s, np.float32) for s in sizes[1:-1]]
    betas = [np.zeros(s, np.float32) for s in sizes[1:-1]]
    rms = [np.zeros(s, np.float32) for s in sizes[1:-1]]
    rvs = [np.ones(s, np.float32) for s in sizes[1:-1]]
    params = Ws + [b_last] + gammas + betas
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = [0]

    def step():
        h, cache = X, []
        for k, W in enumerate(Ws[:-1]):
            a = h @ W
            out, mean, rstd = ref.batchnorm_forward(a, gammas[k], betas[k], training=True, running_mean=rms[k],
                                                    running_var=rvs[k], activation="relu")
            cache.append((h, a, out, mean, rstd))
            h = out
        logits = h @ Ws[-1] + b_last
        loss, d = ref.softmax_cross_entropy(logits, y)
        dWs = [None] * len(Ws)
        dWs[-1] = h.T @ d
        db = d.sum(0)
        dh = d @ Ws[-1].T
        dgs, dbs = [None] * len(gammas), [None] * len(betas)
        for k in reversed(range(len(Ws) - 1)):
            hin, a, out, mean, rstd = cache[k]
            da, dgs[k], dbs[k] = ref.batchnorm_backward(dh, a, gammas[k], mean, rstd, activation="relu", y=out)
            dWs[k] = hin.T @ da
            if k > 0:
                dh = da @ Ws[k].T
        t[0] += 1
        ref.adam_step(params, dWs + [db] + dgs + dbs, m, v, step=t[0], lr=1e-3)
        return loss

    return step


ROWS = ("mlp_bn_relu_adam_step",)
MAIN_ROWS = ROWS


def cases(ctx: Context) -> Iterator[Case]:
    # one fixed model size: the row runs once per run (size labels do not apply), under the first label
    if not ctx.wants("mlp_bn_relu_adam_step", ctx.sizes[0] if ctx.sizes else None):
        return
    sizes, batch = ([64, 128, 128, 10], 64) if ctx.quick else ([784, 1024, 1024, 10], 256)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    impls = [Impl("numpy", lazy(lambda: _numpy_step(sizes, X, y))),
             Impl("nnkernels", lazy(lambda: _nnkernels_step(sizes, X, y)))]
    if ctx.torch is not None:
        impls.append(Impl("torch", lazy(lambda: _torch_step(ctx.torch, sizes, X, y))))
    if ctx.torch_cuda:
        impls.append(Impl("torch-cuda", lazy(lambda: _torch_step(ctx.torch, sizes, X, y, "cuda")), "cuda",
                          ctx.torch.cuda.synchronize))
    yield Case("training", "mlp_bn_relu_adam_step", f"{'-'.join(map(str, sizes))}/b{batch}", "float32", impls,
               elements=batch, kind="compute",
               note="samples/s of one training step (forward, loss, backward, Adam)")
