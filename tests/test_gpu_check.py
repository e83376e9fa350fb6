"""bench/gpu_check.sh and its driver bench/_gpu_check.py (issue 19), without a GPU: arguments, the
build commands, the package it assembles, the summary of saved results (a JUnit file, sanitizer
logs with and without errors, a benchmark JSON), a run whose build cannot start. The real CUDA build
(minutes on 2 cores) runs only with NNKERNELS_TEST_GPU_CHECK_BUILD=1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from nnkernels.bench import _gpu_check as G

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_check.sh")


# ------------------------------------------------------------------------------------------ arguments

@pytest.mark.parametrize("args", [[], ["a", "b"], ["-x"], [""]])
def test_script_without_exactly_one_outdir_prints_usage_and_exits_2(tmp_path, args):
    res = subprocess.run(["bash", SCRIPT, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.startswith("usage: bench/gpu_check.sh OUTDIR\n") and res.stdout == ""
    assert os.listdir(tmp_path) == []  # nothing created


def test_script_help(tmp_path):
    res = subprocess.run(["bash", SCRIPT, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("usage: bench/gpu_check.sh OUTDIR\n")


@pytest.mark.parametrize("argv", [[], ["run"], ["summary"], ["run", "a", "b"], ["check", "out"], ["run", "--out"]])
def test_driver_usage(argv, capsys):
    assert G.main(argv) == 2
    assert capsys.readouterr().err.startswith("usage: bench/gpu_check.sh OUTDIR")


def test_driver_refuses_a_file_as_outdir_and_a_missing_summary_folder(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert G.main(["run", str(f)]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert G.main(["summary", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- build

def test_cmake_commands():
    kw = dict(architectures="90", python="/venv/bin/python3", pybind11_dir="/p11", jobs=16, ninja=True, ccache=False)
    configure, build = G.cmake_commands("/repo", "/repo/build/gpu-check", fresh=True, **kw)
    assert configure[:7] == ["cmake", "-S", "/repo", "-B", "/repo/build/gpu-check", "-G", "Ninja"]
    for flag in ("-DNNKERNELS_CUDA=ON", "-DNNKERNELS_CUDA_ARCHITECTURES=90", "-DNNKERNELS_DEV_INPLACE=OFF",
                 "-DPython_EXECUTABLE=/venv/bin/python3", "-Dpybind11_DIR=/p11", "-DCMAKE_BUILD_TYPE=Release"):
        assert flag in configure
    assert not any("LAUNCHER" in a for a in configure)
    assert build == ["cmake", "--build", "/repo/build/gpu-check", "--parallel", "16"]
    again, _ = G.cmake_commands("/repo", "/b", fresh=False, **dict(kw, architectures="90-real;100", ccache=True))
    assert "-G" not in again  # an existing build folder keeps its generator
    assert "-DNNKERNELS_CUDA_ARCHITECTURES=90-real;100" in again
    assert {"-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"} <= set(again)


def test_assembled_package_holds_the_sources_bench_and_the_new_module(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "_core.cpython-399-x86_64-linux-gnu.so").write_bytes(b"the CUDA build")
    pkg_root = G.assemble_package(ROOT, str(build))
    pkg = os.path.join(pkg_root, "nnkernels")
    assert pkg_root == str(build / "pkg")
    assert os.path.isfile(os.path.join(pkg, "__init__.py")) and os.path.isfile(os.path.join(pkg, "reference", "__init__.py"))
    assert os.path.isfile(os.path.join(pkg, "bench", "cli.py")) and os.path.isfile(os.path.join(pkg, "bench", "_gpu_check.py"))
    assert not os.path.exists(os.path.join(pkg, "bench", "results"))
    modules = [f for f in os.listdir(pkg) if f.startswith("_core") and not f.endswith((".py", ".pyi"))]
    assert modules == ["_core.cpython-399-x86_64-linux-gnu.so"]  # not the worktree's own (CPU) module
    with open(os.path.join(pkg, modules[0]), "rb") as fh:
        assert fh.read() == b"the CUDA build"
    os.remove(build / "_core.cpython-399-x86_64-linux-gnu.so")
    with pytest.raises(RuntimeError, match="no _core module"):
        G.assemble_package(ROOT, str(build))


def test_run_without_nvcc_fails_the_build_and_still_writes_the_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(G, "find_tool", lambda name, extra_dirs=(): None)
    monkeypatch.setenv("NNKERNELS_GPU_CHECK_BUILD_DIR", str(tmp_path / "build"))
    out = tmp_path / "out"
    assert G.main(["run", str(out)]) == 1
    printed = capsys.readouterr().out
    files = set(os.listdir(out))
    assert files <= set(G.FILES.values()) and len(files) <= 8
    assert {"gpu_check.log", "build.log", "summary.txt"} <= files
    text = (out / "summary.txt").read_text()
    assert text.strip() in printed
    assert "steps: build failed: no nvcc (CUDA compiler) on PATH or in /usr/local/cuda/bin" in text
    assert "tests skipped (no build) | bench skipped (no build)" in text
    assert "BUILD FAILED: no nvcc" in (out / "build.log").read_text()
    assert "tool compute-sanitizer: not found" in (out / "gpu_check.log").read_text()


# ------------------------------------------------------------------------------- summary of saved files

LOG = """gpu check 2026-12-02T10:00:00+0000 on gpu (Linux), 16 CPUs
python: /opt/torch/.venv/bin/python3 3.12.3
tool nvcc: /usr/local/cuda/bin/nvcc: Cuda compilation tools, release 13.0, V13.0.48
missing Python packages: ml_dtypes (tests that need it skip)
probe: {"python": "3.12.3", "nnkernels": {"cuda_compiled": true, "cuda_version": "13.0.48", "cuda_architectures": "90", "gpu_count": 1, "gpu_names": ["NVIDIA H200"]}, "torch": {"version": "2.11.0", "cuda": "13.0", "cuda_available": true, "device": "NVIDIA H200"}, "cupy": {"version": "14.2.0", "devices": 1}}
step build: exit 0 after 95 s
step tests: exit 1 after 41 s
step bench: exit 0 after 150 s
step memcheck: exit 0 after 50 s
step racecheck: exit 1 after 61 s
step synccheck: timed out after 120 s
"""

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="6" time="41.0">
<testcase classname="tests.test_activations" name="test_gpu_matches_cpu[cupy-relu-float32]" time="0.1"/>
<testcase classname="tests.test_activations" name="test_gpu_matches_cpu[torch-relu-float32]" time="0.1"/>
<testcase classname="tests.test_losses" name="test_gpu_matches_cpu[cupy-float32]" time="0.1"/>
<testcase classname="tests.test_normalization" name="test_gpu_matches_cpu[torch]" time="0.2">
<failure message="AssertionError: &#10;Not equal to tolerance rtol=0.0001">long traceback</failure></testcase>
<testcase classname="tests.test_optim" name="test_gpu_graph_capture[cupy]" time="0.0">
<error message="failed on setup with &quot;RuntimeError: capture&quot;">trace</error></testcase>
<testcase classname="tests.test_init" name="test_gpu_bit_identical_to_cpu[cupy-float16]" time="0.0">
<skipped type="pytest.skip" message="no float16">skip</skipped></testcase>
</testsuite></testsuites>
"""

