"""nnkernels.torch: the custom operators (opcheck, autograd, gradcheck) and the functional API
against torch.nn.functional. Modules: tests/test_torch_modules.py; optimizers: test_torch_optim.py;
synchronized batch norm: test_torch_distributed.py."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nnkernels as nk  # noqa: E402
import nnkernels.torch as nkt  # noqa: E402
from nnkernels.torch import functional as NF  # noqa: E402
from isolated import assert_clean_exit, run_isolated  # noqa: E402

TF = torch.nn.functional
OPS = torch.ops.nnkernels
F64 = dict(dtype=torch.float64)
FWD, BWD = dict(rtol=1e-10, atol=1e-12), dict(rtol=1e-8, atol=1e-10)


def _x(*shape, seed=0, offset=0.0, dtype=torch.float64, grad=True):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) + offset).requires_grad_(grad)


def _grads(out, inputs, seed=1):
    """Gradients of sum(out * random) with respect to inputs (None entries stay None)."""
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    wanted = [t for t in inputs if t is not None]
    return torch.autograd.grad(out, wanted, g)


def _close_grads(ours, theirs, inputs):
    a, b = _grads(ours, inputs), _grads(theirs, inputs)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, **BWD)


def test_import_without_torch_says_to_install_the_extra():
    r = run_isolated("""
        import sys
        sys.modules["torch"] = None   # as if PyTorch were not installed
        import nnkernels               # the package itself does not need torch
        try:
            import nnkernels.torch
        except ImportError as e:
            print("ImportError:", e)
    """)
    assert_clean_exit(r)
    assert 'pip install "nnkernels[torch]"' in r.stdout and "torch extra" in r.stdout


# ----------------------------------------------------------------------------- functional vs torch
@pytest.mark.parametrize("shape,normalized", [((7, 33), (33,)), ((2, 3, 17), (3, 17)), ((1,), (1,)), ((5, 1), (1,))])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm_matches_torch(shape, normalized, affine):
    x = _x(*shape, offset=1e4)  # a large mean: the statistics are two-pass
    w = _x(*normalized, seed=2) if affine != "none" else None
    b = _x(*normalized, seed=3) if affine == "both" else None
    ours, theirs = NF.layer_norm(x, normalized, w, b, 1e-5), TF.layer_norm(x, normalized, w, b, 1e-5)
    torch.testing.assert_close(ours, theirs, **FWD)
    _close_grads(ours, theirs, (x, w, b))


@pytest.mark.parametrize("slope", [None, 0.2])
def test_fused_layer_norm_relu_matches_unfused_torch(slope):
    x, w, b = _x(9, 31), _x(31, seed=2), _x(31, seed=3)
    ours = NF.layer_norm_relu(x, (31,), w, b, negative_slope=slope)
    ln = TF.layer_norm(x, (31,), w, b)
    theirs = TF.relu(ln) if slope is None else TF.leaky_relu(ln, slope)
    torch.testing.assert_close(ours, theirs, **FWD)
    _close_grads(ours, theirs, (x, w, b))


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 7), (2, 3, 4, 5), (2, 1)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(shape, training):
    c = shape[1]
    x, w, b = _x(*shape, offset=1e4), _x(c, seed=2), _x(c, seed=3)
    rm1, rv1 = torch.randn(c, **F64), torch.rand(c, **F64) + 0.5
    rm2, rv2 = rm1.clone(), rv1.clone()
    ours = NF.batch_norm(x, rm1, rv1, w, b, training, 0.3, 1e-5)
    theirs = TF.batch_norm(x, rm2, rv2, w, b, training, 0.3, 1e-5)
    torch.testing.assert_close(ours, theirs, **FWD)
    torch.testing.assert_close(rm1, rm2, **FWD)
    torch.testing.assert_close(rv1, rv2, **FWD)
    _close_grads(ours, theirs, (x, w, b))


def test_batch_norm_without_running_stats_or_affine():
    x = _x(12, 4, 3)
    ours, theirs = NF.batch_norm(x, None, None, training=True), TF.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(ours, theirs, **FWD)
    _close_grads(ours, theirs, (x,))
    b = _x(4, seed=3)  # bias without weight
    ours, theirs = NF.batch_norm(x, None, None, None, b, True), TF.batch_norm(x, None, None, None, b, True)
    _close_grads(ours, theirs, (x, b))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("slope", [None, 0.1])
def test_fused_batch_norm_relu_matches_unfused_torch(training, slope):
    x, w, b = _x(10, 6, 3), _x(6, seed=2), _x(6, seed=3)
    rm, rv = torch.zeros(6, **F64), torch.ones(6, **F64)
    ours = NF.batch_norm_relu(x, rm.clone(), rv.clone(), w, b, training, negative_slope=slope)
    bn = TF.batch_norm(x, rm.clone(), rv.clone(), w, b, training)
    theirs = TF.relu(bn) if slope is None else TF.leaky_relu(bn, slope)
    torch.testing.assert_close(ours, theirs, **FWD)
    _close_grads(ours, theirs, (x, w, b))


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("shape", [(), (0,), (1,), (17,), (3, 5, 7)])
def test_activations_match_torch(name, shape):
    x = _x(*shape) * 3
    x = x.detach().requires_grad_()
    ours, theirs = getattr(NF, name)(x), getattr(TF, name)(x)
    torch.testing.assert_close(ours, theirs, **FWD)
    if x.numel():
        _close_grads(ours, theirs, (x,))


def test_activations_of_strided_views_and_negative_slope():
    base = _x(6, 8)
    x = base.t()[::2]  # a strided, transposed view
    torch.testing.assert_close(NF.relu(x), TF.relu(x), **FWD)
    ours, theirs = NF.leaky_relu(x, -0.5), TF.leaky_relu(x, -0.5)  # a negative slope differentiates from x
    torch.testing.assert_close(ours, theirs, **FWD)
    _close_grads(ours, theirs, (base,))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch(reduction):
    logits = _x(13, 7, offset=100.0)  # stable for large logits
    target = torch.randint(0, 7, (13,), generator=torch.Generator().manual_seed(4))
    ours, theirs = NF.cross_entropy(logits, target, reduction=reduction), TF.cross_entropy(logits, target,
                                                                                           reduction=reduction)
    torch.testing.assert_close(ours, theirs, **FWD)
    assert ours.dtype == logits.dtype and ours.shape == ()
    _close_grads(ours, theirs, (logits,))


@pytest.mark.parametrize("kw,match", [
    (dict(reduction="none"), "^reduction"), (dict(label_smoothing=0.1), "^label_smoothing"),
    (dict(weight=torch.ones(3)), "^weight"),
])
def test_cross_entropy_unsupported_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        NF.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), **kw)
    with pytest.raises(ValueError, match="^target"):
        NF.cross_entropy(torch.zeros(2, 3), torch.zeros(2, 3))


def test_bad_input_is_refused_by_the_kernels_with_their_messages():
    with pytest.raises(ValueError, match="^labels"):
        NF.cross_entropy(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="^normalized_shape"):
        NF.layer_norm(torch.zeros(2, 3), (4,))
    with pytest.raises(TypeError, match="^x: expected a float32, float64, float16 or bfloat16"):  # the kernel's own
        NF.relu(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="^x: expected a float32, float64, float16 or bfloat16"):  # norms: the kernel's
        NF.layer_norm(torch.zeros(2, 3, dtype=torch.int64), (3,))
    with pytest.raises(ValueError, match=r"^gamma: expected float32 or bfloat16 \(the dtype of x\) for bfloat16 x"):
        NF.layer_norm(torch.zeros(2, 3, dtype=torch.bfloat16), (3,), torch.ones(3, **F64))
    x = torch.ones(1, 3)  # one value per channel: no batch variance (as torch refuses)
    rm, rv = torch.zeros(3), torch.ones(3)
    with pytest.raises(ValueError):
        NF.batch_norm(x, rm, rv, training=True)
    assert (rm == 0).all() and (rv == 1).all()  # nothing written


def test_second_derivatives_raise():
    x = _x(4, 5)
    y = NF.tanh(x)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        g.sum().backward()
    logits = _x(3, 4)
    loss = NF.cross_entropy(logits, torch.tensor([0, 1, 2]))
    (g,) = torch.autograd.grad(loss, logits, create_graph=True)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        g.sum().backward()


def test_float32_matches_torch_and_results_are_tensors():
    x = _x(64, 100, dtype=torch.float32)
    w, b = torch.rand(100) + 0.5, torch.randn(100)
    y = NF.layer_norm(x, (100,), w, b)
    assert type(y) is torch.Tensor and y.dtype == torch.float32 and y.is_contiguous()
    torch.testing.assert_close(y, TF.layer_norm(x, (100,), w, b), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- 16-bit storage (issue 15)
# torch.bfloat16 / float16 tensors: float32 arithmetic, the output in the input's dtype, weight/bias
# (and running statistics) in the input's dtype or float32 (mixed, as torch's CPU kernels allow),
# their gradients in their own dtype. Compared with float64 torch on the same (upcast) values.
HALF = [torch.bfloat16, torch.float16]
HTOL = {torch.bfloat16: dict(rtol=1.6e-2, atol=2e-2), torch.float16: dict(rtol=2e-3, atol=2e-3),
        torch.float32: dict(rtol=1e-4, atol=1e-4)}


def _h(*shape, seed=0, dtype=torch.bfloat16, offset=0.0):
    return _x(*shape, seed=seed, offset=offset, grad=False).to(dtype).requires_grad_()


def _f64_twins(*ts):
    return [None if t is None else t.detach().double().requires_grad_() for t in ts]


def _check_half(ours, ref, inputs, ref_inputs, scale=1.0):
    """ours (16-bit) against the float64 computation on the same values: the output, and the
    gradients (for the same upstream gradient, 16-bit values) of each input in its dtype."""
    assert ours.dtype == inputs[0].dtype
    torch.testing.assert_close(ours.double(), ref, **HTOL[ours.dtype])
    g = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1)).to(ours.dtype)
    wanted = [t for t in inputs if t is not None]
    grads = torch.autograd.grad(ours, wanted, g)
    ref_grads = torch.autograd.grad(ref, [t for t in ref_inputs if t is not None], g.double())
    for gr, rg, t in zip(grads, ref_grads, wanted):
        assert gr.dtype == t.dtype and gr.shape == t.shape
        tol = dict(HTOL[t.dtype])
        tol["atol"] *= scale
        torch.testing.assert_close(gr.double(), rg, **tol)


@pytest.mark.parametrize("wdtype", ["input", "float32"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("act", ["none", "relu"])
def test_layer_norm_16bit(dtype, wdtype, act):
    wdt = dtype if wdtype == "input" else torch.float32
    x, w, b = _h(13, 67, dtype=dtype, offset=2.0), _h(67, seed=2, dtype=wdt), _h(67, seed=3, dtype=wdt)
    x64, w64, b64 = _f64_twins(x, w, b)
    if act == "none":
        ours, ref = NF.layer_norm(x, (67,), w, b), TF.layer_norm(x64, (67,), w64, b64)
    else:
        ours, ref = NF.layer_norm_relu(x, (67,), w, b), TF.relu(TF.layer_norm(x64, (67,), w64, b64))
    _check_half(ours, ref, (x, w, b), (x64, w64, b64), scale=4.0)
    theirs = TF.layer_norm(x, (67,), w, b)  # torch's own 16-bit kernel: the same dtypes
    assert theirs.dtype == ours.dtype
    _, mean, rstd = OPS.layer_norm(x, w, b, 1e-5, "none", 0.0)
    assert mean.dtype == rstd.dtype == torch.float32


@pytest.mark.parametrize("pdtype", ["input", "float32"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 7)])
def test_batch_norm_16bit(shape, training, dtype, pdtype):
    c = shape[1]
    pdt = dtype if pdtype == "input" else torch.float32
    x, w, b = _h(*shape, dtype=dtype, offset=3.0), _h(c, seed=2, dtype=pdt), _h(c, seed=3, dtype=pdt)
    rm, rv = (torch.randn(c) * 0.1 + 3).to(pdt), (torch.rand(c) + 0.5).to(pdt)
    rm64, rv64 = rm.double(), rv.double()
    x64, w64, b64 = _f64_twins(x, w, b)
    ours = NF.batch_norm_relu(x, rm, rv, w, b, training, 0.3)
    ref = TF.relu(TF.batch_norm(x64, rm64, rv64, w64, b64, training, 0.3))
    _check_half(ours, ref, (x, w, b), (x64, w64, b64), scale=float(np.sqrt(x.numel() / c)))
    assert rm.dtype == pdt  # updated in place in their own dtype (from float32 sums)
    torch.testing.assert_close(rm.double(), rm64, **HTOL[pdt])
    torch.testing.assert_close(rv.double(), rv64, **HTOL[pdt])


def test_16bit_eager_and_operator_paths_agree_bitwise():
    x, w, b = _h(6, 5), _h(5, seed=2, dtype=torch.float32), _h(5, seed=3, dtype=torch.float32)
    dy = torch.randn(6, 5, generator=torch.Generator().manual_seed(7)).to(torch.bfloat16)
    for eager, traced in ((NF.layer_norm_relu(x, (5,), w, b), OPS.layer_norm(x, w, b, 1e-5, "relu", 0.0)[0]),
                          (NF.batch_norm(x, None, None, w, b, training=True),
                           OPS.batch_norm(x, w, b, None, None, True, 0.1, 1e-5, "none", 0.0)[0])):
        assert eager.dtype == traced.dtype == torch.bfloat16
        assert torch.equal(eager.view(torch.int16), traced.view(torch.int16))
        for u, v in zip(torch.autograd.grad(eager, (x, w, b), dy), torch.autograd.grad(traced, (x, w, b), dy)):
            assert u.dtype == v.dtype and torch.equal(u, v)


# ----------------------------------------------------------------------------- opcheck, gradcheck
def _opcheck_cases():
    x, w, b = _x(6, 5), _x(5, seed=2), _x(5, seed=3)
    x4 = _x(3, 5, 2, 2, seed=4)
    rm, rv = torch.zeros(5, **F64), torch.ones(5, **F64)
    logits, target = _x(4, 6, seed=5), torch.tensor([0, 5, 2, 2])
    return [
        ("layer_norm", OPS.layer_norm, (x, w, b, 1e-5, "none", 0.0)),
        ("layer_norm_relu_no_affine", OPS.layer_norm, (x, None, None, 1e-5, "relu", 0.0)),
        ("batch_norm_train", OPS.batch_norm, (x4, w, b, rm, rv, True, 0.1, 1e-5, "none", 0.0)),
        ("batch_norm_eval_leaky", OPS.batch_norm, (x, w, None, rm, rv, False, 0.1, 1e-5, "leaky_relu", 0.1)),
        ("batch_norm_no_stats", OPS.batch_norm, (x, None, None, None, None, True, 0.1, 1e-5, "none", 0.0)),
        ("relu", OPS.relu, (x,)), ("leaky_relu", OPS.leaky_relu, (x, 0.2)), ("tanh", OPS.tanh, (x,)),
        ("sigmoid", OPS.sigmoid, (x,)), ("softmax_cross_entropy", OPS.softmax_cross_entropy, (logits, target)),
    ] + _opcheck_16bit_cases()


def _opcheck_16bit_cases():
    """The norm operators on 16-bit tensors: the fake implementations' dtypes (float32 statistics,
    gradients in the weight's dtype) are checked against the real ones."""
    x, x4 = _h(6, 5), _h(3, 5, 2, 2, seed=4, dtype=torch.float16)
    w32, b16 = _h(5, seed=2, dtype=torch.float32), _h(5, seed=3)
    w16h = _h(5, seed=2, dtype=torch.float16)
    rm, rv = torch.zeros(5), torch.ones(5)
    return [
        ("layer_norm_bf16_mixed", OPS.layer_norm, (x, w32, None, 1e-5, "relu", 0.0)),
        ("layer_norm_bf16", OPS.layer_norm, (x, b16, b16, 1e-5, "none", 0.0)),
        ("batch_norm_f16_train", OPS.batch_norm, (x4, w16h, None, rm, rv, True, 0.1, 1e-5, "none", 0.0)),
        ("batch_norm_bf16_eval", OPS.batch_norm, (x, w32, _h(5, seed=3, dtype=torch.float32), rm, rv, False, 0.1, 1e-5, "relu", 0.0)),
    ]


