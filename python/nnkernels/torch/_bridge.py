"""The one place where torch tensors are converted for nnkernels ops that do not take them yet.

Issue 14's operand core has made the activations and the optimizer steps take torch tensors
themselves (CPU tensors zero-copy, CUDA tensors on the CUDA kernels; results in torch), and
nnkernels.torch passes tensors to those directly (the softmax loss too). Layer/batch norm still take
NumPy arrays for CPU data (CUDA tensors go through as they are: their GPU path reads them via
``__cuda_array_interface__`` and returns torch CUDA tensors): a CPU tensor is handed over as
``t.detach().numpy()``, which shares the tensor's memory (no copy, strides kept), and a NumPy
result comes back as ``torch.from_numpy(a)``, which shares the array's memory (the tensor keeps
the array, and so nnkernels' result block, alive). When those ops take tensors too, ``to_nk`` and
``from_nk`` become the identity and go.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

_NUMPY_DTYPES = (torch.float32, torch.float64, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def to_nk(t: Optional[torch.Tensor], name: str) -> Any:
    """What an nnkernels op takes for tensor ``t`` (None stays None): zero-copy, autograd detached."""
    if t is None:
        return None
    if t.device.type != "cpu":
        return t.detach()
    if t.dtype not in _NUMPY_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 tensor, got {t.dtype}")
    return t.detach().numpy()


def from_nk(a: Any) -> torch.Tensor:
    """An nnkernels result as a tensor, sharing its memory."""
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    return a


def written(ts: list) -> None:
    """Tell autograd that a kernel wrote these tensors in place (what torch's own in-place ops do;
    nnkernels' C++ writes through the tensor's data pointer), so that a tensor saved for a backward
    and modified since is still detected."""
    torch.autograd.graph.increment_version(ts)
