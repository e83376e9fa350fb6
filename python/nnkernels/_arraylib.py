"""The array libraries nnkernels runs on, one small adapter each (called from C++, csrc/core/operand.cpp).

Every op takes its arrays from the caller's library and validates and dispatches them in C++; what the C++
side cannot do by itself for a GPU library is asked here: allocate a result (on the input's device, by its
library's allocator), make a device copy (contiguous, or int64 labels), and name the library's current stream on a
device (the kernels are launched on it, so they order with the caller's own work). None of these copies between
host and device or synchronises. NumPy and torch CPU tensors need no adapter (the C++ side reads and writes them
zero-copy); other DLPack producers on the CPU are imported by ``numpy.from_dlpack``.

Above the ops, code that must move data between host and device on purpose (the scikit-learn estimators of
nnkernels.preprocessing: NumPy fitted attributes, GPU transforms) does it with the explicit adapters at the end
(device_key, to_host, to_device_like, clip_), so that no other module knows library names.
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


# ---------------------------------------------------------------- explicit transfers (above the ops)

def device_key(x: Any) -> tuple | None:
    """(library, CUDA device ordinal) of a GPU array (CuPy array, torch CUDA tensor); None for anything else
    (NumPy, CPU tensors, array-likes, DataFrames). One type lookup for non-GPU objects."""
    mod = type(x).__module__.split(".", 1)[0]
    if mod == "torch":
        return ("torch", x.device.index) if getattr(x, "is_cuda", False) else None
    if mod == "cupy" and hasattr(x, "__cuda_array_interface__"):
        return ("cupy", x.device.id)
    return None


def to_host(x: Any) -> Any:
    """A NumPy copy of GPU array x: a device -> host copy, which waits for the work queued on x's stream."""
    if _library(x) == "torch":
        return x.detach().cpu().numpy()
    return x.get()


def to_device_like(a: Any, like: Any) -> Any:
    """A copy of host array a on like's device, made by like's library (a host -> device copy)."""
    import numpy as np

    a = np.ascontiguousarray(a)
    if _library(like) == "torch":
        import torch

        return torch.from_numpy(a).to(like.device)
    import cupy

    with like.device:
        return cupy.asarray(a)


def clip_(x: Any, lo: float, hi: float) -> None:
    """x clipped to [lo, hi] in place, NaN kept: a NumPy array on the host, a GPU array on its device."""
    if device_key(x) is None:
        import numpy as np

        np.clip(x, lo, hi, out=x)
    elif _library(x) == "torch":
        x.clamp_(lo, hi)
    else:
        x.clip(lo, hi, out=x)
