"""Runtime plumbing: build info, threads, instruction-set selection, CLI entry."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import nnkernels as nk
from isolated import assert_clean_exit, run_isolated


def test_build_info_keys():
    info = nk.build_info()
    for key in ("version", "compiler", "isa_compiled", "isa_cpu", "isa_selected", "num_threads", "openmp",
                "cuda_compiled", "cuda_version", "cuda_architectures", "gpu_count", "gpu_names"):
        assert key in info, key
    assert info["version"] == nk.__version__
    assert "baseline" in info["isa_compiled"]
    assert info["isa_selected"] in info["isa_compiled"]
    assert info["num_threads"] >= 1
    if info["cuda_compiled"]:
        assert "80" in info["cuda_architectures"] and "90" in info["cuda_architectures"]
    assert len(info["gpu_names"]) == info["gpu_count"]


def test_set_num_threads_roundtrip(threads):
    threads(1)
    assert nk.get_num_threads() == 1
    threads(2)
    assert nk.get_num_threads() == 2
    assert nk.build_info()["num_threads"] == 2


@pytest.mark.parametrize("bad", [0, -3])
def test_set_num_threads_rejects_nonpositive(bad):
    with pytest.raises(ValueError, match="^n: expected a positive number"):
        nk.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", None, True])
def test_set_num_threads_rejects_non_int(bad):
    with pytest.raises(TypeError, match="^n: expected an int"):
        nk.set_num_threads(bad)


def test_isa_context_manager_restores():
    before = nk.get_isa()
    with nk.isa("baseline"):
        assert nk.get_isa() == "baseline"
        assert nk.build_info()["isa_selected"] == "baseline"
    assert nk.get_isa() == before


def _run_python(code, **env):
    full_env = dict(os.environ)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


def test_env_var_forces_lower_isa():
    r = _run_python("import nnkernels as nk, numpy as np; print(nk.get_isa()); print(nk.tanh(np.float32([0.5])))",
                    NNKERNELS_ISA="baseline")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "baseline"


def test_env_var_invalid_isa_fails_at_import():
    r = _run_python("import nnkernels", NNKERNELS_ISA="sse9")
    assert r.returncode != 0
    assert "isa: expected one of" in r.stderr


def test_import_leaves_ml_dtypes_to_the_first_bfloat16_use():
    """``import nnkernels`` does not import ml_dtypes (ml_dtypes 0.7 takes about a second to import),
    and every place that takes the name "bfloat16" imports it then: init's dtype=, the layers' dtype=,
    the optimizers' state_dtype=, and a bfloat16 NumPy array made from the result."""
    r = _run_python("""
import sys
import numpy as np
import nnkernels as nk
assert "ml_dtypes" not in sys.modules, "imported by import nnkernels"
y = nk.relu(np.float32([-1.0, 2.0]))
o = nk.optim.Adam([np.ones(3, np.float32)], lr=1e-3)
o.step([np.ones(3, np.float32)])
assert "ml_dtypes" not in sys.modules, "imported by a float32 call"
w = nk.init.normal((5,), seed=3, dtype="bfloat16")
import ml_dtypes
assert w.dtype == ml_dtypes.bfloat16, w.dtype
assert np.array_equal(w.astype(np.float32), nk.init.normal((5,), seed=3).astype(ml_dtypes.bfloat16).astype(np.float32))
""")
    assert r.returncode == 0, r.stderr
    for snippet in ('import nnkernels as nk; l = nk.nn.LayerNorm(4, dtype="bfloat16"); print(l.gamma.dtype)',
                    'import nnkernels as nk; p = nk.init.normal((3,), seed=1, dtype="bfloat16"); '
                    'o = nk.optim.Adam([p], lr=1e-3, state_dtype="bfloat16"); o.step([p.copy()]); '
                    'print(o.state["exp_avg"][0].dtype)'):
        r = _run_python(snippet)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "bfloat16", r.stdout


