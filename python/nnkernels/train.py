"""``python -m nnkernels train``: train an MLP end to end with the kernels.

    python -m nnkernels train --dataset digits --hidden 256,256 --norm batch --optimizer adam --epochs 30
    python -m nnkernels train --dataset spiral --hidden 100 --activation relu --norm none --plot spiral.png
    python -m nnkernels train --dataset data.npz --snapshots 5 --schedule restarts --json run.json
    mpiexec -n 2 python -m nnkernels train --distributed --dataset digits

Datasets (no download): ``digits`` (scikit-learn's bundled 8x8 digits, 1797 samples, a fixed
80/20 split), ``spiral`` (the classic 3-arm spiral, generated from the seed), or a ``.npz`` file
with ``X_train``, ``y_train``, ``X_val``, ``y_val`` (features are flattened to 2-D). Features are
standardised with :class:`nnkernels.preprocessing.StandardScaler` fitted on the training split.

Every run is reproducible from ``--seed`` (weights, shuffling, spiral data): bit-identical on the
same machine with the same thread count (and, with ``--distributed``, the same rank count).
``--snapshots K`` trains with cosine warm restarts (K cycles), keeps the model at the end of each
cycle and reports the ensemble that averages their predicted probabilities (Huang et al. 2017,
"Snapshot ensembles: train 1, get M for free").
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np

from . import nn
from .losses import softmax_cross_entropy

__all__ = ["TrainConfig", "load_dataset", "make_spiral", "make_optimizer", "make_schedule", "run", "main",
           "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "restarts")
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 1e-3, "adam": 1e-3,
              "adamw": 1e-3}


@dataclasses.dataclass
class TrainConfig:
    dataset: str = "digits"
    hidden: tuple = (256, 256)
    activation: str = "relu"
    norm: str = "batch"
    init: str = "kaiming"
    optimizer: str = "adam"
    lr: Optional[float] = None
    schedule: str = "constant"
    epochs: int = 20
    batch_size: int = 64
    snapshots: int = 0
    seed: int = 0
    weight_decay: float = 0.0
    ema: float = 0.0
    dtype: str = "float32"
    distributed: bool = False
    plot: Optional[str] = None
    json: Optional[str] = None
    quiet: bool = False
    threads: Optional[int] = None  # CLI: kernels and BLAS; None: see cli_threads

    def learning_rate(self) -> float:
        return float(self.lr if self.lr is not None else DEFAULT_LR[self.optimizer])


# ----------------------------------------------------------------------------- data

def make_spiral(points_per_class: int = 300, classes: int = 3, *, noise: float = 0.2, seed: int = 0) -> tuple:
    """The cs231n spiral: ``classes`` arms of ``points_per_class`` 2-D points each. Returns (X, y)."""
    rng = np.random.default_rng(seed)
    X = np.zeros((points_per_class * classes, 2))
    y = np.zeros(points_per_class * classes, np.int64)
    for k in range(classes):
        ix = slice(points_per_class * k, points_per_class * (k + 1))
        r = np.linspace(0.0, 1.0, points_per_class)
        t = np.linspace(k * 4.0, (k + 1) * 4.0, points_per_class) + rng.standard_normal(points_per_class) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[ix] = k
    return X, y


def _split(X, y, val_fraction: float, seed: int) -> tuple:
    perm = np.random.default_rng(seed).permutation(len(X))
    n_val = int(round(len(X) * val_fraction))
    va, tr = perm[:n_val], perm[n_val:]
    return X[tr], y[tr], X[va], y[va]


def load_dataset(name: str, *, seed: int = 0, dtype=np.float32) -> dict:
    """{'X_train', 'y_train', 'X_val', 'y_val', 'name', 'classes'} with standardised features."""
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        Xtr, ytr, Xva, yva = _split(d.data.astype(np.float64), d.target.astype(np.int64), 0.2, seed=12345)
    elif name == "spiral":
        X, y = make_spiral(seed=seed)
        Xtr, ytr, Xva, yva = _split(X, y, 0.2, seed=seed)
    elif name.endswith(".npz"):
        try:
            with np.load(name) as f:
                missing = [k for k in ("X_train", "y_train", "X_val", "y_val") if k not in f.files]
                if missing:
                    raise ValueError(f"dataset: {name} lacks the arrays {missing} "
                                     "(expected X_train, y_train, X_val, y_val)")
                Xtr, ytr, Xva, yva = (np.asarray(f[k]) for k in ("X_train", "y_train", "X_val", "y_val"))
        except FileNotFoundError as exc:
            raise ValueError(f"dataset: no such file {name!r}") from exc
        Xtr = Xtr.reshape(len(Xtr), -1).astype(np.float64)
        Xva = Xva.reshape(len(Xva), -1).astype(np.float64)
        for nm, lab in (("y_train", ytr), ("y_val", yva)):
            if lab.dtype.kind not in "iu":
                raise ValueError(f"dataset: {nm} must hold integer class labels, got dtype {lab.dtype}")
        ytr, yva = ytr.astype(np.int64).ravel(), yva.astype(np.int64).ravel()
        if Xtr.shape[1] != Xva.shape[1] or len(Xtr) != len(ytr) or len(Xva) != len(yva) or len(Xtr) == 0:
            raise ValueError(f"dataset: inconsistent shapes in {name}: X_train {Xtr.shape}, y_train {ytr.shape}, "
                             f"X_val {Xva.shape}, y_val {yva.shape}")
        if ytr.min() < 0 or (len(yva) and yva.min() < 0):
            raise ValueError("dataset: labels must be non-negative")
    else:
        raise ValueError(f"dataset: expected digits, spiral or a PATH.npz, got {name!r}")
    from .preprocessing import StandardScaler

    scaler = StandardScaler()
    Xtr = scaler.fit_transform(Xtr)
    Xva = scaler.transform(Xva) if len(Xva) else Xva
    classes = int(max(ytr.max(), yva.max() if len(yva) else 0)) + 1
    dt = np.dtype(dtype)
    return {"X_train": np.ascontiguousarray(Xtr, dt), "y_train": ytr, "X_val": np.ascontiguousarray(Xva, dt),
            "y_val": yva, "name": name, "classes": classes}


# ----------------------------------------------------------------------------- optimizers and schedules

def make_optimizer(name: str, params: list, lr: float, *, weight_decay: float = 0.0) -> Any:
    """An :mod:`nnkernels.optim` optimizer by CLI name (momentum / nesterov use 0.9)."""
    from . import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "nesterov":
        return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "adagrad":
        return optim.Adagrad(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2)
    raise ValueError(f"optimizer: expected one of {OPTIMIZERS}, got {name!r}")


def make_schedule(name: str, lr: float, total_steps: int, steps_per_epoch: int, cycles: int = 1) -> tuple:
    """(lr_at(step) for 0-based steps, sorted 1-based step counts after which a cycle ends).

    ``step``: x0.1 after each third of training; ``cosine``: one cosine decay over the run;
    ``restarts``: ``cycles`` cosine warm-restart cycles of equal length (SGDR, T_mult = 1)."""
    from . import schedules as S

    total_steps = max(int(total_steps), 1)
    if name == "constant":
        return (lambda step: lr), [total_steps]
    if name == "step":
        return S.step_decay(lr, max(total_steps // 3, 1), 0.1), [total_steps]
    if name == "cosine":
        return S.cosine_annealing(lr, total_steps), [total_steps]
    if name == "restarts":
        t0 = max(total_steps // max(int(cycles), 1), 1)
        sched = S.cosine_warm_restarts(lr, t0, 1)
        return sched, [int(e) + 1 for e in sched.cycle_ends(total_steps)]
    raise ValueError(f"schedule: expected one of {SCHEDULES}, got {name!r}")


# ----------------------------------------------------------------------------- the loop

class _Progress:
    """One line per epoch: a bar that fills over the batches (on a terminal) and the epoch's metrics."""

    def __init__(self, epochs: int, batches: int, enabled: bool, stream=None):
        stream = sys.stdout if stream is None else stream
        self.epochs, self.batches, self.enabled, self.stream = epochs, batches, enabled, stream
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()

    def _bar(self, done: int, width: int = 24) -> str:
        k = int(width * done / max(self.batches, 1))
        return "[" + "=" * k + (">" if k < width else "") + "." * max(width - k - 1, 0) + "]"

    def update(self, epoch: int, done: int, loss: float, acc: float) -> None:
        if self.tty:
            self.stream.write(f"\repoch {epoch:>3}/{self.epochs} {self._bar(done)} loss {loss:.4f} acc {acc:.4f}")
            self.stream.flush()

    def end(self, epoch: int, rec: dict) -> None:
        if not self.enabled:
            return
        line = (f"epoch {epoch:>3}/{self.epochs} {self._bar(self.batches)} loss {rec['train_loss']:.4f} "
                f"acc {rec['train_acc']:.4f} | val loss {rec['val_loss']:.4f} acc {rec['val_acc']:.4f} "
                f"| lr {rec['lr']:.3g} | {rec['seconds']:.2f}s")
        self.stream.write(("\r\033[K" if self.tty else "") + line + "\n")
        self.stream.flush()


