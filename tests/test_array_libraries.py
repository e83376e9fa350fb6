"""Array-library semantics of every op's operands (csrc/core/operand.hpp), on the activations as the example
(the op registry, tests/test_bad_input.py, runs every op in every library): what goes in, what comes out.
"""
from __future__ import annotations

import numpy as np
import pytest

import nnkernels as nk

torch = pytest.importorskip("torch")


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_torch_in_torch_out_bitwise():
    x = _x(5, 7)
    y = nk.tanh(torch.from_numpy(x))
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and tuple(y.shape) == (5, 7)
    np.testing.assert_array_equal(y.numpy(), nk.tanh(x))


def test_torch_cpu_is_zero_copy_both_ways():
    x = _x(64)
    t = torch.from_numpy(x.copy())
    out = torch.empty(64)
    assert nk.relu(t, out=out) is out  # written in place and returned
    np.testing.assert_array_equal(out.numpy(), nk.relu(x))
    nk.relu(t, out=t)  # in place on the tensor's own memory
    np.testing.assert_array_equal(t.numpy(), np.maximum(x, 0))


def test_strided_and_transposed_tensors():
    base = torch.from_numpy(_x(9, 12))
    for t in (base[1:, ::3], base.t(), base[::2, 1::5].t()):
        np.testing.assert_array_equal(nk.sigmoid(t).numpy(), nk.sigmoid(t.numpy()))


def test_parameter_requiring_grad_is_data():
    p = torch.nn.Parameter(torch.from_numpy(_x(6)))
    y = nk.relu(p)
    assert isinstance(y, torch.Tensor) and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), nk.relu(p.detach().numpy()))
    nk.relu(p, out=p)  # like torch.optim's in-place updates of a leaf
    assert (p.detach().numpy() >= 0).all()


def test_negative_bit_tensor_is_read_with_its_sign():
    c = torch.tensor([1 + 2j, 3 - 4j]).conj().imag  # a lazily negated view: [-2, 4]
    assert c.is_neg()
    np.testing.assert_array_equal(nk.relu(c).numpy(), [0.0, 4.0])


def test_mixing_numpy_and_torch_follows_the_main_input():
    d, x = _x(8), _x(8, seed=1)
    a = nk.relu_backward(torch.from_numpy(d), x)
    b = nk.relu_backward(d, torch.from_numpy(x))
    assert isinstance(a, torch.Tensor) and isinstance(b, np.ndarray)
    np.testing.assert_array_equal(a.numpy(), b)


def test_refusals_name_the_argument_like_numpy():
    with pytest.raises(TypeError, match="^x: expected a float32, float64, float16 or bfloat16 array, got dtype int64"):
        nk.relu(torch.arange(3))
    with pytest.raises(TypeError, match="^x: expected a float32, float64, float16 or bfloat16 array, got dtype complex64"):
        nk.relu(torch.ones(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match="^x: expected a dense"):
        nk.relu(torch.ones(3).to_sparse())
    with pytest.raises(TypeError, match="^x: expected a CPU or CUDA tensor, got one on meta"):
        nk.relu(torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match=r"^out: expected shape \(4,\), got \(3,\)"):
        nk.relu(torch.ones(4), out=torch.empty(3))
    with pytest.raises(ValueError, match="^out: expected dtype float32, got float64"):
        nk.relu(torch.ones(4), out=torch.empty(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="^out: elements overlap"):
        nk.relu(torch.ones(4), out=torch.empty(1).expand(4))


class _DLPackOnly:
    """A host DLPack producer that is neither NumPy nor torch (as JAX arrays are): read-only data."""

    def __init__(self, a):
        self._a = a
        self._a.flags.writeable = False

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_other_dlpack_producers_give_numpy():
    x = _x(10)
    y = nk.tanh(_DLPackOnly(x.copy()))
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, nk.tanh(x))
    with pytest.raises(ValueError, match="^out: array is read-only"):
        nk.tanh(x, out=_DLPackOnly(np.empty(10, np.float32)))


@pytest.mark.skipif(nk.build_info()["cuda_compiled"], reason="checks the message of a build without CUDA")
def test_cuda_array_without_cuda_build_is_a_clear_error():
    class FakeCuda:  # a __cuda_array_interface__ exporter presenting itself as CuPy
        __module__ = "cupy._core.core"
        __cuda_array_interface__ = {"data": (256, False), "shape": (4,), "strides": None, "typestr": "<f4",
                                    "version": 3}

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(RuntimeError, match="^x: a CUDA array was passed, but this nnkernels build has no CUDA"):
        nk.relu(FakeCuda())
