"""Fused multi-tensor optimizer steps (nnkernels.optim_steps) against the NumPy references.

Kernels: csrc/cpu/optimizers.cpp (CPU), csrc/cuda/optimizers.cu (GPU); references:
nnkernels.reference.optimizers. torch.optim equality lives in tests/test_optim.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import reference as ref
from conftest import numpy_of, torch_of
from isolated import assert_clean_exit, run_isolated
from tolerances import TOL_REDUCTION, assert_close

DTYPES = [np.float32, np.float64]
MIXED_SIZES = [(1,), (7,), (3, 17), (257,), (4099,), (65537,)]  # 1, primes, > one chunk

# op name -> (state names, hyperparameters exercised)
CONFIGS = {
    "sgd": ((), dict(lr=0.05)),
    "sgd_wd": ((), dict(lr=0.05, weight_decay=0.01)),
    "sgd_momentum": (("velocity",), dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd_nesterov": (("velocity",), dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adagrad": (("sum_sq",), dict(lr=0.05, eps=1e-10, weight_decay=0.01)),
    "rmsprop": (("sq_avg",), dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.01)),
    "rmsprop_tf": (("sq_avg",), dict(lr=0.01, alpha=0.9, eps=1e-6, eps_in_sqrt=True)),
    "adam": (("exp_avg", "exp_avg_sq"), dict(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01)),
    "adamw": (("exp_avg", "exp_avg_sq"), dict(lr=0.01, beta1=0.8, beta2=0.999, eps=1e-8, weight_decay=0.1,
                                             decoupled_weight_decay=True)),
    "adam_amsgrad": (("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), dict(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8,
                                                                       weight_decay=0.01)),
    "adamw_amsgrad_max": (("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
                          dict(lr=0.01, beta1=0.8, beta2=0.999, eps=1e-8, weight_decay=0.1,
                               decoupled_weight_decay=True, maximize=True)),
    "sgd_momentum_max": (("velocity",), dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01, maximize=True)),
    "sgd_max": ((), dict(lr=0.05, weight_decay=0.01, maximize=True)),
    "adagrad_max": (("sum_sq",), dict(lr=0.05, eps=1e-10, weight_decay=0.01, maximize=True)),
    "rmsprop_max": (("sq_avg",), dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.01, maximize=True)),
    "rmsprop_momentum": (("sq_avg", "velocity"), dict(lr=0.01, alpha=0.9, eps=1e-8, momentum=0.9)),
    "rmsprop_centered": (("sq_avg", "grad_avg"), dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.01,
                                                      centered=True)),
    "rmsprop_centered_momentum_max": (("sq_avg", "grad_avg", "velocity"),
                                      dict(lr=0.01, alpha=0.8, eps=1e-6, weight_decay=0.01, momentum=0.5,
                                           centered=True, maximize=True)),
    "rmsprop_centered_tf": (("sq_avg", "grad_avg"), dict(lr=0.01, alpha=0.9, eps=1e-6, centered=True,
                                                         eps_in_sqrt=True)),
    "ema": ((), dict(decay=0.9)),
}


def _fn(mod, name):
    base = {"sgd_wd": "sgd", "sgd_momentum": "sgd", "sgd_nesterov": "sgd", "rmsprop_tf": "rmsprop",
            "adamw": "adam", "adam_amsgrad": "adam", "adamw_amsgrad_max": "adam", "sgd_momentum_max": "sgd",
            "sgd_max": "sgd", "adagrad_max": "adagrad"}.get(name, "rmsprop" if name.startswith("rmsprop") else name)
    return getattr(mod, {"ema": "ema_update"}.get(base, base + "_step"))


def _call(mod, name, params, grads, state, step, hyper=None):
    """One step of CONFIGS[name] (with `hyper` in place of its hyperparameters when given)."""
    states, default_hyper = CONFIGS[name]
    hyper = default_hyper if hyper is None else hyper
    f = _fn(mod, name)
    if name == "ema":
        return f(params, grads, **hyper)
    kw = dict(hyper)
    if name.startswith("sgd") and states:
        kw["velocity"] = state["velocity"]
        return f(params, grads, **kw)
    if name.startswith("adam"):
        if "max_exp_avg_sq" in states:
            kw["max_exp_avg_sq"] = state["max_exp_avg_sq"]
        return f(params, grads, state["exp_avg"], state["exp_avg_sq"], step=step, **kw)
    if name.startswith("rmsprop"):
        kw.update({k: state[k] for k in ("velocity", "grad_avg") if k in states})
    if states:
        return f(params, grads, state[states[0]], **kw)
    return f(params, grads, **kw)


def _make(rng, shapes, dtype):
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    state = {k: [np.zeros(s, dtype) for s in shapes] for k in CONFIGS_STATE_ALL}
    return params, state


CONFIGS_STATE_ALL = ("velocity", "sum_sq", "sq_avg", "grad_avg", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def _grads(rng, shapes, dtype):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _copy(lst):
    return [a.copy() for a in lst]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_trajectory_matches_reference(name, dtype, isa):
    """100 steps on a mixed-size list: the fused kernel follows the reference run in the same dtype."""
    rng = np.random.default_rng(1)
    shapes = MIXED_SIZES[:-1] if isa == "baseline" else MIXED_SIZES
    params, state = _make(rng, shapes, dtype)
    rparams, rstate = _copy(params), {k: _copy(v) for k, v in state.items()}
    for step in range(1, 101):
        grads = _grads(rng, shapes, dtype)
        _call(nk, name, params, grads, state, step)
        _call(ref, name, rparams, grads, rstate, step)
    # float32: each step rounds (and FMA-contracts) slightly differently; errors stay at the 1e-5 level.
    over = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-11}
    for a, b in zip(params, rparams):
        assert_close(a, b, dtype, **over)
    for k in CONFIGS[name][0]:
        for a, b in zip(state[k], rstate[k]):
            assert_close(a, b, dtype, **over)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_step_close_to_float64_reference(name, dtype):
    rng = np.random.default_rng(2)
    params, state = _make(rng, MIXED_SIZES, dtype)
    for k in state:  # nonzero state so every term matters
        state[k] = [np.abs(rng.standard_normal(a.shape)).astype(dtype) for a in state[k]]
    # a centered RMSprop's variance estimate sq_avg - grad_avg**2 is >= 0, as it is from zero states, and
    # here kept >= 0.1: a difference of nearly equal float32 numbers has no relative accuracy in any
    # implementation (torch.optim's alike), which a comparison with float64 would measure instead
    state["sq_avg"] = [(v + ga * ga + 0.1).astype(dtype) for v, ga in zip(state["sq_avg"], state["grad_avg"])]
    grads = _grads(rng, MIXED_SIZES, dtype)
    r64 = [a.astype(np.float64) for a in params]
    s64 = {k: [a.astype(np.float64) for a in v] for k, v in state.items()}
    _call(ref, name, r64, [g.astype(np.float64) for g in grads], s64, 3)
    _call(nk, name, params, grads, state, 3)
    for a, b in zip(params, r64):
        assert_close(a, b, dtype)


def test_single_array_and_list_agree():
    rng = np.random.default_rng(3)
    p = rng.standard_normal(1001).astype(np.float32)
    g = rng.standard_normal(1001).astype(np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    nk.adam_step(p, g, m, v, step=1)
    nk.adam_step([p2], (g,), [m2], [v2], step=1)
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(v, v2)


def test_mixed_dtypes_across_tensors():
    rng = np.random.default_rng(4)
    ps = [rng.standard_normal(33).astype(np.float32), rng.standard_normal(65).astype(np.float64)]
    gs = [rng.standard_normal(33).astype(np.float32), rng.standard_normal(65).astype(np.float64)]
    rp = _copy(ps)
    nk.sgd_step(ps, gs, lr=0.1)
    ref.sgd_step(rp, gs, lr=0.1)
    for a, b in zip(ps, rp):
        assert a.dtype == b.dtype
        assert_close(a, b)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_threads_bitwise_equal(name, threads):
    rng = np.random.default_rng(5)
    shapes = [(1,), (3,), (40000,), (5,), (70001,), (2,)]  # several chunks, small tensors between
    grads = _grads(rng, shapes, np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        params, state = _make(np.random.default_rng(6), shapes, np.float32)
        for step in (1, 2):
            _call(nk, name, params, grads, state, step)
        results.append((params, state))
    for a, b in zip(results[0][0], results[1][0]):
        np.testing.assert_array_equal(a, b)
    for k in CONFIGS[name][0]:
        for a, b in zip(results[0][1][k], results[1][1][k]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_empty_lists_and_empty_arrays(name):
    _call(nk, name, [], [], {k: [] for k in CONFIGS_STATE_ALL}, 1)
    params, state = _make(np.random.default_rng(0), [(0,), (3, 0)], np.float32)
    _call(nk, name, params, _grads(np.random.default_rng(0), [(0,), (3, 0)], np.float32), state, 1)
    assert nk.clip_grad_norm([], 1.0) == 0.0
    assert nk.clip_grad_norm([np.zeros(0, np.float32)], 1.0) == 0.0


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_propagate_as_reference(name, bad):
    rng = np.random.default_rng(7)
    shapes = [(37,)]
    params, state = _make(rng, shapes, np.float64)
    grads = _grads(rng, shapes, np.float64)
    grads[0][[0, 5, 36]] = bad
    rparams, rstate = _copy(params), {k: _copy(v) for k, v in state.items()}
    _call(nk, name, params, grads, state, 1)
    with np.errstate(all="ignore"):  # the reference meets inf/inf and inf-inf like the kernel
        _call(ref, name, rparams, grads, rstate, 1)
    np.testing.assert_array_equal(np.isnan(params[0]), np.isnan(rparams[0]))
    np.testing.assert_array_equal(np.isinf(params[0]), np.isinf(rparams[0]))
    assert not np.isfinite(params[0][5])  # never masked
    assert_close(params[0], rparams[0])


# ----------------------------------------------------------------------------- clip_grad_norm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm(dtype, max_norm, isa):
    rng = np.random.default_rng(8)
    grads = _grads(rng, MIXED_SIZES, dtype)
    rg = _copy(grads)
    total = nk.clip_grad_norm(grads, max_norm)
    rtotal = ref.clip_grad_norm(rg, max_norm)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, rtotal, **TOL_REDUCTION[np.dtype(np.float64)])
    for a, b in zip(grads, rg):
        assert_close(a, b, dtype)
    if max_norm > total:
        for a, b in zip(grads, _grads(np.random.default_rng(8), MIXED_SIZES, dtype)):
            np.testing.assert_array_equal(a, b)  # untouched below the threshold
    else:
        new = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads))
        np.testing.assert_allclose(new, max_norm, rtol=1e-5)


def test_clip_grad_norm_float64_accumulation_and_threads(threads):
    # 2e6 float32 values of 1e-3 + one of 1e3: float32 accumulation would lose the small ones.
    g = np.full(2_000_003, 1e-3, np.float32)
    g[17] = 1e3
    expect = np.sqrt(np.sum(g.astype(np.float64) ** 2))
    out = []
    for n in (1, 2):
        threads(n)
        out.append(nk.clip_grad_norm([g], 1e9))
    assert out[0] == out[1]
    np.testing.assert_allclose(out[0], expect, rtol=1e-12)


def test_clip_grad_norm_nan_and_inf_like_torch():
    g = np.array([1.0, np.nan, 2.0])
    assert np.isnan(nk.clip_grad_norm(g, 1.0))
    assert np.isnan(g).all()  # NaN coefficient reaches every entry, as torch.nn.utils.clip_grad_norm_
    g = np.array([1.0, np.inf, 2.0])
    assert nk.clip_grad_norm(g, 1.0) == np.inf
    np.testing.assert_array_equal(g, [0.0, np.nan, 0.0])


def test_clip_grad_norm_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    grads = _grads(rng, MIXED_SIZES, np.float32)
    ts = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for t, g in zip(ts, grads):
        t.grad = torch.from_numpy(g.copy())
    tn = float(torch.nn.utils.clip_grad_norm_(ts, 2.0))
    n = nk.clip_grad_norm(grads, 2.0)
    np.testing.assert_allclose(n, tn, rtol=1e-5)
    for t, g in zip(ts, grads):
        assert_close(g, t.grad.numpy())


# ----------------------------------------------------------------------------- conventions
def test_cs231n_momentum_is_pytorch_momentum_at_constant_lr():
    """cs231n: v = mu*v - lr*dx; x += v. PyTorch: b = mu*b + dx; x -= lr*b. Same x for constant lr."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal(50)
    x_cs, v_cs = x.copy(), np.zeros(50)
    vel = np.zeros(50)
    lr, mu = 0.05, 0.9
    for _ in range(30):
        dx = rng.standard_normal(50)
        v_cs = mu * v_cs - lr * dx
        x_cs += v_cs
        nk.sgd_step(x, dx, lr=lr, momentum=mu, velocity=vel)
    np.testing.assert_allclose(x, x_cs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(-lr * vel, v_cs, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["sgd_max", "sgd_momentum_max", "adagrad_max", "rmsprop_max",
                                  "rmsprop_centered_momentum_max", "adamw_amsgrad_max"])
def test_maximize_is_minimising_the_negated_gradient(name):
    """maximize=True follows bitwise the trajectory of the same call on -g (the sign flip is exact)."""
    rng = np.random.default_rng(14)
    shapes = [(5,), (4099,)]
    params, state = _make(rng, shapes, np.float32)
    p2, s2 = _copy(params), {k: _copy(v) for k, v in state.items()}
    states, hyper = CONFIGS[name]
    minimise = {k: v for k, v in hyper.items() if k != "maximize"}
    for step in (1, 2, 3):
        grads = _grads(rng, shapes, np.float32)
        _call(nk, name, params, grads, state, step)
        _call(nk, name, p2, [-g for g in grads], s2, step, hyper=minimise)
    for a, b in zip(params + [x for k in states for x in state[k]], p2 + [x for k in states for x in s2[k]]):
        np.testing.assert_array_equal(a, b)


def test_amsgrad_keeps_the_running_maximum():
    """A large gradient then small ones: max_exp_avg_sq keeps the peak; plain Adam's v decays."""
    p, m, v, vmax = np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3)
    nk.adam_step(p, np.full(3, 10.0), m, v, step=1, beta2=0.5, max_exp_avg_sq=vmax)
    peak = vmax.copy()
    np.testing.assert_allclose(peak, 50.0)
    for t in range(2, 5):
        nk.adam_step(p, np.full(3, 0.1), m, v, step=t, beta2=0.5, max_exp_avg_sq=vmax)
    np.testing.assert_array_equal(vmax, peak)
    assert (v < peak).all()
    vmax[1] = np.nan  # NaN propagates like torch.maximum
    nk.adam_step(p, np.full(3, 0.1), m, v, step=5, beta2=0.5, max_exp_avg_sq=vmax)
    assert np.isnan(vmax[1]) and np.isnan(p[1]) and np.isfinite(p[[0, 2]]).all()