def _ensemble_accuracy(model: nn.Sequential, states: list, X: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy and mean negative log-likelihood of each snapshot and of their ensemble (probabilities
    averaged over the snapshots)."""
    current = model.state()
    probs, accs, nlls = None, [], []
    rows = np.arange(len(y))
    tiny = np.finfo(np.float64).tiny
    try:
        for st in states:
            model.load_state(st)
            p = nn.predict_proba(model, X)
            accs.append(float((p.argmax(1) == y).mean()))
            nlls.append(float(-np.log(np.maximum(p[rows, y], tiny)).mean()))
            probs = p if probs is None else probs + p
    finally:
        model.load_state(current)
    probs /= len(states)
    return {"val_acc": accs, "val_loss": nlls, "ensemble_val_acc": float((probs.argmax(1) == y).mean()),
            "ensemble_val_loss": float(-np.log(np.maximum(probs[rows, y], tiny)).mean())}


def train_model(model: nn.Sequential, data: dict, cfg: TrainConfig, *, comm=None,
                on_epoch: Optional[Callable[[dict], None]] = None) -> dict:
    """Mini-batch training of ``model`` on ``data`` as configured; returns the history and summary."""
    from . import distributed

    Xtr, ytr, Xva, yva = data["X_train"], data["y_train"], data["X_val"], data["y_val"]
    rank, size = (comm.rank, comm.size) if comm is not None else (0, 1)
    distributed.attach(model, comm)
    n = len(Xtr)
    bs = int(cfg.batch_size)
    steps_per_epoch = math.ceil(n / bs)
    total = steps_per_epoch * int(cfg.epochs)
    lr = cfg.learning_rate()
    schedule = cfg.schedule
    if cfg.snapshots and schedule != "restarts":
        schedule = "restarts"
    lr_at, cycle_ends = make_schedule(schedule, lr, total, steps_per_epoch, max(cfg.snapshots, 1))
    params = model.params()
    opt = make_optimizer(cfg.optimizer, params, lr_at(0), weight_decay=cfg.weight_decay)
    ema = nn.EMA(model, cfg.ema) if cfg.ema else None
    rng = np.random.default_rng(cfg.seed + 1)
    progress = _Progress(cfg.epochs, steps_per_epoch, enabled=not cfg.quiet and rank == 0)
    history: list = []
    step_losses: list = []
    snapshots: list = []
    snapshot_steps: list = []
    ends = set(cycle_ends) if cfg.snapshots else set()
    dl_buf: dict = {}
    step = 0
    t_start = time.perf_counter()
    with nn.kernel_threads():  # BLAS owns the cores (see nn.kernel_threads)
        for epoch in range(1, int(cfg.epochs) + 1):
            t0 = time.perf_counter()
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for b, idx in enumerate(nn.iterate_minibatches(n, bs, rng), start=1):
                N = len(idx)
                if N < size:  # a last global batch smaller than the rank count is skipped (every rank agrees)
                    continue
                lo, hi = distributed.shard_bounds(N, rank, size)
                xb, yb = Xtr[idx[lo:hi]], ytr[idx[lo:hi]]
                logits = model.forward(xb)
                out = dl_buf.get(logits.shape)
                if out is None or out.dtype != logits.dtype:
                    out = dl_buf[logits.shape] = np.empty_like(logits)
                loss, dlogits = softmax_cross_entropy(logits, yb, out=out)
                hits = int((logits.argmax(1) == yb).sum())
                if size > 1:
                    distributed.scaled_loss_gradient(dlogits, hi - lo, N)
                model.backward(dlogits)
                grads = model.grads()
                if size > 1:
                    stats = np.array([loss * (hi - lo), hits], np.float64)
                    comm.allreduce_sum(grads + [stats])
                    loss_b, hits = float(stats[0]) / N, int(stats[1])
                else:
                    loss_b = loss
                opt.lr = lr_at(step)
                opt.step(grads)
                if ema is not None:
                    ema.update()
                step += 1
                if step in ends:
                    snapshots.append(model.state())
                    snapshot_steps.append(step)
                loss_sum += loss_b * N
                step_losses.append(float(loss_b))
                correct += hits
                seen += N
                progress.update(epoch, b, loss_sum / max(seen, 1), correct / max(seen, 1))
            if ema is not None:
                with ema.applied(model):
                    val_loss, val_acc = nn.evaluate(model, Xva, yva)
            else:
                val_loss, val_acc = nn.evaluate(model, Xva, yva)
            rec = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                   "val_loss": val_loss, "val_acc": val_acc, "lr": float(opt.lr), "seconds": time.perf_counter() - t0}
            history.append(rec)
            progress.end(epoch, rec)
            if on_epoch is not None:
                on_epoch(rec)
    result = {"history": history, "step_losses": step_losses, "steps": step, "seconds": time.perf_counter() - t_start,
              "final": {"train_loss": history[-1]["train_loss"], "train_acc": history[-1]["train_acc"],
                        "val_loss": history[-1]["val_loss"], "val_acc": history[-1]["val_acc"]} if history else {}}
    if snapshots:
        ens = _ensemble_accuracy(model, snapshots, Xva, yva)
        result["snapshots"] = {"steps": snapshot_steps, **ens, "best_single_val_acc": max(ens["val_acc"]),
                               "best_single_val_loss": min(ens["val_loss"])}
    return result


def run(cfg: TrainConfig) -> dict:
    """Load the data, build the model, train, and write the plot / JSON if asked."""
    comm = None
    if cfg.distributed:
        from . import distributed

        comm = distributed.world()
    data = load_dataset(cfg.dataset, seed=cfg.seed, dtype=np.dtype(cfg.dtype))
    sizes = [data["X_train"].shape[1], *cfg.hidden, data["classes"]]
    model = nn.mlp(sizes, activation=cfg.activation, norm=cfg.norm, init=cfg.init, seed=cfg.seed,
                   dtype=np.dtype(cfg.dtype))
    rank = comm.rank if comm is not None else 0
    if rank == 0 and not cfg.quiet:
        print(f"dataset {cfg.dataset}: {len(data['X_train'])} train / {len(data['X_val'])} val, "
              f"{sizes[0]} features, {data['classes']} classes; model {'-'.join(map(str, sizes))} "
              f"({model.num_params()} parameters), {cfg.activation}, norm {cfg.norm}, init {cfg.init}, "
              f"{cfg.optimizer} lr {cfg.learning_rate():g}, schedule "
              f"{'restarts' if cfg.snapshots else cfg.schedule}" +
              (f", {comm.size} ranks" if comm is not None else ""), flush=True)
    result = train_model(model, data, cfg, comm=comm)
    result["config"] = dataclasses.asdict(cfg)
    result["config"]["hidden"] = list(cfg.hidden)
    result["model"] = {"sizes": sizes, "parameters": model.num_params()}
    result["ranks"] = comm.size if comm is not None else 1
    if rank == 0:
        _summary(result)  # the result line(s), also with --quiet
        if cfg.plot:
            plot_history(result["history"], cfg.plot, title=f"{cfg.dataset}: {'-'.join(map(str, sizes))}, "
                                                           f"{cfg.optimizer}, norm {cfg.norm}")
        if cfg.json:
            with open(cfg.json, "w") as f:
                json.dump(result, f, indent=1)
    return result


def _summary(result: dict) -> None:
    f = result["final"]
    print(f"done: {result['steps']} steps in {result['seconds']:.1f}s; final train loss {f['train_loss']:.4f} "
          f"acc {f['train_acc']:.4f}; val loss {f['val_loss']:.4f} acc {f['val_acc']:.4f}; "
          f"best val acc {max(h['val_acc'] for h in result['history']):.4f}")
    s = result.get("snapshots")
    if s:
        singles = ", ".join(f"{a:.4f}" for a in s["val_acc"])
        print(f"snapshot ensemble of {len(s['val_acc'])}: val acc {s['ensemble_val_acc']:.4f}, "
              f"val loss {s['ensemble_val_loss']:.4f} (snapshots: {singles}; best single acc "
              f"{s['best_single_val_acc']:.4f}, loss {s['best_single_val_loss']:.4f})")


def plot_history(history: list, path: str, *, title: str = "") -> None:
    """Loss and accuracy curves (train and validation) per epoch, written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], label="train")
    a1.plot(ep, [h["val_loss"] for h in history], label="validation")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy loss")
    a1.set_yscale("log")
    a1.legend()
    a2.plot(ep, [h["train_acc"] for h in history], label="train")
    a2.plot(ep, [h["val_acc"] for h in history], label="validation")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line

