"""Bad input over every public function: one table drives every case.

For each public function the table (``SPECS``) holds a generator of a valid call (keyword
arguments), the role of every array argument and the domain of every scalar argument; the
mutations (wrong dtype, shape, 0-d, empty, negative/zero strides, misaligned buffers,
read-only or overlapping outputs, non-finite hyperparameters, wrong keyword types, ...) are
generated from those roles, plus a few function-specific extras. Each case expects one of

* ``RAISE``: a TypeError or ValueError whose message starts with the argument's name (or one
  of the names of the arguments it conflicts with), and every array argument bitwise unchanged;
* ``OK``: a legitimate input (a strided or read-only input, an empty array, out = input...):
  the result and every updated array equal the reference on plain contiguous copies, and the
  other arrays are unchanged;
* ``EITHER``: one of the two (misaligned float buffers may be refused or read correctly).
* ``HOST_RAISE``: bad values only a host can see without synchronising (batchnorm_merge_stats' counts
  and m2s): ``RAISE`` for host arrays; with GPU arrays the call succeeds and every float result is NaN.

The same table runs in every other array library this machine has (tests/array_libraries.py: torch CPU
tensors here; torch CUDA tensors and CuPy arrays with a GPU): each case whose arrays can be moved there as they
are runs again with them, and must be refused with the NumPy call's exact exception and message, write
nothing, or succeed with results in the main input's library (``test_bad_input_in_library``). This table is
the op registry: adding an op adds one ``Spec``.

Crash-capable cases run out of process: one worker subprocess per op family runs its cases in
order and reports each; a crash or hang ends the worker and fails exactly the case it was in
(the next worker resumes after it). The workers of all families run concurrently.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ml_dtypes
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import array_libraries as AL  # noqa: E402

RAISE, OK, EITHER = "raise", "ok", "either"
# Bad values that only a host can see before writing (a device could not read them without synchronising): a
# TypeError/ValueError for host arrays, and for GPU arrays a call that succeeds with every float result NaN.
HOST_RAISE = "host_raise"
_POISON = "poison"

# Roles of array arguments.
IN = "in"            # read only; any layout must work (strided, negative, zero strides, read-only, lists)
OUT = "out"          # the `out=` keyword (written; must be a writeable array of the exact shape/dtype)
STATE = "state"      # updated in place and contiguous-only (optimizer params/state): layouts are refused
STATE_ANY = "state_any"  # updated in place, any writeable layout may work (batch-norm running stats)
LABELS = "labels"    # integer input
IN_CONTIG = "in_contig"  # read only, but the function documents C-contiguous arrays only (optimizer grads)


@dataclass
class Arr:
    role: str
    free: bool = False          # the argument's shape is not fixed by the other arguments
    partners: tuple = ()        # arguments a shape/dtype conflict may be reported against
    optional: bool = False      # None is a valid value
    accepts_0d: bool = False    # a 0-d array is a valid value (elementwise ops)
    accepts_empty: bool = False  # an empty array of the same ndim is valid (free shapes)
    is_list: bool = False       # a list of arrays (optimizers): mutations apply to element 0
    axis: int = -1              # the axis whose length the other arguments fix (wrong-shape mutation)
    derived: bool = False       # must be consistent with other arguments (saved mean/rstd...): no value-changing views
    lenient_dtypes: bool = False  # integer/bool/float16 input may be converted (real numbers) or refused
    # object and str arrays of numbers may be converted (scikit-learn's check_array does, and its
    # check_estimator requires it for object arrays): the estimators of nnkernels.preprocessing
    sklearn_dtypes: bool = False
    # float16 / bfloat16 storage accepted (issue 15): this argument in a 16-bit dtype, the other
    # arguments as they are (float32), is a valid call (an activation's x; layer norm's x with
    # float32 gamma/beta); elsewhere a 16-bit array next to float32 partners is a dtype conflict
    takes_16bit: bool = False


@dataclass
class Scalar:
    bad: tuple                  # values that must be refused (naming the argument)
    good: tuple = ()            # other values that must be accepted (NumPy scalars...)


@dataclass
class Spec:
    name: str
    family: str
    fn: Callable
    make: Callable               # rng -> dict of keyword arguments of a valid call
    arrays: dict = field(default_factory=dict)
    scalars: dict = field(default_factory=dict)
    ref: Callable | None = None  # kwargs (contiguous copies, no `out`) -> result; updates state in place
    extra: Callable | None = None  # rng -> list of (case name, kwargs, expect, names)
    check_names: bool = True
    out_default: bool = False    # the function has an `out=` keyword
    mutable: tuple = ()          # keyword names whose arrays the call may legitimately change
    scalar_base: dict = field(default_factory=dict)  # merged into the valid call for scalar mutations


# ----------------------------------------------------------------------------- valid calls

def _rng():
    return np.random.default_rng(1234)


def _f32(rng, *shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


NAN, INF = float("nan"), float("inf")
# Values no real-valued hyperparameter may take; each spec adds its own range violations.
NONFINITE = (NAN, INF, -INF)
WRONG_TYPES = ("0.1", None, [0.1], 1j)


def _real(*extra_bad, good=()):
    return Scalar(bad=NONFINITE + WRONG_TYPES + tuple(extra_bad), good=good)


def _real_not_none():  # None means "the default" (PyTorch's leaky-ReLU slope of calculate_gain)
    return Scalar(bad=NONFINITE + tuple(v for v in WRONG_TYPES if v is not None), good=(None,))


def _build_specs() -> list:
    import nnkernels as nk
    from nnkernels import reference as R
    from nnkernels.reference import activations as Ra, losses as Rl, normalization as Rn, optimizers as Ro

    specs = []
    slope = _real(good=(np.float32(0.2), -0.5, 0))

    # --------------------------------------------------------------- activations
    for name in ("relu", "sigmoid", "tanh", "leaky_relu"):
        kw_scal = {"negative_slope": slope} if name == "leaky_relu" else {}

        def make(rng, name=name):
            kw = {"x": _f32(rng, 4, 7)}
            if name == "leaky_relu":
                kw["negative_slope"] = 0.1
            return kw
        specs.append(Spec(name, "activations", getattr(nk, name), make,
                          {"x": Arr(IN, free=True, accepts_0d=True, accepts_empty=True, takes_16bit=True),
                           "out": Arr(OUT)},
                          kw_scal, ref=getattr(Ra, name), out_default=True))
    for name, second in (("relu_backward", "x"), ("leaky_relu_backward", "x"), ("sigmoid_backward", "y"),
                         ("tanh_backward", "y")):
        def make(rng, name=name, second=second):
            kw = {"dout": _f32(rng, 4, 7), second: _f32(rng, 4, 7, lo=0.05, hi=0.95)}
            if name == "leaky_relu_backward":
                kw["negative_slope"] = 0.1
            return kw
        specs.append(Spec(name, "activations", getattr(nk, name), make,
                          {"dout": Arr(IN, free=True, partners=(second,), accepts_0d=False),
                           second: Arr(IN, partners=("dout",)), "out": Arr(OUT)},
                          {"negative_slope": slope} if name == "leaky_relu_backward" else {},
                          ref=getattr(Ra, name), out_default=True))

    # --------------------------------------------------------------- losses
    def make_xent(rng):
        return {"logits": _f32(rng, 6, 5), "labels": rng.integers(0, 5, size=6).astype(np.int64)}

    def xent_extra(rng):
        cases = []
        base = make_xent(rng)
        for bad in (5, -1, 2**40):
            lab = base["labels"].copy()
            lab[3] = bad
            cases.append((f"labels-value-{bad}", dict(base, labels=lab), RAISE, ("labels",)))
        u = base["labels"].astype(np.uint64)
        u[2] = np.uint64(2**63 + 1)
        cases.append(("labels-uint64-huge", dict(base, labels=u), RAISE, ("labels",)))
        cases.append(("labels-int32", dict(base, labels=base["labels"].astype(np.int32)), OK, ()))
        cases.append(("labels-uint8", dict(base, labels=base["labels"].astype(np.uint8)), OK, ()))
        cases.append(("empty-batch", {"logits": np.zeros((0, 5), np.float32), "labels": np.zeros(0, np.int64)},
                      OK, ()))
        cases.append(("zero-classes", {"logits": np.zeros((6, 0), np.float32), "labels": np.zeros(6, np.int64)},
                      RAISE, ("logits",)))
        # item 1: labels sharing memory with out (a large batch so that a stale re-read goes out of bounds)
        n, c = 4096, 8
        buf = bytearray(n * c * 4)
        out = np.frombuffer(buf, np.float32).reshape(n, c)
        labels = np.frombuffer(buf, np.int64)[:n]
        labels[:] = np.random.default_rng(0).integers(0, c, size=n)
        cases.append(("labels-share-out", {"logits": _f32(rng, n, c), "labels": labels, "out": out}, EITHER,
                      ("labels", "out")))
        return cases
    specs.append(Spec("softmax_cross_entropy", "losses", nk.softmax_cross_entropy, make_xent,
                      {"logits": Arr(IN, partners=("labels",), axis=0, takes_16bit=True), "labels": Arr(LABELS, partners=("logits",)),
                       "out": Arr(OUT)},
                      {}, ref=lambda logits, labels: Rl.softmax_cross_entropy(logits, labels), extra=xent_extra,
                      out_default=True))

    # --------------------------------------------------------------- normalization
    eps = _real(-1e-3)
    act = Scalar(bad=("gelu", 1, "RELU"), good=("relu", "leaky_relu"))

    def make_ln(rng):
        return {"x": _f32(rng, 5, 7), "gamma": _f32(rng, 7), "beta": _f32(rng, 7), "eps": 1e-5}
    specs.append(Spec("layernorm_forward", "normalization", nk.layernorm_forward, make_ln,
                      {"x": Arr(IN, free=True, partners=("gamma", "beta"), takes_16bit=True),
                       "gamma": Arr(IN, optional=True, partners=("x",)),
                       "beta": Arr(IN, optional=True, partners=("x",)), "out": Arr(OUT)},
                      {"eps": eps, "negative_slope": _real(), "activation": act},
                      ref=Rn.layernorm_forward, out_default=True, scalar_base={"activation": "leaky_relu"}))

    def make_ln_bwd(rng):
        kw = make_ln(rng)
        y, mean, rstd = nk.layernorm_forward(kw["x"], kw["gamma"], kw["beta"], activation="relu")
        return {"dout": _f32(rng, 5, 7), "x": kw["x"], "gamma": kw["gamma"], "mean": mean, "rstd": rstd,
                "activation": "relu", "y": y}
    specs.append(Spec("layernorm_backward", "normalization", nk.layernorm_backward, make_ln_bwd,
                      {"dout": Arr(IN, partners=("x", "y")),
                       "x": Arr(IN, partners=("dout", "gamma", "mean", "rstd", "y"), derived=True),
                       "gamma": Arr(IN, optional=True, partners=("x",)),
                       "mean": Arr(IN, partners=("x", "rstd"), derived=True),
                       "rstd": Arr(IN, partners=("x", "mean"), derived=True),
                       "y": Arr(IN, partners=("x", "dout"), derived=True), "out": Arr(OUT)},
                      {"negative_slope": _real(-0.5), "activation": act}, ref=Rn.layernorm_backward, out_default=True,
                      scalar_base={"activation": "leaky_relu"}))

    def make_bn(rng):
        return {"x": _f32(rng, 4, 3, 5), "gamma": _f32(rng, 3), "beta": _f32(rng, 3),
                "running_mean": np.zeros(3, np.float32), "running_var": np.ones(3, np.float32)}

    def bn_extra(rng):
        base = make_bn(rng)
        rm = base["running_mean"]
        cases = [
            # item 8: running statistics that cannot be updated or that alias each other / out
            ("running-stats-lists", dict(base, running_mean=[0.0] * 3, running_var=[1.0] * 3), RAISE,
             ("running_mean", "running_var")),
            ("running-mean-is-var", dict(base, running_mean=rm, running_var=rm), RAISE,
             ("running_mean", "running_var")),
            ("running-mean-only", dict(base, running_var=None), RAISE, ("running_mean", "running_var")),
            ("eval-without-stats", dict(base, training=False, running_mean=None, running_var=None), RAISE,
             ("running_mean", "running_var")),
            ("eval-mode", dict(base, training=False), OK, ()),
            # item 9: one value per channel in training mode
            ("one-value-per-channel-2d", dict(base, x=_f32(rng, 1, 3)), RAISE, ("x",)),
            ("one-value-per-channel-4d", dict(base, x=_f32(rng, 1, 3, 1, 1)), RAISE, ("x",)),
            ("x-1d", dict(base, x=_f32(rng, 3)), RAISE, ("x",)),
            ("momentum-wrong-type", dict(base, momentum="0.1"), RAISE, ("momentum",)),
        ]
        x = base["x"]
        buf = np.zeros(x.size + 3, np.float32)
        out = buf[:x.size].reshape(x.shape)
        cases.append(("running-mean-overlaps-out", dict(base, out=out, running_mean=buf[x.size:]), EITHER,
                      ("running_mean", "out")))
        return cases
    specs.append(Spec("batchnorm_forward", "normalization", nk.batchnorm_forward, make_bn,
                      {"x": Arr(IN, partners=("gamma", "beta", "running_mean", "running_var"), axis=1,
                                takes_16bit=True),
                       "gamma": Arr(IN, optional=True, partners=("x",)),
                       "beta": Arr(IN, optional=True, partners=("x",)),
                       "running_mean": Arr(STATE_ANY, optional=True, partners=("x", "running_var")),
                       "running_var": Arr(STATE_ANY, optional=True, partners=("x", "running_mean")), "out": Arr(OUT)},
                      {"eps": eps, "momentum": Scalar(bad=NONFINITE, good=(np.float32(0.5), 1)),
                       "negative_slope": _real(), "activation": act},
                      ref=Rn.batchnorm_forward, extra=bn_extra, out_default=True,
                      mutable=("running_mean", "running_var"), scalar_base={"activation": "leaky_relu"}))

    def make_bn_bwd(rng):
        kw = make_bn(rng)
        y, mean, rstd = nk.batchnorm_forward(kw["x"], kw["gamma"], kw["beta"], activation="relu")
        return {"dout": _f32(rng, 4, 3, 5), "x": kw["x"], "gamma": kw["gamma"], "mean": mean, "rstd": rstd,
                "activation": "relu", "y": y}
    vec = ("x", "mean", "rstd", "gamma")
    specs.append(Spec("batchnorm_backward", "normalization", nk.batchnorm_backward, make_bn_bwd,
                      {"dout": Arr(IN, partners=("x", "y")),
                       "x": Arr(IN, partners=("dout", "y") + vec, axis=1, derived=True),
                       "gamma": Arr(IN, optional=True, partners=vec), "mean": Arr(IN, partners=vec, derived=True),
                       "rstd": Arr(IN, partners=vec, derived=True), "y": Arr(IN, partners=("x", "dout"), derived=True),
                       "out": Arr(OUT)},
                      {"negative_slope": _real(-0.5), "activation": act}, ref=Rn.batchnorm_backward, out_default=True,
                      scalar_base={"activation": "leaky_relu"}))

    specs.append(Spec("batchnorm_stats", "normalization", nk.batchnorm_stats, lambda rng: {"x": _f32(rng, 4, 3, 5)},
                      {"x": Arr(IN, free=True, takes_16bit=True)}, {}, ref=Rn.batchnorm_stats))

    def make_merge(rng):
        m2s = rng.uniform(0.5, 2, size=(3, 2))
        m2s[1] = 0.0  # the part with count 0
        return {"counts": np.array([4, 0, 7]), "means": rng.normal(size=(3, 2)), "m2s": m2s}

    def merge_extra(rng):
        base = make_merge(rng)
        c = base["counts"]
        return [("counts-negative", dict(base, counts=np.array([4, -1, 7])), HOST_RAISE, ("counts",)),
                ("counts-complex", dict(base, counts=c.astype(np.complex64)), RAISE, ("counts",)),
                ("counts-object", dict(base, counts=c.astype(object)), RAISE, ("counts",)),
                ("counts-str", dict(base, counts=c.astype(str)), RAISE, ("counts",)),
                ("counts-bytes", dict(base, counts=c.astype(bytes)), RAISE, ("counts",)),
                ("counts-wrong-shape", dict(base, counts=c[:2]), RAISE, ("counts",)),
                ("counts-float", dict(base, counts=c.astype(np.float64)), OK, ()),
                ("counts-per-channel", dict(base, counts=np.stack([c, c], axis=1)), OK, ()),
                ("no-parts", {"counts": c[:0], "means": base["means"][:0], "m2s": base["m2s"][:0]}, EITHER,
                 ("counts", "means", "m2s")),
                ("counts-nan", dict(base, counts=np.array([4.0, NAN, 7.0])), HOST_RAISE, ("counts",)),
                ("means-bytes", dict(base, means=np.array([[b"1", b"2"]] * 3)), RAISE, ("means",)),
                ("m2s-negative", dict(base, m2s=-base["m2s"]), HOST_RAISE, ("m2s",))]
    specs.append(Spec("batchnorm_merge_stats", "normalization", nk.batchnorm_merge_stats, make_merge,
                      {"means": Arr(IN, partners=("counts", "m2s"), axis=0, lenient_dtypes=True),
                       "m2s": Arr(IN, partners=("means",), lenient_dtypes=True, derived=True)},
                      {}, ref=Rn.batchnorm_merge_stats, extra=merge_extra))

    def make_norm(rng):
        return {"x": _f32(rng, 4, 3, 5), "mean": _f32(rng, 3), "rstd": _f32(rng, 3, lo=0.5, hi=2.0),
                "gamma": _f32(rng, 3), "beta": _f32(rng, 3)}
    specs.append(Spec("batchnorm_normalize", "normalization", nk.batchnorm_normalize, make_norm,
                      {"x": Arr(IN, partners=vec + ("beta",), axis=1, takes_16bit=True), "mean": Arr(IN, partners=vec),
                       "rstd": Arr(IN, partners=vec), "gamma": Arr(IN, optional=True, partners=vec),
                       "beta": Arr(IN, optional=True, partners=vec), "out": Arr(OUT)},
                      {"negative_slope": _real(), "activation": act}, ref=Rn.batchnorm_normalize, out_default=True,
                      scalar_base={"activation": "leaky_relu"}))

    def make_red(rng):
        kw = make_bn_bwd(rng)
        kw.pop("gamma")
        return kw
    red_arrays = {"dout": Arr(IN, partners=("x", "y")), "x": Arr(IN, partners=("dout", "mean", "rstd", "y"), axis=1),
                  "mean": Arr(IN, partners=("x", "rstd")), "rstd": Arr(IN, partners=("x", "mean")),
                  "y": Arr(IN, partners=("x", "dout"))}
    specs.append(Spec("batchnorm_backward_reduce", "normalization", nk.batchnorm_backward_reduce, make_red,
                      red_arrays, {"negative_slope": _real(-0.5), "activation": act}, ref=Rn.batchnorm_backward_reduce,
                      scalar_base={"activation": "leaky_relu"}))

    def make_elemt(rng):
        kw = make_bn_bwd(rng)
        sd, sdx = nk.batchnorm_backward_reduce(kw["dout"], kw["x"], kw["mean"], kw["rstd"])
        return dict(kw, sum_dout=sd, sum_dout_xhat=sdx, count=20)
    vec2 = vec + ("sum_dout", "sum_dout_xhat")
    specs.append(Spec("batchnorm_backward_elemt", "normalization", nk.batchnorm_backward_elemt, make_elemt,
                      {"dout": Arr(IN, partners=("x", "y")), "x": Arr(IN, partners=("dout", "y") + vec2, axis=1),
                       "gamma": Arr(IN, optional=True, partners=vec2), "mean": Arr(IN, partners=vec2),
                       "rstd": Arr(IN, partners=vec2), "sum_dout": Arr(IN, partners=vec2),
                       "sum_dout_xhat": Arr(IN, partners=vec2), "y": Arr(IN, partners=("x", "dout"))},
                      {"count": Scalar(bad=(0, -1, 2.5, "20", None, NAN, True), good=(np.int64(20),)),
                       "negative_slope": _real(-0.5), "activation": act},
                      ref=Rn.batchnorm_backward_elemt, scalar_base={"activation": "leaky_relu"}))

    # --------------------------------------------------------------- optimizers (functional)
    def plist(rng, lo=-1.0, hi=1.0):
        return [_f32(rng, 7, lo=lo, hi=hi), _f32(rng, 2, 3, lo=lo, hi=hi)]

    nonneg = _real(-0.5)
    opt_arrays = lambda state: dict(  # noqa: E731
        {"params": Arr(STATE, is_list=True, partners=("grads",) + state),
         "grads": Arr(IN_CONTIG, is_list=True, partners=("params",) + state)},
        **{s: Arr(STATE, is_list=True, partners=("params", "grads") + tuple(t for t in state if t != s))
           for s in state})

    def opt_extra(state):
        def extra(rng, state=state):
            spec = next(s for s in specs if s.name == extra.spec_name)
            base = spec.make(rng)
            p = base["params"]
            cases = [
                ("grads-fewer", dict(base, grads=base["grads"][:1]), RAISE, ("grads", "params")),
                ("params-is-grads", dict(base, grads=p), RAISE, ("params", "grads")),
                ("params-single-array", {k: (v[0] if isinstance(v, list) else v) for k, v in base.items()}, OK, ()),
                ("params-not-arrays", dict(base, params=[[0.0] * 7, [[0.0] * 3] * 2]), RAISE, ("params",)),
                ("empty-lists", {k: ([] if isinstance(v, list) else v) for k, v in base.items()}, OK, ()),
            ]
            if state:
                s0 = state[0]
                cases.append(("state-is-params", dict(base, **{s0: p}), RAISE, ("params",) + state))
                sh = [base[s0][0], base[s0][0][:6].reshape(2, 3)]  # two entries of one list overlap
                cases.append(("state-entries-overlap", dict(base, **{s0: sh}), RAISE, (s0,)))
            return cases
        return extra

    for name, state, scal, make in (
        ("sgd_step", ("velocity",), {"lr": nonneg, "momentum": nonneg, "dampening": _real(),
                                     "weight_decay": nonneg},
         lambda rng: {"params": plist(rng), "grads": plist(rng), "lr": 0.1, "momentum": 0.9,
                      "velocity": plist(rng)}),
        ("adagrad_step", ("sum_sq",), {"lr": nonneg, "eps": nonneg, "weight_decay": nonneg},
         lambda rng: {"params": plist(rng), "grads": plist(rng), "sum_sq": plist(rng, 0.1, 1.0)}),
        # centered with momentum: every state array (sq_avg >= grad_avg**2, so the variance is >= 0)
        ("rmsprop_step", ("sq_avg", "grad_avg", "velocity"),
         {"lr": nonneg, "alpha": _real(-0.1, 1.5), "eps": nonneg, "weight_decay": nonneg, "momentum": nonneg},
         lambda rng: {"params": plist(rng), "grads": plist(rng), "sq_avg": plist(rng, 0.1, 1.0),
                      "grad_avg": plist(rng, -0.3, 0.3), "velocity": plist(rng), "momentum": 0.9,
                      "centered": True}),
        ("adam_step", ("exp_avg", "exp_avg_sq"),
         {"step": Scalar(bad=(0, -1, 1.5, "1", None, True, NAN), good=(np.int64(3),)), "lr": nonneg,
          "beta1": _real(-0.1, 1.0), "beta2": _real(-0.1, 1.0), "eps": nonneg, "weight_decay": nonneg},
         lambda rng: {"params": plist(rng), "grads": plist(rng), "exp_avg": plist(rng),
                      "exp_avg_sq": plist(rng, 0.1, 1.0), "step": 3}),
        ("ema_update", (), {"decay": _real(-0.1, 1.5)},
         lambda rng: {"averages": plist(rng), "params": plist(rng), "decay": 0.9}),
    ):
        if name == "ema_update":
            arrays = {"averages": Arr(STATE, is_list=True, partners=("params",)),
                      "params": Arr(IN_CONTIG, is_list=True, partners=("averages",), takes_16bit=True)}
            extra = None
        else:
            arrays = opt_arrays(state)
            extra = opt_extra(state)
            extra.spec_name = name
        specs.append(Spec(name, "optimizers", getattr(nk, name), make, arrays, scal, ref=getattr(Ro, name),
                          extra=extra, mutable=("params", "averages") + state))

    def clip_extra(rng):
        g = plist(rng)
        return [("grads-read-only", {"grads": [g[0], _readonly(g[1])], "max_norm": 0.1}, RAISE, ("grads",)),
                ("grads-overlap", {"grads": [g[0], g[0][1:7]], "max_norm": 0.1}, RAISE, ("grads",)),
                ("empty-list", {"grads": [], "max_norm": 0.1}, OK, ())]
    specs.append(Spec("clip_grad_norm", "optimizers", nk.clip_grad_norm,
                      lambda rng: {"grads": plist(rng), "max_norm": 0.5},
                      {"grads": Arr(STATE, is_list=True, free=True, accepts_0d=True, takes_16bit=True)},
                      {"max_norm": nonneg},
                      ref=Ro.clip_grad_norm,
                      extra=clip_extra, mutable=("grads",)))

    # --------------------------------------------------------------- nk.optim classes (constructor + 2 steps)
    def optim_run(cls):
        def run(params, grads, **hyper):
            opt = getattr(nk.optim, cls)(params, **hyper)
            opt.step(grads)
            opt.step(grads)
            return None
        return run

    for cls, scal, extra_cases in (
        ("SGD", {"lr": nonneg, "momentum": nonneg, "dampening": _real(), "weight_decay": nonneg},
         [("nesterov-with-dampening", dict(momentum=0.9, nesterov=True, dampening=0.5), ("dampening", "nesterov")),
          ("nesterov-without-momentum", dict(momentum=0.0, nesterov=True), ("nesterov", "momentum"))]),
        ("Adagrad", {"lr": nonneg, "eps": nonneg, "weight_decay": nonneg,
                     "initial_accumulator_value": _real(-1.0)}, []),
        ("RMSprop", {"lr": nonneg, "alpha": _real(-0.1), "eps": nonneg, "weight_decay": nonneg, "momentum": nonneg},
         []),
        ("Adam", {"lr": nonneg, "eps": nonneg, "weight_decay": nonneg,
                  "betas": Scalar(bad=((NAN, 0.999), (0.9, INF), (1.0, 0.999), (0.9, -0.1), "ab", None, (0.9,)))}, []),
        ("AdamW", {"lr": nonneg, "eps": nonneg, "weight_decay": nonneg,
                   "betas": Scalar(bad=((NAN, 0.999), (0.9, 1.0)))}, []),
    ):
        def make(rng, cls=cls):
            kw = {"params": plist(rng), "grads": plist(rng), "lr": 0.01}
            if cls == "SGD":
                kw["momentum"] = 0.9
            return kw

        def extra(rng, make=make, extra_cases=extra_cases):
            base = make(rng)
            cases = [(n, dict(base, **kw), RAISE, names) for n, kw, names in extra_cases]
            cases.append(("grads-fewer", dict(base, grads=base["grads"][:1]), RAISE, ("grads", "params")))
            cases.append(("params-tuple", dict(base, params=tuple(base["params"])), OK, ()))
            return cases
        specs.append(Spec(f"optim.{cls}", "optim", optim_run(cls), make,
                          {"params": Arr(STATE, is_list=True, partners=("grads",)),
                           "grads": Arr(IN_CONTIG, is_list=True, partners=("params",))},
                          scal, extra=extra, mutable=("params",)))

    # --------------------------------------------------------------- init
    shape_bad = Scalar(bad=(-1, (3, -2), 2.5, (3, 2.0), "3", None, (3, True)))
    seed = Scalar(bad=(-1, 2**64, 1.5, "1", True), good=(np.uint64(2**63), 0))
    dtype = Scalar(bad=(np.int32, "foo", np.complex64, bool), good=("float64", np.float32, np.float16, "bfloat16"))
    for name, scal in (
        ("normal", {"std": _real(-1.0)}),
        ("uniform", {"low": _real(), "high": _real()}),
        ("xavier_uniform", {"gain": _real()}),
        ("xavier_normal", {"gain": _real()}),
        ("kaiming_uniform", {"a": _real_not_none(), "mode": Scalar(bad=("fan", None, 1)),
                             "nonlinearity": Scalar(bad=("gelu", None, 1))}),
        ("kaiming_normal", {"a": _real_not_none(), "mode": Scalar(bad=("fan", None, 1)),
                            "nonlinearity": Scalar(bad=("gelu", None, 1))}),
    ):
        def run(fn=getattr(nk.init, name), **kw):
            return fn(**kw)

        def init_extra(rng, name=name):
            out = np.zeros((6, 4), np.float32)
            return [("out-wrong-dtype", {"shape": (6, 4), "seed": 3, "out": out.astype(np.float64),
                                         "dtype": np.float32}, RAISE, ("out", "dtype")),
                    ("out-wrong-shape", {"shape": (6, 4), "seed": 3, "out": out[:, :3]}, RAISE, ("out",)),
                    ("out-read-only", {"shape": (6, 4), "seed": 3, "out": _readonly(out)}, RAISE, ("out",)),
                    ("out-list", {"shape": (6, 4), "seed": 3, "out": out.tolist()}, RAISE, ("out",)),
                    ("out-int", {"shape": (6, 4), "seed": 3, "out": out.astype(np.int32)}, RAISE, ("out", "dtype")),
                    ("out-strided", {"shape": (6, 4), "seed": 3, "out": np.zeros((6, 8), np.float32)[:, ::2]}, OK, ()),
                    ("out-negative-stride", {"shape": (6, 4), "seed": 3, "out": out[::-1]}, OK, ()),
                    ("empty-shape", {"shape": (0, 4), "seed": 3}, OK, ()),
                    ("shape-1d", {"shape": (5,), "seed": 3}, OK if name in ("normal", "uniform") else RAISE,
                     ("shape",))]
        scal = dict(scal, shape=shape_bad, seed=seed, dtype=dtype)
        specs.append(Spec(f"init.{name}", "init", run, lambda rng: {"shape": (6, 4), "seed": 3}, {}, scal,
                          extra=init_extra))
    specs.append(Spec("init.calculate_gain", "init", nk.init.calculate_gain,
                      lambda rng: {"nonlinearity": "leaky_relu", "param": 0.2}, {},
                      {"nonlinearity": Scalar(bad=("gelu", None, 3)), "param": _real_not_none()}))
    specs.append(Spec("init.fan_in_and_fan_out", "init", nk.init.fan_in_and_fan_out,
                      lambda rng: {"shape": (8, 3, 2, 2)}, {}, {"shape": Scalar(bad=((4,), (), (3, -1), 2.5, None))}))

    # --------------------------------------------------------------- runtime
    specs.append(Spec("set_num_threads", "runtime", nk.set_num_threads, lambda rng: {"n": 1}, {},
                      {"n": Scalar(bad=(0, -1, 2.5, "2", None, True, 10**6, 2**40), good=(np.int64(1), 2))}))
    specs.append(Spec("set_result_cache_limit", "runtime", nk.set_result_cache_limit, lambda rng: {"limit": 1 << 20}, {},
                      {"limit": Scalar(bad=(-1, -(2**70), 2.5, float("nan"), "2", None, True),
                                       good=(np.int64(1 << 20), np.uint32(0), 2**70))}))
    specs.append(Spec("set_isa", "runtime", nk.set_isa, lambda rng: {"level": "baseline"}, {},
                      {}, extra=lambda rng: [  # the core's messages name the level "isa"
                          (f"level={_short(bad)}", {"level": bad}, RAISE, ("level", "isa"))
                          for bad in ("avx9000", "", None, 3, "base line")]))

    # --------------------------------------------------------------- preprocessing (scikit-learn interface)
    from nnkernels import preprocessing as P
    for cls in ("StandardScaler", "MinMaxScaler", "RobustScaler", "Normalizer", "PCA", "ZCAWhitening"):
        def run(X, cls=cls):
            est = getattr(P, cls)()
            Y = est.fit_transform(X)
            return Y, est.transform(X)

        def make(rng):
            return {"X": rng.normal(size=(9, 4)).astype(np.float32) * 3 + 1}
        # Messages follow scikit-learn's check_array (which does not name the argument).
        specs.append(Spec(f"preprocessing.{cls}", "preprocessing", run, make,
                          {"X": Arr(IN, free=True, lenient_dtypes=True, sklearn_dtypes=True)}, {}, check_names=False,
                          extra=lambda rng: [("X-1d", {"X": np.ones(5)}, RAISE, ("X",)),
                                             ("X-no-samples", {"X": np.ones((0, 3))}, RAISE, ("X",)),
                                             ("X-int", {"X": np.arange(12).reshape(6, 2) % 5}, OK, ())]))
    specs.append(Spec("preprocessing.zero_center", "preprocessing", P.zero_center,
                      lambda rng: {"X": _f32(rng, 3, 2, 4, 4)}, {"X": Arr(IN, free=True, lenient_dtypes=True, sklearn_dtypes=True)},
                      {"mode": Scalar(bad=("median", None)), "data_format": Scalar(bad=("NCWH", 1))},
                      check_names=False))
    return specs


def _readonly(a):
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


# ----------------------------------------------------------------------------- mutations

_BAD_DTYPES = {"int32": np.int32, "int64": np.int64, "bool": np.bool_, "complex64": np.complex64,
               "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "object": object, "str": np.str_}
_BAD_LABEL_DTYPES = {"float32": np.float32, "bool": np.bool_, "complex64": np.complex64, "object": object,
                     "str": np.str_, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
_16BIT = ("float16", "bfloat16")


def _same_values(v, layout):
    """A view with the values of `v` in another memory layout."""
    if layout == "negative":
        return np.flip(np.flip(v).copy())
    if layout == "strided":  # every other element along the last axis
        buf = np.zeros(v.shape[:-1] + (2 * v.shape[-1],), v.dtype)
        buf[..., ::2] = v
        return buf[..., ::2]
    if layout == "fortran":
        return np.asfortranarray(v)
    if layout == "misaligned":
        raw = bytearray(v.nbytes + 1)
        a = np.frombuffer(raw, v.dtype, count=v.size, offset=1).reshape(v.shape)
        a[...] = v
        return a
    if layout == "readonly":
        return _readonly(v)
    if layout == "byteswapped":
        return v.astype(v.dtype.newbyteorder("S"))
    raise ValueError(layout)


def _zero_strided(v):
    """A read-only view with zero strides (broadcast of the first row)."""
    return np.broadcast_to(v[:1], v.shape) if v.ndim >= 1 and v.shape[0] > 0 else v


def _cast(v, dt):
    if dt is np.str_:
        return v.astype(str)
    return v.astype(dt)


def _array_mutations(name, arr: Arr, v, kw):
    """(case, value, expect, names) for array argument `name` whose valid value is `v`."""
    names = (name,) + arr.partners
    out = []
    elem = v[0] if arr.is_list else v

    def put(case, bad, expect, nm=names):
        out.append((case, [bad] + v[1:] if arr.is_list else bad, expect, nm))

    dts = _BAD_LABEL_DTYPES if arr.role == LABELS else _BAD_DTYPES
    for dn, dt in dts.items():
        lenient = (arr.lenient_dtypes and dn in ("int32", "int64", "bool") + _16BIT) or (
            arr.sklearn_dtypes and dn in ("object", "str"))
        if arr.takes_16bit and dn in _16BIT:
            put(f"dtype-{dn}", _cast(elem, dt), OK)
            continue
        put(f"dtype-{dn}", _cast(elem, dt), EITHER if lenient else RAISE)
    if arr.role != LABELS:
        other = np.float64 if elem.dtype == np.float32 else np.float32
        if arr.role in (IN,) and not arr.partners:
            put("dtype-other-float", elem.astype(other), OK)
        elif arr.role not in (OUT,):
            put("dtype-other-float", elem.astype(other), EITHER)
    if not arr.optional:
        put("none", None, RAISE)
    put("string", "abc", RAISE)
    put("0d", np.asarray(elem.reshape(-1)[0]), OK if arr.accepts_0d else RAISE)
    if not arr.free:
        put("wrong-shape", np.concatenate([elem, np.take(elem, [0], axis=arr.axis)], axis=arr.axis), RAISE)
        if elem.ndim >= 1:
            put("extra-dim", elem[None], RAISE)
    if arr.accepts_empty:
        put("empty", elem[..., :0], OK)
    legit = arr.role in (IN, LABELS)
    if arr.role == IN_CONTIG:  # documented to refuse non-contiguous arrays; a correct result is fine too
        for lay in ("negative", "strided", "misaligned", "byteswapped"):
            put(f"layout-{lay}", _same_values(elem, lay), EITHER)
        put("layout-readonly", _same_values(elem, "readonly"), OK)
        return out
    layouts = ("negative", "strided", "fortran", "readonly", "misaligned", "byteswapped")
    for lay in layouts:
        if lay == "fortran" and elem.ndim < 2:
            continue
        bad = _same_values(elem, lay)
        if legit:
            expect = EITHER if lay in ("misaligned", "byteswapped") and arr.role != LABELS else OK
        elif arr.role == STATE_ANY and lay in ("negative", "strided", "fortran", "misaligned", "byteswapped"):
            expect = EITHER
        else:
            expect = RAISE
        put(f"layout-{lay}", bad, expect)
    if legit and not arr.derived and elem.ndim >= 1 and elem.shape[0] > 1:
        put("zero-stride", _zero_strided(elem), OK)
    if not arr.is_list:
        # a list converts to float64 (int64 labels): a dtype conflict with a float32 partner may be refused
        put("list", elem.tolist(), (OK if not arr.partners or arr.role == LABELS else EITHER) if legit else RAISE)
    return out


def _out_mutations(spec: Spec, kw, result_like):
    """Cases for the `out=` keyword, given the valid call's first result (dx / y)."""
    y = result_like
    first_in = next(n for n, a in spec.arrays.items() if a.role == IN)
    x = kw[first_in]
    cases = [
        ("out-dtype-int32", dict(kw, out=np.zeros(y.shape, np.int32)), RAISE, ("out",)),
        ("out-dtype-other-float", dict(kw, out=np.zeros(y.shape, np.float64 if y.dtype == np.float32 else np.float32)),
         RAISE, ("out",)),
        ("out-wrong-shape", dict(kw, out=np.zeros(y.shape[:-1] + (y.shape[-1] + 1,), y.dtype)), RAISE, ("out",)),
        ("out-read-only", dict(kw, out=_readonly(np.zeros_like(y))), RAISE, ("out",)),
        ("out-list", dict(kw, out=np.zeros_like(y).tolist()), RAISE, ("out",)),
        ("out-string", dict(kw, out="out"), RAISE, ("out",)),
        ("out-negative-stride", dict(kw, out=_same_values(np.zeros_like(y), "negative")), EITHER, ("out",)),
        ("out-strided", dict(kw, out=_same_values(np.zeros_like(y), "strided")), EITHER, ("out",)),
        ("out-misaligned", dict(kw, out=_same_values(np.zeros_like(y), "misaligned")), EITHER, ("out",)),
        ("out-zero-stride-writeable",
         dict(kw, out=np.lib.stride_tricks.as_strided(np.zeros(y.shape[-1], y.dtype), y.shape,
                                                        (0,) * (y.ndim - 1) + (y.itemsize,))), EITHER, ("out",)),
    ]
    if x.shape == y.shape and x.dtype == y.dtype:
        xi = x.copy()
        cases.append(("out-is-input", dict(kw, **{first_in: xi, "out": xi}), OK, ()))
        buf = np.zeros(x.size + 1, x.dtype)
        xin = buf[1:].reshape(x.shape)
        xin[...] = x
        cases.append(("out-overlaps-input", dict(kw, **{first_in: xin, "out": buf[:-1].reshape(x.shape)}), OK, ()))
        buf2 = np.zeros(x.size + 1, x.dtype)
        xin2 = buf2[:-1].reshape(x.shape)
        xin2[...] = x
        cases.append(("out-overlaps-input-ahead", dict(kw, **{first_in: xin2, "out": buf2[1:].reshape(x.shape)}),
                      OK, ()))
    return cases


