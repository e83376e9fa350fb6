"""Learning-rate schedules as functions of the step, and a scheduler that sets an optimizer's lr.

Each factory returns a callable ``schedule(step) -> lr`` (``step`` = 0, 1, 2, ... counts
optimizer steps, or epochs if you step per epoch). Closed forms, identical to the
corresponding ``torch.optim.lr_scheduler`` classes:

* ``step_decay(base_lr, step_size, gamma=0.1)``: ``base_lr * gamma ** (step // step_size)`` (StepLR)
* ``exponential_decay(base_lr, gamma)``: ``base_lr * gamma ** step`` (ExponentialLR)
* ``cosine_annealing(base_lr, T_max, eta_min=0)``:
  ``eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2`` (CosineAnnealingLR;
  like PyTorch it keeps following the cosine after T_max)
* ``cosine_warm_restarts(base_lr, T_0, T_mult=1, eta_min=0)``: SGDR (Loshchilov & Hutter):
  cycle i lasts ``T_0 * T_mult**i`` steps, ``T_cur`` counts steps since the last restart,
  ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``
  (CosineAnnealingWarmRestarts). ``.cycle_ends(num_steps)`` lists the steps that end a cycle
  (the last step before each restart, where lr is lowest): take snapshot-ensemble
  snapshots after those steps (Huang et al., "Snapshot Ensembles").
* ``linear_warmup(schedule, warmup_steps, start_factor=0.0)``: for ``step < warmup_steps``,
  ``schedule(0) * (start_factor + (1 - start_factor) * step / warmup_steps)``; afterwards
  ``schedule(step - warmup_steps)`` (PyTorch: SequentialLR of LinearLR then the schedule).

``Scheduler(optimizer, schedule)`` sets ``optimizer.lr = schedule(0)`` at once; each
``scheduler.step()`` (call it after ``optimizer.step``) advances to the next step and sets
the lr, like a torch scheduler.
"""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["step_decay", "exponential_decay", "cosine_annealing", "cosine_warm_restarts", "linear_warmup",
           "Scheduler"]


def _real(name: str, v, lo: float = 0.0, open_lo: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
        raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or v < lo or (open_lo and v == lo):
        raise ValueError(f"{name}: expected a finite number {'>' if open_lo else '>='} {lo}, got {v}")
    return v


def _int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    v = int(v)
    if v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v}")
    return v


