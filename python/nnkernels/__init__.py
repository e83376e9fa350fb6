"""nnkernels: fast fused kernels for training neural networks.

    import nnkernels as nk
    y = nk.relu(x)                 # NumPy in, NumPy out (CuPy/PyTorch CUDA in, same out)
    nk.build_info()                # compiler, instruction sets, threads, CUDA
    nk.set_num_threads(2)
    nk.result_cache_info()         # reuse of large result blocks (nk.set_result_cache_limit)

Every op has a NumPy reference in :mod:`nnkernels.reference`.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


def _load_core():
    """Import the extension with a passive OpenMP wait policy unless the user chose one.

    GNU libgomp's default keeps idle worker threads spinning for ~300,000 iterations after every
    parallel region. When other work wants the cores (another process, MPI ranks, BLAS threads
    between kernels) those spinning threads take the CPU from it: ``python -m nnkernels train``
    on 2 cores with BLAS at one thread took 11.3 s under load with the default policy and 1.2 s
    with OMP_WAIT_POLICY=PASSIVE (one run each, a loaded 2-core machine); back-to-back parallel
    kernels were not slower passive there either (relu of 2^17 floats: median 64-77 us against
    295-602 us spinning). libgomp reads the variable once, when it is loaded (with
    _core, below), so it is set for that moment and then removed again: child processes and
    other libraries see the user's environment unchanged. Without effect if libgomp was already
    loaded by another module; ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` set by the user win.
    """
    chosen = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
    if not chosen:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from . import _core as core
    finally:
        if not chosen:
            del os.environ["OMP_WAIT_POLICY"]
    return core, (os.environ.get("OMP_WAIT_POLICY", "") if chosen else "PASSIVE")


_core, _OMP_WAIT_POLICY = _load_core()
from . import init
from .activations import (
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    tanh,
    tanh_backward,
)
from .losses import softmax_cross_entropy
from .normalization import (
    batchnorm_backward,
    batchnorm_backward_elemt,
    batchnorm_backward_reduce,
    batchnorm_forward,
    batchnorm_merge_stats,
    batchnorm_normalize,
    batchnorm_stats,
    layernorm_backward,
    layernorm_forward,
)
from .optim_steps import adagrad_step, adam_step, clip_grad_norm, ema_update, rmsprop_step, sgd_step
from .nn import BatchNorm, LayerNorm  # one class each: nk.BatchNorm is nk.nn.BatchNorm
from . import optim, schedules  # noqa: E402  (submodules: nk.optim.Adam, nk.schedules.cosine_annealing)

__version__ = "0.1.0"

__all__ = [
    "__version__", "build_info", "set_num_threads", "get_num_threads", "set_isa", "get_isa", "isa",
    "set_result_cache_limit", "empty_result_cache", "result_cache_info",
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "softmax_cross_entropy",
    "batchnorm_forward", "batchnorm_backward", "layernorm_forward", "layernorm_backward",
    "batchnorm_stats", "batchnorm_merge_stats", "batchnorm_normalize",
    "batchnorm_backward_reduce", "batchnorm_backward_elemt", "BatchNorm", "LayerNorm",
    "sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "ema_update", "clip_grad_norm", "optim", "schedules",
    "init", "preprocessing",
]


def __getattr__(name: str):
    # nnkernels.preprocessing is built on scikit-learn, an optional dependency: imported on first
    # use (nk.preprocessing) so that `import nnkernels` works without scikit-learn.
    if name == "preprocessing":
        import importlib

        return importlib.import_module(".preprocessing", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_info() -> dict:
    """Version, compiler, instruction sets (compiled, CPU, selected), threads, CUDA details."""
    info = dict(_core.build_info())
    info["version"] = __version__
    info["gpu_names"] = [_core.cuda_device_name(i) for i in range(info["gpu_count"])]
    info["omp_wait_policy"] = _OMP_WAIT_POLICY  # as set when the extension was loaded ("" = libgomp's default)
    cache = result_cache_info()
    info["result_cache"] = (f"limit {cache['limit']} bytes; {cache['blocks']} idle blocks, {cache['bytes_cached']} bytes; "
                            f"{cache['hits']} hits, {cache['misses']} misses")
    return info


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels (OpenMP; ``threadpoolctl`` limits apply too).

    ``n``: an int or NumPy integer from 1 to ``build_info()["max_num_threads"]`` (4 per hardware
    thread, at least 64: more never helps a kernel and thousands of OpenMP threads make every
    call slow); bool and float raise TypeError, values outside the range ValueError. A larger
    count from ``OMP_NUM_THREADS`` or threadpoolctl is clamped to the same limit.

    Like OpenMP's own setting, it applies to calls made from the calling Python thread.
    Results never depend on it: work is split in fixed chunks.

    Fork: in the child of a ``fork()`` (``os.fork``, multiprocessing's default "fork" context on
    Linux, PyTorch DataLoader workers) the kernels run on one thread whatever is set here: GNU
    OpenMP cannot run a parallel region in a child of a process that has used one (it would wait
    forever for the parent's threads). Use the "spawn" or "forkserver" context for multi-threaded
    kernels in worker processes.

    Idle OpenMP threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE`` is applied at import
    unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set), so kernels give the cores back to
    other processes, MPI ranks and BLAS between calls.
    """
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the CPU kernels will use for a call made now from this thread."""
    return int(_core.get_num_threads())


def set_isa(level: str) -> None:
    """Force an instruction-set level for the CPU kernels: 'baseline', 'avx2' or 'avx512'.

    Only levels that were compiled in and that this CPU supports are accepted. The
    environment variable ``NNKERNELS_ISA`` sets the level at import time.
    """
    _core.set_isa(str(level))


def get_isa() -> str:
    """Instruction-set level the CPU kernels use now."""
    return str(_core.get_isa())


@contextlib.contextmanager
def isa(level: str) -> Iterator[None]:
    """Context manager: run the enclosed calls at instruction-set ``level``."""
    previous = get_isa()
    set_isa(level)
    try:
        yield
    finally:
        set_isa(previous)


def set_result_cache_limit(limit: int) -> None:
    """Bytes of idle large-result blocks kept for reuse (0 disables the cache).

    Results of 1 MB and more live in blocks that are kept, once the last array (or view, or
    buffer) using them is gone, and reused by the next result that fits: a loop calling
    ``y = nk.layernorm_forward(x)`` then runs as fast as one passing ``out=``, without faulting
    in fresh pages every call. Idle blocks beyond the limit are returned to the operating
    system, oldest first. The default is min(2 GiB, 10% of RAM), or the environment variable
    ``NNKERNELS_RESULT_CACHE_LIMIT`` read at import (bytes, or with a suffix: ``512M``,
    ``2GiB``; K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000).
    """
    _core.set_result_cache_limit(limit)


def empty_result_cache() -> None:
    """Return every idle result block to the operating system (live results are untouched)."""
    _core.empty_result_cache()


def result_cache_info() -> dict:
    """Statistics of the result cache: ``limit``, ``bytes_cached`` and ``blocks`` (idle, kept for
    reuse), ``hits`` and ``misses`` (large results served from the cache or newly mapped),
    ``evictions`` (idle blocks returned to the OS), ``bytes_in_use`` and ``blocks_in_use``
    (held by live results), ``min_result_bytes`` (smaller results use NumPy's allocator)."""
    return dict(_core.result_cache_info())
