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
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01, centered=True, eps=1e-6)),
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
                # atol in units of the state's scale: a momentum buffer summing d/den terms reaches ~20, and
                # where its terms cancel an element keeps the absolute rounding error of that scale
                scale = max(1.0, sa[k].abs().max().item()) if sa[k].numel() else 1.0
                torch.testing.assert_close(sb[k], sa[k], rtol=tol["rtol"], atol=tol["atol"] * scale, msg=k)
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
    (lambda p: nkt.optim.RMSprop(p, momentum=-0.9), "^momentum"),
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


# ----------------------------------------------------------------------------- 16-bit parameters (issue 15)
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

HALF = [torch.bfloat16, torch.float16]
HALF_IDS = ["bfloat16", "float16"]


def _bits(t):
    return t.detach().cpu().contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32)


def _grads16(params, step, dtype):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g).to(dtype) for p in params]


def _run16(opt, params, steps, dtype, start=0):
    for step in range(start, start + steps):
        for p, g in zip(params, _grads16(params, step, dtype)):
            p.grad = g.to(p.device)
        opt.step()


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_16bit_master_params_follow_the_float32_optimizer_bitwise(name, kw, dtype):
    """master_params=True: each 16-bit parameter's float32 master copy (state ``master_param``) follows
    the float32 optimizer fed the upcast gradients bitwise, the parameter is it rounded to nearest,
    and the states are float32."""
    init = [p.to(dtype) for p in _params(torch.float32)]
    p16 = [torch.nn.Parameter(p.clone()) for p in init]
    p32 = [torch.nn.Parameter(p.float()) for p in init]
    opt16 = getattr(nkt.optim, name)(p16, master_params=True, **kw)
    opt32 = getattr(nkt.optim, name)(p32, **kw)
    for step in range(8):
        g = _grads16(p16, step, dtype)
        for a, b, x in zip(p16, p32, g):
            a.grad, b.grad = x, x.float()
        opt16.step()
        opt32.step()
    for a, b in zip(p16, p32):
        st = opt16.state[a]
        assert st["master_param"].dtype == torch.float32
        assert all(v.dtype == torch.float32 for k, v in st.items() if k != "step" and torch.is_tensor(v))
        assert torch.equal(_bits(st["master_param"]), _bits(b))
        assert a.dtype == dtype and torch.equal(_bits(a), _bits(b.detach().to(dtype)))


# nnkernels.optim takes the same options: its classes, on the same values as ml_dtypes / float16
# arrays, give the reference bits (the configurations both have: no maximize, AMSGrad, lr_decay)
_SHARED = [("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01), {}),
           ("SGD", dict(lr=0.1), {}),
           ("Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1), {}),
           ("AdamW", dict(lr=0.01), {}),
           ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1), {}),
           ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True), {}),
           ("Adagrad", dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.2), {})]


def _np16(t):
    t = t.detach().cpu()
    return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16) if t.dtype == torch.bfloat16 else t.numpy().copy()


@pytest.mark.parametrize("name,kw,_", _SHARED, ids=[s[0] + str(i) for i, s in enumerate(_SHARED)])
@pytest.mark.parametrize("mode", ["states16", "states32", "stochastic", "stochastic32", "master"])
@pytest.mark.parametrize("dtype", HALF, ids=HALF_IDS)
def test_16bit_bitwise_nnkernels_optim(name, kw, _, mode, dtype):
    """16-bit params with 16-bit states (torch.optim's), float32 states, stochastic rounding keyed as
    nnkernels.optim keys it (the same seed), master copies: bitwise the nnkernels.optim run."""
    from nnkernels import optim as nko

    init = [p.to(dtype) for p in _params(torch.float32, seed=3)]
    ours = [torch.nn.Parameter(p.clone()) for p in init]
    arrays = [_np16(p) for p in init]
    opts = {"states16": {}, "states32": dict(state_dtype=torch.float32),
            "stochastic": dict(stochastic_rounding=True, seed=2**63 + 11),
            "stochastic32": dict(stochastic_rounding=True, seed=5, state_dtype=torch.float32),
            "master": dict(master_params=True)}[mode]
    np_opts = dict(opts)
    if "state_dtype" in np_opts or mode == "master":
        np_opts.pop("state_dtype", None)  # float32 states: nnkernels.optim's default for 16-bit params
    else:
        np_opts["state_dtype"] = arrays[0].dtype
    opt = getattr(nkt.optim, name)(ours, **kw, **opts)
    ref = getattr(nko, name)(arrays, **kw, **np_opts)
    for step in range(6):
        g = _grads16(ours, step, dtype)
        for p, x in zip(ours, g):
            p.grad = x
        opt.step()
        ref.step([_np16(x) for x in g])
    for p, a in zip(ours, arrays):
        assert p.dtype == dtype
        np.testing.assert_array_equal(_np16(p).view(np.uint16), a.view(np.uint16))


