"""nnkernels.torch.optim against torch.optim: 20-step trajectories, param groups, params without
gradients, closures, state_dict interchange both ways, refused options."""
from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import nnkernels as nk  # noqa: E402
import nnkernels.torch as nkt  # noqa: E402

SHAPES = [(3,), (5, 7), (1,), (4099,)]  # sizes 1, primes, more than one kernel chunk per tensor

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.05, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True, eps=1e-6)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2, maximize=True)),
]
IDS = [f"{n}-{'-'.join(k for k in kw if k != 'lr') or 'default'}" for n, kw in CONFIGS]
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=1e-5, atol=1e-6)}


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype) for s in SHAPES]


def _twins(name, kw, dtype, groups=False):
    """(torch.optim optimizer, ours, their params, our params) from the same initial values."""
    init = _params(dtype)
    a = [torch.nn.Parameter(p.clone()) for p in init]
    b = [torch.nn.Parameter(p.clone()) for p in init]
    if groups:  # the second group overrides lr (and keeps the other hyperparameters)
        ga, gb = [{"params": a[:2]}, {"params": a[2:], "lr": kw["lr"] / 3}], [{"params": b[:2]},
                                                                             {"params": b[2:], "lr": kw["lr"] / 3}]
    else:
        ga, gb = a, b
    return getattr(torch.optim, name)(ga, **kw), getattr(nkt.optim, name)(gb, **kw), a, b


def _run(opt_a, opt_b, a, b, steps, seed=1, skip=()):
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for i, (x, y) in enumerate(zip(a, b)):
            if (step, i) in skip:  # no gradient for this parameter at this step: skipped by both
                x.grad = y.grad = None
                continue
            grad = torch.randn(x.shape, generator=g, dtype=x.dtype)
            x.grad, y.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()


def _assert_same(opt_a, opt_b, a, b):
    tol = TOL[a[0].dtype]
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, **tol)
        sa, sb = opt_a.state[x], opt_b.state[y]
        assert sa.keys() == sb.keys()
        for k in sa:
            if isinstance(sa[k], torch.Tensor):
                assert sb[k].dtype == sa[k].dtype and sb[k].shape == sa[k].shape, k
                torch.testing.assert_close(sb[k], sa[k], **tol, msg=k)
            else:
                assert sb[k] == sa[k], k


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_twenty_steps_match_torch_optim(name, kw, dtype):
    opt_a, opt_b, a, b = _twins(name, kw, dtype)
    _run(opt_a, opt_b, a, b, 20)
    _assert_same(opt_a, opt_b, a, b)


@pytest.mark.parametrize("name,kw", CONFIGS[::2], ids=IDS[::2])
def test_param_groups_and_params_without_grad(name, kw):
    """Two groups with different lr; parameter 1 has no gradient for its first 3 steps and parameter 3
    none at step 5 (their step counts, hence bias corrections and SGD's first momentum step, differ
    from the rest of their group)."""
    opt_a, opt_b, a, b = _twins(name, kw, torch.float64, groups=True)
    skip = {(s, 1) for s in range(3)} | {(5, 3)}
    _run(opt_a, opt_b, a, b, 20, skip=skip)
    _assert_same(opt_a, opt_b, a, b)


@pytest.mark.parametrize("name,kw", CONFIGS[1::2], ids=IDS[1::2])
def test_state_dicts_interchange_both_ways(name, kw):
    """10 steps with one library, its state_dict into the other's optimizer, 10 more steps each."""
    for first in ("torch", "ours"):
        opt_a, opt_b, a, b = _twins(name, kw, torch.float64)
        _run(opt_a, opt_b, a, b, 10)
        if first == "torch":  # ours continues from torch.optim's state
            opt_b = getattr(nkt.optim, name)(b, **kw)
            opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as saved and loaded: no shared tensors
        else:  # torch.optim continues from ours
            opt_a = getattr(torch.optim, name)(a, **kw)
            opt_a.load_state_dict(copy.deepcopy(opt_b.state_dict()))
        _run(opt_a, opt_b, a, b, 10, seed=2)
        _assert_same(opt_a, opt_b, a, b)
        assert opt_b.state_dict()["param_groups"][0].keys() == opt_a.state_dict()["param_groups"][0].keys()


def test_step_closure_zero_grad_and_a_model():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), nkt.ReLU(), torch.nn.Linear(3, 2))
    opt = nkt.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))

    def closure():
        opt.zero_grad()
        loss = nkt.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    first = opt.step(closure)
    for _ in range(20):
        last = opt.step(closure)
    assert last < first
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    opt.step()  # nothing has a gradient: a no-op


def test_updates_bump_autograd_version_counters():
    """A tensor saved for backward and updated by step() since is detected, as with torch.optim."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = nkt.optim.SGD([w], lr=0.1)
    y = (w * w).sum()
    w.grad = torch.ones(3)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


@pytest.mark.parametrize("make,match", [
    (lambda p: nkt.optim.RMSprop(p, momentum=0.9), "^momentum"),
    (lambda p: nkt.optim.RMSprop(p, centered=True), "^centered"),
    (lambda p: nkt.optim.Adam(p, capturable=True), "^capturable"),
    (lambda p: nkt.optim.SGD(p, lr=0.1, differentiable=True), "^differentiable"),
    (lambda p: nkt.optim.Adam(p, lr=-1.0), "^lr"),
    (lambda p: nkt.optim.Adam(p, betas=(1.0, 0.9)), "^beta1"),
    (lambda p: nkt.optim.SGD(p, lr=0.1, nesterov=True), "^nesterov"),
    (lambda p: nkt.optim.Adagrad(p, lr_decay=-1.0), "^lr_decay"),
])
def test_unsupported_or_bad_hyperparameters_refused_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.nn.Parameter(torch.zeros(2))])
    opt = nkt.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="^eps"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "eps": -1.0})


def test_non_contiguous_parameter_is_refused_before_anything_changes():
    w = torch.nn.Parameter(torch.zeros(3, 4).t())  # a transposed view: not C-contiguous
    w.grad = torch.ones(3, 4).t()
    opt = nkt.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step()
    assert (w == 0).all()


CUDA = torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no GPU (CUDA build + device + PyTorch CUDA)")
@pytest.mark.parametrize("name,kw", CONFIGS[::3], ids=IDS[::3])
def test_cuda_parameters_run_the_cuda_kernels(name, kw):
    init = _params(torch.float32)
    a = [torch.nn.Parameter(p.clone()) for p in init]
    b = [torch.nn.Parameter(p.clone().cuda()) for p in init]
    opt_a, opt_b = getattr(torch.optim, name)(a, **kw), getattr(nkt.optim, name)(b, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for x, y in zip(a, b):
            grad = torch.randn(x.shape, generator=g)
            x.grad, y.grad = grad.clone(), grad.cuda()
        opt_a.step()
        opt_b.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(y.cpu(), x.detach(), rtol=1e-5, atol=1e-6)