def _hidden(s: str) -> tuple:
    try:
        sizes = tuple(int(t) for t in s.split(",") if t.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes like 256,256, got {s!r}") from None
    if any(k < 1 for k in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {s!r}")
    return sizes


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s}")
    return v


def _nonneg_int(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {s}")
    return v


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s}")
    return v


def parse_args(argv: Optional[list] = None) -> TrainConfig:
    from ._cli import HelpFormatter, output_path_problem

    p = argparse.ArgumentParser(prog="python -m nnkernels train", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dataset", default="digits", help="digits, spiral or PATH.npz")
    p.add_argument("--hidden", type=_hidden, default="256,256", help="hidden layer sizes, comma-separated")
    p.add_argument("--activation", choices=nn.ACTIVATIONS, default="relu", help="activation of the hidden layers")
    p.add_argument("--norm", choices=nn.NORMS, default="batch",
                   help="normalization before each hidden activation (fused with it)")
    p.add_argument("--init", choices=nn.INITS, default="kaiming",
                   help="weight initialisation (small: normal with std 0.01)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam",
                   help="update rule (momentum and nesterov: SGD with momentum 0.9)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: per optimizer, " +
                        ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    p.add_argument("--schedule", choices=SCHEDULES, default="constant",
                   help="learning-rate schedule (step: x0.1 after each third of training)")
    p.add_argument("--epochs", type=_positive_int, default=20, help="passes over the training set")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="samples per step (over all ranks)")
    p.add_argument("--snapshots", type=_nonneg_int, default=0,
                   help="K > 0: snapshot ensemble of K cosine warm-restart cycles (implies --schedule restarts)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (adamw: decoupled; 0 there "
                                                                      "means 0.01)")
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights for evaluation (0: off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights, the shuffling and the spiral data")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="element type of the model")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="write loss and accuracy curves (a missing folder is created)")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write the history and summary as JSON (a missing folder is created)")
    p.add_argument("--distributed", action="store_true", help="data-parallel over MPI ranks (run under mpiexec)")
    p.add_argument("--threads", type=_positive_int, default=None, help="threads for the kernels and BLAS")
    p.add_argument("--quiet", action="store_true", help="print only the result line(s), no header or progress")
    a = p.parse_args(argv)
    if a.ema and not 0.0 < a.ema < 1.0:
        p.error(f"--ema: expected a decay in (0, 1), got {a.ema}")
    if a.weight_decay < 0:
        p.error(f"--weight-decay: expected a non-negative value, got {a.weight_decay}")
    # output files are checked before training, so that a run never ends in a failed write
    if a.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("--plot: needs matplotlib (pip install matplotlib)")
    for flag, path in (("--plot", a.plot), ("--json", a.json)):
        if path:
            problem = output_path_problem(path)
            if problem:
                p.error(f"{flag}: {problem}")
    return TrainConfig(dataset=a.dataset, hidden=tuple(a.hidden), activation=a.activation, norm=a.norm,
                       init=a.init, optimizer=a.optimizer, lr=a.lr, schedule=a.schedule, epochs=a.epochs,
                       batch_size=a.batch_size, snapshots=a.snapshots, seed=a.seed, weight_decay=a.weight_decay,
                       ema=a.ema, dtype=a.dtype, distributed=a.distributed, plot=a.plot, json=a.json,
                       quiet=a.quiet, threads=a.threads)


@contextlib.contextmanager
def cli_threads(threads: Optional[int], distributed_run: bool) -> Iterator[None]:
    """Thread counts of a CLI run (restored afterwards).

    ``threads`` (``--threads N``): N for the kernels and for BLAS. None: the kernels get this
    process's share of the cores (:func:`nnkernels.distributed.threads_per_rank`: the CPUs it may
    use divided by the MPI ranks on this machine) and BLAS one thread. The CLI's networks are
    small (the default step's matrix products are ~16 M multiply-adds, well under a millisecond on
    one core): splitting them over threads gains little when the machine is idle, and when another
    process wants a core a product split in two waits for its descheduled half. Measured on
    2 cores under load: 11-70 s for the default run with BLAS at 2 threads, 0.8-2.5 s at one.
    """
    import nnkernels

    from . import distributed

    if threads is None:
        comm = distributed.world() if distributed_run else None
        kernels, blas = distributed.threads_per_rank(distributed.ranks_on_this_node(comm)), 1
    else:
        kernels = blas = int(threads)
    before = nnkernels.get_num_threads()
    nnkernels.set_num_threads(kernels)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            yield
        else:
            with threadpool_limits(blas, user_api="blas"):
                yield
    finally:
        nnkernels.set_num_threads(before)


def main(argv: Optional[list] = None) -> int:
    cfg = parse_args(argv)
    try:
        with cli_threads(cfg.threads, cfg.distributed):
            run(cfg)
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
