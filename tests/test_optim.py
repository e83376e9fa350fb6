"""nnkernels.optim optimizer objects: torch.optim equality, settable lr, state_dict round trips."""
from __future__ import annotations

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import optim
from isolated import assert_clean_exit, run_isolated
from tolerances import assert_close

SHAPES = [(1,), (13,), (4, 7), (1031,)]

# (nnkernels class, kwargs, torch class name, torch kwargs)
CASES = [
    ("SGD", dict(lr=0.05), "SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01), "SGD",
     dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.05, weight_decay=0.01, initial_accumulator_value=0.1), "Adagrad",
     dict(lr=0.05, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.01), "RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01), "Adam",
     dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1), "AdamW", dict(lr=0.01, weight_decay=0.1)),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_torch_optim_20_steps(case, dtype):
    torch = pytest.importorskip("torch")
    name, kw, tname, tkw = case
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    tparams = [torch.from_numpy(p.copy()).requires_grad_() for p in params]
    opt = getattr(optim, name)(params, **kw)
    topt = getattr(torch.optim, tname)(tparams, foreach=False, **tkw)
    for _ in range(20):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    over = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {}
    for p, t in zip(params, tparams):
        assert_close(p, t.detach().numpy(), dtype, **over)


def test_settable_lr_changes_the_update():
    p = np.zeros(3)
    opt = optim.SGD([p], lr=0.1)
    opt.step([np.ones(3)])
    opt.lr = 0.5
    opt.step([np.ones(3)])
    np.testing.assert_allclose(p, -0.6)
    with pytest.raises(ValueError, match="^lr"):
        opt.lr = -1.0
    with pytest.raises(TypeError, match="^lr"):
        opt.lr = "fast"
    assert opt.lr == 0.5


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adagrad", {}), ("RMSprop", {}),
                                     ("Adam", {}), ("AdamW", {})])
def test_state_dict_round_trip_through_savez(name, kw, tmp_path):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(6)]
    opt = getattr(optim, name)(params, **kw)
    for g in grads[:3]:
        opt.step(g)
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    saved_params = [p.copy() for p in params]
    for g in grads[3:]:
        opt.step(g)
    expect = [p.copy() for p in params]

    params2 = [p.copy() for p in saved_params]
    opt2 = getattr(optim, name)(params2, **kw)
    with np.load(tmp_path / "opt.npz") as f:
        opt2.load_state_dict(f)
    assert opt2.steps == 3
    for g in grads[3:]:
        opt2.step(g)
    for a, b in zip(params2, expect):
        np.testing.assert_array_equal(a, b)


def test_load_state_dict_refuses_mismatch_and_changes_nothing():
    params = [np.ones(4), np.ones(3)]
    opt = optim.Adam(params, lr=0.1)
    opt.step([np.ones(4), np.ones(3)])
    good = opt.state_dict()
    before = opt.state_dict()
    bad_shape = dict(good, **{"exp_avg.1": np.zeros(5)})
    with pytest.raises(ValueError, match="^state"):
        opt.load_state_dict(bad_shape)
    missing = {k: v for k, v in good.items() if k != "exp_avg_sq.0"}
    with pytest.raises(ValueError, match="^state"):
        opt.load_state_dict(missing)
    with pytest.raises(ValueError, match="^state"):
        opt.load_state_dict(dict(good, type="SGD"))
    after = opt.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        np.testing.assert_array_equal(np.asarray(after[k]), np.asarray(before[k]))


def test_constructor_validation():
    with pytest.raises(TypeError, match=r"^params\[0\]"):
        optim.Adam([np.ones(3, np.int64)])
    with pytest.raises(ValueError, match=r"^params\[0\]"):
        optim.Adam([np.ones((3, 4))[:, ::2]])
    with pytest.raises(ValueError, match=r"^beta2: expected a number in \[0, 1\)"):
        optim.Adam([np.ones(3)], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="^lr"):
        optim.SGD([np.ones(3)], lr=-0.1)


NAN, INF = float("nan"), float("inf")
# (class, bad keyword arguments, exception, message start): every hyperparameter is checked in the
# constructor, as torch.optim does, by the check the step functions run.
BAD_HYPER = [
    ("SGD", dict(lr=-0.1), ValueError, "lr: expected a finite number >= 0"),
    ("SGD", dict(lr=NAN), ValueError, "lr: expected a finite number >= 0"),
    ("SGD", dict(lr=INF), ValueError, "lr: expected a finite number >= 0"),
    ("SGD", dict(lr="fast"), TypeError, "lr: expected a real number"),
    ("SGD", dict(momentum=-0.5), ValueError, "momentum: expected a finite number >= 0"),
    ("SGD", dict(momentum=NAN), ValueError, "momentum: expected a finite number >= 0"),
    ("SGD", dict(momentum=True), TypeError, "momentum: expected a real number"),
    ("SGD", dict(weight_decay=-1e-4), ValueError, "weight_decay: expected a finite number >= 0"),
    ("SGD", dict(momentum=0.9, dampening=1.5), ValueError, "dampening: expected a number in \\[0, 1\\]"),
    ("SGD", dict(momentum=0.9, dampening=0.5, nesterov=True), ValueError, "nesterov: Nesterov momentum requires"),
    ("SGD", dict(nesterov=True), ValueError, "nesterov: Nesterov momentum requires momentum > 0"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), ValueError, "initial_accumulator_value: expected a finite number >= 0"),
    ("Adagrad", dict(initial_accumulator_value=NAN), ValueError, "initial_accumulator_value: expected a finite"),
    ("Adagrad", dict(initial_accumulator_value=INF), ValueError, "initial_accumulator_value: expected a finite"),
    ("Adagrad", dict(initial_accumulator_value="0"), TypeError, "initial_accumulator_value: expected a real number"),
    ("Adagrad", dict(eps=-1e-10), ValueError, "eps: expected a finite number >= 0"),
    ("Adagrad", dict(weight_decay=NAN), ValueError, "weight_decay: expected a finite number >= 0"),
    ("RMSprop", dict(alpha=-0.1), ValueError, "alpha: expected a number in \\[0, 1\\]"),
    ("RMSprop", dict(alpha=1.5), ValueError, "alpha: expected a number in \\[0, 1\\]"),
    ("RMSprop", dict(eps=NAN), ValueError, "eps: expected a finite number >= 0"),
    ("RMSprop", dict(lr=-1.0), ValueError, "lr: expected a finite number >= 0"),
    ("Adam", dict(betas=(-0.1, 0.999)), ValueError, "beta1: expected a number in \\[0, 1\\)"),
    ("Adam", dict(betas=(0.9, NAN)), ValueError, "beta2: expected a number in \\[0, 1\\)"),
    ("Adam", dict(betas=0.9), TypeError, "betas: expected a pair"),
    ("Adam", dict(eps=-1e-8), ValueError, "eps: expected a finite number >= 0"),
    ("Adam", dict(weight_decay=-0.01), ValueError, "weight_decay: expected a finite number >= 0"),
    ("AdamW", dict(weight_decay=INF), ValueError, "weight_decay: expected a finite number >= 0"),
    ("AdamW", dict(lr=NAN), ValueError, "lr: expected a finite number >= 0"),
]


