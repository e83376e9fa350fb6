"""The array libraries nnkernels runs on, one small adapter each (called from C++, csrc/core/operand.cpp).

Every op takes its arrays from the caller's library and validates and dispatches them in C++; what the C++
side cannot do by itself for a GPU library is asked here: allocate a result (on the input's device, by its
library's allocator), make a device copy (contiguous, or int64 labels), and name the library's current stream on a
device (the kernels are launched on it, so they order with the caller's own work). None of these copies between
host and device or synchronises. NumPy and torch CPU tensors need no adapter (the C++ side reads and writes them
zero-copy); other DLPack producers on the CPU are imported by ``numpy.from_dlpack``.
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
