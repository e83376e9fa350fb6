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
        # the libgomp the extension loaded (a wheel may carry its own copy under another name)
        maps = open("/proc/self/maps").read().split()
        ctypes.CDLL(next(p for p in maps if "libgomp" in os.path.basename(p))).omp_display_env(1)
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