def build_cases(spec: Spec) -> list:
    """Every (case id, kwargs, expect, names) of one function, in a deterministic order."""
    rng = _rng()
    base = spec.make(rng)
    cases = [("valid", dict(base), OK, ())]
    for name, arr in spec.arrays.items():
        if name == "out":
            continue
        if name not in base:
            continue
        for case, bad, expect, names in _array_mutations(name, arr, base[name], base):
            cases.append((f"{name}-{case}", dict(base, **{name: bad}), expect, names))
        if arr.optional:
            cases.append((f"{name}-none", dict(base, **{name: None}), EITHER, (name,) + arr.partners))
    sbase = dict(base, **spec.scalar_base)
    for name, sc in spec.scalars.items():
        for bad in sc.bad:
            cases.append((f"{name}={_short(bad)}", dict(sbase, **{name: bad}), RAISE, (name,)))
        for good in sc.good:
            cases.append((f"{name}={_short(good)}-ok", dict(sbase, **{name: good}), OK, ()))
    if spec.arrays and spec.out_default:
        y = _first_array(spec.fn(**_clean_copy(base)))
        cases += _out_mutations(spec, base, y)
    if spec.extra is not None:
        cases += spec.extra(_rng())
    seen = set()
    for c in cases:
        assert c[0] not in seen, (spec.name, c[0])
        seen.add(c[0])
    return cases


