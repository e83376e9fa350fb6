"""GPU interop: run nnkernels' CUDA kernels on arrays owned by CuPy, PyTorch or Numba.

Arrays are recognised through ``__cuda_array_interface__`` (CuPy, PyTorch CUDA tensors,
Numba device arrays) or DLPack (``__dlpack_device__`` reporting a CUDA device). nnkernels
has no device-array type of its own: results are allocated by the input's library, and
kernels are launched on that library's *current* stream, on the array's device.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from . import _core

_KDL_CUDA = 2
_KDL_CUDA_MANAGED = 13
_DTYPE_CODE = {"<f4": 0, "<f8": 1}


def _cai(x: Any) -> dict:
    """x.__cuda_array_interface__. PyTorch refuses it on tensors that require grad (model parameters):
    read it from a detached alias of the same memory instead."""
    try:
        return x.__cuda_array_interface__
    except Exception:
        if getattr(x, "requires_grad", False) and hasattr(x, "detach"):
            return x.detach().__cuda_array_interface__
        raise


def is_gpu_array(x: Any) -> bool:
    """True for a CUDA array of an external library (never for NumPy arrays)."""
    if type(x) is np.ndarray or x is None:
        return False
    try:
        _cai(x)  # property access may raise on CPU tensors
        return True
    except Exception:  # noqa: BLE001 - any failure means "not a CUDA array"
        pass
    dev = getattr(x, "__dlpack_device__", None)
    if dev is not None:
        try:
            return dev()[0] in (_KDL_CUDA, _KDL_CUDA_MANAGED)
        except Exception:  # noqa: BLE001
            return False
    return False


def cuda_available() -> bool:
    """CUDA kernels compiled in and at least one device visible."""
    return bool(_core.CUDA_COMPILED) and _core.cuda_device_count() > 0


def _library(x: Any) -> str:
    mod = type(x).__module__.split(".")[0]
    if mod in ("cupy", "torch", "numba"):
        return mod
    raise TypeError(f"unsupported GPU array type {type(x).__module__}.{type(x).__name__}; use CuPy, PyTorch or Numba")


def _require_cuda() -> None:
    if not _core.CUDA_COMPILED:
        raise RuntimeError(
            "this nnkernels build has no CUDA kernels (built without nvcc or with NNKERNELS_CUDA=OFF); "
            "rebuild with a CUDA toolkit to use GPU arrays"
        )
    if _core.cuda_device_count() == 0:
        raise RuntimeError("a GPU array was passed but no CUDA device is visible to nnkernels")


def _as_cai_object(x: Any) -> Any:
    """Objects that only speak DLPack are imported through CuPy or PyTorch."""
    try:
        _cai(x)
        return x
    except Exception:  # noqa: BLE001
        pass
    try:
        import cupy

        return cupy.from_dlpack(x)
    except ImportError:
        import torch

        return torch.from_dlpack(x)


def interface(x: Any, name: str) -> dict:
    try:
        cai = _cai(x)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"{name}: expected a CUDA array (CuPy/PyTorch), got {type(x).__name__}") from exc
    if cai["typestr"] not in _DTYPE_CODE:
        raise TypeError(f"{name}: expected a float32 or float64 array, got typestr {cai['typestr']!r}")
    return cai


def dtype_code(cai: dict) -> int:
    return _DTYPE_CODE[cai["typestr"]]


def is_contiguous(cai: dict) -> bool:
    strides = cai.get("strides")
    if strides is None:
        return True
    item = int(cai["typestr"][2:])
    expect = item
    for n, s in zip(reversed(cai["shape"]), reversed(strides)):
        if n != 1 and s != expect:
            return False
        expect *= n
    return True


def empty_like(x: Any) -> Any:
    lib = _library(x)
    if lib == "cupy":
        import cupy

        with x.device:
            return cupy.empty(x.shape, dtype=x.dtype)
    if lib == "torch":
        import torch

        return torch.empty(tuple(x.shape), dtype=x.dtype, device=x.device)
    from numba import cuda

    return cuda.device_array(x.shape, dtype=x.dtype)


def contiguous(x: Any) -> Any:
    lib = _library(x)
    if lib == "cupy":
        import cupy

        with x.device:  # copy on x's device and its current stream (the one the kernel will use)
            return cupy.ascontiguousarray(x)
    if lib == "torch":
        return x.contiguous()
    raise TypeError("non-contiguous Numba device arrays are not supported; pass a contiguous array")


def copy_into(dst: Any, src: Any) -> None:
    lib = _library(dst)
    if lib == "cupy":
        dst[...] = src
    elif lib == "torch":
        import torch

        with torch.no_grad():  # dst may be a parameter that requires grad
            dst.copy_(src)
    else:
        dst.copy_to_device(src)


@contextlib.contextmanager
def on_device(x: Any):
    """Make x's device current for the kernel launch."""
    lib = _library(x)
    if lib == "cupy":
        with x.device:
            yield
    elif lib == "torch":
        import torch

        with torch.cuda.device(x.device):
            yield
    else:
        yield