@pytest.mark.parametrize("name,kw,exc,msg", BAD_HYPER, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_HYPER)])
def test_constructor_refuses_bad_hyperparameters(name, kw, exc, msg):
    p = np.ones(3)
    with pytest.raises(exc, match="^" + msg):
        getattr(optim, name)([p], **kw)
    np.testing.assert_array_equal(p, 1.0)


def test_valid_edge_hyperparameters_accepted():
    optim.SGD([np.ones(3)], lr=0.0, momentum=0.0, nesterov=False)
    optim.SGD([np.ones(3)], momentum=0.9, dampening=0.0, nesterov=True)
    optim.Adagrad([np.ones(3)], initial_accumulator_value=0.0, eps=0.0)
    optim.RMSprop([np.ones(3)], alpha=0.0)
    optim.Adam([np.ones(3)], betas=(0.0, 0.0), eps=0.0)


@pytest.mark.parametrize("name,state", [("Adagrad", "sum_sq"), ("RMSprop", "sq_avg"), ("Adam", "exp_avg_sq"),
                                        ("AdamW", "exp_avg_sq")])
@pytest.mark.parametrize("bad", [-1e-3, float("nan")])
def test_load_state_dict_refuses_negative_square_averages(name, state, bad):
    params = [np.ones(5), np.ones((2, 3))]
    opt = getattr(optim, name)(params)
    opt.step([np.full(5, 0.5), np.full((2, 3), 0.5)])
    good = opt.state_dict()
    arr = good[f"{state}.1"].copy()
    arr[1, 2] = bad
    with pytest.raises(ValueError, match=rf"^state: {state}\.1 has negative or NaN entries"):
        opt.load_state_dict(dict(good, **{f"{state}.1": arr}))
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(good[k]))
    opt.load_state_dict(good)  # the saved state itself loads


@pytest.mark.parametrize("key,value,msg", [("momentum", -0.9, "momentum"), ("dampening", 0.5, "nesterov"),
                                           ("lr", float("nan"), "lr")])
def test_load_state_dict_refuses_bad_hyperparameters(key, value, msg):
    params = [np.ones(4)]
    opt = optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    opt.step([np.ones(4)])
    good = opt.state_dict()
    with pytest.raises(ValueError, match="^" + msg):
        opt.load_state_dict(dict(good, **{key: value}))
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(good[k]))


def test_step_refusal_leaves_params_and_state_unchanged():
    params = [np.ones(4), np.ones(3)]
    opt = optim.Adam(params)
    opt.step([np.ones(4), np.ones(3)])
    snap = opt.state_dict()
    p_before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=r"^grads\[1\]"):
        opt.step([np.ones(4), np.ones(5)])
    assert opt.steps == 1
    for a, b in zip(params, p_before):
        np.testing.assert_array_equal(a, b)
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(snap[k]))


def test_gpu_optimizer_matches_cpu(gpu):
    to_gpu, to_numpy, _ = gpu
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    gparams = [to_gpu(p) for p in params]
    opt, gopt = optim.AdamW(params), optim.AdamW(gparams)
    for _ in range(5):
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        opt.step(grads)
        gopt.step([to_gpu(g) for g in grads])
    for a, b in zip(params, gparams):
        assert_close(to_numpy(b), a)
    assert nk.get_isa()  # CPU state untouched by the GPU path


def test_step_survives_lists_emptied_by_another_thread():
    """Optimizer.step while another thread empties the parameter and state lists (issue 13,
    item 3): the arrays live until the step returns."""
    r = run_isolated("""
        import threading, time
        import numpy as np, nnkernels as nk
        n = 1 << 21
        for attempt in range(4):
            opt = nk.optim.Adam([np.zeros(n, np.float32) for _ in range(4)])
            grads = [np.ones(n, np.float32) for _ in range(4)]
            def clear():
                time.sleep(0.002)
                opt.params.clear()
                for lst in opt.state.values():
                    lst.clear()
                grads.clear()
            t = threading.Thread(target=clear)
            t.start()
            opt.step(grads)
            t.join()
        print("ok")
    """)
    assert_clean_exit(r)
    assert r.stdout.strip() == "ok"
