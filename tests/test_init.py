"""nnkernels.init: Philox4x32-10 known answers, bit-identity with the NumPy reference across
instruction sets and thread counts (and GPU), distribution tests (mean, variance,
Kolmogorov-Smirnov), independence, fans/gains, out= and argument errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import init
from nnkernels import reference as ref

DTYPES = [np.float32, np.float64]
SIZES = [0, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4099, 100003]


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


# ---------------------------------------------------------------- generator

@pytest.mark.parametrize("ctr,key,expect", [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
])
def test_philox_known_answers(isa, ctr, key, expect):
    # Random123's kat_vectors for philox4x32-10 (Salmon et al. 2011)
    assert list(nk._core.philox4x32_10(ctr, key)) == expect
    assert [int(w) for w in ref.philox4x32_10(ctr, key)] == expect


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_uniform_normal_match_reference_bitwise(isa, dtype, n):
    for dist, fn in ((0, lambda: init.uniform(n, -2.0, 3.0, seed=7, dtype=dtype)),
                     (1, lambda: init.normal(n, 0.5, seed=7, dtype=dtype))):
        got = fn()
        a, b = (-2.0, 5.0) if dist == 0 else (0.0, 0.5)
        expect = ref.init_fill(n, dtype, dist, 7, a, b)
        assert got.dtype == dtype and got.shape == (n,)
        np.testing.assert_array_equal(bits(got), bits(expect))


@pytest.mark.parametrize("dtype", DTYPES)
def test_isa_levels_and_threads_bitwise(dtype, threads):
    from conftest import compiled_isas

    n = 3 * 131072 + 77  # several parallel chunks and a ragged last group
    outs = []
    for level in compiled_isas():
        with nk.isa(level):
            for t in (1, 2):
                threads(t)
                outs.append((init.normal((n,), 1.0, seed=123, dtype=dtype), init.uniform(n, seed=123, dtype=dtype)))
    for o in outs[1:]:
        np.testing.assert_array_equal(bits(o[0]), bits(outs[0][0]))
        np.testing.assert_array_equal(bits(o[1]), bits(outs[0][1]))


def test_element_depends_only_on_seed_and_index():
    a = init.normal(10000, seed=5)
    b = init.normal((100, 100), seed=5)
    c = init.normal(20000, seed=5)
    np.testing.assert_array_equal(bits(a), bits(b.ravel()))
    np.testing.assert_array_equal(bits(a), bits(c[:10000]))
    assert not np.array_equal(a, init.normal(10000, seed=6))


def test_large_seed_and_counter_high_word():
    s = (1 << 64) - 1
    np.testing.assert_array_equal(bits(init.uniform(1000, seed=s)), bits(ref.init_fill(1000, np.float32, 0, s)))


# ---------------------------------------------------------------- statistics

def _ks(sample, cdf):
    x = np.sort(sample.astype(np.float64))
    n = len(x)
    F = cdf(x)
    i = np.arange(1, n + 1)
    return max(np.max(i / n - F), np.max(F - (i - 1) / n))


_KS_CRIT = 1.949  # asymptotic Kolmogorov critical value at alpha = 0.001


@pytest.mark.parametrize("dtype", DTYPES)
def test_normal_distribution(dtype):
    n = 200000
    z = init.normal(n, 1.0, seed=2024, dtype=dtype)
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    erf = np.vectorize(math.erf)
    D = _ks(z, lambda x: 0.5 * (1 + erf(x / math.sqrt(2))))
    assert D < _KS_CRIT / math.sqrt(n), D
    # skewness / kurtosis of a normal
    assert abs((z.astype(np.float64) ** 3).mean()) < 0.05
    assert abs((z.astype(np.float64) ** 4).mean() - 3) < 0.1
    if dtype == np.float32:  # documented Box-Muller bound for 24-bit uniforms
        assert np.abs(z).max() <= math.sqrt(-2 * math.log(2.0 ** -24)) + 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_distribution(dtype):
    n = 200000
    u = init.uniform(n, 0.0, 1.0, seed=99, dtype=dtype)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * 0.0745 / math.sqrt(n)
    D = _ks(u, lambda x: np.clip(x, 0, 1))
    assert D < _KS_CRIT / math.sqrt(n), D
    # float32 values are multiples of 2^-24, float64 of 2^-53
    q = 2.0 ** (24 if dtype == np.float32 else 53)
    assert np.all(u.astype(np.float64) * q == np.floor(u.astype(np.float64) * q))


def test_independence_of_adjacent_streams():
    n = 131072
    z = init.normal(n, 1.0, seed=11, dtype=np.float64)
    bound = 5 / math.sqrt(n)
    for lag in (1, 2, 16, 32, 64):  # neighbours, other words of the same Philox block, next block
        r = np.corrcoef(z[:-lag], z[lag:])[0, 1]
        assert abs(r) < bound, (lag, r)
    # consecutive seeds (adjacent keys) and the two Box-Muller outputs of a pair
    z2 = init.normal(n, 1.0, seed=12, dtype=np.float64)
    assert abs(np.corrcoef(z, z2)[0, 1]) < bound
    zz = z.reshape(-1, 32)
    assert abs(np.corrcoef(zz[:, :16].ravel(), zz[:, 16:].ravel())[0, 1]) < 2 * bound
    assert abs(np.corrcoef(zz[:, :16].ravel() ** 2, zz[:, 16:].ravel() ** 2)[0, 1]) < 2 * bound
    u = init.uniform(n, seed=11)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < bound


# ---------------------------------------------------------------- fans, gains, initialisers

def test_fan_convention():
    assert init.fan_in_and_fan_out((300, 100)) == (300, 100)  # x @ W, W: (fan_in, fan_out)
    assert init.fan_in_and_fan_out((64, 3, 5, 5)) == (75, 1600)  # (out, in, kh, kw)
    assert init.fan_in_and_fan_out((8, 4, 3)) == (12, 24)
    assert ref.fan_in_and_fan_out((64, 3, 5, 5)) == (75, 1600)
    with pytest.raises(ValueError, match="shape"):
        init.fan_in_and_fan_out((5,))
    with pytest.raises(ValueError, match="shape"):
        init.xavier_uniform(10)


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1.0
    assert init.calculate_gain("conv2d") == 1.0
    assert init.calculate_gain("sigmoid") == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(TypeError, match="^param: expected a real number"):  # PyTorch: ValueError
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match="^param: expected a finite number"):
        init.calculate_gain("leaky_relu", float("inf"))
    torch = pytest.importorskip("torch")
    for nl, p in (("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.3), ("selu", None)):
        assert init.calculate_gain(nl, p) == pytest.approx(torch.nn.init.calculate_gain(nl, p))


@pytest.mark.parametrize("shape", [(400, 300), (64, 32, 3, 3)])
def test_xavier_kaiming_scales(shape):
    fi, fo = init.fan_in_and_fan_out(shape)
    n = int(np.prod(shape))
    tol = 5 * math.sqrt(2 / n)  # relative tolerance on the variance
    a = math.sqrt(6 / (fi + fo))
    w = init.xavier_uniform(shape, seed=1)
    assert w.shape == shape and w.dtype == np.float32
    assert np.abs(w).max() <= a and abs(w.var() / (a * a / 3) - 1) < tol
    w = init.xavier_normal(shape, gain=2.0, seed=2)
    assert abs(w.var() / (4 * 2 / (fi + fo)) - 1) < tol
    w = init.kaiming_normal(shape, seed=3, dtype=np.float64)
    assert w.dtype == np.float64 and abs(w.var() / (2 / fi) - 1) < tol
    w = init.kaiming_normal(shape, mode="fan_out", nonlinearity="relu", seed=3)
    assert abs(w.var() / (2 / fo) - 1) < tol
    bound = math.sqrt(3) * init.calculate_gain("leaky_relu", 0.1) / math.sqrt(fi)
    w = init.kaiming_uniform(shape, a=0.1, seed=4)
    assert np.abs(w).max() <= bound and abs(w.var() / (bound * bound / 3) - 1) < tol
    w = init.normal(shape, seed=5)
    assert abs(w.std() / 0.01 - 1) < tol


def test_kaiming_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_uniform((3, 4), mode="fan_avg")


# ---------------------------------------------------------------- out=, dtype, seed, errors

@pytest.mark.parametrize("dtype", DTYPES)
def test_out_fills_in_place(dtype):
    out = np.full((37, 29), 7, dtype=dtype)
    r = init.kaiming_normal((37, 29), seed=8, out=out)
    assert r is out
    np.testing.assert_array_equal(bits(out), bits(init.kaiming_normal((37, 29), seed=8, dtype=dtype)))
    # non-contiguous out: same numbers in C order
    big = np.zeros((37, 58), dtype=dtype)
    view = big[:, ::2]
    init.uniform((37, 29), -1, 1, seed=9, out=view)
    np.testing.assert_array_equal(bits(view), bits(init.uniform((37, 29), -1, 1, seed=9, dtype=dtype)))
    assert np.all(big[:, 1::2] == 0)


def test_out_errors_leave_out_unchanged():
    out = np.full((4, 5), 3.0, np.float32)
    with pytest.raises(ValueError, match="out"):
        init.normal((5, 4), seed=0, out=out)
    with pytest.raises(ValueError, match="out"):
        init.normal((4, 5), seed=0, dtype=np.float64, out=out)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        init.normal((4, 5), seed=0, out=ro)
    with pytest.raises(TypeError, match="out"):
        init.normal((4, 5), seed=0, out=[[0.0] * 5] * 4)
    assert np.all(out == 3.0) and np.all(ro == 3.0)


def test_argument_errors():
    with pytest.raises(TypeError, match="seed"):
        init.normal(3, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        init.normal(3, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        init.normal(3, seed=1 << 64)
    with pytest.raises(TypeError, match="^dtype: expected float32, float64, float16 or bfloat16"):
        init.normal(3, dtype=np.int32)
    with pytest.raises(TypeError, match="shape"):
        init.normal((3, 2.5))
    with pytest.raises(ValueError, match="shape"):
        init.normal((3, -1))
    with pytest.raises(ValueError, match="std"):
        init.normal(3, std=-1.0)
    with pytest.raises(ValueError, match="high"):
        init.uniform(3, 1.0, 0.0)


# ---------------------------------------------------------------- 16-bit dtypes (issue 15)
HALF = [np.dtype(np.float16), np.dtype("bfloat16")]


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("n", SIZES)
def test_16bit_is_the_float32_draw_rounded(isa, dtype, n, bf16_insn):
    """dtype=float16/bfloat16: bitwise the float32 numbers of the same seed rounded to nearest even
    (NumPy / ml_dtypes round float32 exactly); a uniform draw may round up to `high`."""
    for fn in (lambda dt: init.uniform(n, -2.0, 3.0, seed=7, dtype=dt), lambda dt: init.normal(n, 0.5, seed=7, dtype=dt),
               lambda dt: init.kaiming_uniform((n, 3), seed=9, dtype=dt)):
        got, f32 = fn(dtype), fn(np.float32)
        assert got.dtype == dtype and got.shape == f32.shape
        np.testing.assert_array_equal(got.view(np.uint16), f32.astype(dtype).view(np.uint16))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_threads_out_and_strided_out(dtype, threads):
    n = 3 * 131072 + 77
    res = []
    for t in (1, 2):
        threads(t)
        res.append(init.normal((n,), 1.0, seed=123, dtype=dtype))
    np.testing.assert_array_equal(res[0].view(np.uint16), res[1].view(np.uint16))
    out = np.zeros((40, 30), dtype)
    assert init.xavier_normal((40, 30), seed=3, out=out) is out  # dtype from out
    np.testing.assert_array_equal(out.view(np.uint16), init.xavier_normal((40, 30), seed=3).astype(dtype).view(np.uint16))
    big = np.zeros((40, 60), dtype)
    init.xavier_normal((40, 30), seed=3, out=big[:, ::2])  # not contiguous
    np.testing.assert_array_equal(big[:, ::2].view(np.uint16), out.view(np.uint16))
    with pytest.raises(ValueError, match="^out: expected dtype"):
        init.normal((40, 30), seed=3, dtype=np.float32, out=out)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_torch_cpu_out(dtype):
    """torch.float16/bfloat16 CPU tensors as out (plain, nn.Parameter, strided): filled in place with
    the bits of the NumPy / ml_dtypes call."""
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype.name)
    expect = init.xavier_normal((37, 29), seed=11, dtype=dtype).view(np.uint16)
    t = torch.full((37, 29), 7.0, dtype=tdt)
    assert init.xavier_normal((37, 29), seed=11, out=t) is t
    np.testing.assert_array_equal(t.view(torch.int16).numpy().view(np.uint16), expect)
    p = torch.nn.Parameter(torch.zeros(37, 29, dtype=tdt))
    assert init.xavier_normal((37, 29), seed=11, dtype=dtype, out=p) is p and p.requires_grad
    np.testing.assert_array_equal(p.detach().view(torch.int16).numpy().view(np.uint16), expect)
    big = torch.zeros(37, 58, dtype=tdt)
    init.xavier_normal((37, 29), seed=11, out=big[:, ::2])
    np.testing.assert_array_equal(big[:, ::2].contiguous().view(torch.int16).numpy().view(np.uint16), expect)
    assert bool((big[:, 1::2] == 0).all())


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_gpu_16bit_bit_identical_to_cpu(dtype):
    """torch CUDA float16/bfloat16 out: the CPU's bits (the float32 draw rounded to nearest even)."""
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0):
        pytest.skip("needs a CUDA device and a CUDA build")
    tdt = getattr(torch, dtype.name)
    for n in (1, 63, 65, 100003):
        for fn, kw in ((init.normal, {"std": 0.3}), (init.uniform, {"low": -1.0, "high": 2.0})):
            g = torch.zeros(n, dtype=tdt, device="cuda")
            assert fn((n,), seed=77, out=g, **kw) is g
            np.testing.assert_array_equal(g.cpu().view(torch.int16).numpy().view(np.uint16),
                                          fn((n,), seed=77, dtype=dtype, **kw).view(np.uint16))
    big = torch.zeros(37, 58, dtype=tdt, device="cuda")
    init.kaiming_uniform((37, 29), seed=5, out=big[:, ::2])
    host = big.cpu()
    np.testing.assert_array_equal(host[:, ::2].contiguous().view(torch.int16).numpy().view(np.uint16),
                                  init.kaiming_uniform((37, 29), seed=5, dtype=dtype).view(np.uint16))
    assert bool((host[:, 1::2] == 0).all())


