"""Benchmark harness: timing, bandwidth measurement, and the Case/Impl contract.

Each op family has a module ``bench/<family>.py`` with

    ROWS: tuple          # every row (op) name the module can yield
    MAIN_ROWS: tuple     # the rows the default run (the main job) also times at the large size
    def cases(ctx: Context) -> Iterator[Case]

yielding one :class:`Case` per (op, size) that ``ctx.wants(op, size)`` selects: the bytes the
op must move (or the elements it produces, for compute-bound ops) and one :class:`Impl` per
implementation (NumPy reference, nnkernels CPU, PyTorch CPU, nnkernels CUDA, PyTorch CUDA...).
Cases are generated lazily so each size's arrays are freed before the next is built, and a
module builds no data for a size none of whose rows is selected. ``ROWS`` lets the CLI check
``--ops`` before anything is measured (a test checks it against what ``cases`` yields).

Timing method: every implementation of a row is warmed up, then the implementations are
called in rounds, once each, in a shuffled order (interleaved, so drifts of the machine hit
all of them alike, and no implementation always follows the same one); the median
of the per-call times is reported with the spread (min and interquartile range). GPU rows
(``Impl.device == "cuda"``) are timed with CUDA events: one sample is a batch of back-to-back
calls between two events (see :data:`GPU_SAMPLE_S`), the device synchronised before it
(``Impl.sync``) and after it. Threads are whatever
``nk.set_num_threads`` / ``--threads`` configured, for nnkernels, PyTorch and NumPy alike.
"""
from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np

MB = 1 << 20
L3_BYTES = 32 * MB  # this project's reference machine; DRAM rows use arrays far above it
# A GPU's L2 when the device does not report it (H200: 60 MB, H100: 50 MB). GPU rows moving at
# least 4x the L2 are DRAM-bound and report % of the device-to-device copy bandwidth.
GPU_L2_BYTES = 60 * MB

# GPU timing: one sample is `calls` back-to-back calls between two CUDA events, `calls` chosen after
# the warm-up so that a sample spans about GPU_SAMPLE_S (at most GPU_MAX_CALLS calls; calls that
# take longer are timed one by one). A small op is then timed as a training loop issues it: the
# host's cost of the next call overlaps the current kernel, so the per-call time is the larger of
# the host's cost (argument checks, allocation, launch) and the kernel's, and neither the events'
# resolution (about 0.5 us) nor the final synchronisation counts once per call.
GPU_SAMPLE_S = 1e-3
GPU_MAX_CALLS = 1000


# Impl name of "the same nnkernels call without its fused activation" in a fused-activation row.
NO_ACT = "nnkernels-no-act"
# Impl name of "the same nnkernels call writing into a buffer given as out=". The "nnkernels"
# impl of a row returns a fresh result, as a user calls `y = nk.op(x)`; this one reuses one
# buffer, as a training loop can. Their ratio is the cost of fresh results (the result cache
# keeps it near 1; without it, page faults made fresh results 2-10x the kernel at 256 MB).
OUT = "nnkernels-out"
# The fresh-result call with torch CPU tensors in and out (zero-copy): the cost of the torch interop is its
# difference from the "nnkernels" row of the same op.
NK_TORCH = "nnkernels-torch"


@dataclasses.dataclass
class Impl:
    name: str                           # "numpy", "nnkernels", "torch", "nnkernels-cuda", "torch-cuda", "sklearn", ...
    fn: Callable[[], Any]               # one call of the op, inputs prepared beforehand
    device: str = "cpu"                 # "cpu" or "cuda"
    sync: Optional[Callable[[], None]] = None  # device synchronisation for GPU timings
    setup: Optional[Callable[[], None]] = None  # run before every timed call, untimed (e.g. restore state)
    calls_per_sample: int = 1           # set by the timing of a GPU row (see GPU_SAMPLE_S)


