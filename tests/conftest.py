"""Shared fixtures: instruction-set levels, thread counts, GPU array libraries."""
from __future__ import annotations

import os
import sys

import ml_dtypes
import numpy as np
import pytest

import nnkernels as nk

sys.path.insert(0, os.path.dirname(__file__))  # tolerances.py, helpers

DTYPES = [np.float32, np.float64]
# 16-bit storage dtypes (float32 arithmetic): NumPy's float16 and ml_dtypes' bfloat16.
HALF_DTYPES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]


def expected_half_bits(f32, dtype):
    """Round-to-nearest-even of float32 values to `dtype`, as bit patterns: NumPy / ml_dtypes for
    numbers (both round exactly, subnormals included); NaN quiet with its sign and high payload kept
    (VCVTNEPS2BF16 / VCVTPS2PH), where ml_dtypes gives a canonical NaN and NumPy keeps sNaNs."""
    u = f32.view(np.uint32)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    with np.errstate(invalid="ignore", over="ignore"):
        bits = f32.astype(dtype).view(np.uint16).copy()
    if dtype == np.dtype(ml_dtypes.bfloat16):
        q = (u >> 16) | 0x40
    else:
        q = ((u >> 16) & 0x8000) | 0x7E00 | ((u >> 13) & 0x3FF)
    bits[nan] = q[nan].astype(np.uint16)
    return bits



def torch_of(a):
    """A torch CPU tensor over a NumPy array's memory (torch.from_numpy; ml_dtypes.bfloat16 through
    an int16 view, since torch.from_numpy has no bfloat16)."""
    import torch

    if a.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def numpy_of(t):
    """A host NumPy copy of a tensor's values (torch.bfloat16 as ml_dtypes.bfloat16)."""
    import torch

    t = t.detach().cpu().contiguous()
    return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16) if t.dtype == torch.bfloat16 else t.numpy()

# Sizes that exercise vector tails, single elements and multi-chunk parallel paths.
AWKWARD_SIZES = [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1021, 4099, 65537, 100003]


def compiled_isas() -> list[str]:
    info = nk.build_info()
    order = ["baseline", "avx2", "avx512"]
    cpu_max = order.index(info["isa_cpu"])
    return [i for i in info["isa_compiled"] if order.index(i) <= cpu_max]


@pytest.fixture(params=compiled_isas())
def isa(request):
    """Run the test at every instruction-set level this build and CPU support."""
    with nk.isa(request.param):
        yield request.param


def _bf16_instruction_settings() -> list[bool]:
    return [True, False] if nk.build_info().get("avx512_bf16") else [False]


@pytest.fixture(params=_bf16_instruction_settings(), ids=lambda on: "bf16insn" if on else "bf16int")
def bf16_insn(request):
    """At the AVX-512 level, round to bfloat16 with VCVTNEPS2BF16 and with the integer fallback (CPUs
    without AVX-512 BF16): both must give the same bits. Other levels are unaffected."""
    before = nk.build_info()["avx512_bf16"]
    nk._core._set_avx512_bf16(request.param)
    yield request.param
    nk._core._set_avx512_bf16(before)


@pytest.fixture
def threads():
    """Yield a function that sets the thread count; restores it afterwards."""
    before = nk.get_num_threads()
    yield nk.set_num_threads
    nk.set_num_threads(before)


def _gpu_libraries():
    libs = []
    if not nk.build_info()["cuda_compiled"] or nk.build_info()["gpu_count"] == 0:
        return libs
    try:
        import cupy  # noqa: F401

        libs.append("cupy")
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            libs.append("torch")
    except ImportError:
        pass
    return libs


GPU_LIBS = _gpu_libraries()


@pytest.fixture(params=GPU_LIBS or [pytest.param(None, marks=pytest.mark.skip(reason="no GPU (CUDA build + device + CuPy/PyTorch) available"))])
def gpu(request):
    """Helpers to move NumPy arrays to a GPU library and back: (to_gpu, to_numpy, lib)."""
    lib = request.param
    if lib == "cupy":
        import cupy

        return cupy.asarray, cupy.asnumpy, lib
    import torch

    return (lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()), (lambda t: t.cpu().numpy()), lib


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "gpu" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gpu)
