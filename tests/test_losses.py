"""Fused softmax cross-entropy against the NumPy reference, finite differences, edge cases, errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnkernels as nk
from nnkernels import reference as ref
from isolated import assert_clean_exit, run_isolated
from tolerances import BF16, F16, TOL, TOL_REDUCTION, assert_close, ulps_16bit

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 7), (2, 3), (3, 1), (5, 16), (7, 17), (13, 33), (64, 10), (31, 257), (4099, 3), (40, 1021)]


def _data(shape, dtype, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    return x, y


def _check(x, y, loss, d):
    lr, dr = ref.softmax_cross_entropy(x.astype(np.float64), y)
    assert d.dtype == x.dtype and d.shape == x.shape
    assert isinstance(loss, float)
    assert_close(loss, lr, dtype=x.dtype, table=TOL_REDUCTION)
    assert_close(d, dr, dtype=x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(isa, dtype, shape):
    x, y = _data(shape, dtype)
    loss, d = nk.softmax_cross_entropy(x, y)
    _check(x, y, loss, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_label_dtypes(dtype):
    x, y = _data((20, 30), dtype, seed=1)
    big = np.zeros((40, 60), dtype)
    big[::2, ::2] = x
    view = big[::2, ::2]
    for lab in (y, y.astype(np.int32), y.astype(np.uint8), y.astype(np.uint64), list(y)):
        loss, d = nk.softmax_cross_entropy(view, lab)
        _check(x, y, loss, d)
    # Fortran order and a transposed view
    loss, d = nk.softmax_cross_entropy(np.asfortranarray(x), y)
    _check(x, y, loss, d)
    loss, d = nk.softmax_cross_entropy(np.ascontiguousarray(x.T).T, y)
    _check(x, y, loss, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_and_in_place(dtype):
    x, y = _data((9, 11), dtype, seed=2)
    lr, dr = nk.softmax_cross_entropy(x, y)
    out = np.empty_like(x)
    l2, d2 = nk.softmax_cross_entropy(x, y, out=out)
    assert d2 is out and l2 == lr
    np.testing.assert_array_equal(out, dr)
    xi = x.copy()
    l3, d3 = nk.softmax_cross_entropy(xi, y, out=xi)
    assert d3 is xi and l3 == lr
    np.testing.assert_array_equal(xi, dr)
    # partial overlap: out shifted by one row inside the same buffer
    buf = np.zeros((10, 11), dtype)
    buf[1:] = x
    l4, d4 = nk.softmax_cross_entropy(buf[1:], y, out=buf[:-1])
    assert l4 == lr
    np.testing.assert_array_equal(buf[:-1], dr)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stability_large_logits(dtype):
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4 + 1, -1e4 + 2], [80.0, 80.0, 80.0]], dtype)
    y = np.array([2, 0, 1])
    loss, d = nk.softmax_cross_entropy(x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    # exact values: row 0 loss 2000 (+ log(1+e^-1000+...)); row 1 loss 2 + log(1+e^-1+e^-2); row 2 log 3
    expect = (2000.0 + (2.0 + np.log1p(np.exp(-1.0) + np.exp(-2.0))) + np.log(3.0)) / 3
    assert_close(loss, expect, dtype=dtype, table=TOL_REDUCTION)
    _check(x, y, loss, d)


def test_nan_propagates():
    x, y = _data((4, 5), np.float32)
    x[2, 3] = np.nan
    loss, d = nk.softmax_cross_entropy(x, y)
    assert np.isnan(loss)
    assert np.all(np.isnan(d[2])) and np.all(np.isfinite(np.delete(d, 2, axis=0)))


def test_empty_batch():
    loss, d = nk.softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert np.isnan(loss) and d.shape == (0, 4) and d.dtype == np.float32


def test_finite_differences():
    x, y = _data((6, 7), np.float64, seed=3, scale=1.0)
    loss, d = nk.softmax_cross_entropy(x, y)
    h = 1e-6
    num = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (nk.softmax_cross_entropy(xp, y)[0] - nk.softmax_cross_entropy(xm, y)[0]) / (2 * h)
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_bitwise(threads, dtype):
    x, y = _data((5000, 37), dtype, seed=4)
    threads(1)
    l1, d1 = nk.softmax_cross_entropy(x, y)
    threads(2)
    l2, d2 = nk.softmax_cross_entropy(x, y)
    assert l1 == l2
    np.testing.assert_array_equal(d1, d2)


@pytest.mark.parametrize(
    "logits, labels, exc, start",
    [
        (np.zeros((3, 4), np.int32), [0, 1, 2], TypeError, "logits"),
        (np.zeros(4, np.float32), [0], ValueError, "logits"),
        (np.zeros((2, 3, 4), np.float32), [0, 1], ValueError, "logits"),
        (np.zeros((3, 0), np.float32), [0, 0, 0], ValueError, "logits"),
        (np.zeros((3, 4), np.float32), np.array([0.0, 1.0, 2.0]), TypeError, "labels"),
        (np.zeros((3, 4), np.float32), np.array([True, False, True]), TypeError, "labels"),
        (np.zeros((3, 4), np.float32), [0, 1], ValueError, "labels"),
        (np.zeros((3, 4), np.float32), [[0, 1, 2]], ValueError, "labels"),
        (np.zeros((3, 4), np.float32), [0, 4, 1], ValueError, "labels"),
        (np.zeros((3, 4), np.float32), [0, -1, 1], ValueError, "labels"),
        (np.zeros((3, 4), np.float32), np.array([0, 2**63, 1], np.uint64), ValueError, "labels"),
        (np.zeros((3, 4), np.float32), None, TypeError, "labels"),
    ],
)
def test_bad_input(logits, labels, exc, start):
    before = np.array(logits, copy=True)
    with pytest.raises(exc, match=f"^{start}"):
        nk.softmax_cross_entropy(logits, labels)
    np.testing.assert_array_equal(logits, before)


# ---------------------------------------------------------------- 16-bit logits (issue 15)
HALF = [F16, BF16]


def _half(shape, dtype, seed=0, scale=3.0):
    x, y = _data(shape, np.float64, seed, scale)
    return x.astype(dtype), y


def _check_16(x, y, loss, d):
    """The loss of the 16-bit values in float32 arithmetic summed in float64 (float32 accuracy);
    dlogits in the logits' dtype, rounded once: off-label entries within 1 ulp of the correctly
    rounded float64 gradient, label entries (p - 1) / N within the dtype's tolerance."""
    lr, dr = ref.softmax_cross_entropy(x.astype(np.float64), y)
    assert d.dtype == x.dtype and d.shape == x.shape and isinstance(loss, float)
    assert_close(loss, lr, dtype=np.float32, table=TOL_REDUCTION)
    off = np.ones(x.shape, bool)
    off[np.arange(x.shape[0]), y] = False
    assert ulps_16bit(d, dr, x.dtype)[off].max(initial=0) <= 1
    assert_close(d, dr, dtype=x.dtype, atol=min(1e-5, 1e-3 / x.shape[0]))


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("shape", SHAPES + [(3, 4096), (3, 4097), (2, 9001)])  # kept / recomputed exponentials
def test_16bit_matches_reference(isa, dtype, shape):
    x, y = _half(shape, dtype)
    loss, d = nk.softmax_cross_entropy(x, y)
    _check_16(x, y, loss, d)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_strided_in_place_threads(dtype, threads, isa):
    x, y = _half((301, 67), dtype, seed=3, scale=8.0)
    loss, d = nk.softmax_cross_entropy(x, y)
    _check_16(x, y, loss, d)
    big = np.zeros((602, 134), dtype)
    big[::2, ::2] = x
    l2, d2 = nk.softmax_cross_entropy(big[::2, ::2], y)  # strided: the same bits
    assert l2 == loss
    np.testing.assert_array_equal(d2.view(np.uint16), d.view(np.uint16))
    xi = x.copy()
    l3, d3 = nk.softmax_cross_entropy(xi, y, out=xi)  # in place
    assert d3 is xi and l3 == loss
    np.testing.assert_array_equal(xi.view(np.uint16), d.view(np.uint16))
    xl, yl = _half((5000, 37), dtype, seed=4)
    res = []
    for t in (1, 2):
        threads(t)
        res.append(nk.softmax_cross_entropy(xl, yl))
    assert res[0][0] == res[1][0]
    np.testing.assert_array_equal(res[0][1].view(np.uint16), res[1][1].view(np.uint16))
    with pytest.raises(ValueError, match="^out: expected dtype"):
        nk.softmax_cross_entropy(x, y, out=np.zeros(x.shape, np.float32))