@dataclasses.dataclass
class DeviceArrays:
    """How a bench module makes GPU arrays (:meth:`Context.device_arrays`)."""
    lib: str                            # "torch" or "cupy"
    asarray: Callable[[np.ndarray], Any]  # a device copy of a NumPy array
    empty: Callable[[tuple, Any], Any]  # (shape, NumPy dtype) -> uninitialised device array
    sync: Callable[[], None]            # synchronise the device (Impl.sync)


def _torch_cuda_arrays(torch) -> DeviceArrays:
    return DeviceArrays("torch", lambda a: torch.from_numpy(np.ascontiguousarray(a)).to("cuda"),
                        lambda shape, dt: torch.empty(shape, dtype=getattr(torch, np.dtype(dt).name), device="cuda"),
                        torch.cuda.synchronize)


def _cupy_arrays(cupy) -> DeviceArrays:
    return DeviceArrays("cupy", cupy.asarray, lambda shape, dt: cupy.empty(shape, np.dtype(dt)),
                        lambda: cupy.cuda.get_current_stream().synchronize())


@dataclasses.dataclass
class Case:
    family: str                         # "activations"
    op: str                             # "relu" / "relu_backward"
    shape: str                          # human label, e.g. "64M" or "65536x1024"
    dtype: str                          # "float32"
    impls: list                         # list[Impl]
    bytes_moved: int = 0                # bytes the op must read + write (memory-bound ops)
    elements: int = 0                   # elements produced (compute-bound ops: elements/s)
    kind: str = "memory"                # "memory" or "compute"
    note: str = ""


@dataclasses.dataclass
class Context:
    sizes: list                         # size labels requested: e.g. ["small", "large"] or explicit element counts
    quick: bool = False
    dtype: str = "float32"
    torch: Any = None                   # imported torch module, or None
    torch_cuda: bool = False
    cupy: Any = None
    gpu: bool = False                   # nnkernels CUDA usable
    rng: Any = dataclasses.field(default_factory=lambda: np.random.default_rng(0))
    select: Optional[Callable[[str, Any], bool]] = None  # (op, size label) -> run this row?; None: every row

    def wants(self, op: str, label: Any = None) -> bool:
        """Whether the row ``op`` at size ``label`` was asked for (modules check before building data)."""
        return self.select is None or bool(self.select(op, label))

    def device_arrays(self) -> Optional[DeviceArrays]:
        """GPU arrays for the nnkernels CUDA rows, or None without a usable GPU (no CUDA build, no
        device, neither PyTorch with CUDA nor CuPy): PyTorch CUDA tensors when PyTorch has CUDA
        (what the PyTorch CUDA rows are given too), else CuPy arrays."""
        if not self.gpu:
            return None
        if self.torch_cuda:
            return _torch_cuda_arrays(self.torch)
        return _cupy_arrays(self.cupy) if self.cupy is not None else None

    def torch_cuda_arrays(self) -> Optional[DeviceArrays]:
        """PyTorch CUDA tensors for the PyTorch CUDA rows (also without nnkernels CUDA), or None."""
        return _torch_cuda_arrays(self.torch) if self.torch_cuda else None

    def elements(self, label) -> int:
        """Element count for an elementwise op at a size label."""
        if isinstance(label, int):
            return label
        if self.quick:
            return {"small": 1000, "medium": 1 << 16, "large": 1 << 20}[label]
        return {"small": 1000, "medium": 1 << 20, "large": 64 << 20}[label]


def lazy(build):
    """A call whose callable is built on first use (a model, its data): rows that are not
    selected cost nothing, and the build is not timed (the warm-up calls run it)."""
    state = {}

    def call():
        if "fn" not in state:
            state["fn"] = build()
        return state["fn"]()

    return call


def size_label(n: int) -> str:
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


_FLUSH_BUFFER = None


