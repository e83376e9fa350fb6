"""nnkernels inside PyTorch models: custom operators with autograd, drop-in modules, torch.optim
optimizers, synchronized batch norm (needs PyTorch: ``pip install "nnkernels[torch]"``).

    import nnkernels.torch as nkt
    model = nkt.replace_modules(model)          # LayerNorm/BatchNorm/activations -> the kernels (same Parameters)
    opt = nkt.optim.Adam(model.parameters())    # torch.optim.Adam's arguments and state_dict

Operators: ``torch.ops.nnkernels.*`` (:mod:`nnkernels.torch._ops`, with fake implementations for
``torch.compile`` and autograd formulas on the kernels' backward passes); functions with
``torch.nn.functional``'s signatures: :mod:`nnkernels.torch.functional`; modules subclassing
their ``torch.nn`` counterparts: :mod:`nnkernels.torch.modules`; optimizers subclassing
``torch.optim.Optimizer``: :mod:`nnkernels.torch.optim`; :class:`SyncBatchNorm` over
``torch.distributed``. CPU tensors are read and written in place (zero-copy); CUDA tensors run
the CUDA kernels when nnkernels was built with CUDA.
"""
from __future__ import annotations

try:
    import torch  # noqa: F401  (absolute: PyTorch itself, not this package)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without torch
    raise ImportError('nnkernels.torch needs PyTorch: install the torch extra, pip install "nnkernels[torch]"') from exc

from . import _ops, functional, optim  # noqa: E402
from .distributed import SyncBatchNorm, convert_sync_batchnorm  # noqa: E402
from .modules import BatchNorm1d, BatchNorm2d, LayerNorm, LeakyReLU, ReLU, Sigmoid, Tanh, replace_modules  # noqa: E402

__all__ = ["functional", "optim", "LayerNorm", "BatchNorm1d", "BatchNorm2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid",
           "replace_modules", "SyncBatchNorm", "convert_sync_batchnorm"]