def test_16bit_large_logits_stable():
    x = np.array([[60000.0, 0.0, -60000.0], [1.0, 2.0, 3.0]]).astype(F16)
    loss, d = nk.softmax_cross_entropy(x, [2, 0])
    assert np.isfinite(loss) and np.isfinite(d.astype(np.float32)).all()
    _check_16(x, np.array([2, 0]), loss, d)
    xb = np.array([[3e38, 0.0, -3e38]]).astype(BF16)
    loss, d = nk.softmax_cross_entropy(xb, [0])
    assert loss == 0.0 and np.isfinite(d.astype(np.float32)).all()


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_16bit_torch_cpu_bitwise_numpy(dtype):
    """torch.float16/bfloat16 CPU logits (zero-copy): dlogits a tensor of the logits' dtype, loss and
    gradient bitwise the NumPy / ml_dtypes call's; out= a 16-bit tensor is written in place."""
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype.name)
    x, y = _half((31, 257), dtype, seed=5)
    loss, d = nk.softmax_cross_entropy(x, y)
    xt = torch.from_numpy(x.view(np.int16)).view(tdt)
    lt, dt = nk.softmax_cross_entropy(xt, torch.from_numpy(y))
    assert type(lt) is float and lt == loss
    assert isinstance(dt, torch.Tensor) and dt.dtype == tdt
    np.testing.assert_array_equal(dt.view(torch.int16).numpy(), d.view(np.int16))
    out = torch.zeros(31, 257, dtype=tdt)
    assert nk.softmax_cross_entropy(xt, y, out=out)[1] is out
    np.testing.assert_array_equal(out.view(torch.int16).numpy(), d.view(np.int16))
    with pytest.raises(ValueError, match="^out: expected dtype"):
        nk.softmax_cross_entropy(xt, y, out=torch.zeros(31, 257))


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_gpu_16bit_matches_cpu(dtype):
    """torch CUDA float16/bfloat16 logits: float32 arithmetic, dlogits in the logits' dtype; the loss
    within float32 accuracy of the CPU's and every gradient within 1 ulp of it (CUDA's expf)."""
    torch = pytest.importorskip("torch")
    if not (torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0):
        pytest.skip("needs a CUDA device and a CUDA build")
    tdt = getattr(torch, dtype.name)
    for shape in ((1, 1), (7, 17), (301, 67), (40, 1021), (3, 5000)):
        x, y = _half(shape, dtype, seed=6)
        loss, d = nk.softmax_cross_entropy(x, y)
        xt = torch.from_numpy(x.view(np.int16)).view(tdt).cuda()
        lg, dg = nk.softmax_cross_entropy(xt, torch.from_numpy(y).cuda())
        assert dg.dtype == tdt and dg.is_cuda
        assert_close(float(lg), loss, dtype=np.float32, table=TOL_REDUCTION)
        diff = np.abs(dg.cpu().view(torch.int16).numpy().astype(np.int32) - d.view(np.int16).astype(np.int32))
        same_sign = np.signbit(dg.cpu().float().numpy()) == np.signbit(d.astype(np.float32))
        assert int(diff[same_sign].max(initial=0)) <= 1
        assert_close(dg.cpu().float().numpy(), d.astype(np.float32), dtype=dtype, atol=min(1e-5, 1e-3 / shape[0]))
        _check_16(x, y, float(lg), dg.cpu().view(torch.int16).numpy().view(dtype))