def evict_caches() -> None:
    """Evict the data caches by writing a buffer twice the size of the L3."""
    global _FLUSH_BUFFER
    if _FLUSH_BUFFER is None:
        _FLUSH_BUFFER = np.zeros(2 * L3_BYTES // 8)
    _FLUSH_BUFFER += 1.0


def _cuda_event_timer(impl: Impl):
    """A callable `timed(calls)` returning the time per call (seconds) of `calls` back-to-back calls
    of impl.fn between two CUDA events on the current stream, or None without CuPy or PyTorch CUDA."""
    try:
        import cupy

        def timed(calls):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            for _ in range(calls):
                impl.fn()
            end.record()
            end.synchronize()
            return cupy.cuda.get_elapsed_time(start, end) / 1e3 / calls

        return timed
    except ImportError:
        pass
    try:
        import torch

        if not torch.cuda.is_available():
            return None

        def timed_torch(calls):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                impl.fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / calls

        return timed_torch
    except ImportError:
        return None


def gpu_calls_per_sample(one_call_s: float) -> int:
    """Calls per GPU timing sample for a call that took `one_call_s` seconds (see GPU_SAMPLE_S)."""
    if not one_call_s > 0:
        return GPU_MAX_CALLS
    return max(1, min(GPU_MAX_CALLS, math.ceil(GPU_SAMPLE_S / one_call_s)))


def time_calls(impl: Impl, *, repeats: int, warmup: int, min_time: float = 0.0, max_time: float = 10.0,
               flush_caches: bool = False) -> list:
    """Per-call times in seconds of one implementation (see :func:`time_interleaved`)."""
    return time_interleaved([impl], repeats=repeats, warmup=warmup, min_time=min_time, max_time=max_time,
                            flush_caches=flush_caches)[0]


def time_interleaved(impls: list, *, repeats: int, warmup: int, min_time: float = 0.0, max_time: float = 10.0,
                     flush_caches: bool = False) -> list:
    """Per-call times for several implementations of one row, timed in interleaved rounds (A C B, B A C, ...)
    so that slow drifts of the machine (other tenants' memory traffic on a VM) affect every
    implementation alike instead of biasing whichever ran during the disturbance. Each round
    times every implementation once; rounds continue until `repeats` rounds are done and
    `min_time` has passed, or `max_time` per implementation (at least 3 rounds). The order is
    shuffled (fixed seed) every round."""
    for impl in impls:
        for _ in range(warmup):
            if impl.setup:
                impl.setup()
            impl.fn()
        if impl.sync:
            impl.sync()
    timers = [_cuda_event_timer(i) if i.device == "cuda" else None for i in impls]
    for impl, timer in zip(impls, timers):
        if timer is not None and impl.setup is None:  # a row that restores state per call: one call a sample
            impl.calls_per_sample = gpu_calls_per_sample(timer(1))
    times: list = [[] for _ in impls]
    start = time.perf_counter()
    rounds = 0
    shuffler = random.Random(0)
    while True:
        # a fresh (seeded) order every round: no implementation always follows the same one
        # (for cache-resident rows the predecessor decides what is still warm)
        order = list(range(len(impls)))
        shuffler.shuffle(order)
        for k in order:
            impl = impls[k]
            if impl.setup:
                impl.setup()
            if flush_caches and impl.device == "cpu":
                evict_caches()
            if impl.sync:
                impl.sync()
            if timers[k] is not None:
                times[k].append(timers[k](impl.calls_per_sample))
            else:
                t0 = time.perf_counter()
                impl.fn()
                if impl.sync:
                    impl.sync()
                times[k].append(time.perf_counter() - t0)
        rounds += 1
        spent = time.perf_counter() - start
        if rounds >= repeats and spent >= min_time:
            break
        if rounds >= 3 and spent >= max_time * len(impls):
            break
    return times


def summarize(times: list) -> dict:
    ts = sorted(times)
    q = statistics.quantiles(ts, n=4) if len(ts) >= 4 else [ts[0], statistics.median(ts), ts[-1]]
    return {"median_s": statistics.median(ts), "min_s": ts[0], "q1_s": q[0], "q3_s": q[2], "max_s": ts[-1],
            "runs": len(ts)}


def stream_copy_impl(n_bytes: int) -> Impl:
    """A copy moving `n_bytes` in total (half read, half written) with the bandwidth kernel."""
    from nnkernels import _core

    n = max(1, n_bytes // 8)
    a = np.ones(n, np.float32)
    b = np.zeros(n, np.float32)
    return Impl("stream-copy", lambda: _core.stream_copy(a, b))


def measure_stream_bandwidth(n_bytes: int = 512 * MB, repeats: int = 7) -> dict:
    """Copy and triad bandwidth (GB/s, 1e9 bytes) of the nnkernels stream kernels on float32
    arrays of `n_bytes` each (default far above the 32 MB L3)."""
    from nnkernels import _core

    n = n_bytes // 4
    a = np.ones(n, np.float32)
    b = np.zeros(n, np.float32)
    c = np.zeros(n, np.float32)
    copy = summarize(time_calls(Impl("copy", lambda: _core.stream_copy(a, b)), repeats=repeats, warmup=2))
    triad = summarize(time_calls(Impl("triad", lambda: _core.stream_triad(a, b, c, 3.0)), repeats=repeats, warmup=2))
    return {
        "array_bytes": n * 4,
        "copy_GBps": 2 * n * 4 / copy["median_s"] / 1e9,
        "triad_GBps": 3 * n * 4 / triad["median_s"] / 1e9,
        "copy": copy,
        "triad": triad,
    }


def measure_gpu_copy_bandwidth(torch, cupy, n_bytes: int = 1024 * MB, repeats: int = 10) -> Optional[dict]:
    """Device-to-device copy bandwidth (GB/s, read + write: 2 * n_bytes per copy) of one
    float32 array of `n_bytes` (default far above any L2) into another, with PyTorch (the library of
    the nnkernels CUDA rows) or else CuPy; the roofline of the GPU rows."""
    if torch is not None and torch.cuda.is_available():
        lib = "torch"
        a = torch.ones(n_bytes // 4, device="cuda")
        b = torch.empty_like(a)
        sync = torch.cuda.synchronize
        fn = lambda: b.copy_(a)  # noqa: E731
    elif cupy is not None:
        lib = "cupy"
        a = cupy.ones(n_bytes // 4, cupy.float32)
        b = cupy.empty_like(a)
        sync = cupy.cuda.get_current_stream().synchronize
        fn = lambda: b.__setitem__(Ellipsis, a)  # noqa: E731
    else:
        return None
    impl = Impl("d2d", fn, "cuda", sync)
    s = summarize(time_calls(impl, repeats=repeats, warmup=3))
    s["calls_per_sample"] = impl.calls_per_sample
    return {"array_bytes": n_bytes, "copy_GBps": 2 * n_bytes / s["median_s"] / 1e9, "copy": s, "library": lib}


# The dtypes a family's rows run in unless its module says otherwise (``DTYPES``).
DEFAULT_DTYPES = ("float32", "float64")


def np_dtype(name: str) -> np.dtype:
    """NumPy dtype of a --dtype name ("bfloat16": ml_dtypes.bfloat16)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def torch_view(torch, a: np.ndarray):
    """A PyTorch CPU tensor sharing the memory of `a` (bfloat16 arrays too: torch.from_numpy does not
    know ml_dtypes' dtype, so the bits go through an int16 view)."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def family_modules() -> Iterator[tuple]:
    """(name, module) for every bench/<family>.py."""
    import importlib
    import pkgutil

    from . import __path__ as pkg_path

    for info in sorted(pkgutil.iter_modules(pkg_path), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in ("cli", "report"):
            continue
        yield info.name, importlib.import_module(f"{__package__}.{info.name}")