def current_stream(x: Any) -> int:
    """The library's current stream on x's device, as an integer handle."""
    lib = _library(x)
    if lib == "cupy":
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    if lib == "torch":
        import torch

        return int(torch.cuda.current_stream(x.device).cuda_stream)
    return 0


def device_id(x: Any) -> int | None:
    """CUDA device ordinal of a CuPy array / PyTorch tensor (None when unknown)."""
    try:
        lib = _library(x)
    except TypeError:
        return None
    if lib == "cupy":
        return int(x.device.id)
    if lib == "torch":
        idx = x.device.index
        if idx is None:
            import torch

            idx = torch.cuda.current_device()
        return int(idx)
    return None


def check_same_device(x: Any, name: str, ref: Any, ref_name: str) -> None:
    """Kernels run on ref's device: an array of another GPU would be an illegal access there."""
    d, r = device_id(x), device_id(ref)
    if d is not None and r is not None and d != r:
        raise ValueError(f"{name}: expected an array on the device of {ref_name} (cuda:{r}), got cuda:{d}")


def _byte_range(cai: dict) -> tuple[int, int]:
    n = int(np.prod(cai["shape"], dtype=np.int64))
    p = int(cai["data"][0])
    return p, p + n * int(cai["typestr"][2:])


def overlaps(a: dict, b: dict) -> bool:
    """Contiguous a and b share any memory (the same array included)."""
    (a0, a1), (b0, b1) = _byte_range(a), _byte_range(b)
    return a0 < b1 and b0 < a1


def partially_overlaps(a: dict, b: dict) -> bool:
    """Contiguous a and b share memory without being the same array (in-place on the same pointer is safe)."""
    return _byte_range(a)[0] != _byte_range(b)[0] and overlaps(a, b)


def prepare_inputs(arrays: tuple, names: tuple) -> tuple[list, list]:
    """Contiguous CAI objects for each input plus their interfaces; checks dtype agreement."""
    objs, cais = [], []
    for a, n in zip(arrays, names):
        a = _as_cai_object(a)
        cai = interface(a, n)
        if not is_contiguous(cai):
            a = contiguous(a)
            cai = interface(a, n)
        objs.append(a)
        cais.append(cai)
    for a, n in zip(objs[1:], names[1:]):
        check_same_device(a, n, objs[0], names[0])
    for cai, n in zip(cais[1:], names[1:]):
        if tuple(cai["shape"]) != tuple(cais[0]["shape"]):
            raise ValueError(f"{n}: expected the shape of {names[0]} {tuple(cais[0]['shape'])}, got {tuple(cai['shape'])}")
        if cai["typestr"] != cais[0]["typestr"]:
            raise ValueError(f"{n}: expected the dtype of {names[0]} ({cais[0]['typestr']}), got {cai['typestr']}")
    return objs, cais


def prepare_output(out: Any, like: Any, like_cai: dict, inputs: tuple = ()) -> tuple[Any, Any, dict]:
    """(result to return, array the kernel writes, its interface). An `out` that partially overlaps
    like_cai or one of `inputs` (interfaces) is written through a temporary."""
    if out is None:
        res = empty_like(like)
        return res, res, interface(res, "out")
    if not is_gpu_array(out):
        raise TypeError(f"out: expected a CUDA array like the input, got {type(out).__name__}")
    cai = interface(out, "out")
    if tuple(cai["shape"]) != tuple(like_cai["shape"]):
        raise ValueError(f"out: expected shape {tuple(like_cai['shape'])}, got {tuple(cai['shape'])}")
    if cai["typestr"] != like_cai["typestr"]:
        raise ValueError(f"out: expected dtype {like_cai['typestr']}, got {cai['typestr']}")
    if cai["data"][1]:
        raise ValueError("out: array is read-only")
    check_same_device(out, "out", like, "the input")
    if is_contiguous(cai) and not any(partially_overlaps(cai, c) for c in (like_cai, *inputs)):
        return out, out, cai
    tmp = empty_like(like)
    return out, tmp, interface(tmp, "out")


