"""The array libraries nnkernels runs on, one small adapter each (called from C++, csrc/core/operand.cpp).

Every op takes its arrays from the caller's library and validates and dispatches them in C++; what the C++
side cannot do by itself for a GPU library is asked here: allocate a result (on the input's device, by its
library's allocator), make a device copy (contiguous, or int64 labels), and name the library's current stream on a
device (the kernels are launched on it, so they order with the caller's own work). None of these copies between
host and device or synchronises. NumPy and torch CPU tensors need no adapter (the C++ side reads and writes them
zero-copy); other DLPack producers on the CPU are imported by ``numpy.from_dlpack``.

The last sections serve code above the ops that moves data between host and device on purpose: nnkernels.optim
(state arrays next to each parameter, and the host copies of a state_dict, which copy between host and device by
definition) and the scikit-learn estimators of nnkernels.preprocessing (NumPy fitted attributes, GPU transforms),
so that no other module knows library names.
"""
from __future__ import annotations

from typing import Any


def _library(x: Any) -> str:
    mod = type(x).__module__.split(".", 1)[0]
    if mod in ("torch", "cupy"):
        return mod
    raise TypeError(f"GPU arrays must be CuPy arrays or PyTorch tensors, got {type(x).__module__}.{type(x).__name__}")


def empty(like: Any, shape: tuple, dtype: str) -> Any:
    """A new uninitialised C-contiguous array of `shape` and `dtype` (a NumPy dtype name) on like's device, made by
    like's library."""
    if _library(like) == "torch":
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype), device=like.device)
    import cupy

    with like.device:
        return cupy.empty(shape, dtype=dtype)


def contiguous_copy(x: Any) -> Any:
    """A C-contiguous copy of x on its device (on the library's current stream)."""
    if _library(x) == "torch":
        return x.detach().clone(memory_format=__import__("torch").contiguous_format)
    import cupy

    with x.device:
        return cupy.array(x, order="C", copy=True)


def int64_copy(x: Any) -> Any:
    """x converted to int64, C-contiguous, on its device (labels of any integer dtype)."""
    if _library(x) == "torch":
        import torch

        return x.detach().to(dtype=torch.int64, memory_format=torch.contiguous_format, copy=True)
    import cupy

    with x.device:
        return cupy.array(x, dtype=cupy.int64, order="C", copy=True)


def current_stream(x: Any, device: int) -> int:
    """The library's current stream on CUDA device `device`, as an integer handle."""
    if _library(x) == "torch":
        import torch

        return int(torch.cuda.current_stream(device).cuda_stream)
    import cupy

    with cupy.cuda.Device(device):
        return int(cupy.cuda.get_current_stream().ptr)


def copy_into(dst: Any, src: Any) -> None:
    """dst[...] = src on the device (a strided `out` written through a contiguous temporary)."""
    if _library(dst) == "torch":
        import torch

        with torch.no_grad():  # dst may be a parameter that requires grad
            dst.copy_(src)
    else:
        dst[...] = src


# --------------------------------------------------------------------------- optimizer state (nnkernels.optim)
# The state arrays an optimizer object keeps next to each parameter, and the host copies of its
# state_dict / load_state_dict. These run outside any op (at construction and for persistence);
# to_numpy and copy_from_numpy are the only adapters that copy between host and device, because
# a state_dict is host data by definition. NumPy arrays are handled here too, so that
# nnkernels.optim never branches on the library.
def _library_or_numpy(x: Any) -> str:
    import numpy as np

    return "numpy" if isinstance(x, np.ndarray) else _library(x)


def full_like(x: Any, fill: float, dtype: str | None = None) -> Any:
    """A new C-contiguous array of x's shape and dtype (or `dtype`, a NumPy dtype name: float32 states of
    16-bit parameters) filled with `fill`, by x's library on x's device (not requiring grad)."""
    lib = _library_or_numpy(x)
    if lib == "numpy":
        import numpy as np

        return np.full(x.shape, fill, dtype=x.dtype if dtype is None else dtype)
    if lib == "torch":
        import torch

        return torch.full(tuple(x.shape), fill, dtype=x.dtype if dtype is None else getattr(torch, dtype),
                          device=x.device)
    import cupy

    with x.device:
        return cupy.full(x.shape, fill, dtype=x.dtype if dtype is None else dtype)