class _Schedule:
    def __call__(self, step: int) -> float:
        return self.lr(_int("step", step, 0))

    def lr(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


class _StepDecay(_Schedule):
    def __init__(self, base_lr, step_size, gamma):
        self.base_lr, self.step_size, self.gamma = base_lr, step_size, gamma

    def lr(self, step):
        return self.base_lr * self.gamma ** (step // self.step_size)


class _Exponential(_Schedule):
    def __init__(self, base_lr, gamma):
        self.base_lr, self.gamma = base_lr, gamma

    def lr(self, step):
        return self.base_lr * self.gamma ** step


def _cos(base_lr, eta_min, t, T):
    return eta_min + (base_lr - eta_min) * (1.0 + math.cos(math.pi * t / T)) / 2.0


class _Cosine(_Schedule):
    def __init__(self, base_lr, T_max, eta_min):
        self.base_lr, self.T_max, self.eta_min = base_lr, T_max, eta_min

    def lr(self, step):
        return _cos(self.base_lr, self.eta_min, step, self.T_max)


class _WarmRestarts(_Schedule):
    def __init__(self, base_lr, T_0, T_mult, eta_min):
        self.base_lr, self.T_0, self.T_mult, self.eta_min = base_lr, T_0, T_mult, eta_min

    def cycle(self, step: int) -> tuple:
        """(cycle start, cycle length T_i) of the cycle containing ``step`` (exact integer arithmetic)."""
        start, length = 0, self.T_0
        if self.T_mult == 1:
            k = step // length
            return k * length, length
        while step >= start + length:
            start += length
            length *= self.T_mult
        return start, length

    def lr(self, step):
        start, length = self.cycle(step)
        return _cos(self.base_lr, self.eta_min, step - start, length)

    def is_cycle_end(self, step: int) -> bool:
        """True when ``step`` is the last step of its cycle (the next step restarts at base_lr)."""
        start, length = self.cycle(_int("step", step, 0))
        return step == start + length - 1

    def cycle_ends(self, num_steps: int) -> list:
        """Steps in ``[0, num_steps)`` that end a cycle: snapshot points for snapshot ensembles."""
        num_steps = _int("num_steps", num_steps, 0)
        out, start, length = [], 0, self.T_0
        while start + length - 1 < num_steps:
            out.append(start + length - 1)
            start += length
            length *= self.T_mult
        return out


class _Warmup(_Schedule):
    def __init__(self, schedule, warmup_steps, start_factor):
        self.schedule, self.warmup_steps, self.start_factor = schedule, warmup_steps, start_factor

    def lr(self, step):
        w = self.warmup_steps
        if step < w:
            return self.schedule(0) * (self.start_factor + (1.0 - self.start_factor) * step / w)
        return self.schedule(step - w)

    def is_cycle_end(self, step: int) -> bool:
        inner = getattr(self.schedule, "is_cycle_end", None)
        return inner is not None and step >= self.warmup_steps and inner(step - self.warmup_steps)

    def cycle_ends(self, num_steps: int) -> list:
        inner = getattr(self.schedule, "cycle_ends", None)
        if inner is None:
            return []
        return [s + self.warmup_steps for s in inner(max(0, num_steps - self.warmup_steps))]


def step_decay(base_lr: float, step_size: int, gamma: float = 0.1) -> Callable[[int], float]:
    """``base_lr * gamma ** (step // step_size)`` (torch StepLR)."""
    return _StepDecay(_real("base_lr", base_lr), _int("step_size", step_size, 1), _real("gamma", gamma))


def exponential_decay(base_lr: float, gamma: float) -> Callable[[int], float]:
    """``base_lr * gamma ** step`` (torch ExponentialLR)."""
    return _Exponential(_real("base_lr", base_lr), _real("gamma", gamma))


def cosine_annealing(base_lr: float, T_max: int, eta_min: float = 0.0) -> Callable[[int], float]:
    """``eta_min + (base_lr - eta_min) * (1 + cos(pi * step / T_max)) / 2`` (torch CosineAnnealingLR)."""
    return _Cosine(_real("base_lr", base_lr), _int("T_max", T_max, 1), _real("eta_min", eta_min))


def cosine_warm_restarts(base_lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0):
    """SGDR: cosine cycles of length ``T_0 * T_mult**i`` (torch CosineAnnealingWarmRestarts).

    The returned schedule also has ``cycle_ends(num_steps)`` and ``is_cycle_end(step)``."""
    return _WarmRestarts(_real("base_lr", base_lr), _int("T_0", T_0, 1), _int("T_mult", T_mult, 1),
                         _real("eta_min", eta_min))


def linear_warmup(schedule: Callable[[int], float], warmup_steps: int, start_factor: float = 0.0):
    """Linear ramp from ``start_factor * schedule(0)`` over ``warmup_steps``, then ``schedule(step - warmup_steps)``."""
    if not callable(schedule):
        raise TypeError(f"schedule: expected a callable step -> lr, got {type(schedule).__name__}")
    sf = _real("start_factor", start_factor)
    if sf > 1.0:
        raise ValueError(f"start_factor: expected a number in [0, 1], got {sf}")
    return _Warmup(schedule, _int("warmup_steps", warmup_steps, 0), sf)


class Scheduler:
    """Sets ``optimizer.lr = schedule(step)``: at construction for step 0, then at each :meth:`step`."""

    def __init__(self, optimizer, schedule: Callable[[int], float]):
        if not hasattr(optimizer, "lr"):
            raise TypeError("optimizer: expected an object with a settable lr (nnkernels.optim)")
        if not callable(schedule):
            raise TypeError(f"schedule: expected a callable step -> lr, got {type(schedule).__name__}")
        self.optimizer, self.schedule, self.last_step = optimizer, schedule, 0
        self.optimizer.lr = self.schedule(0)

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @property
    def cycle_ended(self) -> bool:
        """True when the step just trained (``last_step - 1``) ended a warm-restart cycle: take a snapshot."""
        f = getattr(self.schedule, "is_cycle_end", None)
        return f is not None and self.last_step > 0 and f(self.last_step - 1)

    def step(self) -> float:
        self.last_step += 1
        self.optimizer.lr = self.schedule(self.last_step)
        return self.optimizer.lr