def test_seed_none_draws_fresh_numbers():
    a, b = init.normal(1000), init.normal(1000)
    assert not np.array_equal(a, b)


def test_empty_and_scalar_shapes():
    assert init.normal((0, 5), seed=1).shape == (0, 5)
    assert init.uniform((), seed=1).shape == ()


# ---------------------------------------------------------------- GPU

@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_bit_identical_to_cpu(gpu, dtype):
    to_gpu, to_numpy, lib = gpu
    for n in (1, 63, 65, 100003):
        for fn, kw in ((init.normal, {"std": 0.3}), (init.uniform, {"low": -1.0, "high": 2.0})):
            g = to_gpu(np.zeros(n, dtype))
            assert fn((n,), seed=77, out=g, **kw) is g
            np.testing.assert_array_equal(bits(to_numpy(g)), bits(fn((n,), seed=77, dtype=dtype, **kw)))
    # a non-contiguous device array gets the numbers of a contiguous one, in C order; the rest is untouched
    big = to_gpu(np.zeros((37, 58), dtype))
    init.kaiming_uniform((37, 29), seed=5, out=big[:, ::2])
    host = to_numpy(big)
    np.testing.assert_array_equal(bits(host[:, ::2]), bits(init.kaiming_uniform((37, 29), seed=5, dtype=dtype)))
    assert np.all(host[:, 1::2] == 0)


