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
