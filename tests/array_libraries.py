"""The array libraries every op is tested with, and moving NumPy test data into them and back.

``LIBRARIES`` lists what this machine can run: "numpy" always, "torch" (CPU tensors) when PyTorch is
installed, and "torch-cuda" / "cupy" when the CUDA kernels are built and a GPU is visible. Conversions keep
the values bitwise; CPU tensors share memory with the NumPy array they come from (torch.from_numpy), so a
test's NumPy snapshots see every write through them. Device copies are written back by ``sync_back``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import nnkernels as nk


def _available() -> list:
    libs = ["numpy"]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        libs.append("torch")
    gpu = nk.build_info()["cuda_compiled"] and nk.build_info()["gpu_count"] > 0
    if gpu and torch is not None and torch.cuda.is_available():
        libs.append("torch-cuda")
    if gpu:
        try:
            import cupy  # noqa: F401

            libs.append("cupy")
        except ImportError:
            pass
    return libs


LIBRARIES = _available()
GPU_LIBRARIES = [lib for lib in LIBRARIES if lib in ("torch-cuda", "cupy")]


def convertible(a: np.ndarray, lib: str) -> bool:
    """Whether `lib` can hold this array as it is (layout included): torch has no negative strides and no
    read-only or byte-swapped tensors; the GPU libraries take contiguous copies of real numbers only."""
    if lib == "numpy":
        return True
    if a.dtype.kind not in "fiub" or not a.dtype.isnative or a.dtype.itemsize not in (1, 2, 4, 8):
        return False
    if a.dtype.kind == "u" and a.dtype.itemsize > 1:  # torch's uint16/32/64 are storage-only types
        return False
    if not a.flags.writeable or not a.flags.aligned or any(s < 0 for s in a.strides):
        return False
    if lib == "torch":
        return True
    return a.flags.c_contiguous  # device copies: the layout mutations stay NumPy-only


def to_library(a: np.ndarray, lib: str) -> Any:
    if lib == "numpy":
        return a
    import torch

    if lib == "torch":
        return torch.from_numpy(a)
    if lib == "torch-cuda":
        return torch.from_numpy(np.ascontiguousarray(a)).cuda()
    import cupy

    return cupy.asarray(a)


def to_numpy(x: Any) -> Any:
    """NumPy values of a library array (a float / None / tuple passes through, element-wise)."""
    if isinstance(x, (list, tuple)):
        return type(x)(to_numpy(e) for e in x)
    mod = type(x).__module__.split(".", 1)[0]
    if mod == "torch":
        return x.detach().cpu().numpy()
    if mod == "cupy":
        return x.get()
    return x


def library_of(x: Any) -> str:
    mod = type(x).__module__.split(".", 1)[0]
    if mod == "torch":
        return "torch-cuda" if x.is_cuda else "torch"
    if mod == "cupy":
        return "cupy"
    if isinstance(x, np.ndarray):
        return "numpy"
    return type(x).__name__


def convert_call(kw: dict, lib: str, keep=()) -> tuple:
    """(kwargs with every convertible array, also inside lists, moved to `lib`, [(numpy array, library array)]).
    Names in `keep` stay as they are."""
    pairs = []

    def conv(v):
        if isinstance(v, np.ndarray) and convertible(v, lib):
            t = to_library(v, lib)
            pairs.append((v, t))
            return t
        if isinstance(v, list) and v and all(isinstance(e, np.ndarray) for e in v):
            return [conv(e) for e in v]
        return v
    return {k: (v if k in keep else conv(v)) for k, v in kw.items()}, pairs


def sync_back(pairs) -> None:
    """Copy device arrays' values back into the NumPy arrays they were made from (host libraries share memory)."""
    for a, t in pairs:
        if library_of(t) in GPU_LIBRARIES:
            a[...] = to_numpy(t)
