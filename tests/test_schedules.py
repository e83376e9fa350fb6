"""nnkernels.schedules: closed forms, torch.optim.lr_scheduler equality, warm-restart cycle ends."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nnkernels import optim, schedules as S


def _torch_lrs(make_sched, n, base_lr=0.1):
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_sched(torch.optim.lr_scheduler, opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def _ours(schedule, n):
    return np.array([schedule(t) for t in range(n)])


def test_step_decay():
    s = S.step_decay(0.1, step_size=3, gamma=0.5)
    assert [s(t) for t in (0, 2, 3, 5, 6)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    np.testing.assert_allclose(_ours(s, 20), _torch_lrs(lambda L, o: L.StepLR(o, 3, 0.5), 20), rtol=1e-12)


def test_exponential_decay():
    s = S.exponential_decay(0.1, gamma=0.9)
    assert s(0) == 0.1 and math.isclose(s(5), 0.1 * 0.9 ** 5)
    np.testing.assert_allclose(_ours(s, 30), _torch_lrs(lambda L, o: L.ExponentialLR(o, 0.9), 30), rtol=1e-12)


def test_cosine_annealing():
    s = S.cosine_annealing(0.1, T_max=10, eta_min=0.001)
    assert s(0) == 0.1
    assert math.isclose(s(10), 0.001)
    assert math.isclose(s(5), 0.001 + 0.099 / 2)
    np.testing.assert_allclose(_ours(s, 25), _torch_lrs(lambda L, o: L.CosineAnnealingLR(o, 10, 0.001), 25),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("T_0,T_mult", [(5, 1), (3, 2), (2, 3)])
def test_cosine_warm_restarts(T_0, T_mult):
    s = S.cosine_warm_restarts(0.1, T_0=T_0, T_mult=T_mult, eta_min=0.01)
    n = 60
    np.testing.assert_allclose(
        _ours(s, n), _torch_lrs(lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0, T_mult, 0.01), n),
        rtol=1e-9, atol=1e-12)


def test_warm_restart_cycle_ends_for_snapshots():
    s = S.cosine_warm_restarts(1.0, T_0=3, T_mult=2)
    # cycles: [0,3) [3,9) [9,21) [21,45)
    assert s.cycle_ends(30) == [2, 8, 20]
    assert s.cycle_ends(21) == [2, 8, 20]
    assert s.cycle_ends(20) == [2, 8]
    assert [t for t in range(30) if s.is_cycle_end(t)] == [2, 8, 20]
    for t in (3, 9, 21):
        assert s(t) == 1.0  # restart at base_lr right after a cycle end
        assert s(t - 1) < s(t - 2)  # lowest lr of the cycle at its end
    s1 = S.cosine_warm_restarts(1.0, T_0=4)
    assert s1.cycle_ends(13) == [3, 7, 11]


def test_linear_warmup_wraps_any_schedule():
    base = S.cosine_annealing(0.1, T_max=10)
    s = S.linear_warmup(base, warmup_steps=4, start_factor=0.25)
    np.testing.assert_allclose([s(t) for t in range(4)], [0.1 * (0.25 + 0.75 * t / 4) for t in range(4)])
    assert [s(t) for t in range(4, 15)] == [base(t) for t in range(0, 11)]
    w = S.linear_warmup(S.cosine_warm_restarts(0.1, T_0=3), warmup_steps=2)
    assert w.cycle_ends(10) == [4, 7]
    assert w(0) == 0.0


def test_linear_warmup_matches_torch_sequential():
    torch = pytest.importorskip("torch")
    s = S.linear_warmup(S.exponential_decay(0.1, 0.9), warmup_steps=5, start_factor=0.2)

    def make(L, o):
        return L.SequentialLR(o, [L.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=5),
                                  L.ExponentialLR(o, 0.9)], milestones=[5])

    np.testing.assert_allclose(_ours(s, 20), _torch_lrs(make, 20), rtol=1e-9)
    assert torch is not None


def test_scheduler_sets_optimizer_lr_and_reports_cycle_ends():
    p = np.zeros(2)
    opt = optim.SGD([p], lr=123.0)
    sched = S.Scheduler(opt, S.cosine_warm_restarts(0.5, T_0=2))
    assert opt.lr == 0.5
    seen, ends = [], []
    for t in range(6):
        seen.append(opt.lr)
        opt.step([np.ones(2)])
        sched.step()
        if sched.cycle_ended:
            ends.append(t)
    assert ends == [1, 3, 5]
    np.testing.assert_allclose(seen, [0.5, 0.25, 0.5, 0.25, 0.5, 0.25])
    np.testing.assert_allclose(p, -sum(seen))


def test_schedule_argument_errors():
    with pytest.raises(ValueError, match="^step_size"):
        S.step_decay(0.1, step_size=0)
    with pytest.raises(ValueError, match="^base_lr"):
        S.exponential_decay(-0.1, 0.9)
    with pytest.raises(TypeError, match="^T_mult"):
        S.cosine_warm_restarts(0.1, T_0=2, T_mult=1.5)
    with pytest.raises(ValueError, match="^T_0"):
        S.cosine_warm_restarts(0.1, T_0=0)
    with pytest.raises(ValueError, match="^step"):
        S.cosine_annealing(0.1, 10)(-1)
    with pytest.raises(TypeError, match="^schedule"):
        S.linear_warmup(0.1, 5)
    with pytest.raises(ValueError, match="^start_factor"):
        S.linear_warmup(S.exponential_decay(0.1, 0.9), 5, start_factor=2.0)