def astype_copy(x: Any, dtype: str) -> Any:
    """A new C-contiguous copy of x converted to `dtype` (a NumPy dtype name), by x's library on x's device, not
    requiring grad (float32 master copies of 16-bit parameters: an exact widening)."""
    lib = _library_or_numpy(x)
    if lib == "numpy":
        import numpy as np

        return np.array(x, dtype=dtype, order="C", copy=True)
    if lib == "torch":
        import torch

        return x.detach().to(dtype=getattr(torch, dtype), memory_format=torch.contiguous_format, copy=True)
    import cupy

    with x.device:
        return cupy.array(x, dtype=dtype, order="C", copy=True)


def as_dtype(dtype: Any) -> Any:
    """numpy.dtype(dtype), also for the name "bfloat16" before ml_dtypes is imported (nnkernels imports
    it only when bfloat16 is asked for: importing ml_dtypes 0.7 takes about a second)."""
    import numpy as np

    if isinstance(dtype, str) and dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def numpy_dtype(x: Any) -> Any:
    """The NumPy dtype of x's elements (torch.bfloat16: ml_dtypes.bfloat16)."""
    import numpy as np

    if _library_or_numpy(x) == "torch":  # torch.float32 -> float32
        name = str(x.dtype).removeprefix("torch.")
        if name == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(name)
    return np.dtype(x.dtype)


def to_numpy(x: Any) -> Any:
    """A NumPy copy of x (a host copy for a GPU array; a bfloat16 tensor gives an ml_dtypes.bfloat16 array)."""
    lib = _library_or_numpy(x)
    if lib == "numpy":
        return x.copy()
    if lib == "torch":
        import torch

        if x.dtype == torch.bfloat16:  # NumPy has no bfloat16 of its own: the bits, viewed as ml_dtypes'
            return x.detach().to("cpu", copy=True).view(torch.int16).numpy().view(numpy_dtype(x))
        return x.detach().to("cpu", copy=True).numpy()
    import cupy

    return cupy.asnumpy(x)


def copy_from_numpy(dst: Any, src: Any) -> None:
    """dst[...] = src, a NumPy array of dst's shape and dtype (a host-to-device copy for a GPU array)."""
    import numpy as np

    lib = _library_or_numpy(dst)
    if lib == "numpy":
        np.copyto(dst, src)
    elif lib == "torch":
        import torch

        host = np.array(src, order="C", copy=True)
        t = torch.from_numpy(host.view(np.int16)).view(torch.bfloat16) if dst.dtype == torch.bfloat16 else \
            torch.from_numpy(host)
        with torch.no_grad():
            dst.copy_(t)
    else:
        import cupy

        with dst.device:
            dst[...] = cupy.asarray(src)


# --------------------------------------------------------------------------- estimators (nnkernels.preprocessing)
# Host copies of a GPU fit's statistics go through to_numpy, device copies of the fitted parameters
# through empty + copy_from_numpy (above); what else the estimators need of a library is here.
def device_key(x: Any) -> tuple | None:
    """(library, CUDA device ordinal) of a GPU array (CuPy array, torch CUDA tensor); None for anything else
    (NumPy, CPU tensors, array-likes, DataFrames). One type lookup for non-GPU objects."""
    mod = type(x).__module__.split(".", 1)[0]
    if mod == "torch":
        return ("torch", x.device.index) if getattr(x, "is_cuda", False) else None
    if mod == "cupy" and hasattr(x, "__cuda_array_interface__"):
        return ("cupy", x.device.id)
    return None


def clip_(x: Any, lo: float, hi: float) -> None:
    """x clipped to [lo, hi] in place where it lives (NaN kept): NumPy on the host, a GPU array on its device."""
    lib = _library_or_numpy(x)
    if lib == "numpy":
        import numpy as np

        np.clip(x, lo, hi, out=x)
    elif lib == "torch":
        x.clamp_(lo, hi)
    else:
        x.clip(lo, hi, out=x)
