"""Benchmark rows for nnkernels.torch: its modules and a full training step, against PyTorch (float32).

Needs PyTorch (the family yields nothing without it, e.g. with --no-torch).

torch_layernorm_module / torch_batchnorm1d_module: ``y = m(x)`` then ``torch.autograd.grad(y, (x,
weight, bias), dout)`` (forward + backward through autograd, no gradient accumulation) for
``torch.nn.LayerNorm(1024)`` / ``torch.nn.BatchNorm1d(1024)`` (training mode) against
``nnkernels.torch.LayerNorm`` / ``BatchNorm1d``; x of shape small (32, 256), medium (4096, 1024),
large (65536, 1024). Bytes moved as in bench/normalization.py's fwd_bwd rows (layer norm 5, batch
norm 8 passes of N*D elements).

Training steps (forward, loss, backward, optimizer; one timed call is one step on a fixed batch):
  torch_mlp_step       MLP 784-1024-1024-10, Linear (no bias) -> BatchNorm1d -> ReLU, batch 256
  torch_ln_block_step  4 pre-norm residual blocks x = x + Linear(ReLU(Linear(LayerNorm(x)))), d = 1024,
                       4096 tokens, then LayerNorm -> Linear(1024, 10), cross-entropy per token
  impl "torch": the torch.nn model, F.cross_entropy, torch.optim.Adam(fused=True);
  impl "nnkernels": the same model (same initial weights) after nnkernels.torch.replace_modules (batch
  norm + ReLU fused), nnkernels.torch.functional.cross_entropy, nnkernels.torch.optim.Adam.
  ``--quick``: 64-128-128-10 at batch 64, d = 128 at 256 tokens.
The mlp step runs in the main job (one fixed size, ~20 ms a step); the layer-norm block (~2 s a step
on 2 cores) only when selected (``--ops torch_modules`` / ``torch_ln_block_step``) or with --full.
Models are built on the first (warm-up) call, so an unselected row costs nothing.

``python -m nnkernels.bench.torch_modules`` prints a torch.profiler summary of both training steps
(where the time goes, torch vs nnkernels); ``--paired [ln_block|mlp] [pairs]`` times the two steps in
alternating back-to-back pairs and prints the speedup's median and 95% interval (paired_steps).
"""
from __future__ import annotations

import copy
from typing import Iterator

import numpy as np

from ._harness import Case, Context, Impl, lazy
from .normalization import _shape  # the normalization rows' shapes: the module rows compare with them

NEEDS_TORCH = True
SIZED_ROWS = ("torch_layernorm_module", "torch_batchnorm1d_module")
ROWS = SIZED_ROWS + ("torch_mlp_step", "torch_ln_block_step")
MAIN_ROWS = ("torch_mlp_step",)


def mlp_model(torch, sizes):
    torch.manual_seed(0)
    layers = []
    for k in range(len(sizes) - 1):
        last = k == len(sizes) - 2
        layers.append(torch.nn.Linear(sizes[k], sizes[k + 1], bias=last))
        if not last:
            layers += [torch.nn.BatchNorm1d(sizes[k + 1]), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


def ln_block_model(torch, d, layers=4, classes=10):
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

        def forward(self, x):
            return x + self.mlp(x)

    torch.manual_seed(0)
    return nn.Sequential(*[Residual() for _ in range(layers)], nn.LayerNorm(d), nn.Linear(d, classes))


def training_step(torch, model, x, y, ours: bool):
    """One step's function: the torch.nn model with torch.optim.Adam(fused=True), or (ours) a copy
    after replace_modules with nnkernels.torch.optim.Adam and the fused cross-entropy."""
    if ours:
        import nnkernels.torch as nkt

        model = nkt.replace_modules(copy.deepcopy(model))
        opt = nkt.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nkt.functional.cross_entropy
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        loss_fn = torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _module_cases(ctx: Context) -> Iterator[Case]:
    torch = ctx.torch
    import nnkernels.torch as nkt

    for label in ctx.sizes:
        wanted = [op for op in SIZED_ROWS if ctx.wants(op, label)]
        if not wanted:
            continue
        n, d = _shape(ctx, label)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, generator=g).requires_grad_()
        dout = torch.randn(n, d, generator=g)
        e = x.numel() * x.element_size()
        for op, ours_cls, torch_cls, passes in (("torch_layernorm_module", nkt.LayerNorm, torch.nn.LayerNorm, 5),
                                                ("torch_batchnorm1d_module", nkt.BatchNorm1d, torch.nn.BatchNorm1d,
                                                 8)):
            if op not in wanted:
                continue
            theirs = torch_cls(d)
            ours = ours_cls(d)
            ours.load_state_dict(theirs.state_dict())

            def fwd_bwd(m=None):
                y = m(x)
                return torch.autograd.grad(y, (x, m.weight, m.bias), dout)

            yield Case("torch_modules", op, f"{n}x{d}", "float32",
                       [Impl("nnkernels", lambda m=ours: fwd_bwd(m)), Impl("torch", lambda m=theirs: fwd_bwd(m))],
                       bytes_moved=passes * e, note="module forward + backward (autograd)")


