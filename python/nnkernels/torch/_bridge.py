"""The one place where torch tensors meet the nnkernels ops (everything else in nnkernels.torch
calls these two functions).

Today the ops take NumPy arrays for CPU data (CUDA tensors go through as they are: the ops' GPU
path reads them via ``__cuda_array_interface__`` and returns torch CUDA tensors). A CPU tensor is
handed over as ``t.detach().numpy()``, which shares the tensor's memory (no copy, strides kept), and
a NumPy result comes back as ``torch.from_numpy(a)``, which shares the array's memory (the tensor
keeps the array, and so nnkernels' result block, alive). Once the ops accept and return torch
tensors themselves (the array-library issue), both functions become the identity.
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


def to_nk_list(ts: list, name: str) -> list:
    """:func:`to_nk` of every tensor of a list (optimizer parameters, gradients, states)."""
    return [to_nk(t, name) for t in ts]


def written(ts: list) -> None:
    """Tell autograd that a kernel wrote these tensors in place (what torch's own in-place ops do),
    so a tensor saved for a backward and modified since is still detected."""
    torch.autograd.graph.increment_version(ts)