def test_adam_bias_correction_first_step():
    """Step 1 with zero state: the update is lr * g / (|g| + eps') = about lr * sign(g)."""
    g = np.array([0.3, -2.0, 1e-3])
    p = np.zeros(3)
    nk.adam_step(p, g, np.zeros(3), np.zeros(3), step=1, lr=0.1, eps=0.0)
    np.testing.assert_allclose(p, -0.1 * np.sign(g), rtol=1e-12)


# ----------------------------------------------------------------------------- bad input
def _fresh():
    rng = np.random.default_rng(11)
    p = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)]
    g = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)]
    s = [np.ones(5, np.float32), np.ones((2, 3), np.float32)]
    s2 = [np.ones(5, np.float32), np.ones((2, 3), np.float32)]
    return p, g, s, s2


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


BAD = [
    # (description, call(p, g, s, s2), exception, message start)
    ("short grads", lambda p, g, s, s2: nk.adam_step(p, g[:1], s, s2, step=1), ValueError, "grads"),
    ("long state", lambda p, g, s, s2: nk.adagrad_step(p, g, s + [s[0].copy()]), ValueError, "sum_sq"),
    ("shape", lambda p, g, s, s2: nk.rmsprop_step(p, [g[0], g[1].T.copy()], s), ValueError, r"grads\[1\]"),
    ("state shape", lambda p, g, s, s2: nk.adam_step(p, g, s, [s2[0], np.ones(6, np.float32)], step=1),
     ValueError, r"exp_avg_sq\[1\]"),
    ("dtype", lambda p, g, s, s2: nk.sgd_step(p, [g[0], g[1].astype(np.float64)], lr=0.1), TypeError, r"grads\[1\]"),
    ("int dtype", lambda p, g, s, s2: nk.sgd_step([np.ones(5, np.int32)], [g[0]], lr=0.1), TypeError, r"params\[0\]"),
    ("state dtype", lambda p, g, s, s2: nk.adagrad_step(p, g, [s[0], s[1].astype(np.float64)]), TypeError,
     r"sum_sq\[1\]"),
    ("read-only param", lambda p, g, s, s2: nk.sgd_step([p[0], _readonly(p[1])], g, lr=0.1), ValueError,
     r"params\[1\]: array is read-only"),
    ("read-only state", lambda p, g, s, s2: nk.adam_step(p, g, s, [s2[0], _readonly(s2[1])], step=1), ValueError,
     r"exp_avg_sq\[1\]"),
    ("strided", lambda p, g, s, s2: nk.sgd_step([p[0], np.ones((2, 6), np.float32)[:, ::2]], g, lr=0.1), ValueError,
     r"params\[1\]: expected a C-contiguous"),
    ("not an array", lambda p, g, s, s2: nk.sgd_step(p, [g[0], [1.0] * 6], lr=0.1), TypeError, r"grads\[1\]"),
    ("None grads", lambda p, g, s, s2: nk.sgd_step(p, None, lr=0.1), TypeError, "grads"),
    ("lr < 0", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=1, lr=-1e-3), ValueError, "lr"),
    ("lr nan", lambda p, g, s, s2: nk.sgd_step(p, g, lr=float("nan")), ValueError, "lr"),
    ("lr str", lambda p, g, s, s2: nk.sgd_step(p, g, lr="0.1"), TypeError, "lr"),
    ("beta1 = 1", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=1, beta1=1.0), ValueError, "beta1"),
    ("beta2 < 0", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=1, beta2=-0.1), ValueError, "beta2"),
    ("step 0", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=0), ValueError, "step"),
    ("step float", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=1.0), TypeError, "step"),
    ("momentum without velocity", lambda p, g, s, s2: nk.sgd_step(p, g, lr=0.1, momentum=0.9), ValueError,
     "velocity"),
    ("nesterov without momentum", lambda p, g, s, s2: nk.sgd_step(p, g, lr=0.1, nesterov=True), ValueError,
     "nesterov"),
    ("alpha > 1", lambda p, g, s, s2: nk.rmsprop_step(p, g, s, alpha=1.5), ValueError, "alpha"),
    ("rmsprop momentum without velocity", lambda p, g, s, s2: nk.rmsprop_step(p, g, s, momentum=0.9), ValueError,
     "velocity: required"),
    ("rmsprop centered without grad_avg", lambda p, g, s, s2: nk.rmsprop_step(p, g, s, centered=True), ValueError,
     "grad_avg: required"),
    ("rmsprop momentum < 0", lambda p, g, s, s2: nk.rmsprop_step(p, g, s, momentum=-0.5, velocity=s2), ValueError,
     "momentum"),
    ("rmsprop grad_avg of another dtype", lambda p, g, s, s2: nk.rmsprop_step(
        p, g, s, centered=True, grad_avg=[x.astype(np.float64) for x in s2]), TypeError, r"grad_avg\[0\]"),
    ("eps < 0", lambda p, g, s, s2: nk.adagrad_step(p, g, s, eps=-1.0), ValueError, "eps"),
    ("decay > 1", lambda p, g, s, s2: nk.ema_update(p, g, decay=1.1), ValueError, "decay"),
    ("weight decay < 0", lambda p, g, s, s2: nk.sgd_step(p, g, lr=0.1, weight_decay=-1.0), ValueError,
     "weight_decay"),
    ("max_norm < 0", lambda p, g, s, s2: nk.clip_grad_norm(g, -1.0), ValueError, "max_norm"),
    ("grad is param", lambda p, g, s, s2: nk.sgd_step(p, [g[0], p[1]], lr=0.1), ValueError,
     r"(params|grads)\[1\]: shares memory"),
    ("state aliases param", lambda p, g, s, s2: nk.adagrad_step(p, g, [s[0], p[1]]), ValueError,
     r"(params|sum_sq)\[1\]: shares memory"),
    ("shared state", lambda p, g, s, s2: nk.adam_step(p, g, s, [s2[0], s[1]], step=1), ValueError, "exp_avg"),
    ("amsgrad short", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=1, max_exp_avg_sq=[np.ones(5, np.float32)]),
     ValueError, "max_exp_avg_sq"),
    ("amsgrad read-only", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=1,
                                                           max_exp_avg_sq=[np.ones(5, np.float32),
                                                                           _readonly(np.ones((2, 3), np.float32))]),
     ValueError, r"max_exp_avg_sq\[1\]: array is read-only"),
    ("amsgrad aliases exp_avg", lambda p, g, s, s2: nk.adam_step(p, g, s, s2, step=1, max_exp_avg_sq=s),
     ValueError, r"(exp_avg|max_exp_avg_sq)\[\d\]: shares memory"),
    ("param listed twice", lambda p, g, s, s2: nk.sgd_step([p[0], p[0]], [g[0], g[0]], lr=0.1), ValueError,
     "params"),
    ("overlapping views", lambda p, g, s, s2: nk.ema_update([p[1][0], p[1].reshape(-1)[1:4]], [g[0][:3], g[0][:3]],
                                                            decay=0.5), ValueError, "averages"),
]


