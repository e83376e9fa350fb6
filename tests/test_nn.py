"""nnkernels.nn: layers against NumPy, whole-model gradients by finite differences (float64),
state/snapshot handling, EMA, batched evaluation."""
from __future__ import annotations

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import nn
from tolerances import assert_close



def _weights(rng, sizes, dtype=np.float64):
    return [rng.standard_normal((a, b)).astype(dtype) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]


def _model(kind: str, rng, sizes=(5, 7, 6, 4), dtype=np.float64, act="tanh"):
    ws = _weights(rng, sizes, dtype)
    layers = []
    for k, w in enumerate(ws):
        last = k == len(ws) - 1
        layers.append(nn.Linear(w.shape[0], w.shape[1], bias=True, weight=w, dtype=dtype))
        if last:
            break
        if kind == "batch":
            layers.append(nn.BatchNorm(w.shape[1], activation="relu" if act == "relu" else None, dtype=dtype))
        elif kind == "layer":
            layers.append(nn.LayerNorm(w.shape[1], activation="leaky_relu" if act == "leaky_relu" else None,
                                       negative_slope=0.2, dtype=dtype))
        if kind == "none" or act not in ("relu", "leaky_relu"):
            layers.append(nn.activation_layer(act, 0.2))
    model = nn.Sequential(layers)
    # non-trivial affine parameters and biases
    for p in model.params():
        if p.ndim == 1:
            p[...] = rng.uniform(0.5, 1.5, p.shape) if p is not None else p
    return model


def _loss(model, x, y):
    return nk.softmax_cross_entropy(model.forward(x), y)[0]


def _check_gradients(model, x, y, h=1e-6, rtol=1e-5, atol=1e-8):
    model.train()
    loss, d = nk.softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    grads = [g.copy() for g in model.grads()]
    for p, g in zip(model.params(), grads):
        num = np.empty_like(p)
        for idx in np.ndindex(*p.shape):
            old = p[idx]
            p[idx] = old + h
            lp = _loss(model, x, y)
            p[idx] = old - h
            lm = _loss(model, x, y)
            p[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=rtol, atol=atol)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_gradients_plain_mlp(act):
    rng = np.random.default_rng(0)
    model = _model("none", rng, act=act)
    x = rng.standard_normal((9, 5))
    y = rng.integers(0, 4, 9)
    _check_gradients(model, x, y)


@pytest.mark.parametrize("kind, act", [("batch", "relu"), ("batch", "tanh"), ("layer", "leaky_relu"),
                                       ("layer", "sigmoid")])
def test_gradients_with_norm(kind, act):
    rng = np.random.default_rng(1)
    model = _model(kind, rng, act=act)
    x = rng.standard_normal((11, 5)) * 2 + 1
    y = rng.integers(0, 4, 11)
    # batch norm in training mode updates running stats on every forward: harmless for the gradient
    _check_gradients(model, x, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_matches_numpy(dtype):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((13, 7)).astype(dtype)
    lin = nn.Linear(13, 7, weight=w, dtype=dtype)
    lin.b[...] = rng.standard_normal(7)
    x = rng.standard_normal((5, 13)).astype(dtype)
    y = lin.forward(x)
    assert y.dtype == dtype
    assert_close(y, x.astype(np.float64) @ w + lin.b, dtype=dtype, rtol=1e-4 if dtype == np.float32 else 1e-12)
    d = rng.standard_normal((5, 7)).astype(dtype)
    dx = lin.backward(d)
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {}
    assert_close(lin.dW, x.T.astype(np.float64) @ d, dtype=dtype, **tol)
    assert_close(lin.db, d.sum(0, dtype=np.float64), dtype=dtype, **tol)
    assert_close(dx, d.astype(np.float64) @ w.T, dtype=dtype, **tol)
    with pytest.raises(ValueError, match="^weight"):
        nn.Linear(3, 4, weight=np.zeros((4, 3)))


def test_first_linear_skips_input_gradient():
    rng = np.random.default_rng(3)
    model = _model("none", rng, act="relu")
    assert model.layers[0].input_grad is False
    x = rng.standard_normal((4, 5))
    _, d = nk.softmax_cross_entropy(model.forward(x), rng.integers(0, 4, 4))
    assert model.backward(d) is None


def test_state_roundtrip_and_errors():
    rng = np.random.default_rng(4)
    model = _model("none", rng, act="tanh")
    st = model.state()
    x = rng.standard_normal((3, 5))
    before = model.forward(x).copy()
    for p in model.params():
        p += 1.0
    assert not np.allclose(model.forward(x), before)
    model.load_state(st)
    np.testing.assert_array_equal(model.forward(x), before)
    with pytest.raises(ValueError, match="^state"):
        model.load_state(st[:-1])
    bad = [a.copy() for a in st]
    bad[0] = np.zeros((1, 1))
    snapshot = [p.copy() for p in model.params()]
    with pytest.raises(ValueError, match="^state"):
        model.load_state(bad)
    for p, s in zip(model.params(), snapshot):  # refused: nothing loaded
        np.testing.assert_array_equal(p, s)


def test_evaluate_and_predict_proba():
    rng = np.random.default_rng(5)
    model = _model("none", rng, act="relu")
    x = rng.standard_normal((2500, 5))
    y = rng.integers(0, 4, 2500)
    loss, acc = nn.evaluate(model, x, y, batch_size=1000)
    logits = np.concatenate([model.forward(x[i:i + 700]).copy() for i in range(0, 2500, 700)])
    ref_loss, _ = nk.softmax_cross_entropy(logits, y)
    assert abs(loss - ref_loss) < 1e-12
    assert acc == (logits.argmax(1) == y).mean()
    p = nn.predict_proba(model, x, batch_size=999)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(p.argmax(1), logits.argmax(1))
    assert model.training


def test_minibatches_cover_epoch():
    rng = np.random.default_rng(6)
    batches = list(nn.iterate_minibatches(103, 10, rng))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(103))
    assert len(list(nn.iterate_minibatches(103, 10, rng, drop_last=True))) == 10


