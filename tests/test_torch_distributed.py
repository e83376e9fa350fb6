"""nnkernels.torch.SyncBatchNorm over torch.distributed: 2 processes on gloo (localhost), uneven shards,
against one process on the whole batch (float64, 1e-10; bfloat16 against float64 on the same values,
within bfloat16's tolerance)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import nnkernels.torch as nkt  # noqa: E402

N, C, L = 7, 3, 5  # shards of 4 and 3 samples: 20 and 15 values per channel
BOUNDS = [(0, 4), (4, 7)]

WORKER = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist
    import nnkernels.torch as nkt
    sys.path.insert(0, os.environ["TESTS"])
    from test_torch_distributed import data, make_model

    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method="tcp://127.0.0.1:" + os.environ["PORT"])
    lo, hi = [(0, 4), (4, 7)][rank]
    dtype = getattr(torch, os.environ["DTYPE"])
    xs, ws = data(dtype)
    model = nkt.convert_sync_batchnorm(nkt.replace_modules(make_model(dtype)))
    assert isinstance(model[0], nkt.SyncBatchNorm) and model[0].activation == "relu", model
    out = {"y": [], "dx": []}
    for x, w in zip(xs, ws):  # two training steps
        x = x[lo:hi].clone().requires_grad_()
        y = model(x)
        (y * w[lo:hi]).sum().backward()
        out["y"].append(y.detach())
        out["dx"].append(x.grad)
    grads = torch.cat([model[0].weight.grad, model[0].bias.grad])
    dist.all_reduce(grads)  # the local parameter gradients sum to the whole batch's (as DDP does)
    out["dparams"] = grads
    out["running"] = torch.cat([model[0].running_mean.double(), model[0].running_var.double(),
                                model[0].num_batches_tracked[None].double()])
    model.eval()
    out["eval"] = model(xs[0][lo:hi]).detach()
    torch.save(out, os.environ["OUT"])
    dist.destroy_process_group()
    # Leave without interpreter finalisation: on a 2-core Xeon VM torch 2.13's gloo runloop threads,
    # still exiting after destroy_process_group, aborted the process in about one run in three
    # ("terminate called without an active exception" from c10d::ProcessGroupGloo::runLoop, seen in
    # gdb), as often on the commit before this session's changes. The results are saved by then.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
""")


def data(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    xs = [(torch.randn(N, C, L, generator=g, dtype=torch.float64) * 3 + 100.0 * k).to(dtype) for k in (1, 2)]
    ws = [torch.randn(N, C, L, generator=g, dtype=torch.float64).to(dtype) for _ in (1, 2)]
    return xs, ws


def make_model(dtype=torch.float64):
    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.BatchNorm1d(C, dtype=torch.float64, momentum=0.3), torch.nn.ReLU())
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        m[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return m.to(dtype)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_sync_batch_norm_two_gloo_processes_equal_one_process_on_the_whole_batch(tmp_path, dtype):
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), PORT=port, OUT=str(tmp_path / f"rank{rank}.pt"), OMP_NUM_THREADS="1",
                   TESTS=os.path.dirname(__file__), DTYPE=dtype)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    results = []
    for p in procs:  # every rank reaped before any assertion (no process or pipe outlives the test)
        try:
            results.append(p.communicate(timeout=120))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
                q.communicate()
            raise AssertionError("a rank did not finish within 120 s") from None
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, f"rank exited with {p.returncode}\n{out}\n{err}"
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]

    # One process, the whole batch: torch.nn's BatchNorm1d + ReLU in float64 (on the bfloat16 values).
    tdt = getattr(torch, dtype)
    xs, ws = data(tdt)
    ref = make_model(tdt).double()
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == "float64" else dict(rtol=1.6e-2, atol=2e-2)
    sums_tol = tol if dtype == "float64" else dict(rtol=1.6e-2, atol=0.2)  # 35 values per channel
    for step, (x, w) in enumerate(zip(xs, ws)):
        x = x.double().requires_grad_()
        y = ref(x)
        (y * w.double()).sum().backward()
        for r, (lo, hi) in enumerate(BOUNDS):
            assert ranks[r]["y"][step].dtype == ranks[r]["dx"][step].dtype == tdt
            torch.testing.assert_close(ranks[r]["y"][step].double(), y[lo:hi].detach(), **tol)
            torch.testing.assert_close(ranks[r]["dx"][step].double(), x.grad[lo:hi], **tol)
    dparams = torch.cat([ref[0].weight.grad, ref[0].bias.grad])
    running = torch.cat([ref[0].running_mean, ref[0].running_var, ref[0].num_batches_tracked[None].double()])
    ref.eval()
    with torch.no_grad():  # eval normalises with the running statistics as stored (bfloat16: rounded)
        ref[0].running_mean.copy_(ranks[0]["running"][:C])
        ref[0].running_var.copy_(ranks[0]["running"][C:2 * C])
    for r, (lo, hi) in enumerate(BOUNDS):
        assert ranks[r]["dparams"].dtype == tdt
        torch.testing.assert_close(ranks[r]["dparams"].double(), dparams, **sums_tol)
        torch.testing.assert_close(ranks[r]["running"], running, **tol)
        torch.testing.assert_close(ranks[r]["eval"].double(), ref(xs[0][lo:hi].double()).detach(), **tol)


def test_sync_batch_norm_without_a_process_group_is_batch_norm():
    theirs = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    ours = nkt.convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm2d(3, dtype=torch.float64)))[0]
    assert type(ours) is nkt.SyncBatchNorm and isinstance(ours, torch.nn.SyncBatchNorm)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-10, atol=1e-12)