def test_bad_out_untouched():
    x, y = _data((3, 4), np.float32)
    for out, exc in [(np.zeros((3, 4), np.float64), ValueError), (np.zeros((4, 3), np.float32), ValueError),
                     (np.zeros((3, 8), np.float32)[:, ::2], ValueError)]:
        sentinel = out.copy()
        with pytest.raises(exc, match="^out"):
            nk.softmax_cross_entropy(x, y, out=out)
        np.testing.assert_array_equal(out, sentinel)
    ro = np.zeros((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="^out"):
        nk.softmax_cross_entropy(x, y, out=ro)
    # a bad label is refused before `out` is written
    out = np.full((3, 4), 7.0, np.float32)
    with pytest.raises(ValueError, match="^labels"):
        nk.softmax_cross_entropy(x, [0, 9, 0], out=out)
    assert np.all(out == 7.0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 70), scale=st.floats(0.01, 50.0), seed=st.integers(0, 2**31))
def test_property_probabilities(n, c, scale, seed):
    x, y = _data((n, c), np.float64, seed=seed, scale=scale)
    loss, d = nk.softmax_cross_entropy(x, y)
    assert loss >= 0
    # rows of dlogits sum to 0; softmax = n*d + onehot lies in [0, 1]
    np.testing.assert_allclose(d.sum(axis=1), 0.0, atol=1e-15 * c + 1e-16)
    p = d * n
    p[np.arange(n), y] += 1
    assert np.all(p >= -1e-12) and np.all(p <= 1 + 1e-12)
    _check(x, y, loss, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_matches_cpu(gpu, dtype):
    to_gpu, to_numpy, lib = gpu
    x, y = _data((33, 517), dtype, seed=5)
    loss, d = nk.softmax_cross_entropy(x, y)
    gx = to_gpu(x)
    gl, gd = nk.softmax_cross_entropy(gx, to_gpu(y))
    # the loss stays on the device: a 0-d float64 array of the logits' library
    assert type(gl) is type(gx) and tuple(gl.shape) == () and "float64" in str(gl.dtype)
    assert type(gd) is type(gx)
    assert_close(float(gl), loss, dtype=dtype, table=TOL_REDUCTION)
    assert_close(to_numpy(gd), d, dtype=dtype)
    for lab in (y.astype(np.int32), y.astype(np.uint8)):  # converted on the device
        gl2, gd2 = nk.softmax_cross_entropy(gx, to_gpu(lab))
        assert float(gl2) == float(gl)
        np.testing.assert_array_equal(to_numpy(gd2), to_numpy(gd))
    # out, in place and a non-contiguous (row-strided) out
    out = to_gpu(np.zeros_like(x))
    gl3, gd3 = nk.softmax_cross_entropy(gx, to_gpu(y), out=out)
    assert gd3 is out
    np.testing.assert_array_equal(to_numpy(out), to_numpy(gd))
    big = to_gpu(np.zeros((66, 517), dtype))
    nk.softmax_cross_entropy(gx, to_gpu(y), out=big[::2])
    np.testing.assert_array_equal(to_numpy(big)[::2], to_numpy(gd))
    gi = to_gpu(x)
    nk.softmax_cross_entropy(gi, to_gpu(y), out=gi)
    np.testing.assert_array_equal(to_numpy(gi), to_numpy(gd))
    # labels are not copied to the host to be checked: an out-of-range label is a NaN row
    bad = y.copy()
    bad[4] = 517
    gl4, gd4 = nk.softmax_cross_entropy(gx, to_gpu(bad))
    assert np.isnan(float(gl4))
    d4 = to_numpy(gd4)
    assert np.all(np.isnan(d4[4])) and np.array_equal(np.delete(d4, 4, 0), np.delete(to_numpy(gd), 4, 0))
    gl5, _ = nk.softmax_cross_entropy(to_gpu(np.zeros((0, 3), dtype)), to_gpu(np.zeros(0, np.int64)))
    assert np.isnan(float(gl5))


def test_gpu_errors(gpu):
    to_gpu, to_numpy, lib = gpu
    x, y = _data((6, 5), np.float32)
    gx = to_gpu(x)
    with pytest.raises(ValueError, match="^labels: expected an array on cuda:"):
        nk.softmax_cross_entropy(gx, y)  # host labels with device logits: never a hidden copy
    with pytest.raises(ValueError, match="^labels: expected an array on the CPU"):
        nk.softmax_cross_entropy(x, to_gpu(y))
    with pytest.raises(TypeError, match="^labels: expected an integer array"):
        nk.softmax_cross_entropy(gx, to_gpu(y.astype(np.float32)))
    with pytest.raises(ValueError, match="^labels: expected shape"):
        nk.softmax_cross_entropy(gx, to_gpu(y[:5]))
    out = to_gpu(np.zeros((6, 5), np.float64))
    with pytest.raises(ValueError, match="^out: expected dtype float32"):
        nk.softmax_cross_entropy(gx, to_gpu(y), out=out)
    with pytest.raises(ValueError, match="^out: expected an array on cuda:"):
        nk.softmax_cross_entropy(gx, to_gpu(y), out=np.zeros((6, 5), np.float32))


def test_bench_rows(tmp_path):
    import json

    from nnkernels.bench import cli

    path = tmp_path / "b.json"
    assert cli.main(["--quick", "--ops", "losses", "--sizes", "small", "--no-stream", "--repeats", "2",
                     "--no-torch", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [r["op"] for r in rows] == ["softmax_cross_entropy"]
    assert rows[0]["impls"]["nnkernels"]["GBps"] > 0 and rows[0]["speedup_vs_numpy"] > 0


# ------------------------------------------------------------------ labels read once (issue 13, items 1, 2, 4)
def test_labels_sharing_memory_with_out():
    """Labels inside out's buffer: the result is the one for the labels at call time (they are
    copied before anything is written), whichever rows of out they sit under; NumPy arrays and
    torch CPU tensors."""
    r = run_isolated("""
        import numpy as np, nnkernels as nk
        from nnkernels import reference as ref
        n, c = 4096, 8
        x = np.random.default_rng(0).standard_normal((n, c)).astype(np.float32)
        for where in ("first rows", "last rows"):
            buf = bytearray(n * c * 4)
            out = np.frombuffer(buf, np.float32).reshape(n, c)
            start = 0 if where == "first rows" else n * c * 4 - n * 8
            labels = np.frombuffer(buf, np.int64, count=n, offset=start)
            labels[:] = np.arange(n) % c
            expect = labels.copy()
            loss, d = nk.softmax_cross_entropy(x, labels, out=out)
            lr, dr = ref.softmax_cross_entropy(x.astype(np.float64), expect)
            assert abs(loss - lr) < 1e-5 * abs(lr), (where, loss, lr)
            np.testing.assert_allclose(d, dr, rtol=1e-5, atol=1e-7)
        try:  # the same with torch CPU tensors over one buffer (read and written zero-copy)
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            buf = torch.zeros(n * c)
            out = buf.view(n, c)
            labels = buf.view(torch.int64)[:n]
            labels[:] = torch.arange(n) % c
            expect = labels.numpy().copy()
            loss, d = nk.softmax_cross_entropy(torch.from_numpy(x), labels, out=out)
            assert d is out
            lr, dr = ref.softmax_cross_entropy(x.astype(np.float64), expect)
            assert abs(loss - lr) < 1e-5 * abs(lr), ("torch", loss, lr)
            np.testing.assert_allclose(d.numpy(), dr, rtol=1e-5, atol=1e-7)
        print("ok")
    """)
    assert_clean_exit(r)
    assert r.stdout.strip() == "ok"


def test_labels_changed_by_another_thread():
    """A thread flips labels between valid and out-of-range values while kernels run without
    the GIL: every call either refuses the labels it read or returns a finite result."""
    r = run_isolated("""
        import threading, time
        import numpy as np, nnkernels as nk
        n, c = 20000, 16
        x = np.random.default_rng(1).standard_normal((n, c)).astype(np.float32)
        labels = np.random.default_rng(2).integers(0, c, n)
        stop = threading.Event()
        good = labels.copy()
        bad = good.copy()
        bad[::3], bad[1::3] = 1 << 40, -(1 << 40)
        def flip():  # all labels valid, then every third one far out of range, and so on
            while not stop.is_set():
                labels[:] = bad
                labels[:] = good
        t = threading.Thread(target=flip)
        t.start()
        refused = ok = 0
        deadline = time.perf_counter() + 0.3
        try:
            while time.perf_counter() < deadline:
                try:
                    loss, d = nk.softmax_cross_entropy(x, labels)
                except ValueError as e:
                    assert str(e).startswith("labels: expected values in [0, 16), got "), e
                    refused += 1
                else:
                    assert np.isfinite(loss) and np.all(np.isfinite(d))
                    ok += 1
        finally:
            stop.set()
            t.join()
        print(refused + ok)
    """)
    assert_clean_exit(r)
    assert int(r.stdout) > 0


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint16, np.uint64])
def test_misaligned_and_strided_labels(label_dtype):
    """Labels at an odd address (np.frombuffer at offset 1: NumPy marks them unaligned but
    C-contiguous) and negative-stride labels are read byte-wise: correct result, no UB."""
    x, y = _data((37, 9), np.float32, seed=6)
    size = np.dtype(label_dtype).itemsize
    raw = bytearray(37 * size + 1)
    odd = np.frombuffer(raw, label_dtype, count=37, offset=1)
    odd[:] = y
    assert odd.flags.c_contiguous and not odd.flags.aligned
    loss, d = nk.softmax_cross_entropy(x, odd)
    _check(x, y, loss, d)
    rev = np.array(y[::-1], label_dtype)[::-1]
    loss, d = nk.softmax_cross_entropy(x, rev)
    _check(x, y, loss, d)
    swapped = y.astype(np.dtype(label_dtype).newbyteorder())
    loss, d = nk.softmax_cross_entropy(x, swapped)
    _check(x, y, loss, d)
    odd[5] = 9
    with pytest.raises(ValueError, match=r"^labels: expected values in \[0, 9\), got 9 at index 5"):
        nk.softmax_cross_entropy(x, odd)


def test_misaligned_logits_refused():
    raw = bytearray(4 * 12 + 1)
    x = np.frombuffer(raw, np.float32, count=12, offset=1).reshape(3, 4)
    with pytest.raises(ValueError, match="^logits: data pointer is not aligned"):
        nk.softmax_cross_entropy(x, [0, 1, 2])
    out = np.frombuffer(bytearray(4 * 12 + 1), np.float32, count=12, offset=1).reshape(3, 4)
    with pytest.raises(ValueError, match="^out: data pointer is not aligned"):
        nk.softmax_cross_entropy(np.zeros((3, 4), np.float32), [0, 1, 2], out=out)


def test_gpu_labels_sharing_memory_with_out(gpu):
    to_gpu, to_numpy, lib = gpu
    n, c = 4096, 8
    x, y = _data((n, c), np.float32, seed=7)
    host = np.zeros(n * c, np.float32)
    host.view(np.int64)[:n] = y
    buf = to_gpu(host)
    out = buf.reshape(n, c)
    labels = buf.view(np.int64 if lib == "cupy" else __import__("torch").int64)[:n]
    loss, d = nk.softmax_cross_entropy(to_gpu(x), labels, out=out)
    lr, dr = ref.softmax_cross_entropy(x.astype(np.float64), y)
    assert_close(loss, lr, dtype=np.float32, table=TOL_REDUCTION)
    assert_close(to_numpy(d), dr, dtype=np.float32)


# ------------------------------------------------------------------ torch CPU tensors (issue 14)
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_cpu_bitwise_numpy(dtype):
    """Torch CPU tensors are read and written in place (zero-copy): the loss is a Python float
    and dlogits a tensor, both bitwise the NumPy call's."""
    torch = _torch()
    for shape in ((1, 1), (7, 17), (64, 10), (4099, 3)):
        x, y = _data(shape, dtype, seed=8)
        loss, d = nk.softmax_cross_entropy(x, y)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        lt, dt = nk.softmax_cross_entropy(xt, yt)
        assert type(lt) is float and lt == loss
        assert isinstance(dt, torch.Tensor) and dt.dtype == xt.dtype and tuple(dt.shape) == shape
        np.testing.assert_array_equal(dt.numpy(), d)
        # mixing: NumPy labels with tensor logits (tensor out), tensor labels with NumPy logits (NumPy out)
        l2, d2 = nk.softmax_cross_entropy(xt, y)
        assert l2 == loss and isinstance(d2, torch.Tensor)
        l3, d3 = nk.softmax_cross_entropy(x, yt)
        assert l3 == loss and type(d3) is np.ndarray
        np.testing.assert_array_equal(d3, d)


def test_torch_cpu_out_in_place_strided_and_label_dtypes():
    torch = _torch()
    x, y = _data((20, 30), np.float32, seed=9)
    loss, d = nk.softmax_cross_entropy(x, y)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)  # a leaf that requires grad: its values are data
    out = torch.zeros(20, 30)
    lo, do = nk.softmax_cross_entropy(xt, torch.from_numpy(y), out=out)
    assert do is out and lo == loss
    np.testing.assert_array_equal(out.numpy(), d)
    param = torch.nn.Parameter(torch.zeros(20, 30))
    assert nk.softmax_cross_entropy(xt, torch.from_numpy(y), out=param)[1] is param
    np.testing.assert_array_equal(param.detach().numpy(), d)
    xi = torch.from_numpy(x.copy())
    li, di = nk.softmax_cross_entropy(xi, torch.from_numpy(y), out=xi)
    assert di is xi and li == loss
    np.testing.assert_array_equal(xi.numpy(), d)
    # strided logits (a copy with unit column stride is made) and strided / narrow labels
    big = torch.zeros(40, 60)
    big[::2, ::2] = torch.from_numpy(x)
    ybig = torch.from_numpy(np.repeat(y, 2))
    for lab in (ybig[::2], ybig[::2].to(torch.int32), ybig[1::2].to(torch.uint8)):
        ls, ds = nk.softmax_cross_entropy(big[::2, ::2], lab)
        assert ls == loss
        np.testing.assert_array_equal(ds.numpy(), d)


