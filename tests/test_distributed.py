"""Data-parallel training over MPI: K ranks on shards of each global batch give the same weights as one
process on the whole batch (float64, within 1e-10 relative), with and without synchronized batch norm,
uneven shards included. Launches ``mpiexec -n 2`` in a subprocess; skipped without mpi4py / mpiexec."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnkernels as nk
from nnkernels import distributed


# The training run both sides execute: rank r of K trains on its shard of each global batch.
WORKER = textwrap.dedent('''
    import numpy as np
    import nnkernels as nk
    from nnkernels import nn, distributed

    def run(comm, mode, optimizer):
        rng = np.random.default_rng(42)
        sizes = [6, 9, 8, 5]
        X = rng.standard_normal((120, sizes[0])) * 1.5 + 0.5
        y = rng.integers(0, sizes[-1], 120)
        layers = []
        for k in range(len(sizes) - 1):
            w = rng.standard_normal((sizes[k], sizes[k + 1])) / np.sqrt(sizes[k])
            last = k == len(sizes) - 2
            layers.append(nn.Linear(sizes[k], sizes[k + 1], bias=last or mode == "plain", weight=w,
                                    dtype=np.float64))
            if last:
                break
            if mode == "batchnorm":
                layers.append(nn.BatchNorm(sizes[k + 1], activation="relu", dtype=np.float64))
            elif mode == "batchnorm-tanh":
                layers.append(nn.BatchNorm(sizes[k + 1], dtype=np.float64))
                layers.append(nn.Tanh())
            else:
                layers.append(nn.ReLU())
        model = nn.Sequential(layers)
        distributed.attach(model, comm)
        rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
        if optimizer == "adam":
            from nnkernels import optim
            opt = optim.Adam(model.params(), lr=1e-2)
        start = 0
        for N in (37, 16, 9, 23, 5, 30):  # uneven shards for 2 and 3 ranks
            idx = np.arange(start, start + N)
            start += N
            lo, hi = distributed.shard_bounds(N, rank, size)
            logits = model.forward(X[idx[lo:hi]])
            loss, d = nk.softmax_cross_entropy(logits, y[idx[lo:hi]])
            distributed.scaled_loss_gradient(d, hi - lo, N)
            model.backward(d)
            grads = model.grads()
            if comm is not None:
                comm.allreduce_sum(grads)
            if optimizer == "adam":
                opt.step(grads)
            else:
                for p, g in zip(model.params(), grads):
                    p -= 0.1 * g
        return model.params() + model.buffers()
''')

MAIN = textwrap.dedent('''
    import sys
    import numpy as np
    from nnkernels import distributed
    comm = distributed.world()
    out = run(comm, sys.argv[1], sys.argv[2])
    np.savez(sys.argv[3] + f".rank{comm.rank}.npz", *out)
''')


def _mpiexec():
    exe = shutil.which("mpiexec")
    if exe is None or not distributed.available():
        pytest.skip("mpi4py / mpiexec not installed (pip install 'nnkernels[distributed]')")
    return exe


def _reference(mode, optimizer):
    ns: dict = {}
    exec(WORKER, ns)  # noqa: S102 - the test's own worker code
    return ns["run"](None, mode, optimizer)


@pytest.mark.parametrize("ranks", [2, 3])
@pytest.mark.parametrize("mode, optimizer", [
    ("plain", "sgd"),
    ("batchnorm", "sgd"),
    ("batchnorm-tanh", "sgd"),
    ("batchnorm", "adam"),
])
def test_ranks_match_single_process(tmp_path, ranks, mode, optimizer):
    exe = _mpiexec()
    script = tmp_path / "worker.py"
    script.write_text(WORKER + MAIN)
    prefix = str(tmp_path / "w")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(os.path.dirname(nk.__file__), os.pardir)] +
                                        [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([exe, "-n", str(ranks), sys.executable, str(script), mode, optimizer, prefix],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expect = _reference(mode, optimizer)
    per_rank = []
    for r in range(ranks):
        with np.load(f"{prefix}.rank{r}.npz") as f:
            per_rank.append([f[f"arr_{i}"] for i in range(len(f.files))])
    for got in per_rank:
        assert len(got) == len(expect)
        for g, e in zip(got, expect):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)
    for other in per_rank[1:]:  # every rank holds bitwise the same weights
        for a, b in zip(per_rank[0], other):
            np.testing.assert_array_equal(a, b)


def test_shard_bounds():
    for n in (0, 1, 5, 37, 100):
        for k in (1, 2, 3, 7):
            bounds = [distributed.shard_bounds(n, r, k) for r in range(k)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="^rank"):
        distributed.shard_bounds(10, 2, 2)


def test_scaled_loss_gradient():
    d = np.ones((3, 2))
    distributed.scaled_loss_gradient(d, 3, 12)
    np.testing.assert_array_equal(d, 0.25)


def test_cli_distributed_matches_single_process(tmp_path):
    """``mpiexec -n 2 python -m nnkernels train --distributed`` follows the single-process run (float64)."""
    import json

    from nnkernels.__main__ import main as cli_main

    exe = _mpiexec()
    args = ["train", "--dataset", "spiral", "--hidden", "32,32", "--epochs", "3", "--batch-size", "50",
            "--dtype", "float64", "--optimizer", "adam", "--seed", "5", "--quiet"]
    single, multi = tmp_path / "single.json", tmp_path / "multi.json"
    assert cli_main([*args, "--json", str(single)]) == 0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(os.path.dirname(nk.__file__), os.pardir)] +
                                        [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([exe, "-n", "2", sys.executable, "-m", "nnkernels", *args, "--distributed",
                           "--json", str(multi)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    assert b["ranks"] == 2 and a["ranks"] == 1
    for ha, hb in zip(a["history"], b["history"]):
        for key in ("train_loss", "val_loss"):
            assert hb[key] == pytest.approx(ha[key], rel=1e-9)
        assert hb["train_acc"] == ha["train_acc"] and hb["val_acc"] == ha["val_acc"]
    np.testing.assert_allclose(b["step_losses"], a["step_losses"], rtol=1e-9)


def test_threads_per_rank_share_the_cores(tmp_path):
    """Each of K ranks on one machine defaults to its share of the cores (issue 13, item 6)."""
    cores = len(os.sched_getaffinity(0))
    assert distributed.threads_per_rank(1) == cores
    assert distributed.threads_per_rank(cores + 5) == 1
    assert distributed.ranks_on_this_node(None) == 1
    exe = _mpiexec()
    script = tmp_path / "threads.py"
    script.write_text(textwrap.dedent('''
        import nnkernels as nk
        from threadpoolctl import threadpool_info
        from nnkernels import distributed, train
        comm = distributed.world()
        import sys
        with train.cli_threads(None, True):
            # every BLAS loaded in the process (NumPy's, SciPy's, ...) is limited to one thread
            blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
            line = f"{comm.rank} {distributed.ranks_on_this_node(comm)} {nk.get_num_threads()} {blas}"
        # one file per rank: the ranks' stdout lines may interleave
        with open(f"{sys.argv[1]}/rank{comm.rank}.txt", "w") as f:
            f.write(line)
    '''))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(os.path.dirname(nk.__file__), os.pardir)] +
                                        [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    proc = subprocess.run([exe, "-n", "2", sys.executable, str(script), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    share = max(1, cores // 2)
    assert lines == [f"0 2 {share} [1]", f"1 2 {share} [1]"], proc.stdout