def test_gpu_fill_captures_in_cuda_graph(gpu):
    """Filling a device array queues one kernel (a strided one also a device copy): no host copy, no
    synchronisation, so it captures in a CUDA graph and the replay draws the same bits."""
    to_gpu, to_numpy, lib = gpu
    if lib != "torch":
        pytest.skip("captured with torch.cuda.graph")
    import torch

    g, big = to_gpu(np.zeros(4099, np.float32)), to_gpu(np.zeros((37, 58), np.float64))
    init.normal((4099,), seed=5, out=g)  # warm-up outside capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        init.normal((4099,), seed=5, out=g)
        init.uniform((37, 29), seed=6, out=big[:, ::2])
    g.zero_()
    graph.replay()
    torch.cuda.synchronize()
    np.testing.assert_array_equal(bits(to_numpy(g)), bits(init.normal((4099,), seed=5)))
    np.testing.assert_array_equal(bits(to_numpy(big)[:, ::2]), bits(init.uniform((37, 29), seed=6, dtype=np.float64)))


def test_gpu_out_errors(gpu):
    to_gpu, to_numpy, lib = gpu
    g = to_gpu(np.full((4, 5), 3.0, np.float32))
    with pytest.raises(ValueError, match="^out: expected shape"):
        init.normal((5, 4), seed=0, out=g)
    with pytest.raises(ValueError, match="^out: expected dtype float64"):
        init.normal((4, 5), seed=0, dtype=np.float64, out=g)
    with pytest.raises(TypeError, match="^out: expected a float32, float64, float16 or bfloat16 array"):
        init.normal((4, 5), seed=0, out=to_gpu(np.zeros((4, 5), np.int32)))
    assert np.all(to_numpy(g) == 3.0)


