"""nnkernels.optim optimizer objects: torch.optim equality, settable lr, state_dict round trips."""
from __future__ import annotations

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import optim
from conftest import numpy_of, torch_of
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
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.8, centered=True), "RMSprop",
     dict(lr=0.01, alpha=0.9, momentum=0.8, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01), "RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
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
    with pytest.raises(ValueError, match=r"^betas\[1\] \(beta2\): expected a number in \[0, 1\)"):
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
    ("Adam", dict(betas=(-0.1, 0.999)), ValueError, "betas\\[0\\] \\(beta1\\): expected a number in \\[0, 1\\)"),
    ("Adam", dict(betas=(0.9, NAN)), ValueError, "betas\\[1\\] \\(beta2\\): expected a number in \\[0, 1\\)"),
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


# ----------------------------------------------------------------------------- 16-bit parameters (issue 15)
import ml_dtypes  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)


def _u16(a):
    return a.view(np.uint16)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("dtype", [BF16, F16], ids=str)
def test_16bit_master_weights_follow_the_float32_optimizer_bitwise(case, dtype):
    name, kw = case[0], case[1]
    rng = np.random.default_rng(1)
    p16 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    p32 = [p.astype(np.float32) for p in p16]
    opt16 = getattr(optim, name)(p16, master_params=True, **kw)
    opt32 = getattr(optim, name)(p32, **kw)
    assert all(s.dtype == np.float32 for lst in opt16.state.values() for s in lst)
    for _ in range(12):
        g = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        opt16.step(g)
        opt32.step([x.astype(np.float32) for x in g])
    for m, b, p in zip(opt16.state["master"], p32, p16):
        np.testing.assert_array_equal(m.view(np.uint32), b.view(np.uint32))
        np.testing.assert_array_equal(_u16(p), _u16(b.astype(dtype)))


def test_16bit_states_float32_unless_asked():
    p = [np.ones(5, BF16)]
    assert optim.Adam(p).state["exp_avg"][0].dtype == np.float32
    assert optim.Adam(p, state_dtype=BF16).state["exp_avg_sq"][0].dtype == BF16
    assert optim.Adam([np.ones(5, np.float32)]).state["exp_avg"][0].dtype == np.float32
    assert optim.SGD(p, momentum=0.9, state_dtype="bfloat16").state["velocity"][0].dtype == BF16


def test_16bit_stochastic_rounding_in_the_classes():
    """The classes key each step's random bits: Adam by (seed, step), the others by the seed
    seed + step * 0x9E3779B97F4A7C15 of the step functions; a run is reproducible from its seed and
    its state_dict (saved seed included)."""
    rng = np.random.default_rng(2)
    p0 = [rng.standard_normal(s).astype(BF16) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(BF16) for s in SHAPES] for _ in range(6)]

    def run(cls, seed, steps=grads, **kw):
        p = [x.copy() for x in p0]
        opt = cls(p, stochastic_rounding=True, seed=seed, **kw)
        for g in steps:
            opt.step(g)
        return p, opt

    a, _ = run(optim.Adam, 5)
    b, _ = run(optim.Adam, 5)
    c, _ = run(optim.Adam, 6)
    assert all(np.array_equal(_u16(x), _u16(y)) for x, y in zip(a, b))
    assert not all(np.array_equal(_u16(x), _u16(y)) for x, y in zip(a, c))
    s, _ = run(optim.SGD, 9, lr=0.01)
    q = [x.copy() for x in p0]
    for t, g in enumerate(grads):
        nk.sgd_step(q, g, lr=0.01, stochastic_rounding=True, seed=(9 + t * 0x9E3779B97F4A7C15) % (1 << 64))
    assert all(np.array_equal(_u16(x), _u16(y)) for x, y in zip(s, q))
    # resume from a state_dict: the same bits as the uninterrupted run
    full, _ = run(optim.RMSprop, 2**64 - 1, lr=0.01)
    half_p, half = run(optim.RMSprop, 2**64 - 1, steps=grads[:3], lr=0.01)
    sd = half.state_dict()
    assert int(sd["seed"]) == 2**64 - 1
    p2 = [x.copy() for x in half_p]
    opt2 = optim.RMSprop(p2, lr=0.01, stochastic_rounding=True, seed=0)
    opt2.load_state_dict(sd)
    for g in grads[3:]:
        opt2.step(g)
    assert all(np.array_equal(_u16(x), _u16(y)) for x, y in zip(full, p2))