MEMCHECK_CLEAN = """---- memcheck: $ compute-sanitizer --tool memcheck python3 -m pytest -q tests/test_gpu_smoke.py -k cupy
========= COMPUTE-SANITIZER
........................................                                 [100%]
44 passed, 45 deselected in 30.12s
========= ERROR SUMMARY: 0 errors
---- memcheck: exit 0 after 50.3 s
"""

RACECHECK_HAZARDS = """---- racecheck: $ compute-sanitizer --tool racecheck python3 -m pytest -q tests/test_gpu_smoke.py -k cupy
========= COMPUTE-SANITIZER
========= Error: Race reported between Write access at void bn_stats_partial<float>(...)+0x3a0 in normalization.cu:271
=========     and Read access at void bn_stats_partial<float>(...)+0x2f0 in normalization.cu:268 [248 hazards]
=========
================================== FAILURES ===================================
1 failed, 43 passed, 45 deselected in 58.02s
========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)
---- racecheck: exit 1 after 61.0 s
"""

SYNCCHECK_KILLED = """---- synccheck: $ compute-sanitizer --tool synccheck python3 -m pytest -q tests/test_gpu_smoke.py -k cupy
========= COMPUTE-SANITIZER
..........
---- synccheck: timed out (limit 120 s) after 120.0 s
"""

