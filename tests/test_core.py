"""Runtime plumbing: build info, threads, instruction-set selection, CLI entry."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import nnkernels as nk


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