def test_16bit_master_state_dict_round_trip():
    rng = np.random.default_rng(3)
    p = [rng.standard_normal(s).astype(F16) for s in SHAPES]
    opt = optim.AdamW(p, master_params=True)
    opt.step([np.ones(s, F16) for s in SHAPES])
    sd = opt.state_dict()
    assert sd["master.0"].dtype == np.float32 and sd["exp_avg.0"].dtype == np.float32
    q = [x.copy() for x in p]
    other = optim.AdamW(q, master_params=True)
    other.load_state_dict(sd)
    for a, b in zip(opt.state["master"], other.state["master"]):
        np.testing.assert_array_equal(a, b)
    bad = dict(sd, **{"exp_avg.0": sd["exp_avg.0"].astype(F16)})
    with pytest.raises(ValueError, match="^state: exp_avg.0 has shape"):
        other.load_state_dict(bad)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: optim.Adam([np.ones(3, np.float32)], master_params=True), TypeError, "master_params"),
    (lambda: optim.Adam([np.ones(3, BF16)], master_params=True, stochastic_rounding=True), ValueError,
     "stochastic_rounding"),
    (lambda: optim.Adam([np.ones(3, BF16)], state_dtype=np.float64), TypeError, "state_dtype"),
    (lambda: optim.Adam([np.ones(3, BF16)], master_params=True, state_dtype=BF16), ValueError, "state_dtype"),
    (lambda: optim.SGD([np.ones(3, BF16)], master_params=[np.ones(3, np.float32)] * 2), ValueError, "master_params"),
    (lambda: optim.SGD([np.ones(3, BF16)], stochastic_rounding=True, seed=-3), ValueError, "seed"),
    (lambda: optim.SGD([np.ones(3, BF16)], stochastic_rounding="yes"), TypeError, "stochastic_rounding"),
])
def test_16bit_class_arguments_refused(make, exc, msg):
    with pytest.raises(exc, match="^" + msg):
        make()


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("mode", ["master", "stochastic", "nearest"])
@pytest.mark.parametrize("dtype", [BF16, F16], ids=str)
def test_16bit_torch_cpu_params_bitwise_numpy(case, mode, dtype):
    """The classes on torch.float16/bfloat16 CPU params (nn.Parameter): states of the params' library
    (float32 by default), master copies made by torch (master_params=True), stochastic rounding:
    bitwise the NumPy / ml_dtypes run; state_dict gives ml_dtypes arrays and loads back."""
    torch = pytest.importorskip("torch")
    name, kw = case[0], case[1]
    rng = np.random.default_rng(4)
    p16 = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    tp = [torch.nn.Parameter(torch_of(p.copy())) for p in p16]
    extra = {"master": dict(master_params=True), "stochastic": dict(stochastic_rounding=True, seed=77),
             "nearest": {}}[mode]
    opt = getattr(optim, name)(p16, **kw, **extra)
    topt = getattr(optim, name)(tp, **kw, **extra)
    for lst in topt.state.values():
        assert all(isinstance(s, torch.Tensor) and s.dtype == torch.float32 for s in lst)
    for _ in range(5):
        g = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        opt.step(g)
        topt.step([torch_of(x.copy()) for x in g])
    for a, b in zip(p16, tp):
        assert b.dtype == getattr(torch, dtype.name)
        np.testing.assert_array_equal(_u16(numpy_of(b)), _u16(a))
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sd.keys() == tsd.keys()
    for k, v in sd.items():
        if isinstance(v, np.ndarray) and v.ndim:
            assert tsd[k].dtype == v.dtype
            np.testing.assert_array_equal(tsd[k].view(np.uint8), v.view(np.uint8))
    fresh = [torch.nn.Parameter(torch_of(p.copy())) for p in p16]
    again = getattr(optim, name)(fresh, **kw, **extra)
    again.load_state_dict(tsd)
    g = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    opt.step(g)
    again.step([torch_of(x.copy()) for x in g])
    if mode == "master":  # the params follow the loaded master copies
        for a, b in zip(p16, fresh):
            np.testing.assert_array_equal(_u16(numpy_of(b)), _u16(a))


def test_16bit_torch_bfloat16_state_dtype():
    torch = pytest.importorskip("torch")
    p = [torch.ones(5, dtype=torch.bfloat16)]
    opt = optim.Adam(p, state_dtype="bfloat16")
    assert opt.state["exp_avg"][0].dtype == torch.bfloat16
    opt.step([torch.full((5,), 0.5, dtype=torch.bfloat16)])
    assert opt.state_dict()["exp_avg.0"].dtype == BF16
    with pytest.raises(TypeError, match="^master_params: master copies are for float16/bfloat16 params"):
        optim.Adam([torch.ones(3)], master_params=True)