def test_torch_cpu_bad_input_untouched():
    torch = _torch()
    x, y = _data((3, 4), np.float32)
    xt = torch.from_numpy(x)
    out = torch.full((3, 4), 7.0)
    for labels, exc, msg in [(torch.tensor([0, 9, 0]), ValueError, r"^labels: expected values in \[0, 4\), got 9 at index 1"),
                             (torch.tensor([0, -1, 0]), ValueError, "^labels: expected values"),
                             (torch.tensor([0.0, 1.0, 2.0]), TypeError, "^labels: expected an integer array, got dtype float32"),
                             (torch.tensor([True, False, True]), TypeError, "^labels: expected an integer array"),
                             (torch.tensor([0, 1]), ValueError, "^labels: expected shape")]:
        with pytest.raises(exc, match=msg):
            nk.softmax_cross_entropy(xt, labels, out=out)
        assert bool((out == 7.0).all())
    for bad_out in (torch.zeros(3, 4, dtype=torch.float64), torch.zeros(4, 3), torch.zeros(3, 8)[:, ::2]):
        with pytest.raises(ValueError, match="^out"):
            nk.softmax_cross_entropy(xt, torch.tensor([0, 1, 2]), out=bad_out)
    with pytest.raises(TypeError, match="^logits: expected a float32, float64, float16 or bfloat16 array, got dtype int32"):
        nk.softmax_cross_entropy(torch.zeros(3, 4, dtype=torch.int32), [0, 1, 2])