MEMCHECK_ERRORS = """---- memcheck: $ compute-sanitizer --tool memcheck python3 -m pytest -q tests/test_gpu_smoke.py -k torch
========= COMPUTE-SANITIZER
========= Invalid __global__ write of size 4 bytes
=========     at void nk::cuda::ln_fwd_kernel<float, 0>(...)+0x1b0 in normalization.cu:120
=========     by thread (255,0,0) in block (299,0,0)
=========     Address 0x7f0000012c00 is out of bounds
=========     Saved host backtrace up to driver entry point at kernel launch time
========= Program hit cudaErrorLaunchFailure (error 719) due to "unspecified launch failure" on CUDA API call to cudaStreamSynchronize.
=========     Saved host backtrace up to driver entry point at error
========= Target application returned an error
2 failed, 42 passed, 45 deselected in 31.00s
========= ERROR SUMMARY: 2 errors
---- memcheck: exit 1 after 40.0 s
"""


def _impl(seconds, bytes_, device, copy_gbps=None):
    im = {"median_s": seconds, "min_s": seconds, "device": device, "GBps": bytes_ / seconds / 1e9}
    if copy_gbps:
        im["pct_gpu_copy_bw"] = 100.0 * im["GBps"] / copy_gbps
    if device == "cuda":
        im["calls_per_sample"] = 1 if seconds > 1e-3 else 100
    return im


def _gpu_row(op, shape, bytes_, nk_s, torch_s, *, copy=4000.0, dram=True):
    """A row as bench/cli.py records it: CPU nnkernels, nnkernels CUDA and PyTorch CUDA."""
    r = {"family": "x", "op": op, "shape": shape, "dtype": "float32", "kind": "memory", "bytes": bytes_,
         "elements": 0, "note": "", "cache_flushed": True, "gpu_dram": dram,
         "impls": {"nnkernels": _impl(100 * nk_s, bytes_, "cpu"),
                   "nnkernels-cuda": _impl(nk_s, bytes_, "cuda", copy if dram else None),
                   "torch-cuda": _impl(torch_s, bytes_, "cuda", copy if dram else None)}}
    r["cuda_speedup_vs_torch_cuda"] = torch_s / nk_s
    return r


MIB = 1 << 20
ROWS = [
    _gpu_row("layernorm_forward", "32x256", 2 * 32 * 256 * 4, 12e-6, 8e-6, dram=False),
    _gpu_row("layernorm_forward", "65536x1024", 2 * 256 * MIB, 1.5e-4, 1.2e-4),   # 3579 GB/s = 89%, 0.80x
    _gpu_row("batchnorm_forward", "65536x1024", 3 * 256 * MIB, 2.0e-4, 2.5e-4),   # 4027 GB/s = 101%, 1.25x
    _gpu_row("adam", "1K", 7 * 4000, 10e-6, 40e-6, dram=False),
    _gpu_row("adam", "16M", 7 * 64 * MIB, 1.25e-4, 1.5e-4),                      # 3758 GB/s = 94%, 1.20x
]


def _bench_json(rows, gpu_stream=True):
    return {"schema": 1, "machine": {}, "threads": 16, "quick": False, "mode": "main", "time": "", "stream": None,
            "gpu_stream": {"array_bytes": 1024 * MIB, "copy_GBps": 4000.0} if gpu_stream else None, "rows": rows}


def _saved(tmp_path, sanitizers, rows=ROWS, log=LOG, junit=JUNIT):
    (tmp_path / "gpu_check.log").write_text(log)
    (tmp_path / "gpu-tests.xml").write_text(junit)
    (tmp_path / "sanitizers.log").write_text(sanitizers)
    (tmp_path / "gpu.json").write_text(json.dumps(_bench_json(rows)))
    return G.summary(str(tmp_path))