@pytest.mark.parametrize("bad", [dict(activation="gelu"), dict(norm="group"), dict(init="orthogonal")])
def test_mlp_rejects_bad_options(bad):
    kw = dict(activation="relu", norm="batch", init="kaiming")
    kw.update(bad)
    with pytest.raises(ValueError, match="^" + next(iter(bad))):
        nn.mlp([4, 8, 3], **kw)
    with pytest.raises(ValueError, match="^sizes"):
        nn.mlp([4])


def test_mlp_structure_and_fusion():
    m = nn.mlp([64, 32, 16, 10], activation="relu", norm="batch", seed=3)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Linear", "BatchNorm", "Linear", "BatchNorm", "Linear"]  # ReLU fused into batch norm
    assert m.layers[0].b is None and m.layers[-1].b is not None
    m2 = nn.mlp([64, 32, 10], activation="tanh", norm="layer", seed=3)
    assert [type(layer).__name__ for layer in m2.layers] == ["Linear", "LayerNorm", "Tanh", "Linear"]
    m3 = nn.mlp([64, 32, 10], activation="sigmoid", norm="none", seed=3)
    assert [type(layer).__name__ for layer in m3.layers] == ["Linear", "Sigmoid", "Linear"]
    # same seed -> same weights; different seed -> different
    a = nn.mlp([64, 32, 10], seed=7).params()
    b = nn.mlp([64, 32, 10], seed=7).params()
    c = nn.mlp([64, 32, 10], seed=8).params()
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a[0], c[0])


def test_batchnorm_eval_uses_running_stats():
    rng = np.random.default_rng(7)
    bn = nn.BatchNorm(3, momentum=0.5, dtype=np.float64)
    x = rng.standard_normal((50, 3)) * 3 + 2
    bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-12)
    bn.training = False
    y = bn.forward(x)
    np.testing.assert_allclose(y, (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5), rtol=1e-10)


def test_ema_tracks_and_swaps():
    rng = np.random.default_rng(8)
    model = _model("none", rng, act="relu")
    ema = nn.EMA(model, decay=0.5)
    start = [p.copy() for p in model.params()]
    for p in model.params():
        p += 2.0
    ema.update()
    for a, s in zip(ema.averages, start):
        np.testing.assert_allclose(a, s + 1.0, rtol=1e-12)
    with ema.applied():
        for p, s in zip(model.params(), start):
            np.testing.assert_allclose(p, s + 1.0, rtol=1e-12)
    for p, s in zip(model.params(), start):
        np.testing.assert_allclose(p, s + 2.0, rtol=1e-12)
    with pytest.raises(ValueError, match="^decay"):
        nn.EMA(model, decay=1.0)


def test_kernel_threads_policy(threads):
    from threadpoolctl import threadpool_limits

    threads(2)
    with nn.kernel_threads(1):
        assert nk.get_num_threads() == 1
    assert nk.get_num_threads() == 2
    with threadpool_limits(2, user_api="blas"):
        if nn.blas_threads() > 1:  # BLAS is multi-threaded: kernels step aside
            with nn.kernel_threads():
                assert nk.get_num_threads() == 1
    with threadpool_limits(1, user_api="blas"):
        assert nn.blas_threads() == 1
        with nn.kernel_threads():
            assert nk.get_num_threads() == 2
    assert nk.get_num_threads() == 2


def test_one_norm_class_each():
    """nnkernels.BatchNorm / LayerNorm are the layer classes of nnkernels.nn (one class per concept), with
    PyTorch's constructor arguments in their order."""
    import nnkernels as nk

    assert nk.BatchNorm is nn.BatchNorm and nk.LayerNorm is nn.LayerNorm
    x = np.random.default_rng(3).standard_normal((16, 4)).astype(np.float64)
    bn = nn.BatchNorm(4, 1e-3, 0.5, False, False, dtype=np.float64)  # eps, momentum, affine, track_running_stats
    assert bn.params() == [] and bn.buffers() == [] and bn.gamma is None
    y = bn.forward(x)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-12, atol=1e-12)
    bn.eval()  # no running statistics: eval normalises with the batch's, as PyTorch does
    np.testing.assert_allclose(bn.forward(x), y, rtol=1e-12, atol=1e-12)
    assert bn.backward(np.ones_like(x)).shape == x.shape
    ln = nn.LayerNorm((4,), 1e-5, False, dtype=np.float64)
    assert ln.params() == [] and ln.forward(x).shape == x.shape and ln.backward(np.ones_like(x)).shape == x.shape