def _short(v) -> str:
    if isinstance(v, type):
        return v.__name__
    s = repr(v)
    return re.sub(r"[^A-Za-z0-9_.+\-(),\[\]]", "", s)[:24] or type(v).__name__


def _first_array(r):
    if isinstance(r, np.ndarray):
        return r
    return next(a for a in r if isinstance(a, np.ndarray))


# ----------------------------------------------------------------------------- checking one case

def _arrays_in(obj, acc):
    if isinstance(obj, np.ndarray):
        acc.append(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _arrays_in(o, acc)
    return acc


def _snapshot(kw):
    snaps = []
    for k, v in kw.items():
        for a in _arrays_in(v, []):
            if a.dtype == object:
                snaps.append((k, a, a.copy()))
            else:
                snaps.append((k, a, a.tobytes()))
    return snaps


def _changed(snaps, skip=lambda k, a: False):
    bad = []
    for k, a, before in snaps:
        if skip(k, a):
            continue
        now = a.copy() if a.dtype == object else a.tobytes()
        same = np.array_equal(now, before) if a.dtype == object else now == before
        if not same:
            bad.append(k)
    return bad


def _clean(v):
    """A plain C-contiguous native-order copy (lists of arrays stay lists; other lists become arrays)."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "fc" and not v.dtype.isnative:
            v = v.astype(v.dtype.newbyteorder("="))
        return np.array(v, copy=True, order="C")
    if isinstance(v, (list, tuple)) and any(isinstance(e, np.ndarray) for e in v):
        return type(v)(_clean(e) for e in v)
    if isinstance(v, list) and v:
        try:
            return np.array(v)
        except ValueError:
            return v
    return v


def _upcast_16bit(v):
    import tolerances
    if isinstance(v, np.ndarray) and v.dtype in (tolerances.F16, tolerances.BF16):
        return v.astype(np.float64)
    if isinstance(v, (list, tuple)) and any(isinstance(e, np.ndarray) for e in v):
        return type(v)(_upcast_16bit(e) for e in v)
    return v


def _clean_copy(kw):
    return {k: _clean(v) for k, v in kw.items()}


def _flatten(r, acc):
    if isinstance(r, (list, tuple)):
        for e in r:
            _flatten(e, acc)
    elif r is None:
        acc.append(None)
    else:
        acc.append(np.asarray(r))
    return acc


def _compare(actual, expected, what, tol_dtype=np.float64):
    import tolerances
    a, e = _flatten(actual, []), _flatten(expected, [])
    if len(a) != len(e):
        return f"{what}: {len(a)} results, reference has {len(e)}"
    for i, (x, y) in enumerate(zip(a, e)):
        if x is None or y is None:
            if (x is None) != (y is None):
                return f"{what}[{i}]: {x!r} vs reference {y!r}"
            continue
        if x.shape != y.shape:
            return f"{what}[{i}]: shape {x.shape}, reference {y.shape}"
        if x.dtype.kind in "fc" or y.dtype.kind in "fc" or x.dtype in tolerances.TOL:
            dt = (tol_dtype if tol_dtype in (tolerances.F16, tolerances.BF16)
                  else np.float32 if np.float32 in (x.dtype, tol_dtype) else np.float64)
            try:
                tolerances.assert_close(x.astype(np.float64), y.astype(np.float64), dt,
                                        table=tolerances.TOL_REDUCTION)
            except AssertionError as exc:
                return f"{what}[{i}]: differs from the reference: {str(exc)[:300]}"
        elif not np.array_equal(x, y):
            return f"{what}[{i}]: {x!r} != reference {y!r}"
    return None


def _names_ok(msg: str, names) -> bool:
    pat = r"^(%s)(\[\d+\])?\b" % "|".join(re.escape(n) for n in names)
    return re.match(pat, msg) is not None


def _reset_runtime(nk):
    nk.set_num_threads(2)
    nk._core.reset_isa()


def _main_input(spec: Spec, kw: dict):
    """The argument whose library the results follow: the first array argument given (a list's first array)."""
    for name, arr in spec.arrays.items():
        v = kw.get(name)
        if arr.is_list and isinstance(v, list) and v:
            v = v[0]
        if v is None:
            continue
        return v if hasattr(v, "shape") else None  # an array-like main input (a list): NumPy results
    return None


def _library_error(result, main, library: str, out=None) -> str | None:
    """Results follow the main input's library: every array returned (other than `out` itself) must be one of its
    arrays."""
    want = AL.library_of(main) if main is not None else "numpy"
    for r in (result if isinstance(result, tuple) else (result,)):
        if r is None or r is out or isinstance(r, (float, int)) and want in ("numpy", "torch"):
            continue
        if isinstance(r, list):
            continue  # lists of arrays are updated in place (optimizers), not results
        if AL.library_of(r) != want:
            return f"returned a {AL.library_of(r)} array for a {want} input (library {library})"
    return None


def _flat_results(r) -> list:
    if isinstance(r, (list, tuple)):
        return [a for e in r for a in _flat_results(e)]
    return [] if r is None else [r]


def run_case(spec: Spec, kw: dict, expect: str, names, library: str = "numpy") -> str | None:
    """None when the case behaves as expected, else what went wrong. `library`: the call's arrays are moved into
    that array library first (AL.convert_call; the case runs only where some can be), refusals must carry the
    NumPy call's exact message, and results must come back in the main input's library."""
    import nnkernels as nk
    import tolerances
    if expect == HOST_RAISE:
        expect = _POISON if library in AL.GPU_LIBRARIES else RAISE
    try:
        clean = _clean_copy({k: v for k, v in kw.items() if k != "out"})
        call_kw, pairs = (kw, []) if library == "numpy" else AL.convert_call(kw, library)
        numpy_refusal = None
        if library != "numpy" and expect == RAISE:
            try:
                spec.fn(**kw)  # the NumPy call's refusal (its own case checks that it writes nothing)
            except (TypeError, ValueError) as exc:
                numpy_refusal = f"{type(exc).__name__}: {exc}"
            finally:
                _reset_runtime(nk)
        snaps = _snapshot(kw)
        try:
            result = spec.fn(**call_kw)
        except (TypeError, ValueError) as exc:
            AL.sync_back(pairs)
            if expect == OK:
                return f"refused a valid input: {type(exc).__name__}: {exc}"
            msg = str(exc)
            if numpy_refusal is not None and f"{type(exc).__name__}: {msg}" != numpy_refusal:
                return f"refused with {type(exc).__name__}: {msg!r}; the NumPy call with {numpy_refusal!r}"
            if spec.check_names and not _names_ok(msg, names):
                return f"{type(exc).__name__} does not start with the argument name {'/'.join(names)}: {msg!r}"
            changed = _changed(snaps)
            if changed:
                return f"refused ({type(exc).__name__}: {msg}) but modified {changed}"
            return None
        except Exception as exc:  # noqa: BLE001 - any other exception type is a finding
            return f"raised {type(exc).__name__} (expected TypeError/ValueError): {exc}"
        finally:
            _reset_runtime(nk)
        AL.sync_back(pairs)
        sklearn_host = spec.family == "preprocessing" and library not in AL.GPU_LIBRARIES
        if library != "numpy" and not isinstance(spec.fn, type) and not sklearn_host:
            # (scikit-learn estimators follow scikit-learn: their validation turns host arrays of any library,
            # CPU tensors included, into NumPy, and so are their results; GPU arrays stay on the device)
            err = _library_error(result, _main_input(spec, call_kw), library, call_kw.get("out"))
            if err:
                return err
            result = AL.to_numpy(result)
        if expect == RAISE:
            return f"accepted (expected a TypeError/ValueError naming {'/'.join(names)}); returned {_short(result)}"
        if expect == _POISON:
            floats = [np.asarray(a) for a in _flat_results(result) if np.asarray(a).dtype.kind == "f"]
            if not floats or not all(np.isnan(a).all() for a in floats):
                return f"accepted bad values on the device without poisoning the result (all NaN): {_short(result)}"
            return None
        # accepted: compare with the reference on contiguous copies
        ref = spec.ref
        if ref is None:
            ref = spec.fn
        try:
            # 16-bit inputs: the reference in float64 from the upcast values (NumPy's float16
            # arithmetic rounds every step); arrays it updates in place are compared below
            clean = {k: _upcast_16bit(v) for k, v in clean.items()}
            expected = ref(**clean)
        except Exception as exc:  # noqa: BLE001
            if library != "numpy" and expect == EITHER and spec.family == "preprocessing":
                return None  # scikit-learn's check_array converted a lenient dtype (float16 tensor -> float64)
            return f"accepted, but the reference refused the clean copy: {type(exc).__name__}: {exc}"
        finally:
            _reset_runtime(nk)
        arrays = _arrays_in(list(kw.values()), [])
        half = [a.dtype for a in arrays if a.dtype in (tolerances.F16, tolerances.BF16)]
        tdt = half[0] if half else np.float32 if any(a.dtype.kind == "f" and a.dtype.itemsize <= 4
                                                     for a in arrays) else np.float64
        err = _compare(result, expected, "result", tdt)
        if err:
            return err
        for k in spec.mutable:
            if k in kw and kw[k] is not None:
                err = _compare(kw[k], clean[k], k, tdt)
                if err:
                    return err
        outs = _arrays_in([kw.get(k) for k in spec.mutable + ("out",)], [])
        changed = _changed(snaps, lambda k, a: k in spec.mutable or k == "out"
                           or any(np.shares_memory(a, o) for o in outs))
        if changed:
            return f"accepted and modified input(s) {changed}"
        return None
    except Exception as exc:  # noqa: BLE001
        return f"checker error: {type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- worker protocol

def _specs_by_family():
    fam = {}
    for s in _build_specs():
        fam.setdefault(s.family, []).append(s)
    return fam


def _runs_in(kw: dict, library: str) -> bool:
    """A case runs in another library when at least one of its arrays can be moved there as it is."""
    if library == "numpy":
        return True
    arrays = _arrays_in(list(kw.values()), [])
    return any(AL.convertible(a, library) for a in arrays)


def _cases(spec: Spec, library: str) -> list:
    return [c for c in build_cases(spec) if _runs_in(c[1], library)]


def worker(family: str, start: int, library: str = "numpy") -> None:
    """Run the cases of one family from index `start`; one JSON line per case on stdout."""
    import warnings
    warnings.simplefilter("ignore")  # e.g. ComplexWarning of a reference; outcomes are what is checked
    index = 0
    for spec in _specs_by_family()[family]:
        for cid, kw, expect, names in _cases(spec, library):
            if index >= start:
                print(json.dumps({"i": index, "start": f"{spec.name}:{cid}"}), flush=True)
                err = run_case(spec, kw, expect, names, library)
                print(json.dumps({"i": index, "id": f"{spec.name}:{cid}", "err": err}), flush=True)
            index += 1


def _launch(family: str, start: int, library: str = "numpy"):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", family, str(start), library],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _crash_report(stderr: str) -> str:
    """The start of a sanitizer / fatal-error report in a worker's stderr (else its tail)."""
    for key in ("ERROR: AddressSanitizer", "runtime error:", "Fatal Python error"):
        at = stderr.find(key)
        if at >= 0:
            start = stderr.rfind("\n", 0, at) + 1
            return stderr[start:start + 1500]
    return stderr[-1500:]


WORKER_TIMEOUT = 240.0  # generous: sanitizer builds run the cases several times slower


def run_families(families, library: str = "numpy") -> dict:
    """{case id: error or None} for every case of the families (workers run concurrently)."""
    results: dict = {}
    pending = {f: 0 for f in families}
    while pending:
        procs = {f: (_launch(f, s, library), time.monotonic()) for f, s in pending.items()}
        pending = {}
        for fam, (proc, t0) in procs.items():
            try:
                out, err = proc.communicate(timeout=max(1.0, WORKER_TIMEOUT - (time.monotonic() - t0)))
                hung = False
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                hung = True
            started, last = None, None
            for line in out.splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if "start" in rec:
                    started = rec
                else:
                    results[rec["id"]] = rec["err"]
                    last = rec["i"]
            if started is not None and started["start"] not in results:
                why = "hung (no result within %.0f s)" % WORKER_TIMEOUT if hung else \
                    f"worker died with exit status {proc.returncode}: {_crash_report(err)}"
                results[started["start"]] = why
                pending[fam] = started["i"] + 1
            elif proc.returncode != 0 and not hung:
                raise RuntimeError(f"bad-input worker {fam} failed outside a case:\n{err[-3000:]}")
            del last
    return results


# ----------------------------------------------------------------------------- pytest side

def _case_ids(library: str = "numpy"):
    ids = []
    for fam, specs in _specs_by_family().items():
        for spec in specs:
            ids += [(fam, f"{spec.name}:{c[0]}") for c in _cases(spec, library)]
    return ids


if __name__ != "__main__":
    _IDS = _case_ids()
    # The same table in every other array library this machine has (torch CPU tensors; torch CUDA and CuPy
    # with a GPU): same refusal with the same message, nothing written, results in the input's library.
    _LIB_IDS = [(lib, fam, case) for lib in AL.LIBRARIES if lib != "numpy" for fam, case in _case_ids(lib)]
else:
    _IDS, _LIB_IDS = [], []


@pytest.fixture(scope="module")
def outcomes():
    return run_families(sorted({f for f, _ in _IDS}))


_LIB_OUTCOMES: dict = {}


@pytest.fixture(scope="module")
def library_outcomes():
    def get(library):
        if library not in _LIB_OUTCOMES:
            _LIB_OUTCOMES[library] = run_families(sorted({f for lib, f, _ in _LIB_IDS if lib == library}), library)
        return _LIB_OUTCOMES[library]
    return get


def test_every_public_function_is_in_the_table():
    import nnkernels as nk
    names = {s.name for s in _build_specs()}
    skip = {"__version__", "build_info", "get_num_threads", "get_isa", "isa", "optim", "schedules", "init",
            "preprocessing", "BatchNorm", "LayerNorm",
            "empty_result_cache", "result_cache_info"}  # no arguments
    missing = [n for n in nk.__all__ if n not in skip and n not in names]
    missing += [f"init.{n}" for n in nk.init.__all__ if f"init.{n}" not in names]
    missing += [f"optim.{n}" for n in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW") if f"optim.{n}" not in names]
    assert not missing


@pytest.mark.parametrize("family,case", _IDS, ids=[c for _, c in _IDS])
def test_bad_input(outcomes, family, case):
    assert case in outcomes, "case did not run"
    err = outcomes[case]
    assert err is None, err


@pytest.mark.parametrize("library,family,case", _LIB_IDS, ids=[f"{lib}:{c}" for lib, _, c in _LIB_IDS])
def test_bad_input_in_library(library_outcomes, library, family, case):
    outcomes = library_outcomes(library)
    assert case in outcomes, "case did not run"
    err = outcomes[case]
    assert err is None, err


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) == 5 else "numpy")
    else:
        res = run_families(sorted(_specs_by_family()))
        bad = {k: v for k, v in res.items() if v}
        for k, v in bad.items():
            print(f"{k}: {v}")
        print(f"{len(res)} cases, {len(bad)} failing")