def test_summary_of_a_saved_run(tmp_path):
    text = _saved(tmp_path, MEMCHECK_CLEAN + RACECHECK_HAZARDS + SYNCCHECK_KILLED)
    lines = text.splitlines()
    assert len(lines) <= 25  # one screen
    assert lines[0] == (f"GPU check ({tmp_path}): nnkernels CUDA 13.0.48 for 90, NVIDIA H200; torch 2.11.0, "
                        "cupy 14.2.0")
    assert lines[1] == ("steps: build exit 0 after 95 s | tests exit 1 after 41 s | bench exit 0 after 150 s | "
                        "memcheck exit 0 after 50 s | racecheck exit 1 after 61 s | synccheck timed out after 120 s")
    assert "missing Python packages: ml_dtypes (tests that need it skip)" in lines
    assert "tests (pytest -m gpu): 3 passed, 1 failed, 1 errors, 1 skipped of 6" in lines
    assert ("  FAILED tests.test_normalization::test_gpu_matches_cpu[torch]: AssertionError: Not equal to tolerance "
            "rtol=0.0001") in lines
    assert '  FAILED tests.test_optim::test_gpu_graph_capture[cupy]: failed on setup with "RuntimeError: capture"' in lines
    assert "  memcheck  0 errors; pytest: 44 passed, 45 deselected" in lines
    assert "  racecheck 2 hazards (1 errors, 1 warnings); pytest: 1 failed, 43 passed, 45 deselected" in lines
    assert any(ln.startswith("            first: Error: Race reported between Write access at void bn_stats_partial")
               for ln in lines)
    assert ("  synccheck no summary line (timed out (limit 120 s) after 120.0 s): did not run to the end" in lines)
    assert ("bench (gpu.json, main): 5 rows, 5 with GPU impls; device-to-device copy 4000 GB/s (read + write, "
            "1024 MB arrays)") in lines
    assert ("  layernorm_forward 65536x1024: nnkernels 150.0 us (3579 GB/s = 89% of copy), PyTorch 120.0 us "
            "(4474 GB/s = 112% of copy), 0.80x PyTorch's speed  [>= 90% copy MISSED; >= 1.0x PyTorch MISSED]") in lines
    assert ("  batchnorm_forward 65536x1024: nnkernels 200.0 us (4027 GB/s = 101% of copy), PyTorch 250.0 us "
            "(3221 GB/s = 81% of copy), 1.25x PyTorch's speed  [>= 90% copy met; >= 1.0x PyTorch met]") in lines
    assert ("  adam 16M: nnkernels 125.0 us (3758 GB/s = 94% of copy), PyTorch 150.0 us (3132 GB/s = 78% of copy), "
            "1.20x PyTorch's speed  [>= 90% copy met; >= 1.0x PyTorch met]") in lines  # the largest adam row
    assert ("  call overhead, layernorm_forward 32x256: nnkernels 12.0 us, PyTorch 8.0 us per call: 1.50x PyTorch's "
            "time  [<= 2x met]") in lines  # the smallest layer norm row
    assert ("  nnkernels CUDA speed / PyTorch CUDA speed: median 1.20x, range 0.67x-4.00x over 5 rows (faster in 3); slowest: "
            "layernorm_forward 32x256 0.67x, layernorm_forward 65536x1024 0.80x, adam 16M 1.20x") in lines
    assert "  nnkernels CUDA rows above 4x L2: median 94% of the copy (89-101%, 3 rows)" in lines


def test_summary_counts_memcheck_errors_and_failing_api_calls(tmp_path):
    text = _saved(tmp_path, MEMCHECK_ERRORS)
    lines = text.splitlines()
    assert "  memcheck  2 errors (1 failing CUDA API calls); pytest: 2 failed, 42 passed, 45 deselected" in lines
    assert "            first: Invalid __global__ write of size 4 bytes" in lines
    assert "  racecheck exit 1 after 61 s, no report" in lines  # its status line, but no section in this log
    reports = G.sanitizer_reports(MEMCHECK_CLEAN + MEMCHECK_ERRORS.replace("memcheck", "synccheck"))
    assert reports["memcheck"]["errors"] == 0 and reports["memcheck"]["first"] is None
    assert reports["synccheck"]["errors"] == 2 and reports["synccheck"]["api_errors"] == 1