def _step_cases(ctx: Context) -> Iterator[Case]:
    torch = ctx.torch
    first = ctx.sizes[0] if ctx.sizes else None
    g = torch.Generator().manual_seed(0)
    if ctx.wants("torch_mlp_step", first):
        sizes, batch = ([64, 128, 128, 10], 64) if ctx.quick else ([784, 1024, 1024, 10], 256)
        x, y = torch.randn(batch, sizes[0], generator=g), torch.randint(0, sizes[-1], (batch,), generator=g)
        yield Case("torch_modules", "torch_mlp_step", f"{'-'.join(map(str, sizes))}/b{batch}", "float32",
                   [Impl(name, lazy(lambda ours=ours: training_step(torch, mlp_model(torch, sizes), x, y, ours)))
                    for name, ours in (("nnkernels", True), ("torch", False))],
                   elements=batch, kind="compute", note="samples/s of one training step (BN+ReLU MLP, Adam)")
    # the large step: not in the main job (its "small" pass), only when selected at a large size or --full
    if ctx.wants("torch_ln_block_step", "large"):
        d, tokens = (128, 256) if ctx.quick else (1024, 4096)
        x, y = torch.randn(tokens, d, generator=g), torch.randint(0, 10, (tokens,), generator=g)
        yield Case("torch_modules", "torch_ln_block_step", f"4x(LN-{d}-ReLU-{d})/t{tokens}", "float32",
                   [Impl(name, lazy(lambda ours=ours: training_step(torch, ln_block_model(torch, d), x, y, ours)))
                    for name, ours in (("nnkernels", True), ("torch", False))],
                   elements=tokens, kind="compute", note="tokens/s of one training step (pre-LN blocks, Adam)")


def cases(ctx: Context) -> Iterator[Case]:
    if ctx.torch is None:
        return
    yield from _module_cases(ctx)
    yield from _step_cases(ctx)