def test_omp_num_threads_env_is_honoured():
    r = _run_python("import nnkernels as nk; print(nk.get_num_threads())", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"


def test_kernels_release_the_gil():
    """A Python thread keeps running while another thread is inside a kernel."""
    import threading

    x = np.random.default_rng(0).standard_normal(4_000_000).astype(np.float32)
    calls, ticks = 0, 0
    stop = threading.Event()

    def worker():
        nonlocal calls
        while not stop.is_set():
            nk.tanh(x)
            calls += 1

    t = threading.Thread(target=worker)
    t.start()
    try:
        import time

        deadline = time.perf_counter() + 0.5
        while time.perf_counter() < deadline:
            ticks += 1
    finally:
        stop.set()
        t.join()
    # Holding the GIL during a ~10 ms kernel would limit the main thread to a handful of
    # switch intervals between calls; released, it spins freely the whole time.
    assert calls >= 2
    assert ticks > 20 * calls


def test_cli_usage():
    from nnkernels.__main__ import main

    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2


def test_stub_covers_the_extension():
    """python/nnkernels/_core.pyi (pybind11-stubgen of a CUDA build) lists every public name."""
    import pathlib

    from nnkernels import _core

    stub = (pathlib.Path(nk.__file__).parent / "_core.pyi").read_text()
    missing = [n for n in dir(_core) if not n.startswith("_") and f"def {n}(" not in stub and f"{n}:" not in stub]
    assert not missing, f"regenerate _core.pyi (see README, Development): {missing}"


# ------------------------------------------------------------------ hardening (issue 13, items 5-7)
_FORK_AFTER_PARALLEL = """
    import multiprocessing, os
    import numpy as np, nnkernels as nk

    x = np.random.default_rng(0).standard_normal(1 << 20).astype(np.float32)
    expect = np.maximum(x, 0)

    def work(i):
        return bool(np.array_equal(nk.relu(x), expect)) and nk.get_num_threads() == 1

    nk.set_num_threads(2)
    assert np.array_equal(nk.relu(x), expect)  # the parent's OpenMP team now exists
    pid = os.fork()
    if pid == 0:
        ok = work(0) and nk.build_info()["forked_child"]
        nk.set_num_threads(2)  # accepted; the child still runs on one thread
        ok = ok and work(1)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert all(pool.map_async(work, range(4)).get(timeout=30))
    # the parent keeps its threads
    assert nk.get_num_threads() == 2 and not nk.build_info()["forked_child"]
    assert np.array_equal(nk.relu(x), expect)
    print("ok")
"""


def test_fork_after_a_parallel_kernel_does_not_hang():
    """A fork()ed child (os.fork, multiprocessing's fork context) of a process that ran a
    parallel kernel runs its kernels single-threaded instead of waiting forever for the
    parent's OpenMP threads; a hang is a failed test (timeout)."""
    r = run_isolated(_FORK_AFTER_PARALLEL, timeout=60)
    assert_clean_exit(r)
    assert r.stdout.strip() == "ok"


def test_passive_openmp_wait_policy_unless_the_user_chose():
    """Idle OpenMP threads sleep (spin count 0) so that kernels give the cores back between
    calls; a policy or spin count in the environment is left as the user set it."""
    code = """
        import ctypes, os, nnkernels as nk
        print(nk.build_info()["omp_wait_policy"], "OMP_WAIT_POLICY" in os.environ)
        # the libgomp the extension loaded: dlsym on the extension's handle searches its own
        # dependencies (other packages, e.g. scikit-learn, may have loaded copies of their own)
        ctypes.CDLL(nk._core.__file__).omp_display_env(1)
    """
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc/self/maps (Linux)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if not nk.build_info()["openmp"]:
        pytest.skip("built without OpenMP")
    r = subprocess.run([sys.executable, "-c", code.replace("\n        ", "\n")], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["PASSIVE", "False"]  # applied at load, not left in the environment
    assert "GOMP_SPINCOUNT = '0'" in r.stderr
    r = subprocess.run([sys.executable, "-c", code.replace("\n        ", "\n")], capture_output=True, text=True,
                       env={**env, "GOMP_SPINCOUNT": "1234"}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["", "False"] or r.stdout.split() == ["False"]
    assert "GOMP_SPINCOUNT = '1234'" in r.stderr


def test_set_num_threads_accepts_numpy_integers(threads):
    threads(np.int64(1))
    assert nk.get_num_threads() == 1
    threads(np.uint8(2))
    assert nk.get_num_threads() == 2


@pytest.mark.parametrize("bad", [10**6, 2**70, "cap+1"])
def test_set_num_threads_refuses_absurd_counts(bad, threads):
    cap = nk.build_info()["max_num_threads"]
    assert cap >= 64 and cap >= 4 * (os.cpu_count() or 1)
    before = nk.get_num_threads()
    n = cap + 1 if bad == "cap+1" else bad
    with pytest.raises(ValueError, match=f"^n: expected at most {cap} threads"):
        nk.set_num_threads(n)
    assert nk.get_num_threads() == before
    threads(cap)  # the limit itself is accepted
    assert nk.get_num_threads() == cap


@pytest.mark.parametrize("bad", [np.float64(2.0), np.bool_(True), 2.0])
def test_set_num_threads_rejects_numpy_floats_and_bools(bad):
    with pytest.raises(TypeError, match="^n: expected an int"):
        nk.set_num_threads(bad)


def test_huge_omp_num_threads_is_clamped():
    r = _run_python("import nnkernels as nk; print(nk.get_num_threads(), nk.build_info()['max_num_threads'])",
                    OMP_NUM_THREADS="100000")
    assert r.returncode == 0, r.stderr
    got, cap = map(int, r.stdout.split())
    assert got == cap


# ---------------------------------------------------------------- non-real input (core/array.cpp as_array)

def _non_real(shape):
    """(name, array or array-like) of every non-real kind, with `shape`'s number of values."""
    n = int(np.prod(shape))
    x = np.linspace(-1.0, 1.0, n).reshape(shape)
    return [
        ("complex_array", x.astype(np.complex64)),
        ("complex_list", (x + 1j).tolist()),
        ("object_array", x.astype(object)),
        ("bool_array", x > 0),
        ("bool_list", (x > 0).tolist()),
        ("str_array", x.astype(str)),
        ("bytes_array", x.astype("S8")),
        ("bytes", b"\x00" * (8 * n)),
        ("datetime", np.arange(n).astype("datetime64[D]").reshape(shape)),
        ("timedelta", np.arange(n).astype("timedelta64[s]").reshape(shape)),
    ]


def _non_real_calls():
    """(op, argument, call(bad)) over ops of every family; the other arguments are valid."""
    from nnkernels import _core

    x = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
    v3 = np.ones(3)
    return [
        ("relu", "x", (4, 3), lambda b: nk.relu(b)),
        ("relu_backward", "dout", (4, 3), lambda b: nk.relu_backward(b, x)),
        ("layernorm_forward", "x", (4, 3), lambda b: nk.layernorm_forward(b)),
        ("layernorm_forward", "gamma", (3,), lambda b: nk.layernorm_forward(x, b)),
        ("batchnorm_forward", "beta", (3,), lambda b: nk.batchnorm_forward(x, v3, b)),
        ("batchnorm_normalize", "mean", (3,), lambda b: nk.batchnorm_normalize(x, b, v3)),
        ("batchnorm_stats", "x", (4, 3), lambda b: nk.batchnorm_stats(b)),
        ("batchnorm_merge_stats", "counts", (4,), lambda b: nk.batchnorm_merge_stats(b, x, x)),
        ("batchnorm_merge_stats", "means", (4, 3), lambda b: nk.batchnorm_merge_stats([1, 2, 3, 4], b, x)),
        ("batchnorm_merge_stats", "m2s", (4, 3), lambda b: nk.batchnorm_merge_stats([1, 2, 3, 4], x, b)),
        ("softmax_cross_entropy", "logits", (4, 3), lambda b: nk.softmax_cross_entropy(b, np.zeros(4, np.int64))),
        ("softmax_cross_entropy", "labels", (4,), lambda b: nk.softmax_cross_entropy(x, b)),
        ("prep_affine", "shift", (3,), lambda b: _core.prep_affine(x, b, v3, None, np.empty_like(x))),
        ("prep_affine", "scale", (3,), lambda b: _core.prep_affine(x, v3, b, None, np.empty_like(x))),
        ("prep_col_stats", "X", (4, 3), lambda b: _core.prep_col_stats(b, 3)),
    ]


@pytest.mark.parametrize("case", range(15), ids=[f"{c[0]}-{c[1]}" for c in _non_real_calls()])
def test_non_real_input_refused_naming_the_argument(case):
    """Complex, bool, object, bytes/str and datetime arrays and array-likes are a TypeError naming the
    argument (never a silent cast: the imaginary part dropped, bytes read as numbers)."""
    op, arg, shape, call = _non_real_calls()[case]
    for kind, bad in _non_real(shape):
        if kind == "bytes" and len(shape) > 1:
            continue  # a bytes object is 0-d: a shape error first is as good
        snapshot = np.array(bad, copy=True) if isinstance(bad, np.ndarray) else None
        with pytest.raises(TypeError, match=rf"^{arg}: expected") as e:
            call(bad)
        assert "dtype" in str(e.value) or "real" in str(e.value) or "integer" in str(e.value), (kind, e.value)
        if snapshot is not None:
            np.testing.assert_array_equal(bad, snapshot)


def test_real_array_likes_still_accepted():
    """Lists of floats/ints are converted as before (only non-real kinds are refused)."""
    y = nk.relu([[-1.0, 2.0], [3.0, -4.0]])
    np.testing.assert_array_equal(y, [[0.0, 2.0], [3.0, 0.0]])
    n, mean, m2 = nk.batchnorm_merge_stats([2, 2], [[0, 1], [2, 3]], [[0, 0], [2, 2]])
    assert n == 4
    np.testing.assert_allclose(mean, [1.0, 2.0])
    np.testing.assert_allclose(m2, [0 + 2 + 4.0, 0 + 2 + 4.0])


def test_star_imports_of_every_module():
    """Every public module's __all__ names what it defines (``from nnkernels.x import *`` works)."""
    import importlib

    for name in ("activations", "normalization", "losses", "init", "optim", "optim_steps", "nn", "schedules",
                 "train"):
        mod = importlib.import_module(f"nnkernels.{name}")
        missing = [n for n in getattr(mod, "__all__", []) if not hasattr(mod, n)]
        assert not missing, (name, missing)
# ------------------------------------------------------------------ 16-bit storage conversions (issue 15)
import ml_dtypes  # noqa: E402

from conftest import HALF_DTYPES, expected_half_bits  # noqa: E402

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)


def _convert(a, dtype):
    b = np.empty(a.shape, dtype)
    nk._core.stream_convert(a, b)
    return b


def _rounding_boundary_patterns(dtype):
    """float32 patterns at and around every rounding boundary of `dtype`: each 16-bit number's
    float32 value, the midpoints to its neighbour (ties) and the float32 values one and two ulps either
    side, float32 subnormals, the overflow threshold, NaN payloads and random patterns."""
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dtype)
    lo = h.astype(np.float32)
    lo = lo[np.isfinite(lo)]
    lo = np.unique(lo)
    mid = (lo[:-1].astype(np.float64) + lo[1:]) / 2  # exact in float64: the tie
    mid32 = mid.astype(np.float32)
    assert np.array_equal(mid32.astype(np.float64), mid)  # every tie is a float32 number
    mu = mid32.view(np.uint32).astype(np.int64)
    near = np.concatenate([mu + d for d in (-2, -1, 0, 1, 2)] + [lo.view(np.uint32).astype(np.int64) + d
                                                                  for d in (-1, 0, 1)])
    near = near[(near >= 0) & (near < 1 << 32)]
    rng = np.random.default_rng(0)
    extra = np.concatenate([
        np.arange(0, 1 << 16), 0x007FFFFF - np.arange(1 << 12),  # float32 subnormals
        0x7F800001 + rng.integers(0, 0x7FFFFF, 4096), [0x7F800000, 0x7FC00000, 0x7F800001, 0x7FFFFFFF],
        rng.integers(0, 1 << 32, 1 << 18),
    ]).astype(np.int64)
    pos = np.unique(np.concatenate([near, extra]) & 0x7FFFFFFF).astype(np.uint32)
    return np.concatenate([pos, pos | 0x80000000]).view(np.float32)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_every_16bit_pattern_widens_exactly(dtype, isa):
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    f = _convert(h.view(dtype), np.float32).view(np.uint32)
    with np.errstate(invalid="ignore"):
        expect = h.view(dtype).astype(np.float32).view(np.uint32).copy()
    nan = np.isnan(h.view(dtype).astype(np.float32))
    if dtype == F16:  # VCVTPH2PS quiets a signaling NaN (NumPy keeps it signaling)
        expect[nan] |= 0x00400000
    np.testing.assert_array_equal(f, expect)
    # and back: every number round-trips exactly, NaN comes back quiet
    back = _convert(f.view(np.float32), dtype).view(np.uint16)
    quiet = np.uint16(0x40 if dtype == BF16 else 0x200)
    np.testing.assert_array_equal(back[~nan], h[~nan])
    np.testing.assert_array_equal(back[nan], h[nan] | quiet)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_float32_rounds_to_nearest_even_at_every_boundary(dtype, isa, bf16_insn):
    f = _rounding_boundary_patterns(dtype)
    got = _convert(f, dtype).view(np.uint16)
    expect = expected_half_bits(f, dtype)
    bad = np.flatnonzero(got != expect)
    assert bad.size == 0, [(hex(f.view(np.uint32)[i]), hex(got[i]), hex(expect[i])) for i in bad[:8]]
    # the vector tail (partial loads/stores) rounds the same as the body
    for n in (1, 3, 15, 17, 33):
        np.testing.assert_array_equal(_convert(f[:n], dtype).view(np.uint16), expect[:n])


def test_16bit_dtypes_accepted_and_returned():
    x = np.array([-1.5, 0.0, 2.25], np.float32)
    for dt in HALF_DTYPES:
        y = nk.relu(x.astype(dt))
        assert y.dtype == dt and y.tolist() == [0.0, 0.0, 2.25]
    with pytest.raises(TypeError, match="^x: expected a float32, float64, float16 or bfloat16 array"):
        nk.relu(np.ones(3, np.int16))
    with pytest.raises(TypeError, match="^x: expected native byte order"):
        nk.relu(np.ones(3, ">f2"))


def test_stream_convert_errors():
    a = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="^a, b: expected float32, float16 or bfloat16"):
        nk._core.stream_convert(a, np.ones(4, np.float64))
    with pytest.raises(ValueError, match="^b: expected the shape of a"):
        nk._core.stream_convert(a, np.ones(5, BF16))
    with pytest.raises(ValueError, match="^a, b: expected C-contiguous"):
        nk._core.stream_convert(np.ones(8, np.float32)[::2], np.ones(4, BF16))