def test_summary_overhead_target_missed_and_no_ratio_without_pytorch(tmp_path):
    rows = [_gpu_row("layernorm_forward", "32x256", 65536, 30e-6, 10e-6, dram=False)]
    solo = _gpu_row("batchnorm_forward", "65536x1024", 3 * 256 * MIB, 2.0e-4, 1.0)
    del solo["impls"]["torch-cuda"], solo["cuda_speedup_vs_torch_cuda"]
    text = _saved(tmp_path, "", rows=rows + [solo])
    assert "call: 3.00x PyTorch's time  [<= 2x MISSED]" in text
    assert ("  batchnorm_forward 65536x1024: nnkernels 200.0 us (4027 GB/s = 101% of copy), PyTorch - (-), no ratio  "
            "[>= 90% copy met]") in text
    assert "  adam: no nnkernels CUDA row" in text


def test_summary_of_a_cpu_only_bench_and_of_an_empty_folder(tmp_path):
    cpu_row = {"op": "relu", "shape": "1000", "bytes": 8000, "impls": {"nnkernels": _impl(1e-6, 8000, "cpu")}}
    text = _saved(tmp_path, "", rows=[cpu_row], log="step tests: exit 0 after 30 s\n")
    assert "tests (pytest -m gpu): 3 passed" in text
    assert text.splitlines()[-1] == "  no GPU rows (no GPU, or neither nnkernels CUDA nor PyTorch CUDA usable)"
    empty = tmp_path / "empty"
    empty.mkdir()
    lines = G.summary(str(empty)).splitlines()
    assert lines[1:] == ["steps: none recorded", "tests (pytest -m gpu): no results",
                         f"sanitizers ({G.SANITIZER_TESTS}):", "  memcheck  no report", "  racecheck no report",
                         "  synccheck no report", "bench: no results"]


def test_summary_command_prints_the_saved_summary(tmp_path, capsys):
    _saved(tmp_path, MEMCHECK_CLEAN)
    assert G.main(["summary", str(tmp_path)]) == 0
    assert capsys.readouterr().out == G.summary(str(tmp_path)) + "\n"


# -------------------------------------------------------------------------- the real build (opt-in)

@pytest.mark.skipif(not os.environ.get("NNKERNELS_TEST_GPU_CHECK_BUILD"),
                    reason="the CUDA build takes minutes: set NNKERNELS_TEST_GPU_CHECK_BUILD=1")
def test_real_run_builds_with_cuda_and_the_gpu_tests_skip_without_a_gpu(tmp_path):
    """The whole script with CUDA on (build folder build/gpu-check, incremental); on a machine
    without a GPU the GPU tests skip, the sanitizers are skipped and the bench has no GPU rows."""
    out = tmp_path / "out"
    env = dict(os.environ, NNKERNELS_GPU_CHECK_BUDGET_S="3000",
               NNKERNELS_GPU_CHECK_BENCH_ARGS="--quick --ops relu --sizes small --no-torch", PYTHON=sys.executable)
    res = subprocess.run(["bash", SCRIPT, str(out)], capture_output=True, text=True, timeout=3600, env=env)
    text = (out / "summary.txt").read_text()
    assert "steps: build exit 0" in text, res.stdout + res.stderr
    assert set(os.listdir(out)) <= set(G.FILES.values())
    probe = G._probe((out / "gpu_check.log").read_text())
    assert probe["nnkernels"]["cuda_compiled"] and probe["nnkernels"]["cuda_architectures"]
    if probe["nnkernels"]["gpu_count"] == 0:
        tests = G.junit_counts(str(out / "gpu-tests.xml"))
        assert tests["tests"] > 0 and tests["skipped"] == tests["tests"]
        assert res.returncode == 0
        assert "  memcheck  skipped (" in text and "no GPU rows" in text