def profile_steps(quick: bool = False, steps: int = 3, rows: int = 12) -> None:
    """Print torch.profiler's top operators (self CPU time) for both training steps, torch vs nnkernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator().manual_seed(0)
    sizes, batch = ([64, 128, 128, 10], 64) if quick else ([784, 1024, 1024, 10], 256)
    d, tokens = (128, 256) if quick else (1024, 4096)
    setups = {
        "mlp": (lambda: mlp_model(torch, sizes), torch.randn(batch, sizes[0], generator=g),
                torch.randint(0, 10, (batch,), generator=g)),
        "ln_block": (lambda: ln_block_model(torch, d), torch.randn(tokens, d, generator=g),
                     torch.randint(0, 10, (tokens,), generator=g)),
    }
    for name, (make, x, y) in setups.items():
        for ours in (False, True):
            step = training_step(torch, make(), x, y, ours)
            step()  # warm-up (state allocation)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    step()
            print(f"\n=== {name} step, {'nnkernels' if ours else 'torch'} ({steps} steps) ===")
            averages = prof.key_averages()
            print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
            shares = _time_shares(averages)
            total = sum(shares.values())
            print(f"per step {total / steps * 1e3:.1f} ms: " + ", ".join(
                f"{k} {v / total:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v))


def paired_steps(name: str = "ln_block", pairs: int = 12, quick: bool = False) -> dict:
    """Time torch's and nnkernels' training step in alternating pairs (ABBA order: drift cancels) and print
    the per-pair speedups with their median, range and a 95% interval of the mean log ratio.

    A step whose cost is ~95% matrix products (torch's in both versions) saves a few percent at most, which
    single timings on a shared VM cannot resolve; pairs taken back to back see the same machine state, so
    their ratio can. Returns {"ratios": [...], "median": r, "ci95": (lo, hi), "faster_in": k}."""
    import time

    import torch

    g = torch.Generator().manual_seed(0)
    if name == "mlp":
        sizes, batch = ([64, 128, 128, 10], 64) if quick else ([784, 1024, 1024, 10], 256)
        make, x = (lambda: mlp_model(torch, sizes)), torch.randn(batch, sizes[0], generator=g)
        y = torch.randint(0, sizes[-1], (batch,), generator=g)
    else:
        d, tokens = (128, 256) if quick else (1024, 4096)
        make, x = (lambda: ln_block_model(torch, d)), torch.randn(tokens, d, generator=g)
        y = torch.randint(0, 10, (tokens,), generator=g)
    steps = {"torch": training_step(torch, make(), x, y, False), "nnkernels": training_step(torch, make(), x, y, True)}
    for f in steps.values():  # warm-up: optimizer state, result cache, thread pools
        f()
        f()

    def timed(which):
        t0 = time.perf_counter()
        steps[which]()
        return time.perf_counter() - t0

    ratios = []
    for k in range(pairs):
        order = ("torch", "nnkernels") if k % 2 == 0 else ("nnkernels", "torch")
        t = {w: timed(w) for w in order}
        ratios.append(t["torch"] / t["nnkernels"])
        print(f"pair {k + 1:2d}: torch {t['torch'] * 1e3:8.1f} ms  nnkernels {t['nnkernels'] * 1e3:8.1f} ms  "
              f"speedup {ratios[-1]:.4f}x", flush=True)
    logs = np.log(ratios)
    half = 1.96 * logs.std(ddof=1) / np.sqrt(len(logs)) if len(logs) > 1 else float("nan")
    ci = (float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half)))
    faster = int(sum(r > 1 for r in ratios))
    print(f"{name} step, {pairs} pairs: speedup median {np.median(ratios):.4f}x (range {min(ratios):.4f}-"
          f"{max(ratios):.4f}), geometric mean {np.exp(logs.mean()):.4f}x, 95% interval {ci[0]:.4f}-{ci[1]:.4f}; "
          f"nnkernels faster in {faster} of {pairs} pairs")
    return {"ratios": ratios, "median": float(np.median(ratios)), "ci95": ci, "faster_in": faster}


# Profiler rows by what they are (self CPU time, so that the shares add up to the step).
_CATEGORIES = (
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("norms", ("aten::native_layer_norm", "aten::native_batch_norm", "nnkernels_layer_norm",
               "nnkernels_batch_norm")),
    ("activations", ("aten::clamp_min", "aten::threshold_backward", "aten::relu", "nnkernels_relu",
                     "nnkernels_leaky_relu", "nnkernels_tanh", "nnkernels_sigmoid")),
    ("loss", ("aten::_log_softmax", "aten::nll_loss", "nnkernels_softmax_cross_entropy")),
    ("optimizer", ("Optimizer.step", "aten::_fused_adam", "Optimizer.zero_grad")),
)


def _time_shares(averages) -> dict:
    shares = {name: 0.0 for name, _ in _CATEGORIES}
    shares["other"] = 0.0
    for e in averages:
        kind = next((name for name, prefixes in _CATEGORIES if e.key.startswith(prefixes)), "other")
        shares[kind] += e.self_cpu_time_total / 1e6
    return shares


if __name__ == "__main__":
    import sys

    if "--paired" in sys.argv:  # python -m nnkernels.bench.torch_modules --paired [ln_block|mlp] [pairs]
        rest = sys.argv[sys.argv.index("--paired") + 1:]
        words = [a for a in rest if not a.startswith("--")]
        paired_steps(words[0] if words else "ln_block", int(words[1]) if len(words) > 1 else 12,
                     quick="--quick" in sys.argv)
    else:
        profile_steps(quick="--quick" in sys.argv)