@pytest.mark.parametrize("desc,call,exc,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input_refused_and_nothing_modified(desc, call, exc, msg):
    p, g, s, s2 = _fresh()
    before = [a.copy() for a in p + g + s + s2]
    with pytest.raises(exc, match="^" + msg):
        call(p, g, s, s2)
    for a, b in zip(p + g + s + s2, before):
        np.testing.assert_array_equal(a, b)


def test_read_only_grads_accepted():
    p, g, s, s2 = _fresh()
    nk.adam_step(p, [_readonly(x) for x in g], s, s2, step=1)
    nk.ema_update(s, [_readonly(x) for x in p], decay=0.5)


# ----------------------------------------------------------------------------- torch CPU tensors
def _torch_copy(torch, lst, param=False):
    """Tensors with the values of NumPy arrays (their own memory); nn.Parameter leaves when `param`."""
    ts = [torch.tensor(a) for a in lst]
    return [torch.nn.Parameter(t) for t in ts] if param else ts


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_cpu_tensors_bitwise_numpy_and_in_place(name, dtype):
    """Params as nn.Parameter leaves (requiring grad), grads and states as tensors: updated in place,
    zero-copy (same objects, same memory), bitwise the NumPy call's values."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    shapes = [(1,), (7,), (3, 17), (16385,)]  # a tensor across two chunks
    params, state = _make(rng, shapes, dtype)
    tparams = _torch_copy(torch, params, param=True)
    tstate = {k: _torch_copy(torch, v) for k, v in state.items()}
    ptrs = [t.data_ptr() for t in tparams]
    for step in (1, 2, 3):
        grads = _grads(rng, shapes, dtype)
        assert _call(nk, name, params, grads, state, step) is None
        assert _call(nk, name, tparams, _torch_copy(torch, grads), tstate, step) is None
    for a, t, ptr in zip(params, tparams, ptrs):
        assert isinstance(t, torch.nn.Parameter) and t.requires_grad and t.data_ptr() == ptr
        np.testing.assert_array_equal(t.detach().numpy(), a)
    for k in CONFIGS[name][0]:
        for a, t in zip(state[k], tstate[k]):
            np.testing.assert_array_equal(t.numpy(), a)


def test_torch_and_numpy_mixed_in_one_call():
    """Libraries may be mixed on the CPU (NumPy params, torch grads and states): same values."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(15)
    shapes = [(5,), (4, 9)]
    params, state = _make(rng, shapes, np.float32)
    p2 = _copy(params)
    m, v = _torch_copy(torch, state["exp_avg"]), [torch.zeros(s) for s in shapes]
    grads = _grads(rng, shapes, np.float32)
    nk.adam_step(params, grads, state["exp_avg"], state["exp_avg_sq"], step=1, lr=0.1)
    nk.adam_step(p2, _torch_copy(torch, grads), m, [v[0], v[1].numpy()], step=1, lr=0.1)
    for a, b in zip(params, p2):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(v[1].numpy(), state["exp_avg_sq"][1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_torch_cpu(dtype, max_norm):
    """CPU tensors: the norm is a Python float (as for NumPy), the gradients are scaled in place, bitwise."""
    torch = pytest.importorskip("torch")
    grads = _grads(np.random.default_rng(16), MIXED_SIZES, dtype)
    tg = _torch_copy(torch, grads)
    n = nk.clip_grad_norm(grads, max_norm)
    tn = nk.clip_grad_norm(tg, max_norm)
    assert type(tn) is float and tn == n
    for a, t in zip(grads, tg):
        np.testing.assert_array_equal(t.numpy(), a)


def test_torch_cpu_refusals_change_nothing():
    """The same checks as for NumPy arrays, and memory shared across libraries is found (the range sweep)."""
    torch = pytest.importorskip("torch")
    p = [torch.ones(5), torch.ones(2, 3)]
    g = [torch.ones(5), torch.ones(2, 3)]
    cases = [
        (lambda: nk.sgd_step([p[0], torch.ones(3, 2).T], g, lr=0.1), ValueError, r"params\[1\]: expected a C-contiguous"),
        (lambda: nk.sgd_step([p[0], torch.ones(2, 3, dtype=torch.int32)], g, lr=0.1), TypeError,
         r"params\[1\]: expected a float32, float64, float16 or bfloat16"),
        (lambda: nk.sgd_step(p, [g[0], torch.ones(2, 3, dtype=torch.float64)], lr=0.1), TypeError, r"grads\[1\]"),
        (lambda: nk.sgd_step(p, [g[0], torch.ones(3, 2)], lr=0.1), ValueError, r"grads\[1\]: expected the shape"),
        (lambda: nk.sgd_step(p, [g[0], p[1].view(2, 3)], lr=0.1), ValueError, r"(grads|params)\[1\]: shares memory"),
        (lambda: nk.ema_update([p[1][0], p[1].view(-1)[1:4]], [g[0][:3], g[0][:3]], decay=0.5), ValueError,
         r"averages\[\d\]: shares memory"),
        (lambda: nk.clip_grad_norm([p[0], p[0][1:]], 1.0), ValueError, r"grads\[\d\]: shares memory"),
        (lambda: nk.sgd_step([p[0], torch._neg_view(p[1])], g, lr=0.1), ValueError, r"params\[1\]: a lazily negated"),
    ]
    a = np.ones(6, np.float32)
    cases.append((lambda: nk.sgd_step([a], [torch.from_numpy(a)], lr=0.1), ValueError,
                  r"(grads|params)\[0\]: shares memory"))
    before = [t.clone() for t in p + g] + [a.copy()]
    for call, exc, msg in cases:
        with pytest.raises(exc, match="^" + msg):
            call()
    for t, b in zip(p + g, before):
        assert torch.equal(t, b)
    np.testing.assert_array_equal(a, before[-1])


@pytest.mark.parametrize("cls,kw", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("Adagrad", {}),
                                    ("RMSprop", {}), ("Adam", dict(weight_decay=0.01)), ("AdamW", {})])
def test_optim_classes_on_nn_parameters(cls, kw):
    """nk.optim over nn.Parameter leaves: torch state tensors, in-place updates bitwise the NumPy run,
    a NumPy state_dict that loads into either."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    shapes = [(3,), (4, 5)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    tparams = _torch_copy(torch, params, param=True)
    opt, topt = getattr(nk.optim, cls)(params, **kw), getattr(nk.optim, cls)(tparams, **kw)
    assert topt.params == tparams and topt.params is not tparams
    for states in topt.state.values():
        assert all(type(t) is torch.Tensor and not t.requires_grad for t in states)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    for g in grads[:2]:
        opt.step(g)
        topt.step(_torch_copy(torch, g))
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd.keys() == tsd.keys()
    for k in sd:
        np.testing.assert_array_equal(np.asarray(tsd[k]), np.asarray(sd[k]))
        assert not isinstance(tsd[k], torch.Tensor)
    topt2 = getattr(nk.optim, cls)([t.detach().clone() for t in tparams], **kw)
    topt2.load_state_dict(sd)
    for g in grads[2:]:
        opt.step(g)
        topt2.step(_torch_copy(torch, g))
    for a, t in zip(params, topt2.params):
        np.testing.assert_array_equal(t.numpy(), a)


def test_optim_constructor_checks_tensors_like_the_step():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"^params\[0\]: expected a float32, float64, float16 or bfloat16"):
        nk.optim.Adam([torch.ones(3, dtype=torch.int64)])
    with pytest.raises(ValueError, match=r"^params\[0\]: expected a C-contiguous"):
        nk.optim.Adam([torch.ones(4, 3).T])
    p = torch.ones(4)
    with pytest.raises(ValueError, match=r"^params\[1\]: shares memory with params\[0\]"):
        nk.optim.SGD([p, p])
    assert nk.optim.SGD(p).params == [p]  # one tensor: a list of one


# ----------------------------------------------------------------------------- GPU
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_matches_cpu(name, dtype, gpu):
    to_gpu, to_numpy, _ = gpu
    rng = np.random.default_rng(12)
    shapes = [(1,), (7,), (4099,), (70001,)]
    params, state = _make(rng, shapes, dtype)
    gp = [to_gpu(a) for a in params]
    gs = {k: [to_gpu(a) for a in v] for k, v in state.items()}
    for step in (1, 2, 3):
        grads = _grads(rng, shapes, dtype)
        _call(nk, name, params, grads, state, step)
        _call(nk, name, gp, [to_gpu(g) for g in grads], gs, step)
    for a, b in zip(params, gp):
        assert_close(to_numpy(b), a, dtype)
    for k in CONFIGS[name][0]:
        for a, b in zip(state[k], gs[k]):
            assert_close(to_numpy(b), a, dtype)


@pytest.mark.parametrize("name", ["adam", "sgd_momentum", "ema"])
def test_gpu_long_lists_span_several_launches(name, gpu):
    """More tensors than one launch table holds (36 for Adam) and a tensor of more chunks than one
    table's blocks (320 x 16384 elements), float32 and float64 mixed in one list: every element
    is updated once, as on the CPU."""
    to_gpu, to_numpy, _ = gpu
    rng = np.random.default_rng(18)
    shapes = [(int(n),) for n in rng.integers(1, 40000, size=150)] + [(330 * 16384 + 5,), (3,)]
    dtypes = [np.float32 if i % 3 else np.float64 for i in range(len(shapes))]
    params = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    state = {k: [np.zeros(s, d) for s, d in zip(shapes, dtypes)] for k in CONFIGS_STATE_ALL}
    gp = [to_gpu(a) for a in params]
    gs = {k: [to_gpu(a) for a in v] for k, v in state.items()}
    grads = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, dtypes)]
    _call(nk, name, params, grads, state, 1)
    _call(nk, name, gp, [to_gpu(g) for g in grads], gs, 1)
    for a, b in zip(params, gp):
        assert_close(to_numpy(b), a, a.dtype)


def test_gpu_clip_grad_norm(gpu):
    """The norm stays on the device: a 0-d float64 array of the gradients' library."""
    to_gpu, to_numpy, lib = gpu
    shapes = [(3,), (100003,), (0,), (330 * 16384 + 1,)]
    grads = _grads(np.random.default_rng(13), shapes, np.float32)
    gg = [to_gpu(g) for g in grads]
    n1 = nk.clip_grad_norm(grads, 1.0)
    n2 = nk.clip_grad_norm(gg, 1.0)
    assert type(n2).__module__.split(".")[0] == lib and tuple(n2.shape) == () and "float64" in str(n2.dtype)
    np.testing.assert_allclose(float(to_numpy(n2)), n1, rtol=1e-12)
    again = [to_gpu(g) for g in _grads(np.random.default_rng(13), shapes, np.float32)]
    assert float(to_numpy(nk.clip_grad_norm(again, 1.0))) == float(to_numpy(n2))  # deterministic reduction
    for a, b in zip(grads, gg):
        assert_close(to_numpy(b), a)
    small = [to_gpu(np.full(4, 0.1, np.float64))]
    assert float(to_numpy(nk.clip_grad_norm(small, 1.0))) == pytest.approx(0.2)  # below max_norm: untouched
    np.testing.assert_array_equal(to_numpy(small[0]), 0.1)
    assert float(to_numpy(nk.clip_grad_norm([to_gpu(np.zeros(0, np.float32))], 1.0))) == 0.0


def test_gpu_refuses_host_arrays_and_shared_memory(gpu):
    """Every array of a call on the first one's device (never a hidden copy), and the overlap sweep
    is the CPU's: two views of one device buffer are refused. Nothing is written."""
    to_gpu, to_numpy, _ = gpu
    p = [to_gpu(np.ones(5, np.float32)), to_gpu(np.ones(6, np.float32))]
    host = np.ones(6, np.float32)
    with pytest.raises(ValueError, match=r"^grads\[1\]: expected an array on cuda:\d+ like params\[0\]"):
        nk.sgd_step(p, [to_gpu(np.ones(5, np.float32)), host], lr=0.1)
    with pytest.raises(ValueError, match=r"^params\[1\]: shares memory"):
        nk.sgd_step([p[1][:3], p[1][2:5]], [to_gpu(np.ones(3, np.float32))] * 2, lr=0.1)
    with pytest.raises(ValueError, match=r"^params\[1\]: expected a C-contiguous"):
        nk.sgd_step([p[0], p[1][::2]], [to_gpu(np.ones(5, np.float32)), to_gpu(np.ones(3, np.float32))], lr=0.1)
    for a in p:
        np.testing.assert_array_equal(to_numpy(a), 1.0)


# ------------------------------------------------------------------ ownership (issue 13, item 3)
_CLEARED_DURING_STEP = """
    import gc, threading, time, weakref
    import numpy as np, nnkernels as nk
    n = 1 << 21
    for attempt in range(4):
        P, G, M, V = ([np.zeros(n, np.float32) for _ in range(4)] for _ in range(4))
        watch = weakref.ref(P[0])
        def clear():
            time.sleep(0.002)  # the step is then running without the GIL
            for lst in (P, G, M, V):
                lst.clear()
        t = threading.Thread(target=clear)
        t.start()
        {call}
        t.join()
        gc.collect()
        assert watch() is None, "the call kept a reference after returning"
    print("ok")
"""


@pytest.mark.parametrize("call", [
    "nk.adam_step(P, G, M, V, step=1)",
    "nk.sgd_step(P, G, lr=0.1, momentum=0.9, velocity=M)",
    "nk.clip_grad_norm(P, 0.5)",
])
def test_lists_emptied_by_another_thread_during_the_step(call):
    """Arrays whose only other reference is a list that another thread empties while the
    kernel runs without the GIL stay alive until the call returns (no use after free), and
    are released afterwards."""
    r = run_isolated(_CLEARED_DURING_STEP.format(call=call))
    assert_clean_exit(r)
    assert r.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- 16-bit parameters (issue 15)
import ml_dtypes  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
HALF = [F16, BF16]
STEP_OPS = [n for n in CONFIGS if n != "ema"]


def _bits(a):
    return a.view(np.uint16) if a.dtype.itemsize == 2 else a.view(np.uint32)


def _half_setup(dtype, state_dtype, seed=0, shapes=MIXED_SIZES):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    state = {k: [np.abs(rng.standard_normal(s)).astype(state_dtype) * 0.1 for s in shapes] for k in CONFIGS_STATE_ALL}
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]
    return params, state, grads


@pytest.mark.parametrize("sdt", ["float32", "storage"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_16bit_steps_are_the_float32_update_rounded(name, dtype, sdt, isa):
    """Round to nearest: every step equals the float32 kernel on the upcast values, the params (and
    16-bit states) rounded to nearest even: bitwise, over several steps (emulated in float32)."""
    sd = np.dtype(np.float32) if sdt == "float32" else dtype
    params, state, grads = _half_setup(dtype, sd)
    p32 = [p.astype(np.float32) for p in params]
    s32 = {k: [a.astype(np.float32) for a in v] for k, v in state.items()}
    for t, g in enumerate(grads, start=1):
        _call(nk, name, params, g, state, t)
        _call(nk, name, p32, [x.astype(np.float32) for x in g], s32, t)
        for a, b in zip(params, p32):
            np.testing.assert_array_equal(_bits(a), _bits(b.astype(dtype)))
            b[...] = b.astype(dtype).astype(np.float32)  # the emulation rounds as the 16-bit kernel stores
        for k in CONFIGS[name][0]:
            for a, b in zip(state[k], s32[k]):
                assert a.dtype == sd
                np.testing.assert_array_equal(_bits(a), _bits(b.astype(sd)))
                b[...] = b.astype(sd).astype(np.float32)


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", STEP_OPS)
def test_16bit_master_params_follow_the_float32_trajectory_bitwise(name, dtype, isa):
    params, state, grads = _half_setup(dtype, np.float32, seed=1)
    master = [p.astype(np.float32) for p in params]
    p32 = [m.copy() for m in master]
    s32 = {k: [a.copy() for a in v] for k, v in state.items()}
    for t, g in enumerate(grads * 3, start=1):
        _call_kw(name, params, g, state, t, master_params=master)
        _call(nk, name, p32, [x.astype(np.float32) for x in g], s32, t)
        for m, b, p in zip(master, p32, params):
            np.testing.assert_array_equal(_bits(m), _bits(b))
            np.testing.assert_array_equal(_bits(p), _bits(m.astype(dtype)))


def _call_kw(name, params, grads, state, step, **extra):
    return _call(nk, name, params, grads, state, step, hyper=dict(CONFIGS[name][1], **extra))


@pytest.mark.parametrize("dtype,lr,expect", [(BF16, 1e-3, 0.8), (F16, 1e-4, 0.98)], ids=["bfloat16", "float16"])
def test_16bit_stochastic_rounding_is_unbiased_where_nearest_stalls(dtype, lr, expect):
    """200 SGD steps of size lr on ones: round-to-nearest never leaves 1.0 (each step is below half
    an ulp), stochastic rounding reaches 1 - 200 lr on average."""
    g = np.ones(1 << 14, dtype)
    near, sr = np.ones(1 << 14, dtype), np.ones(1 << 14, dtype)
    for t in range(200):
        nk.sgd_step(near, g, lr=lr)
        nk.sgd_step(sr, g, lr=lr, stochastic_rounding=True, seed=1000 + t)
    np.testing.assert_array_equal(near.astype(np.float32), 1.0)
    assert abs(sr.astype(np.float64).mean() - expect) < 2e-3


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_stochastic_rounding_lands_on_the_neighbours_with_the_right_odds(dtype, isa):
    """One stochastically rounded SGD step p - lr * g computing the float32 value x exactly (p = x rounded to
    nearest, lr * g = p - x): every result is one of x's two neighbours, and the share rounded up is the
    fraction of x beyond the lower one (normal, subnormal and tiny float16 values, both signs)."""
    n = 1 << 16
    xs = [1.0 + 0.3 * 2.0 ** -7, -3.1e4 - 5.5, 2.0 ** -20 + 2.0 ** -31]
    xs += [0.37 * 2.0 ** -24, -1.3 * 2.0 ** -20, 3e-12] if dtype == F16 else [1e-39, -3e38]
    for x in xs:
        x32 = np.float32(x)
        a = x32.astype(dtype)
        d = float(np.float64(a.astype(np.float32)) - np.float64(x32))  # exact in float32
        p = np.full(n, a, dtype)
        nk.sgd_step(p, np.full(n, 1.0 if d >= 0 else -1.0, dtype), lr=abs(d), stochastic_rounding=True, seed=11)
        # the other neighbour of x: one step from a towards x, in the magnitude bits
        bits = int(a.view(np.uint16))
        toward_zero = (d > 0) == (x > 0) and bits & 0x7FFF != 0
        other = np.uint16(bits - 1 if toward_zero else (bits + 1 if bits & 0x7FFF or x > 0 else 0x8001)).view(dtype)
        lo, hi = sorted([float(a.astype(np.float64)), float(other.astype(np.float64))])
        assert lo <= float(x32) <= hi, (x, lo, hi)
        got = p.astype(np.float64)
        assert np.isin(got, [lo, hi]).all(), (x, np.unique(got))
        frac = (float(x32) - lo) / (hi - lo)
        share = (got == hi).mean()
        assert abs(share - frac) < 5 * np.sqrt(frac * (1 - frac) / n) + 2e-5, (x, share, frac)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_stochastic_rounding_reproducible_across_threads_and_levels(dtype, threads):
    """1 vs 2 threads and every level with every other, bitwise (the baseline level has no FMA
    instruction: it emulates the correctly rounded multiply-adds of cpu/optimizers.cpp, fmadd_once)."""
    from conftest import compiled_isas

    rng = np.random.default_rng(3)
    shapes = [(70001,), (5,), (33, 65)]
    p0 = [rng.standard_normal(s).astype(dtype) for s in shapes]
    g = [rng.standard_normal(s).astype(dtype) for s in shapes]
    outs = {}
    for level in compiled_isas():
        with nk.isa(level):
            for t in (1, 2):
                threads(t)
                p = [x.copy() for x in p0]
                m = [np.zeros(s, np.float32) for s in shapes]
                v = [np.zeros(s, np.float32) for s in shapes]
                for step in (1, 2, 3):
                    nk.adam_step(p, g, m, v, step=step, lr=1e-3, stochastic_rounding=True, seed=2**64 - 5)
                outs[level, t] = p
    first = next(iter(outs))
    for k in outs:
        for a, b in zip(outs[k], outs[first]):
            np.testing.assert_array_equal(_bits(a), _bits(b))
    p = [x.copy() for x in p0]
    nk.sgd_step(p, g, lr=1e-3, stochastic_rounding=True, seed=7)
    q = [x.copy() for x in p0]
    nk.sgd_step(q, g, lr=1e-3, stochastic_rounding=True, seed=8)
    assert any(not np.array_equal(_bits(a), _bits(b)) for a, b in zip(p, q))  # the seed matters


@pytest.mark.parametrize("sdt", ["float32", "storage"])
def test_fp16_adam_with_zero_gradients_never_goes_nan(sdt):
    """eps and the division in float32: m = v = 0 gives an update of 0 / (0 + eps) = 0, not 0 / 0 (eps
    rounded to float16 is 0; pytorch #147437, optax #1754)."""
    p = np.linspace(-2, 2, 1001).astype(F16)
    before = p.copy()
    sd = np.float32 if sdt == "float32" else F16
    m, v = np.zeros(p.shape, sd), np.zeros(p.shape, sd)
    for t in range(1, 50):
        nk.adam_step(p, np.zeros(p.shape, F16), m, v, step=t, lr=1e-3, eps=1e-8)
        nk.rmsprop_step(p, np.zeros(p.shape, F16), v, lr=1e-3, eps=1e-8)
        nk.adagrad_step(p, np.zeros(p.shape, F16), v, lr=1e-3, eps=1e-10)
    assert not np.isnan(p.astype(np.float32)).any()
    np.testing.assert_array_equal(_bits(p), _bits(before))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_clip_grad_norm_and_ema(dtype, isa):
    rng = np.random.default_rng(4)
    g = [rng.standard_normal(s).astype(dtype) * 3 for s in MIXED_SIZES]
    g32 = [x.astype(np.float32) for x in g]
    norm = nk.clip_grad_norm(g, 1.0)
    norm32 = nk.clip_grad_norm(g32, 1.0)
    assert norm == norm32  # the same float64 sum of the (exactly upcast) squares
    for a, b in zip(g, g32):
        np.testing.assert_array_equal(_bits(a), _bits(b.astype(dtype)))
    p = [rng.standard_normal(s).astype(dtype) for s in MIXED_SIZES]
    avg32 = [np.zeros(s, np.float32) for s in MIXED_SIZES]
    avg16 = [np.zeros(s, dtype) for s in MIXED_SIZES]
    nk.ema_update(avg32, p, decay=0.9)  # float32 averages of 16-bit params
    nk.ema_update(avg16, p, decay=0.9)
    for a32, a16, x in zip(avg32, avg16, p):
        np.testing.assert_array_equal(_bits(a32), _bits(np.float32(0.1) * x.astype(np.float32)))
        np.testing.assert_array_equal(_bits(a16), _bits(a32.astype(dtype)))


def _bf(*shape):
    return np.ones(shape, BF16)


BAD_16 = [
    ("master float64", lambda: nk.sgd_step([_bf(4)], [_bf(4)], lr=0.1, master_params=[np.ones(4)]), TypeError,
     r"master_params\[0\]: expected a float32 array"),
    ("master of float32 params", lambda: nk.sgd_step([np.ones(4, np.float32)], [np.ones(4, np.float32)], lr=0.1,
                                                     master_params=[np.ones(4, np.float32)]), TypeError,
     r"master_params\[0\]: master copies are for float16/bfloat16 params"),
    ("master shape", lambda: nk.adam_step(_bf(4), _bf(4), np.zeros(4, np.float32), np.zeros(4, np.float32), step=1,
                                          master_params=np.zeros(5, np.float32)), ValueError, "master_params"),
    ("master and sr", lambda: nk.sgd_step(_bf(4), _bf(4), lr=0.1, master_params=np.ones(4, np.float32),
                                          stochastic_rounding=True, seed=1), ValueError, "stochastic_rounding"),
    ("sr without seed", lambda: nk.sgd_step(_bf(4), _bf(4), lr=0.1, stochastic_rounding=True), ValueError, "seed"),
    ("seed without sr", lambda: nk.sgd_step(_bf(4), _bf(4), lr=0.1, seed=3), ValueError, "seed"),
    ("negative seed", lambda: nk.sgd_step(_bf(4), _bf(4), lr=0.1, stochastic_rounding=True, seed=-1), ValueError,
     "seed"),
    ("float seed", lambda: nk.sgd_step(_bf(4), _bf(4), lr=0.1, stochastic_rounding=True, seed=1.0), TypeError, "seed"),
    ("16-bit states with master", lambda: nk.adagrad_step(_bf(4), _bf(4), _bf(4), master_params=np.ones(4, np.float32)),
     TypeError, "sum_sq: expected float32 with master_params"),
    ("float32 grads", lambda: nk.sgd_step(_bf(4), np.ones(4, np.float32), lr=0.1), TypeError,
     r"grads: expected the dtype of params \(bfloat16\)"),
    ("float64 state", lambda: nk.adagrad_step(_bf(4), _bf(4), np.zeros(4)), TypeError,
     r"sum_sq: expected the dtype of params \(bfloat16\) or float32, got float64"),
    ("states differ", lambda: nk.adam_step(_bf(4), _bf(4), np.zeros(4, np.float32), _bf(4), step=1), TypeError,
     r"exp_avg_sq: expected the dtype of exp_avg"),
    ("other 16-bit state", lambda: nk.adagrad_step(_bf(4), _bf(4), np.zeros(4, F16)), TypeError, "sum_sq"),
    ("ema float64 averages", lambda: nk.ema_update(np.zeros(4), _bf(4), decay=0.5), TypeError, "averages"),
]


@pytest.mark.parametrize("desc,call,exc,msg", BAD_16, ids=[b[0] for b in BAD_16])
def test_16bit_bad_input_refused(desc, call, exc, msg):
    with pytest.raises(exc, match="^" + msg):
        call()


def test_16bit_refusal_changes_nothing():
    p, g, m = _bf(9) * 2, _bf(9), np.full(9, 2.0, np.float32)
    s = np.zeros(9, np.float64)
    with pytest.raises(TypeError):
        nk.adam_step([p], [g], [np.zeros(9, np.float32)], [s], step=1, master_params=[m])
    np.testing.assert_array_equal(p.astype(np.float32), 2.0)
    np.testing.assert_array_equal(m, 2.0)


def test_16bit_and_float32_tensors_in_one_call():
    rng = np.random.default_rng(6)
    p = [rng.standard_normal(100).astype(BF16), rng.standard_normal(50).astype(np.float32),
         rng.standard_normal(30).astype(F16)]
    g = [x.copy() for x in p]
    s = [np.zeros(100, np.float32), np.zeros(50, np.float32), np.zeros(30, F16)]
    expect = [x.astype(np.float32) for x in p]
    nk.adagrad_step(p, g, s, lr=0.1)
    nk.adagrad_step(expect, [x.astype(np.float32) for x in g], [np.zeros(n, np.float32) for n in (100, 50, 30)],
                    lr=0.1)
    for a, b in zip(p, expect):
        np.testing.assert_array_equal(_bits(a), _bits(b.astype(a.dtype)))


_TORCH_16_CASES = [(n, m) for n in ("sgd_momentum_max", "adagrad", "rmsprop", "rmsprop_centered_momentum_max", "adam",
                                    "adamw_amsgrad_max", "ema")
                   for m in ("nearest", "master", "stochastic", "storage_states") if not (n == "ema" and m == "master")]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name,mode", _TORCH_16_CASES)
def test_16bit_torch_cpu_tensors_bitwise_numpy(name, mode, dtype):
    """torch.float16/bfloat16 CPU tensors (nn.Parameter params, float32 or 16-bit state tensors,
    float32 master tensors): updated in place, bitwise the NumPy / ml_dtypes call's."""
    torch = pytest.importorskip("torch")
    sd = dtype if mode == "storage_states" else np.dtype(np.float32)
    params, state, grads = _half_setup(dtype, sd, seed=7)
    tparams = [torch.nn.Parameter(torch_of(p.copy())) for p in params]
    tstate = {k: [torch_of(a.copy()) for a in v] for k, v in state.items()}
    master = [p.astype(np.float32) for p in params] if mode == "master" else None
    tmaster = [torch.from_numpy(m.copy()) for m in master] if master else None
    for t, g in enumerate(grads, start=1):
        extra = {}
        if mode == "stochastic":
            extra = dict(stochastic_rounding=True, seed=1234 + t)
        if name == "ema":
            assert _call_kw(name, state["exp_avg"], params, None, t, **extra) is None
            assert _call_kw(name, tstate["exp_avg"], tparams, None, t, **extra) is None
            continue
        _call_kw(name, params, g, state, t, **dict(extra, **({"master_params": master} if master else {})))
        tg = [torch_of(x.copy()) for x in g]
        _call_kw(name, tparams, tg, tstate, t, **dict(extra, **({"master_params": tmaster} if tmaster else {})))
    for a, b in zip(params, tparams):
        assert b.dtype == getattr(torch, dtype.name) and b.requires_grad
        np.testing.assert_array_equal(_bits(numpy_of(b)), _bits(a))
    for k in CONFIGS[name][0] if name != "ema" else ("exp_avg",):
        for a, b in zip(state[k], tstate[k]):
            np.testing.assert_array_equal(_bits(numpy_of(b)), _bits(a))
    if master:
        for a, b in zip(master, tmaster):
            np.testing.assert_array_equal(_bits(b.numpy()), _bits(a))


def test_16bit_torch_cpu_clip_grad_norm_and_refusals():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    g = [(rng.standard_normal(s) * 3).astype(BF16) for s in MIXED_SIZES]
    tg = [torch_of(x.copy()) for x in g]
    assert nk.clip_grad_norm(tg, 1.0) == nk.clip_grad_norm(g, 1.0)
    for a, b in zip(g, tg):
        np.testing.assert_array_equal(_bits(numpy_of(b)), _bits(a))
    p = torch.ones(4, dtype=torch.bfloat16)
    for call, exc, msg in [
        (lambda: nk.sgd_step(p, torch.ones(4), lr=0.1), TypeError, r"grads: expected the dtype of params \(bfloat16\)"),
        (lambda: nk.adagrad_step(p, p.clone(), torch.zeros(4, dtype=torch.float64)), TypeError,
         r"sum_sq: expected the dtype of params \(bfloat16\) or float32, got float64"),
        (lambda: nk.sgd_step(p, p.clone(), lr=0.1, master_params=torch.ones(4, dtype=torch.float16)), TypeError,
         r"master_params: expected a float32 array"),
        (lambda: nk.sgd_step(p, p.clone(), lr=0.1, stochastic_rounding=True), ValueError, "seed"),
    ]:
        with pytest.raises(exc, match="^" + msg):
            call()
        assert bool((p == 1).all())


# ----------------------------------------------------------------------------- GPU, 16-bit (issue 15)
def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0):
        pytest.skip("needs a CUDA device and a CUDA build")
    return torch


def _cuda16(torch, a):
    return torch_of(np.ascontiguousarray(a).copy()).cuda()


def _fma_level():
    """The CPU level whose float32 arithmetic the CUDA kernels reproduce (multiply-adds fused where
    cpu/optimizers.cpp fuses them): AVX2 or AVX-512."""
    from conftest import compiled_isas

    levels = [lv for lv in ("avx2", "avx512") if lv in compiled_isas()]
    if not levels:
        pytest.skip("no FMA level compiled and supported by this CPU")
    return levels[0]


_GPU_16_CASES = [(n, m) for n in ("sgd_max", "sgd_momentum", "sgd_nesterov", "adagrad", "rmsprop", "rmsprop_tf",
                                  "rmsprop_centered_momentum_max", "adam", "adamw", "adam_amsgrad", "adamw_amsgrad_max", "ema")
                 for m in ("nearest", "storage_states", "master", "stochastic") if not (n == "ema" and m == "master")]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name,mode", _GPU_16_CASES)
def test_gpu_16bit_bitwise_cpu_fma_level(name, mode, dtype):
    """torch CUDA float16/bfloat16 params: every op, float32 or 16-bit states, master copies and
    stochastic rounding give bitwise the CPU's results at an FMA level (the same operations, the
    same Philox words keyed by the flat element index: the list is laid end to end on both)."""
    torch = _torch_cuda()
    level = _fma_level()
    sd = dtype if mode == "storage_states" else np.dtype(np.float32)
    shapes = [(1,), (7,), (4099,), (70001,), (3, 17)]
    params, state, grads = _half_setup(dtype, sd, seed=21, shapes=shapes)
    gparams = [_cuda16(torch, p) for p in params]
    gstate = {k: [_cuda16(torch, a) for a in v] for k, v in state.items()}
    master = [p.astype(np.float32) for p in params] if mode == "master" else None
    gmaster = [torch.from_numpy(m.copy()).cuda() for m in master] if master else None
    for t, g in enumerate(grads, start=1):
        extra = dict(stochastic_rounding=True, seed=2**64 - 3 - t) if mode == "stochastic" else {}
        gg = [_cuda16(torch, x) for x in g]
        if name == "ema":
            with nk.isa(level):
                _call_kw(name, state["exp_avg"], params, None, t, **extra)
            _call_kw(name, gstate["exp_avg"], gparams, None, t, **extra)
            continue
        with nk.isa(level):
            _call_kw(name, params, g, state, t, **dict(extra, **({"master_params": master} if master else {})))
        _call_kw(name, gparams, gg, gstate, t, **dict(extra, **({"master_params": gmaster} if gmaster else {})))
    torch.cuda.synchronize()
    for a, b in zip(params, gparams):
        assert b.is_cuda and b.dtype == getattr(torch, dtype.name)
        np.testing.assert_array_equal(_bits(numpy_of(b)), _bits(a))
    for k in CONFIGS[name][0] if name != "ema" else ("exp_avg",):
        for a, b in zip(state[k], gstate[k]):
            np.testing.assert_array_equal(_bits(numpy_of(b)), _bits(a))
    for a, b in zip(master or [], gmaster or []):
        np.testing.assert_array_equal(_bits(b.cpu().numpy()), _bits(a))


@pytest.mark.parametrize("name", ["sgd_momentum_max", "adagrad", "rmsprop", "adamw", "adam_amsgrad"])
def test_gpu_float32_bitwise_cpu_fma_level_and_master_follows_it(name):
    """CUDA float32 and float64 steps are the CPU's FMA-level results bit for bit, and a CUDA float32
    master copy of bfloat16 params follows the CUDA float32 trajectory bitwise."""
    torch = _torch_cuda()
    level = _fma_level()
    params, state, grads = _half_setup(BF16, np.float32, seed=22, shapes=[(5,), (70001,)])
    runs = {}
    for dt in (np.float32, np.float64):
        p = [x.astype(dt) for x in params]
        st = {k: [a.astype(dt) for a in v] for k, v in state.items()}
        gp = [torch.from_numpy(x.copy()).cuda() for x in p]
        gs = {k: [torch.from_numpy(a.copy()).cuda() for a in v] for k, v in st.items()}
        for t, g in enumerate(grads, start=1):
            gd = [x.astype(dt) for x in g]
            with nk.isa(level):
                _call(nk, name, p, gd, st, t)
            _call(nk, name, gp, [torch.from_numpy(x).cuda() for x in gd], gs, t)
        torch.cuda.synchronize()
        for a, b in zip(p, gp):
            np.testing.assert_array_equal(b.cpu().numpy().view(np.uint8), a.view(np.uint8))
        runs[dt] = p
    gp16 = [_cuda16(torch, p) for p in params]
    gs16 = {k: [torch.from_numpy(a.copy()).cuda() for a in v] for k, v in state.items()}
    gmaster = [torch.from_numpy(p.astype(np.float32)).cuda() for p in params]
    for t, g in enumerate(grads, start=1):
        _call_kw(name, gp16, [_cuda16(torch, x) for x in g], gs16, t, master_params=gmaster)
    torch.cuda.synchronize()
    for a, m, p in zip(runs[np.float32], gmaster, gp16):
        np.testing.assert_array_equal(_bits(m.cpu().numpy()), _bits(a))
        np.testing.assert_array_equal(_bits(numpy_of(p)), _bits(a.astype(BF16)))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_gpu_16bit_clip_grad_norm(dtype):
    torch = _torch_cuda()
    rng = np.random.default_rng(23)
    g = [(rng.standard_normal(s) * 3).astype(dtype) for s in [(3,), (100003,), (0,), (5000,)]]
    gg = [_cuda16(torch, x) for x in g]
    n_cpu = nk.clip_grad_norm(g, 1.0)
    n_gpu = nk.clip_grad_norm(gg, 1.0)
    assert isinstance(n_gpu, torch.Tensor) and n_gpu.is_cuda and n_gpu.dtype == torch.float64
    np.testing.assert_allclose(float(n_gpu), n_cpu, rtol=1e-12)  # exact squares, summed in another order
    for a, b in zip(g, gg):
        assert b.dtype == getattr(torch, dtype.name)
        np.testing.assert_allclose(numpy_of(b).astype(np.float32), a.astype(np.float32), rtol=2 ** -7)


def test_float32_multiply_adds_round_once_at_every_level(isa):
    """p - lr * g is one correctly rounded multiply-add at every level (core/simd.hpp fmadd_once): the
    exact value is 1 + 3 * 2^-24 - 2^-56, just below a tie, so it rounds down to 1 + 2^-23; two float32
    roundings, or the sum rounded to double first, land on the tie and round it up to 1 + 2^-22 (what
    the baseline level, which has no FMA instruction, gave before the emulation)."""
    p = np.array([1 - 2**-10 + 3 * 2**-24], np.float32)
    g = np.array([-(2**-10 - 2**-33)], np.float32)
    assert float(p[0]) == 1 - 2**-10 + 3 * 2**-24 and float(g[0]) == -(2**-10 - 2**-33)  # exact in float32
    nk.sgd_step([p], [g], lr=1 + 2**-23)
    assert float(p[0]) == 1 + 2**-23