@pytest.mark.parametrize("mode", ["states32", "master", "stochastic"])
def test_16bit_state_dict_round_trip_keeps_float32_states(mode):
    """torch.optim's load_state_dict casts floating-point state to the parameter's dtype; float32
    states and master copies of bfloat16 params come back in float32 (from the saved values), the
    stochastic-rounding seed with them: the resumed run continues bitwise; torch.optim loads it too."""
    opts = {"states32": dict(state_dtype=torch.float32), "master": dict(master_params=True),
            "stochastic": dict(stochastic_rounding=True, seed=123)}[mode]
    init = [p.to(torch.bfloat16) for p in _params(torch.float32, seed=4)]
    full = [torch.nn.Parameter(p.clone()) for p in init]
    opt = nkt.optim.AdamW(full, lr=0.01, amsgrad=True, **opts)
    _run16(opt, full, 10, torch.bfloat16)
    half = [torch.nn.Parameter(p.clone()) for p in init]
    first = nkt.optim.AdamW(half, lr=0.01, amsgrad=True, **opts)
    _run16(first, half, 4, torch.bfloat16)
    sd = copy.deepcopy(first.state_dict())
    # the seed comes from the state_dict (the one given here is replaced)
    resumed = nkt.optim.AdamW(half, lr=0.01, amsgrad=True, **dict(opts, **({"seed": 1} if "seed" in opts else {})))
    resumed.load_state_dict(sd)
    for p in half:
        for k, v in resumed.state[p].items():
            if k != "step":
                assert v.dtype == (torch.bfloat16 if mode == "stochastic" else torch.float32), k
    _run16(resumed, half, 6, torch.bfloat16, start=4)
    for a, b in zip(full, half):
        assert torch.equal(_bits(a), _bits(b))
    theirs = torch.optim.AdamW([torch.nn.Parameter(p.clone()) for p in init], lr=0.01, amsgrad=True)
    theirs.load_state_dict(copy.deepcopy(sd))  # extra keys ignored, states cast to bfloat16 by torch


def test_16bit_mixed_group_and_refusals():
    """A group of bfloat16 and float32 params with master_params: only the 16-bit one gets a master copy."""
    w16 = torch.nn.Parameter(torch.ones(5, dtype=torch.bfloat16))
    w32 = torch.nn.Parameter(torch.ones(3))
    ref32 = torch.nn.Parameter(torch.ones(3))
    opt = nkt.optim.Adam([w16, w32], lr=0.1, master_params=True)
    ref = nkt.optim.Adam([ref32], lr=0.1)
    for _ in range(3):
        w16.grad, w32.grad, ref32.grad = torch.ones(5, dtype=torch.bfloat16), torch.ones(3), torch.ones(3)
        opt.step()
        ref.step()
    assert "master_param" in opt.state[w16] and "master_param" not in opt.state[w32]
    assert opt.state[w16]["exp_avg"].dtype == torch.float32 and opt.state[w32]["exp_avg"].dtype == torch.float32
    assert torch.equal(w32, ref32)
    p = [torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))]
    for make, exc, match in [
        (lambda: nkt.optim.Adam(p, master_params=True, stochastic_rounding=True), ValueError, "^stochastic_rounding"),
        (lambda: nkt.optim.SGD(p, lr=0.1, state_dtype=torch.bfloat16), TypeError, "^state_dtype"),
        (lambda: nkt.optim.SGD(p, lr=0.1, stochastic_rounding=True, seed=-1), ValueError, "^seed"),
        (lambda: nkt.optim.RMSprop(p, stochastic_rounding="yes"), TypeError, "^stochastic_rounding"),
        (lambda: nkt.optim.Adagrad(p, master_params=1), TypeError, "^master_params"),
    ]:
        with pytest.raises(exc, match=match):
            make()


def test_16bit_stochastic_rounding_moves_where_nearest_stalls():
    """200 SGD steps of 1e-3 on bfloat16 ones: round to nearest stays at 1.0, stochastic rounding
    reaches 0.8 on average (issue 15)."""
    near = torch.nn.Parameter(torch.ones(1 << 14, dtype=torch.bfloat16))
    sr = torch.nn.Parameter(torch.ones(1 << 14, dtype=torch.bfloat16))
    a, b = nkt.optim.SGD([near], lr=1e-3), nkt.optim.SGD([sr], lr=1e-3, stochastic_rounding=True, seed=3)
    for _ in range(200):
        near.grad = sr.grad = torch.ones(1 << 14, dtype=torch.bfloat16)
        a.step()
        b.step()
    assert bool((near == 1).all())
    assert abs(sr.double().mean().item() - 0.8) < 2e-3


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no GPU (CUDA build + device + PyTorch CUDA)")
@pytest.mark.parametrize("mode", ["states16", "master", "stochastic"])
@pytest.mark.parametrize("name,kw", CONFIGS[::2], ids=IDS[::2])
def test_cuda_16bit_bitwise_cpu(name, kw, mode):
    """CUDA bfloat16 params: bitwise the CPU run at an FMA level (the same operations and random words)."""
    opts = {"states16": {}, "master": dict(master_params=True), "stochastic": dict(stochastic_rounding=True, seed=9)}[mode]
    init = [p.to(torch.bfloat16) for p in _params(torch.float32, seed=5)]
    cpu = [torch.nn.Parameter(p.clone()) for p in init]
    gpu = [torch.nn.Parameter(p.clone().cuda()) for p in init]
    opt_c, opt_g = getattr(nkt.optim, name)(cpu, **kw, **opts), getattr(nkt.optim, name)(gpu, **kw, **opts)
    with nk.isa("avx2" if "avx2" in nk.build_info()["isa_compiled"] else "avx512"):
        _run16(opt_c, cpu, 5, torch.bfloat16)
    _run16(opt_g, gpu, 5, torch.bfloat16)
    torch.cuda.synchronize()
    for a, b in zip(cpu, gpu):
        assert b.is_cuda and torch.equal(_bits(a), _bits(b))