def interface_ptr(x: Any) -> int:
    """Device pointer of a contiguous CUDA array of any dtype (workspaces, integer labels)."""
    return int(_cai(x)["data"][0])


# ---------------------------------------------------------------- host copies
def to_host(x: Any) -> np.ndarray:
    """Copy a device array to a NumPy array (synchronising)."""
    lib = _library(x)
    if lib == "cupy":
        import cupy

        return cupy.asnumpy(x)
    if lib == "torch":
        return x.detach().cpu().numpy()
    return x.copy_to_host()


def init_fill(out: Any, shape: tuple, dtype: np.dtype, dist: int, seed: int, a: float, b: float) -> Any:
    """Fill a CUDA array with nnkernels' Philox numbers (csrc/cuda/init.cu), bit-identical to the CPU."""
    _require_cuda()
    obj = _as_cai_object(out)
    cai = interface(obj, "out")
    if tuple(cai["shape"]) != tuple(shape):
        raise ValueError(f"out: expected shape {tuple(shape)}, got {tuple(cai['shape'])}")
    if cai["typestr"] != np.dtype(dtype).str:
        raise ValueError(f"out: expected dtype {np.dtype(dtype)}, got {cai['typestr']}")
    if cai["data"][1]:
        raise ValueError("out: array is read-only")
    target = obj if is_contiguous(cai) else empty_like(obj)
    tcai = interface(target, "out")
    n = int(np.prod(shape, dtype=np.int64))
    with on_device(obj):
        _core.cuda_init_fill(tcai["data"][0], n, dtype_code(tcai), dist, seed, float(a), float(b), current_stream(obj))
    if target is not obj:
        copy_into(obj, target)
    return out


# ---------------------------------------------------------------- preprocessing (csrc/cuda/preprocessing.cu)

def _matrix(X: Any, name: str = "X") -> tuple:
    """(contiguous CAI object, interface, rows, cols) of a 2-D CUDA array."""
    _require_cuda()
    (obj,), (cai,) = prepare_inputs((X,), (name,))
    shape = tuple(cai["shape"])
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a 2-D array, got {len(shape)}-D")
    return obj, cai, int(shape[0]), int(shape[1])


def prep_col_stats(X: Any) -> tuple:
    """(mean, M2, min, max) of the columns of a 2-D CUDA array, as float64 NumPy arrays."""
    obj, cai, rows, cols = _matrix(X)
    with on_device(obj):
        return _core.cuda_prep_col_stats(cai["data"][0], rows, cols, dtype_code(cai), current_stream(obj))


def prep_affine(X: Any, shift, scale, offset) -> Any:
    """(X - shift) * scale + offset per column on the GPU; a new array of X's library."""
    obj, cai, rows, cols = _matrix(X)
    out = empty_like(obj)
    ocai = interface(out, "out")
    with on_device(obj):
        _core.cuda_prep_affine(cai["data"][0], ocai["data"][0], rows, cols, dtype_code(cai),
                               np.asarray(shift, np.float64), np.asarray(scale, np.float64),
                               None if offset is None else np.asarray(offset, np.float64), current_stream(obj))
    return out


def prep_normalize(X: Any, norm: str) -> tuple:
    """Rows of a 2-D CUDA array scaled to unit norm: (new array, norms as NumPy float64)."""
    obj, cai, rows, cols = _matrix(X)
    out = empty_like(obj)
    ocai = interface(out, "out")
    with on_device(obj):
        norms = _core.cuda_prep_normalize(cai["data"][0], ocai["data"][0], rows, cols, dtype_code(cai), norm,
                                          current_stream(obj))
    return out, norms


def clip_(x: Any, lo: float, hi: float) -> None:
    lib = _library(x)
    if lib == "torch":
        x.clamp_(lo, hi)
    elif lib == "cupy":
        import cupy

        cupy.clip(x, lo, hi, out=x)
    else:
        raise TypeError("clip is not supported for Numba device arrays")