@pytest.mark.parametrize("case", _opcheck_cases(), ids=lambda c: c[0])
def test_opcheck(case):
    _, op, args = case
    torch.library.opcheck(op.default, args)


def test_opcheck_backward_ops():
    x, w = _x(6, 5, grad=False), _x(5, seed=2, grad=False)
    dy = _x(6, 5, seed=7, grad=False)
    y, mean, rstd = OPS.layer_norm(x, w, None, 1e-5, "relu", 0.0)
    torch.library.opcheck(OPS.layer_norm_backward, (dy, x, w, mean, rstd, y, "relu", 0.0))
    y, mean, rstd, _, _ = OPS.batch_norm(x, w, None, None, None, True, 0.1, 1e-5, "none", 0.0)
    torch.library.opcheck(OPS.batch_norm_backward, (dy, x, w, mean, rstd, None, True, "none", 0.0))
    torch.library.opcheck(OPS.batch_norm_backward, (dy, x, w, mean, rstd, None, False, "none", 0.0))
    for name in ("relu_backward", "tanh_backward", "sigmoid_backward"):
        torch.library.opcheck(getattr(OPS, name), (dy, x))
    torch.library.opcheck(OPS.leaky_relu_backward, (dy, x, 0.1))
    torch.library.opcheck(OPS.softmax_cross_entropy_backward, (dy, torch.tensor(0.5, **F64), x))