# ---------------------------------------------------------------- torch CPU tensors (issue 14)

@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_cpu_out_bitwise_numpy(dtype):
    """A torch CPU tensor as out is filled in place (zero-copy) with the NumPy call's bits (dtype
    None: out's dtype), any strides; nn.Parameter leaves are filled in place as torch.nn.init does."""
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, np.dtype(dtype).name)
    for shape in ((1,), (63,), (37, 29), (4, 3, 3, 3)):
        expect = init.xavier_normal(shape, seed=11, dtype=dtype) if len(shape) > 1 else init.normal(shape, seed=11, dtype=dtype)
        t = torch.full(shape, 7.0, dtype=tdt)
        r = init.xavier_normal(shape, seed=11, out=t) if len(shape) > 1 else init.normal(shape, seed=11, out=t)
        assert r is t
        np.testing.assert_array_equal(bits(t.numpy()), bits(expect))
    p = torch.nn.Parameter(torch.zeros(37, 29, dtype=tdt))
    assert init.kaiming_uniform((37, 29), seed=3, out=p) is p and p.requires_grad
    np.testing.assert_array_equal(bits(p.detach().numpy()), bits(init.kaiming_uniform((37, 29), seed=3, dtype=dtype)))
    big = torch.zeros(37, 58, dtype=tdt)
    init.uniform((37, 29), -1, 1, seed=9, out=big[:, ::2])
    np.testing.assert_array_equal(bits(big[:, ::2].numpy()), bits(init.uniform((37, 29), -1, 1, seed=9, dtype=dtype)))
    assert bool((big[:, 1::2] == 0).all())
    tt = torch.zeros(29, 37, dtype=tdt).t()  # transposed (F-order) view
    init.normal((37, 29), seed=4, out=tt)
    np.testing.assert_array_equal(bits(tt.numpy()), bits(init.normal((37, 29), seed=4, dtype=dtype)))


def test_torch_cpu_out_errors_leave_out_unchanged():
    torch = pytest.importorskip("torch")
    out = torch.full((4, 5), 3.0)
    with pytest.raises(ValueError, match="^out: expected shape"):
        init.normal((5, 4), seed=0, out=out)
    with pytest.raises(ValueError, match="^out: expected dtype float64, got float32"):
        init.normal((4, 5), seed=0, dtype=np.float64, out=out)
    with pytest.raises(TypeError, match="^out: expected a float32, float64, float16 or bfloat16 array"):
        init.normal((4, 5), seed=0, out=torch.zeros(4, 5, dtype=torch.int32))
    with pytest.raises(ValueError, match="^out"):
        init.normal((4, 5), seed=0, out=torch.zeros(1, 5).expand(4, 5))  # self-overlapping view
    assert bool((out == 3.0).all())