def test_a_step_over_its_limit_is_stopped_with_its_process_group(tmp_path):
    run = G.Run(ROOT, str(tmp_path), budget_s=60)
    pid_file = tmp_path / "grandchild.pid"
    child = ("import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
             f"open({str(pid_file)!r}, 'w').write(str(g.pid)); time.sleep(60)")
    rc, seconds = run.command("tests", [sys.executable, "-c", child], "tests", limit=2)
    assert rc is None and 1.5 < seconds < 30
    grandchild = int(pid_file.read_text())
    for _ in range(100):  # gone, or a zombie waiting for init (SIGKILL is delivered at once)
        try:
            with open(f"/proc/{grandchild}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the step's child survived its process group")
    log = (tmp_path / "gpu-tests.log").read_text()
    assert log.startswith("---- tests: $ ") and "---- tests: timed out (limit 2 s) after" in log
    rc, _ = run.command("tests", [sys.executable, "-c", "raise SystemExit(3)"], "tests", limit=30)
    assert rc == 3 and "---- tests: exit 3 after" in (tmp_path / "gpu-tests.log").read_text()
    run.log.close()


FAKE_SANITIZER = """#!/bin/sh
# stand-in for compute-sanitizer: "--tool T python -m pytest ..." -> a report of $FAKE_ERRORS errors
tool=$2
echo "========= COMPUTE-SANITIZER"
echo "args: $*"
echo "pool: ${PYTORCH_NO_CUDA_MEMORY_CACHING:-on}"
echo "44 passed, 45 deselected in 1.00s"
if [ "$tool" = racecheck ]; then
  echo "========= RACECHECK SUMMARY: $FAKE_ERRORS hazards displayed ($FAKE_ERRORS errors, 0 warnings)"
else
  [ "$FAKE_ERRORS" = 0 ] || echo "========= Invalid __global__ read of size 4 bytes"
  echo "========= ERROR SUMMARY: $FAKE_ERRORS errors"
fi
"""


@pytest.mark.parametrize("errors", [0, 3])
def test_sanitizer_step_runs_every_tool_and_counts_its_reports(tmp_path, monkeypatch, errors):
    fake = tmp_path / "compute-sanitizer"
    fake.write_text(FAKE_SANITIZER)
    fake.chmod(0o755)
    monkeypatch.setenv("FAKE_ERRORS", str(errors))
    monkeypatch.delenv("NNKERNELS_GPU_CHECK_SANITIZER_LIB", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    run = G.Run(ROOT, str(out), budget_s=120)
    probe = {"nnkernels": {"gpu_count": 1}, "cupy": {"version": "14", "devices": 1}, "torch": {"cuda_available": True}}
    G.sanitizers(run, {"compute-sanitizer": str(fake)}, probe)
    run.log.close()
    log = (out / "sanitizers.log").read_text()
    assert log.count("args: --tool ") == 3 and "-m pytest -q tests/test_gpu_smoke.py -k cupy" in log
    assert "pool: 1" in log and "pool: on" not in log  # PyTorch's caching allocator off
    reports = G.sanitizer_reports(log)
    assert [reports[t]["errors"] for t in G.SANITIZER_TOOLS] == [errors] * 3
    assert run.failed == bool(errors)
    text = (out / "summary.txt").read_text()
    if errors:
        assert "  memcheck  3 errors; pytest: 44 passed, 45 deselected" in text
        assert "            first: Invalid __global__ read of size 4 bytes" in text
        assert "  racecheck 3 hazards (3 errors, 0 warnings)" in text
    else:
        assert "  synccheck 0 errors; pytest: 44 passed, 45 deselected" in text


def test_sanitizer_step_is_skipped_without_a_device_or_the_tool(tmp_path):
    run = G.Run(ROOT, str(tmp_path), budget_s=60)
    G.sanitizers(run, {"compute-sanitizer": None}, {"nnkernels": {"gpu_count": 1}, "cupy": {"devices": 1}})
    G.sanitizers(run, {"compute-sanitizer": "/bin/false"}, {"nnkernels": {"gpu_count": 0}})
    G.sanitizers(run, {"compute-sanitizer": "/bin/false"}, {"nnkernels": {"gpu_count": 1}, "torch": None,
                                                           "cupy": {"devices": 0}})
    run.log.close()
    log = (tmp_path / "gpu_check.log").read_text()
    assert log.count("skipped (no compute-sanitizer)") == 3 and log.count("skipped (nnkernels sees no GPU)") == 3
    assert log.count("skipped (neither CuPy nor PyTorch sees a device)") == 3
    assert not run.failed and not (tmp_path / "sanitizers.log").exists()
