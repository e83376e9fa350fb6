"""Benchmark harness: timing, bandwidth measurement, and the Case/Impl contract.

Each op family has a module ``bench/<family>.py`` with

    def cases(ctx: Context) -> Iterator[Case]

yielding one :class:`Case` per (op, size): the bytes the op must move (or the elements it
produces, for compute-bound ops) and one :class:`Impl` per implementation (NumPy reference,
nnkernels CPU, PyTorch CPU, nnkernels CUDA, PyTorch CUDA...). Cases are generated lazily
so each size's arrays are freed before the next is built.

Timing method: each implementation is warmed up, then called repeatedly; the median of
the per-call times is reported with the spread (min and interquartile range). GPU rows
synchronise the device around each call (``Impl.sync``). Threads are whatever
``nk.set_num_threads`` / ``--threads`` configured, for nnkernels, PyTorch and NumPy alike.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np

MB = 1 << 20
L3_BYTES = 32 * MB  # this project's reference machine; DRAM rows use arrays far above it


@dataclasses.dataclass
class Impl:
    name: str                           # "numpy", "nnkernels", "torch", "nnkernels-cuda", "torch-cuda", "sklearn", ...
    fn: Callable[[], Any]               # one call of the op, inputs prepared beforehand
    device: str = "cpu"                 # "cpu" or "cuda"
    sync: Optional[Callable[[], None]] = None  # device synchronisation for GPU timings
    setup: Optional[Callable[[], None]] = None  # run before every timed call, untimed (e.g. restore state)


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

    def elements(self, label) -> int:
        """Element count for an elementwise op at a size label."""
        if isinstance(label, int):
            return label
        if self.quick:
            return {"small": 1000, "medium": 1 << 16, "large": 1 << 20}[label]
        return {"small": 1000, "medium": 1 << 20, "large": 64 << 20}[label]


def size_label(n: int) -> str:
    for unit, div in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def time_calls(impl: Impl, *, repeats: int, warmup: int, min_time: float = 0.0, max_time: float = 10.0) -> list:
    """Per-call wall times in seconds: `warmup` untimed calls, then at least `repeats` timed ones
    (more for very short calls until `min_time` has been spent; never past `max_time`)."""
    for _ in range(warmup):
        if impl.setup:
            impl.setup()
        impl.fn()
    if impl.sync:
        impl.sync()
    times: list = []
    start = time.perf_counter()
    while True:
        if impl.setup:
            impl.setup()
        if impl.sync:
            impl.sync()
        t0 = time.perf_counter()
        impl.fn()
        if impl.sync:
            impl.sync()
        times.append(time.perf_counter() - t0)
        spent = time.perf_counter() - start
        if len(times) >= repeats and (spent >= min_time or spent >= max_time):
            break
        if spent >= max_time and len(times) >= 3:
            break
    return times


def summarize(times: list) -> dict:
    ts = sorted(times)
    q = statistics.quantiles(ts, n=4) if len(ts) >= 4 else [ts[0], statistics.median(ts), ts[-1]]
    return {"median_s": statistics.median(ts), "min_s": ts[0], "q1_s": q[0], "q3_s": q[2], "runs": len(ts)}


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


def family_modules() -> Iterator[tuple]:
    """(name, module) for every bench/<family>.py."""
    import importlib
    import pkgutil

    from . import __path__ as pkg_path

    for info in sorted(pkgutil.iter_modules(pkg_path), key=lambda i: i.name):
        if info.name.startswith("_") or info.name in ("cli", "report"):
            continue
        yield info.name, importlib.import_module(f"{__package__}.{info.name}")