def test_eager_path_and_operator_path_agree_bitwise():
    """functional's eager autograd.Function and torch.ops.nnkernels.* run the same implementation
    and formula: outputs and gradients are identical."""
    x, w, b = _x(6, 5), _x(5, seed=2), _x(5, seed=3)
    dy = _x(6, 5, seed=7, grad=False)
    eager = NF.layer_norm_relu(x, (5,), w, b)
    traced = OPS.layer_norm(x, w, b, 1e-5, "relu", 0.0)[0]
    assert type(eager.grad_fn).__name__ != type(traced.grad_fn).__name__  # really two paths
    torch.testing.assert_close(eager, traced, rtol=0, atol=0)
    for u, v in zip(torch.autograd.grad(eager, (x, w, b), dy), torch.autograd.grad(traced, (x, w, b), dy)):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


@pytest.mark.parametrize("fn", [
    lambda x, w, b: NF.layer_norm(x, (5,), w, b),
    lambda x, w, b: NF.layer_norm_relu(x, (5,), w, b, negative_slope=0.3),
    lambda x, w, b: NF.batch_norm(x, None, None, w, b, training=True),
    lambda x, w, b: NF.batch_norm_relu(x, torch.zeros(5, **F64), torch.ones(5, **F64), w, b, training=False),
    lambda x, w, b: NF.leaky_relu(x, 0.1) * w,
    lambda x, w, b: NF.tanh(x) + NF.sigmoid(x) * b,
], ids=["layer_norm", "layer_norm_leaky", "batch_norm_train", "batch_norm_relu_eval", "leaky_relu",
        "tanh_sigmoid"])
