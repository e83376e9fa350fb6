"""Data-parallel training over MPI (mpi4py), e.g. ``mpiexec -n 2 python -m nnkernels train --distributed``.

Every rank holds a full replica of the model, initialised identically from the seed, and draws the
same permutation of the training set. For each global mini-batch of N samples, rank r takes its
shard ``[lo_r, hi_r)`` (:func:`shard_bounds`: sizes differ by at most one when K does not divide N).

Exactness: the loss gradient of each shard is scaled by ``n_r / N`` before backward (the shard's
mean-loss gradient is ``1/n_r`` per sample, the full batch's is ``1/N``), so every parameter
gradient of rank r is its exact share of the full-batch gradient and the sum over ranks is the
full-batch gradient. The sum is taken in rank order on every rank after an allgather
(:meth:`Communicator.allreduce_sum`), so all ranks get bitwise the same gradient and keep
bitwise identical weights; with a fixed rank count the run is reproducible.

Synchronized batch norm: :class:`nnkernels.nn.BatchNorm` with ``comm`` set computes per-rank
statistics with ``batchnorm_stats`` (count, mean, M2), gathers them and merges them with
``batchnorm_merge_stats`` (Chan et al.'s parallel update, never E[x^2] - E[x]^2), normalises with
the global statistics (``batchnorm_normalize``), and in backward all-reduces the per-channel sums
of dout and dout * xhat (``batchnorm_backward_reduce``) before ``batchnorm_backward_elemt``.

Install: ``pip install "nnkernels[distributed]"`` (mpi4py and the MPICH wheel from the package
index; ``mpiexec`` comes with the mpich wheel).
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["Communicator", "shard_bounds", "available", "world", "attach", "scaled_loss_gradient",
           "ranks_on_this_node", "threads_per_rank"]


def available() -> bool:
    """True when mpi4py (and an MPI library) can be imported."""
    try:
        from mpi4py import MPI  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError or a missing libmpi
        return False
    return True


def shard_bounds(n: int, rank: int, size: int) -> tuple:
    """[lo, hi) of rank's shard of n items: the first n % size ranks get one extra item."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"rank: expected 0 <= rank < size, got rank={rank}, size={size}")
    base, extra = divmod(int(n), int(size))
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class Communicator:
    """Thin wrapper over an mpi4py communicator with the deterministic collectives training needs."""

    def __init__(self, comm: Any = None):
        if comm is None:
            from mpi4py import MPI

            comm = MPI.COMM_WORLD
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())

    def allreduce_sum(self, arrays: Sequence[np.ndarray]) -> None:
        """In place: each array becomes the sum over ranks, added in rank order (bitwise equal everywhere).

        One allgather of a flat buffer per dtype."""
        if self.size == 1 or not arrays:
            return
        by_dtype: dict = {}
        for a in arrays:
            by_dtype.setdefault(np.dtype(a.dtype), []).append(a)
        for dt, group in by_dtype.items():
            flat = np.concatenate([a.ravel() for a in group]) if len(group) > 1 else np.ascontiguousarray(group[0]).ravel()
            gathered = np.empty((self.size, flat.size), dt)
            self.comm.Allgather(flat, gathered)
            total = gathered[0].copy()
            for r in range(1, self.size):
                total += gathered[r]
            off = 0
            for a in group:
                a[...] = total[off:off + a.size].reshape(a.shape)
                off += a.size

    def allreduce_pair(self, a: np.ndarray, b: np.ndarray) -> tuple:
        """Sums over ranks of two arrays (copies; inputs untouched)."""
        a2, b2 = np.array(a, copy=True), np.array(b, copy=True)
        self.allreduce_sum([a2, b2])
        return a2, b2

    def allreduce_scalar(self, value: float) -> float:
        v = np.array([value], np.float64)
        self.allreduce_sum([v])
        return float(v[0])

    def allgather_stats(self, count: Any, mean: np.ndarray, m2: np.ndarray) -> tuple:
        """(counts (K,), means (K, C), m2s (K, C)) of every rank's local batch statistics (exact copies)."""
        mean = np.ascontiguousarray(mean)
        m2 = np.ascontiguousarray(m2, dtype=mean.dtype)
        counts = np.empty(self.size, np.int64)
        self.comm.Allgather(np.array([int(count)], np.int64), counts)
        local = np.concatenate([mean.ravel(), m2.ravel()])
        gathered = np.empty((self.size, local.size), local.dtype)
        self.comm.Allgather(local, gathered)
        c = mean.size
        return counts, gathered[:, :c].reshape((self.size,) + mean.shape), gathered[:, c:].reshape((self.size,) + mean.shape)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()


def world() -> Communicator:
    """The MPI world communicator (raises ImportError with install advice without mpi4py)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError('--distributed needs mpi4py and an MPI: pip install "nnkernels[distributed]" '
                          "(mpi4py, mpich), then run under mpiexec -n K") from exc
    return Communicator(MPI.COMM_WORLD)


def ranks_on_this_node(comm: Optional[Communicator]) -> int:
    """How many ranks of ``comm`` share this machine (MPI shared-memory split; 1 without MPI)."""
    if comm is None or comm.size == 1:
        return 1
    from mpi4py import MPI

    node = comm.comm.Split_type(MPI.COMM_TYPE_SHARED)  # collective: every rank calls it
    try:
        return int(node.Get_size())
    finally:
        node.Free()


def threads_per_rank(local_ranks: int = 1) -> int:
    """Threads one process should use when ``local_ranks`` processes share this machine: the CPUs
    this process may run on (its affinity mask) divided among them, at least 1. Ranks that each
    spin up a thread per core fight over the cores (mpiexec -n 2 on 2 cores: 38-52 s against 1.3 s
    at one thread per rank); a launcher that already binds each rank to its own cores gives a
    smaller mask, and the division then errs towards fewer threads, not more."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(local_ranks)))


def attach(model: Any, comm: Optional[Communicator]) -> None:
    """Synchronize every batch-norm layer of ``model`` across ``comm`` (None detaches)."""
    from .nn import BatchNorm

    for layer in getattr(model, "layers", [model]):
        if isinstance(layer, BatchNorm):
            layer.comm = comm if (comm is not None and comm.size > 1) else None


def scaled_loss_gradient(dlogits: np.ndarray, shard_size: int, global_size: int) -> np.ndarray:
    """Rescale a shard's mean-loss gradient (1/n_r per sample) to the full batch's (1/N), in place."""
    if shard_size != global_size:
        dlogits *= dlogits.dtype.type(shard_size / global_size)
    return dlogits
