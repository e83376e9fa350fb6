"""Every CUDA kernel launched once on a small input, against the same public call on NumPy arrays.

This is the short subset that ``bench/gpu_check.sh`` runs under compute-sanitizer (memcheck,
racecheck, synccheck), so it stays small: one case per op family member, float32 and float64, sizes
that reach every code path of a kernel at least once (vector body and scalar tail, more than one
row chunk / block partial / optimizer chunk), a few launches each. The thorough GPU tests (every
op, awkward sizes, bad input) live in the family files. Only public functions are called, with
the array library of the ``gpu`` fixture (CuPy arrays, PyTorch CUDA tensors); results may come back
in that library or, for host values (a loss, a norm), as Python/NumPy scalars.

KERNELS maps every ``__global__`` function of csrc/cuda/*.cu to the cases that launch it;
``test_every_kernel_has_a_case`` (no GPU needed) fails when a kernel is added without a case here.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import init
from tolerances import TOL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = [np.float32, np.float64]

# (rtol, atol) per dtype for each kind of output (GPU result against the CPU result of the same call).
TOLERANCE = {
    "exact": {np.float32: (0, 0), np.float64: (0, 0)},
    # element-wise ops; sigmoid/tanh are within 3 ULP of the truth on either device, so <= 6 ULP apart
    "elementwise": {t: (TOL[np.dtype(t)]["rtol"], TOL[np.dtype(t)]["atol"]) for t in DTYPES},
    # outputs that depend on a reduction (statistics, normalised values, scaled rows)
    "reduction": {np.float32: (1e-4, 1e-4), np.float64: (1e-10, 1e-10)},
    # sums of many products (dgamma, dbeta over all rows)
    "grad_sum": {np.float32: (1e-4, 1e-3), np.float64: (1e-10, 1e-9)},
    # float16 storage (the 16-bit cases run in float16 whatever the dtype parameter): one float16 ulp
    "half": {t: (2.0 ** -10, 1e-6) for t in DTYPES},
}


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ------------------------------------------------------------------------------------------- cases
# Each case runs the same public calls with arrays made by `a` (NumPy -> the library under test; the
# identity for the CPU run) and returns {output name: value}. TOLERANCE kind per output: CASE_TOL.

def _activation(op):
    def run(a, dt):
        x, d = _data(4099, dt, 1), _data(4099, dt, 2)  # 4096 in 16-byte vectors + a 3-element tail
        fwd, bwd = getattr(nk, op), getattr(nk, op + "_backward")
        y = fwd(a(x))
        saved = x if op in ("relu", "leaky_relu") else fwd(x)  # backward takes x or the forward output
        return {"y": y, "dx": bwd(a(d), a(saved))}
    return run


def _init(a, dt):
    out = {}
    for fn, kw in ((init.normal, {"std": 0.3}), (init.uniform, {"low": -1.0, "high": 2.0})):
        buf = a(np.zeros(4099, dt))
        fn((4099,), seed=77, out=buf, **kw)
        out[fn.__name__] = buf
    return out


def _softmax_cross_entropy(a, dt):
    x = _data((67, 517), dt, 3)
    labels = np.random.default_rng(4).integers(0, 517, 67)
    loss, d = nk.softmax_cross_entropy(a(x), a(labels))
    return {"loss": loss, "dlogits": d}


def _softmax_cross_entropy_16bit(a, dt):
    """float16 logits (CuPy and PyTorch both have float16): xent_rows_16."""
    x = _data((67, 517), np.float32, 3).astype(np.float16)
    labels = np.random.default_rng(4).integers(0, 517, 67)
    loss, d = nk.softmax_cross_entropy(a(x), a(labels))
    return {"loss": loss, "dlogits": d}


def _init_16bit(a, dt):
    buf = a(np.zeros(4099, np.float16))
    init.normal((4099,), 0.3, seed=78, out=buf)
    return {"normal": buf}


def _layernorm(activation):
    def run(a, dt):
        x, dout = _data((300, 257), dt, 5), _data((300, 257), dt, 6)  # 300 rows: two dgamma partials
        g, b = _data(257, dt, 7), _data(257, dt, 8)
        y, m, r = nk.layernorm_forward(a(x), a(g), a(b), activation=activation)
        dx, dg, db = nk.layernorm_backward(a(dout), a(x), a(g), m, r, activation=activation,
                                           y=y if activation else None)
        return {"y": y, "mean": m, "rstd": r, "dx": dx, "dgamma": dg, "dbeta": db}
    return run


def _layernorm_no_affine(a, dt):
    """No gamma/beta (the defaults are made on the device) and saved statistics of the other dtype
    (converted on the device): the launches of vec_as_kernel."""
    x, dout = _data((300, 257), dt, 30), _data((300, 257), dt, 31)
    other = np.float64 if dt == np.float32 else np.float32
    y, m, r = nk.layernorm_forward(a(x))
    m_o, r_o = (nk.layernorm_forward(x)[k].astype(other) for k in (1, 2))
    dx, dg, db = nk.layernorm_backward(a(dout), a(x), None, a(m_o), a(r_o))
    return {"y": y, "mean": m, "rstd": r, "dx": dx}


_BN_SHAPE = (300, 3, 31)  # 9,300 values per channel: two row partials per channel


def _batchnorm(a, dt):
    x, dout = _data(_BN_SHAPE, dt, 9), _data(_BN_SHAPE, dt, 10)
    g, b = _data(3, dt, 11), _data(3, dt, 12)
    rm, rv = a(np.zeros(3, dt)), a(np.ones(3, dt))
    y, m, r = nk.batchnorm_forward(a(x), a(g), a(b), running_mean=rm, running_var=rv, activation="relu")
    dx, dg, db = nk.batchnorm_backward(a(dout), a(x), a(g), m, r, activation="relu", y=y)
    return {"y": y, "mean": m, "rstd": r, "running_mean": rm, "running_var": rv, "dx": dx, "dgamma": dg,
            "dbeta": db}


def _batchnorm_eval(a, dt):
    x, g, b = _data(_BN_SHAPE, dt, 13), _data(3, dt, 14), _data(3, dt, 15)
    rm, rv = _data(3, dt, 16), np.abs(_data(3, dt, 17)) + 0.5
    y, _, _ = nk.batchnorm_forward(a(x), a(g), a(b), training=False, running_mean=a(rm), running_var=a(rv))
    return {"y": y}


def _batchnorm_split(a, dt, host):
    """The separable (sync-BN) pieces; the statistics are brought to the host between the calls, as a
    data-parallel step all-reduces them."""
    x, dout, g = _data(_BN_SHAPE, dt, 18), _data(_BN_SHAPE, dt, 19), _data(3, dt, 20)
    count, mean, m2 = (host(v) for v in nk.batchnorm_stats(a(x)))
    mean = np.asarray(mean, np.float64)
    rstd = 1.0 / np.sqrt(np.asarray(m2, np.float64) / int(count) + 1e-5)
    y = nk.batchnorm_normalize(a(x), a(mean), a(rstd), a(g))
    m_x, r_x = mean.astype(dt), rstd.astype(dt)
    sd, sdx = nk.batchnorm_backward_reduce(a(dout), a(x), a(m_x), a(r_x))
    dx = nk.batchnorm_backward_elemt(a(dout), a(x), a(g), a(m_x), a(r_x), sd, sdx, int(count))
    return {"mean": mean, "m2": m2, "y": y, "sum_dout": sd, "sum_dout_xhat": sdx, "dx": dx}


def _batchnorm_merge(a, dt):
    """Chan's merge of per-part statistics from strided views of one gathered table (SyncBatchNorm's layout),
    per-part counts (a 0-d count on the device) and per-channel counts."""
    rng = np.random.default_rng(21)
    P, C = 5, 3
    counts = np.array([4.0, 0.0, 9.0, 1.0, 6.0])
    means, m2s = rng.normal(size=(P, C)) + 100.0, rng.uniform(0.1, 2.0, size=(P, C))
    t = a(np.concatenate([counts[:, None], means, m2s], axis=1).astype(dt))
    n, mean, m2 = nk.batchnorm_merge_stats(t[:, 0], t[:, 1:1 + C], t[:, 1 + C:])
    pc = a(rng.integers(0, 5, size=(P, C)).astype(dt))
    pn, pmean, pm2 = nk.batchnorm_merge_stats(pc, a(means.astype(dt)), a(m2s.astype(dt)))
    return {"count": n, "mean": mean, "m2": m2, "pc_count": pn, "pc_mean": pmean, "pc_m2": pm2}


_OPT_SHAPES = [(1,), (4099,), (16385,)]  # one element, a prime, more than one 16,384-element chunk


def _optimizer(name):
    def run(a, dt):
        params = [a(_data(s, dt, 21 + k)) for k, s in enumerate(_OPT_SHAPES)]
        states = [[a(np.zeros(s, dt)) for s in _OPT_SHAPES] for _ in range(3)]
        for step in (1, 2):
            grads = [a(_data(s, dt, 31 + 3 * step + k)) for k, s in enumerate(_OPT_SHAPES)]
            if name == "sgd":
                nk.sgd_step(params, grads, lr=0.05, weight_decay=0.01)
            elif name == "sgd_momentum":
                nk.sgd_step(params, grads, lr=0.05, momentum=0.9, nesterov=True, velocity=states[0])
            elif name == "adagrad":
                nk.adagrad_step(params, grads, states[0], lr=0.05)
            elif name == "rmsprop":
                nk.rmsprop_step(params, grads, states[0], lr=0.01, alpha=0.9)
            elif name == "rmsprop_centered_momentum":  # three states, the five-operand RMSprop kernel
                nk.rmsprop_step(params, grads, states[0], lr=0.01, alpha=0.9, centered=True, grad_avg=states[1],
                                momentum=0.9, velocity=states[2])
            elif name in ("adam", "adamw"):
                nk.adam_step(params, grads, states[0], states[1], step=step, lr=0.01, weight_decay=0.01,
                             decoupled_weight_decay=name == "adamw")
            elif name == "adam_amsgrad_maximize":  # the five-operand kernel, the gradient's sign flipped
                nk.adam_step(params, grads, states[0], states[1], step=step, lr=0.01, max_exp_avg_sq=states[2],
                             maximize=True)
            else:
                nk.ema_update(params, grads, decay=0.9)
        out = {f"param{k}": p for k, p in enumerate(params)}
        if name not in ("sgd", "ema"):  # the optimizers with state
            out |= {f"state{k}": s for k, s in enumerate(states[0])}
        return out
    return run


def _optimizer_16bit(name):
    """float16 params and gradients: float32 master copies and states with AMSGrad (the six-operand
    table), or float16 states with stochastic rounding."""
    def run(a, dt):
        params = [a(_data(s, np.float32, 21 + k).astype(np.float16)) for k, s in enumerate(_OPT_SHAPES)]
        master = [a(_data(s, np.float32, 21 + k).astype(np.float16).astype(np.float32)) for k, s in enumerate(_OPT_SHAPES)]
        states = [[a(np.zeros(s, np.float32 if name == "adam_16bit_master" else np.float16)) for s in _OPT_SHAPES]
                  for _ in range(3)]
        for step in (1, 2):
            grads = [a(_data(s, np.float32, 31 + 3 * step + k).astype(np.float16)) for k, s in enumerate(_OPT_SHAPES)]
            if name == "adam_16bit_master":
                nk.adam_step(params, grads, states[0], states[1], step=step, lr=0.01, max_exp_avg_sq=states[2],
                             master_params=master)
            else:
                nk.sgd_step(params, grads, lr=0.05, momentum=0.9, velocity=states[0], stochastic_rounding=True,
                            seed=5 + step)
        out = {f"param{k}": p for k, p in enumerate(params)} | {f"state{k}": s for k, s in enumerate(states[0])}
        return out | ({f"master{k}": m for k, m in enumerate(master)} if name == "adam_16bit_master" else {})
    return run


def _clip_grad_norm_16bit(a, dt):
    grads = [a((_data(s, np.float32, 41 + k) * 3).astype(np.float16)) for k, s in enumerate(_OPT_SHAPES)]
    norm = nk.clip_grad_norm(grads, 1.0)
    return {"norm": norm} | {f"grad{k}": g for k, g in enumerate(grads)}


def _clip_grad_norm(a, dt):
    grads = [a(_data(s, dt, 41 + k) * 3) for k, s in enumerate(_OPT_SHAPES)]
    norm = nk.clip_grad_norm(grads, 1.0)  # the norm is far above 1: every gradient is scaled
    return {"norm": norm} | {f"grad{k}": g for k, g in enumerate(grads)}


def _scaler(name):
    def run(a, dt):
        P = pytest.importorskip("nnkernels.preprocessing", reason="nnkernels.preprocessing needs scikit-learn")
        X = _data((300, 7), dt, 51) * 3 + 1  # 300 rows: two 256-row statistics chunks
        return {"Y": getattr(P, name)().fit_transform(a(X))}
    return run


CASES = {
    **{op: _activation(op) for op in ("relu", "leaky_relu", "sigmoid", "tanh")},
    "init": _init,
    "softmax_cross_entropy": _softmax_cross_entropy,
    "layernorm": _layernorm(None),
    "layernorm_leaky_relu": _layernorm("leaky_relu"),
    "layernorm_no_affine": _layernorm_no_affine,
    "batchnorm": _batchnorm,
    "batchnorm_eval": _batchnorm_eval,
    "batchnorm_split": _batchnorm_split,
    "batchnorm_merge": _batchnorm_merge,
    **{name: _optimizer(name) for name in ("sgd", "sgd_momentum", "adagrad", "rmsprop", "rmsprop_centered_momentum",
                                           "adam", "adamw", "adam_amsgrad_maximize", "ema")},
    "clip_grad_norm": _clip_grad_norm,
    # float16 storage (issue 15)
    "softmax_cross_entropy_16bit": _softmax_cross_entropy_16bit,
    "init_16bit": _init_16bit,
    **{name: _optimizer_16bit(name) for name in ("adam_16bit_master", "sgd_16bit_stochastic")},
    "clip_grad_norm_16bit": _clip_grad_norm_16bit,
    **{name: _scaler(name) for name in ("StandardScaler", "MinMaxScaler", "Normalizer")},
}

_NORM_TOL = {"dgamma": "grad_sum", "dbeta": "grad_sum", "sum_dout": "grad_sum", "sum_dout_xhat": "grad_sum",
             "m2": "grad_sum"}
CASE_TOL = {  # case -> {output: kind}, "*" for every other output; cases not listed: "elementwise"
    "init": {"*": "exact"},
    "softmax_cross_entropy": {"loss": "reduction", "*": "elementwise"},
    "layernorm": {"*": "reduction", **_NORM_TOL},
    "layernorm_leaky_relu": {"*": "reduction", **_NORM_TOL},
    "layernorm_no_affine": {"*": "reduction"},
    "batchnorm": {"*": "reduction", **_NORM_TOL},
    "batchnorm_eval": {"*": "reduction"},
    "batchnorm_split": {"*": "reduction", **_NORM_TOL},
    "batchnorm_merge": {"*": "reduction"},
    "clip_grad_norm": {"*": "reduction"},
    "softmax_cross_entropy_16bit": {"loss": "reduction", "*": "half"},
    "init_16bit": {"*": "exact"},
    "adam_16bit_master": {"*": "half", **{f"master{k}": "reduction" for k in range(3)},
                          **{f"state{k}": "reduction" for k in range(3)}},
    "sgd_16bit_stochastic": {"*": "half"},
    "clip_grad_norm_16bit": {"*": "half", "norm": "reduction"},
    "StandardScaler": {"*": "reduction"},
    "MinMaxScaler": {"*": "reduction"},
    "Normalizer": {"*": "reduction"},
}

_ACT = ("relu", "leaky_relu", "sigmoid", "tanh")
_OPT = ("sgd", "sgd_momentum", "adagrad", "rmsprop", "rmsprop_centered_momentum", "adam", "adamw",
        "adam_amsgrad_maximize", "ema")
_LN = ("layernorm", "layernorm_leaky_relu")
KERNELS = {  # __global__ function -> the cases that launch it (read off csrc/cuda and the GPU paths)
    "elementwise_kernel": _ACT, "elementwise_vec_kernel": _ACT,
    "init_kernel": ("init", "init_16bit"),
    "xent_rows": ("softmax_cross_entropy",), "xent_rows_16": ("softmax_cross_entropy_16bit",),
    "mean_rows": ("softmax_cross_entropy", "softmax_cross_entropy_16bit"),
    "ln_fwd_kernel": _LN + ("layernorm_no_affine",), "ln_bwd_dx_kernel": _LN + ("layernorm_no_affine",),
    "ln_bwd_param_partial": _LN, "ln_bwd_param_final": _LN, "vec_as_kernel": ("layernorm_no_affine",),
    # per-channel parameters computed on the device (issue 14: no host round trip)
    "bn_stats_partial": ("batchnorm", "batchnorm_split"), "bn_stats_final": ("batchnorm_split",),
    "bn_forward_params": ("batchnorm", "batchnorm_eval"), "bn_normalize_params": ("batchnorm_split",),
    "bn_apply_kernel": ("batchnorm", "batchnorm_eval", "batchnorm_split"),
    "bn_bwd_reduce_partial": ("batchnorm", "batchnorm_split"), "bn_reduce_final": ("batchnorm_split",),
    "bn_backward_params": ("batchnorm",), "bn_elemt_params": ("batchnorm_split",),
    "bn_bwd_apply_kernel": ("batchnorm", "batchnorm_split"),
    "bn_merge_kernel": ("batchnorm_merge",),
    "multi_tensor_kernel": _OPT + ("adam_16bit_master", "sgd_16bit_stochastic"),
    "sumsq_kernel": ("clip_grad_norm", "clip_grad_norm_16bit"),
    "finish_norm_kernel": ("clip_grad_norm", "clip_grad_norm_16bit"),
    "scale_kernel": ("clip_grad_norm", "clip_grad_norm_16bit"),
    "stats_partial": ("StandardScaler", "MinMaxScaler"), "stats_merge": ("StandardScaler", "MinMaxScaler"),
    "affine_kernel": ("StandardScaler", "MinMaxScaler"),
    "normalize_kernel": ("Normalizer",),
}


def cuda_kernel_names() -> set:
    """Names of the __global__ functions in csrc/cuda/*.cu."""
    names = set()
    folder = os.path.join(ROOT, "csrc", "cuda")
    for f in sorted(os.listdir(folder)):
        if f.endswith(".cu"):
            with open(os.path.join(folder, f)) as fh:
                text = fh.read()
            names |= set(re.findall(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)", text))
    return names


def test_every_kernel_has_a_case():
    assert set(KERNELS) == cuda_kernel_names()
    used = {c for cases in KERNELS.values() for c in cases}
    assert used == set(CASES)  # every case launches a listed kernel, every listed case exists
    assert set(CASE_TOL) <= set(CASES)


# --------------------------------------------------------------------------------------------- GPU

@pytest.fixture
def unpooled(gpu):
    """The fixture `gpu` with every array of the test taken straight from cudaMalloc, so that memcheck
    sees each array's own bounds (a memory pool hands out parts of larger blocks, inside which an
    overrun goes unnoticed): CuPy's pool is switched off for the test (thread-local); PyTorch's
    caching allocator only by the environment, PYTORCH_NO_CUDA_MEMORY_CACHING=1, which
    bench/gpu_check.sh sets for its sanitizer runs."""
    if gpu[2] == "cupy":
        import cupy

        with cupy.cuda.using_allocator(None):
            yield gpu
    else:
        yield gpu


def _host(v, to_numpy):
    if v is None or isinstance(v, (bool, int, float, np.ndarray, np.generic)):
        return v
    return to_numpy(v)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_once(case, dtype, unpooled):
    to_gpu, to_numpy, lib = unpooled
    host = lambda v: _host(v, to_numpy)  # noqa: E731
    run = CASES[case]
    args = (host,) if case == "batchnorm_split" else ()
    expected = run(lambda x: np.array(x), dtype, *args)
    got = run(to_gpu, dtype, *args)
    assert got.keys() == expected.keys()
    kinds = CASE_TOL.get(case, {})
    for name, want in expected.items():
        rtol, atol = TOLERANCE[kinds.get(name, kinds.get("*", "elementwise"))][dtype]
        actual = np.asarray(host(got[name]))
        want = np.asarray(want)
        assert actual.shape == want.shape, name
        np.testing.assert_allclose(actual, want, rtol=rtol, atol=atol, equal_nan=False, err_msg=f"{case}: {name}")