def test_gradcheck(fn):
    # Away from the ReLU kink: finite differences across it are meaningless.
    x = _x(7, 5) + 0.05 * torch.sign(_x(7, 5, seed=9, grad=False))
    x = x.detach().requires_grad_()
    w, b = _x(5, seed=2), _x(5, seed=3)
    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-6)


def test_gradcheck_cross_entropy():
    logits, target = _x(5, 4), torch.tensor([3, 0, 1, 1, 2])
    assert torch.autograd.gradcheck(lambda z: NF.cross_entropy(z, target), (logits,), eps=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- zero-copy, CUDA
def test_cpu_tensors_are_shared_not_copied():
    """The kernels read and write a CPU tensor's own memory (no NumPy bridge, no copy): an in-place
    call writes the tensor itself, and a fresh result is a tensor over nnkernels' result block."""
    t = torch.arange(-3.0, 3.0).reshape(2, 3)
    ptr = t.data_ptr()
    assert nk.relu(t, out=t) is t and t.data_ptr() == ptr
    assert torch.equal(t, torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]]))
    view = t.t()  # a strided view: read in place
    y = nk.tanh(view)
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, torch.tanh(view))


CUDA = torch.cuda.is_available() and nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no GPU (CUDA build + device + PyTorch CUDA)")
def test_cuda_tensors_run_the_cuda_kernels_and_match_cpu():
    x, w, b = _x(64, 33, dtype=torch.float32, grad=False), torch.rand(33) + 0.5, torch.randn(33)
    for fn in (lambda x, w, b: NF.layer_norm_relu(x, (33,), w, b),
               lambda x, w, b: NF.batch_norm(x, None, None, w, b, True),
               lambda x, w, b: NF.sigmoid(x) * w):
        xc, wc, bc = (t.cuda().requires_grad_() for t in (x, w, b))
        xh, wh, bh = (t.clone().requires_grad_() for t in (x, w, b))
        yc, yh = fn(xc, wc, bc), fn(xh, wh, bh)
        assert yc.is_cuda
        torch.testing.assert_close(yc.cpu(), yh, rtol=1e-5, atol=1e-5)
        yc.sum().backward()
        yh.sum().backward()
        for c, h in ((xc, xh), (wc, wh), (bc, bh)):
            torch.testing.assert_close(c.grad.cpu(), h.grad, rtol=1e-4, atol=1e-4)
    for name, op, args in _opcheck_cases():
        torch.library.opcheck(op.default, tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_cross_entropy_16bit_logits(dtype):
    """float16/bfloat16 logits (issue 15): the loss a 0-d tensor of the logits' dtype, the gradient the
    kernel's dlogits in that dtype (float32 arithmetic, one rounding), bitwise the NumPy call on the
    same values; close to torch's own cross_entropy on the 16-bit tensor."""
    import ml_dtypes

    logits = (torch.randn(37, 11, generator=torch.Generator().manual_seed(7)) * 3).to(dtype).requires_grad_()
    target = torch.randint(0, 11, (37,), generator=torch.Generator().manual_seed(8))
    loss = NF.cross_entropy(logits, target)
    loss.backward()
    assert loss.dtype == dtype and logits.grad.dtype == dtype
    npdt = ml_dtypes.bfloat16 if dtype == torch.bfloat16 else np.float16
    x = logits.detach().view(torch.int16).numpy().view(npdt)
    ref_loss, ref_d = nk.softmax_cross_entropy(x, target.numpy())
    assert loss.item() == float(torch.tensor(ref_loss, dtype=dtype))
    np.testing.assert_array_equal(logits.grad.view(torch.int16).numpy(), ref_d.view(np.int16))
    theirs = TF.cross_entropy(logits.detach().float(), target)
    torch.testing.assert_close(loss.float(), theirs, rtol=1e-2, atol=1e-2)
