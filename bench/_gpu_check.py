"""GPU check: build for the GPU, run the GPU tests, the benchmark and compute-sanitizer, summarise.

    bench/gpu_check.sh OUTDIR                   # from the repository root, on any machine with CUDA
    python3 -m bench._gpu_check run OUTDIR      # what the script runs (from the repository root)
    python3 -m bench._gpu_check summary OUTDIR  # print the summary of a saved (or partial) run again

Steps, in this order (the ones whose duration is least known last), each logged into OUTDIR:

1. build: CMake build of the extension with ``NNKERNELS_CUDA=ON`` for
   ``NNKERNELS_CUDA_ARCHITECTURES`` (default 90: sm_90 code and its PTX) into a build folder
   outside OUTDIR (``NNKERNELS_GPU_CHECK_BUILD_DIR``, default build/gpu-check; incremental, ccache
   when installed), all cores. ``NNKERNELS_DEV_INPLACE=OFF``: the worktree's own module
   (python/nnkernels/_core*.so, e.g. a CPU build) is left alone; instead the package is assembled in
   <build>/pkg/nnkernels (the Python sources, bench/, the new module) and every later step runs
   with that folder first on PYTHONPATH. A probe then imports it and records what it sees (the
   CUDA build, the GPUs, PyTorch and CuPy with their devices). -> build.log
2. tests: ``pytest -m gpu`` over tests/ (the ``gpu`` fixture: CuPy arrays and PyTorch CUDA tensors;
   they skip without a GPU). -> gpu-tests.xml (JUnit), gpu-tests.log
3. bench: ``python -m nnkernels bench --json OUTDIR/gpu.json`` (the main job; with a GPU every
   family has nnkernels CUDA and PyTorch CUDA rows and the device-to-device copy roofline), plus
   ``NNKERNELS_GPU_CHECK_BENCH_ARGS`` if set. -> gpu.json, bench.log
4. compute-sanitizer ``--tool memcheck``, ``racecheck``, ``synccheck``, each over
   tests/test_gpu_smoke.py (every CUDA kernel once) with one array library (CuPy if it sees a
   device, else PyTorch; ``NNKERNELS_GPU_CHECK_SANITIZER_LIB`` overrides), memory pools off
   (PYTORCH_NO_CUDA_MEMORY_CACHING=1; the test switches CuPy's off) so that memcheck sees every
   array's own bounds. Skipped without compute-sanitizer or a device. -> sanitizers.log
5. summary: :func:`summary` of the files above (tests passed/failed, sanitizer error counts, the
   bandwidth and PyTorch ratios of the key rows against the issue's targets), printed and written
   to summary.txt after every step, so an interrupted run still leaves one.

gpu_check.log records the environment (tools, Python packages present and missing) and one line
per step (exit status, seconds). OUTDIR holds these eight files and nothing else (the device
tool of this workplace returns at most eight). The whole run keeps to a time budget
(``NNKERNELS_GPU_CHECK_BUDGET_S``, default 540 s: inside one 10-minute call); each step also has
its own limit (STEP_LIMITS) and is stopped, with its whole process group, when it runs over;
a step that would start with under 10 s left is skipped. Exit status: 0 when every step that ran
succeeded (a sanitizer with no errors), 1 otherwise, 2 for a usage error.

Nothing here imports nnkernels (it is not built yet when the run starts): the steps run in
subprocesses of the same Python interpreter.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Optional

USAGE = ("usage: bench/gpu_check.sh OUTDIR\n"
         "       python3 -m bench._gpu_check {run,summary} OUTDIR\n"
         "Builds nnkernels with CUDA, runs the GPU tests, the benchmark and compute-sanitizer; writes\n"
         "everything into OUTDIR (created if missing) and prints a summary. See bench/_gpu_check.py.")

FILES = {"log": "gpu_check.log", "build": "build.log", "tests_xml": "gpu-tests.xml", "tests": "gpu-tests.log",
         "bench": "bench.log", "bench_json": "gpu.json", "sanitizers": "sanitizers.log", "summary": "summary.txt"}
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")
SANITIZER_TESTS = "tests/test_gpu_smoke.py"
# Seconds each step may take at most (the run's budget may leave less). Expected on a 16-core H200
# machine: the build 1-2 min from scratch, the tests and each sanitizer pass well under a minute,
# the bench 2-3 min.
STEP_LIMITS = {"build": 360, "tests": 180, "bench": 300, "memcheck": 120, "racecheck": 120, "synccheck": 120}
DEFAULT_BUDGET_S = 540
MIN_STEP_S = 10
DEFAULT_ARCHITECTURES = "90"
# Python packages the steps use: (import name, what lacks without it)
PACKAGES = (("numpy", "everything"), ("pybind11", "the build"), ("pytest", "the tests and sanitizer runs"),
            ("hypothesis", "test files importing it fail to collect"), ("torch", "PyTorch rows and tensors"),
            ("cupy", "CuPy arrays"), ("threadpoolctl", "tests that need it skip"),
            ("sklearn", "preprocessing tests and rows skip"), ("ml_dtypes", "tests that need it skip"))
# Targets of issue 19 (reported against, never assumed).
TARGET_PCT_COPY = 90.0
TARGET_VS_TORCH = 1.0
TARGET_OVERHEAD_VS_TORCH = 2.0

PROBE = r"""
import json, sys
info = {"python": sys.version.split()[0], "executable": sys.executable}
try:
    import nnkernels as nk
    b = nk.build_info()
    info["nnkernels"] = {k: b.get(k) for k in ("version", "cuda_compiled", "cuda_version", "cuda_architectures",
                                                "gpu_count", "gpu_names", "isa_selected")}
    info["nnkernels"]["file"] = nk.__file__
except Exception as e:
    info["nnkernels"] = {"error": repr(e)}
try:
    import torch
    t = info["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda,
                         "cuda_available": torch.cuda.is_available()}
    if t["cuda_available"]:
        t["device"] = torch.cuda.get_device_name(0)
except ImportError:
    info["torch"] = None
except Exception as e:
    info["torch"] = {"error": repr(e)}
try:
    import cupy
    info["cupy"] = {"version": cupy.__version__}
    info["cupy"]["devices"] = cupy.cuda.runtime.getDeviceCount()
except ImportError:
    info["cupy"] = None
except Exception as e:
    info["cupy"]["error"] = repr(e)
print("probe: " + json.dumps(info))
"""


# ------------------------------------------------------------------------------------------ the run

def find_tool(name: str, extra_dirs=()) -> Optional[str]:
    """`name` on PATH, else beside the interpreter (a virtual environment's cmake and ninja), in the
    CUDA toolkit's usual folders or in `extra_dirs`."""
    found = shutil.which(name)
    if found:
        return found
    dirs = [os.path.dirname(sys.executable), *extra_dirs]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            dirs.append(os.path.join(os.environ[var], "bin"))
    dirs += ["/usr/local/cuda/bin", f"/usr/local/cuda/{name}"] + sorted(glob.glob("/usr/local/cuda-*/bin"))
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def cmake_commands(root: str, build_dir: str, *, architectures: str, python: str, pybind11_dir: str, jobs: int,
                   ninja: bool, ccache: bool, fresh: bool) -> list:
    """The configure and build commands of step 1 (`fresh`: no CMakeCache.txt yet, so a generator may
    be chosen)."""
    configure = ["cmake", "-S", root, "-B", build_dir]
    if ninja and fresh:
        configure += ["-G", "Ninja"]
    configure += ["-DCMAKE_BUILD_TYPE=Release", "-DNNKERNELS_CUDA=ON",
                  f"-DNNKERNELS_CUDA_ARCHITECTURES={architectures}", "-DNNKERNELS_DEV_INPLACE=OFF",
                  f"-DPython_EXECUTABLE={python}", f"-Dpybind11_DIR={pybind11_dir}"]
    if ccache:
        configure += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"]
    return [configure, ["cmake", "--build", build_dir, "--parallel", str(jobs)]]


def assemble_package(root: str, build_dir: str) -> str:
    """<build>/pkg/nnkernels: the Python sources and bench/ of the worktree with the module just built.
    Returns the folder to put first on PYTHONPATH."""
    pkg_root = os.path.join(build_dir, "pkg")
    modules = sorted(glob.glob(os.path.join(build_dir, "_core*.so")) + glob.glob(os.path.join(build_dir, "_core*.pyd")))
    if not modules:
        raise RuntimeError(f"no _core module in {build_dir}")
    shutil.rmtree(pkg_root, ignore_errors=True)
    pkg = os.path.join(pkg_root, "nnkernels")
    shutil.copytree(os.path.join(root, "python", "nnkernels"), pkg,
                    ignore=shutil.ignore_patterns("_core*.so", "_core*.pyd", "__pycache__", "bench"))
    shutil.copytree(os.path.join(root, "bench"), os.path.join(pkg, "bench"),
                    ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy2(modules[-1], pkg)
    return pkg_root


class Run:
    """One run into OUTDIR: the step runner, the time budget, gpu_check.log."""

    def __init__(self, root: str, out: str, budget_s: float):
        self.root, self.out = root, out
        self.deadline = time.monotonic() + budget_s
        self.failed = False
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
        # the interpreter's own bin folder (a virtual environment's cmake, ninja) and nvcc's
        path = [os.path.dirname(sys.executable)]
        nvcc = find_tool("nvcc")
        if nvcc:
            path.append(os.path.dirname(nvcc))
        self.env["PATH"] = os.pathsep.join(path + [self.env.get("PATH", "")])
        self.log = open(self.path("log"), "w")

    def path(self, key: str) -> str:
        return os.path.join(self.out, FILES[key])

    def note(self, line: str) -> None:
        self.log.write(line + "\n")
        self.log.flush()

    def record(self, step: str, status: str, failed: bool) -> None:
        self.note(f"step {step}: {status}")
        self.failed |= failed
        print(f"== {step}: {status}", flush=True)
        self.write_summary()

    def write_summary(self) -> str:
        text = summary(self.out)
        with open(self.path("summary"), "w") as f:
            f.write(text + "\n")
        return text

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def command(self, name: str, cmd: list, log_key: str, limit: float, env=None, mode: str = "a") -> tuple:
        """Run `cmd` in the repository root, output appended to the log `log_key` between two marker
        lines; returns (exit status or None when stopped at its limit, seconds)."""
        timeout = min(limit, self.remaining())
        start = time.monotonic()
        with open(self.path(log_key), mode) as f:
            f.write(f"---- {name}: $ {shlex.join(cmd)}\n")
            f.flush()
            # its own process group (killed as one at its limit: compute-sanitizer's child too), in this
            # session (whoever ends this session's processes ends the steps with it)
            group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
            try:
                p = subprocess.Popen(cmd, cwd=self.root, env=env or self.env, stdout=f, stderr=subprocess.STDOUT,
                                     **group)
            except OSError as exc:
                f.write(f"---- {name}: could not start ({exc})\n")
                return 127, 0.0
            try:
                rc = p.wait(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                _kill_group(p)
                rc = None
            except BaseException:  # Ctrl-C, SIGTERM (see run): the step goes with the driver
                _kill_group(p)
                raise
            seconds = time.monotonic() - start
            f.write(f"---- {name}: " + (f"exit {rc}" if rc is not None else f"timed out (limit {timeout:.0f} s)")
                    + f" after {seconds:.1f} s\n")
        return rc, seconds

    def step(self, name: str, cmd: list, log_key: str, env=None) -> Optional[int]:
        """A whole step of one command, recorded as failed unless it exits 0."""
        if self.remaining() < MIN_STEP_S:
            self.record(name, "skipped (the time budget is spent)", failed=True)
            return None
        rc, seconds = self.command(name, cmd, log_key, STEP_LIMITS[name], env=env, mode="w")
        if rc is None:
            self.record(name, f"timed out after {seconds:.0f} s", failed=True)
        else:
            self.record(name, f"exit {rc} after {seconds:.0f} s", failed=rc != 0)
        return rc


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def _environment(run: Run) -> dict:
    """Tools and Python packages, into gpu_check.log; returns the tools found."""
    import importlib.util
    import platform

    run.note(f"gpu check {time.strftime('%Y-%m-%dT%H:%M:%S%z')} on {platform.node()} ({platform.platform()}), "
             f"{os.cpu_count()} CPUs")
    run.note(f"python: {sys.executable} {sys.version.split()[0]}")
    tools = {name: find_tool(name) for name in ("nvcc", "cmake", "ninja", "ccache", "compute-sanitizer", "nvidia-smi")}
    for name, path in tools.items():
        version = ""
        if path:
            flag = ["-L"] if name == "nvidia-smi" else ["--version"]
            try:
                res = subprocess.run([path, *flag], capture_output=True, text=True, timeout=30, env=run.env)
                lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
                if name != "nvidia-smi":  # the line naming the version, else the first
                    lines = [ln for ln in lines if re.search(r"version|release", ln, re.I)][:1] or lines[:1]
                version = " | ".join(lines)
            except (OSError, subprocess.TimeoutExpired) as exc:
                version = f"({exc})"
        run.note(f"tool {name}: {path or 'not found'}" + (f": {version}" if version else ""))
    missing = []
    for mod, role in PACKAGES:
        if importlib.util.find_spec(mod) is None:
            missing.append(f"{mod} ({role})")
    run.note("missing Python packages: " + (", ".join(missing) if missing else "none"))
    return tools


def _build(run: Run, tools: dict) -> Optional[str]:
    """Step 1; returns the package folder for PYTHONPATH, or None (recorded as a failure)."""
    build_dir = os.path.abspath(os.environ.get("NNKERNELS_GPU_CHECK_BUILD_DIR") or os.path.join(run.root, "build",
                                                                                               "gpu-check"))
    archs = os.environ.get("NNKERNELS_CUDA_ARCHITECTURES") or DEFAULT_ARCHITECTURES
    start = time.monotonic()
    log = run.path("build")
    open(log, "w").close()

    def fail(why: str) -> None:
        with open(log, "a") as f:
            f.write(f"BUILD FAILED: {why}\n")
        run.record("build", f"failed: {why} (see {FILES['build']})", failed=True)

    if not tools["nvcc"]:
        return fail("no nvcc (CUDA compiler) on PATH or in /usr/local/cuda/bin")
    if not tools["cmake"]:
        return fail("no cmake")
    try:
        pybind11_dir = subprocess.run([sys.executable, "-m", "pybind11", "--cmakedir"], capture_output=True,
                                      text=True, check=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return fail(f"pybind11 is not installed for {sys.executable}")
    env = dict(run.env, NNKERNELS_CUDA="ON")  # CMakeLists.txt lets the environment override -D
    tool_dirs = [os.path.dirname(tools[t]) for t in ("cmake", "ninja", "nvcc") if tools[t]]
    env["PATH"] = os.pathsep.join(tool_dirs + [env["PATH"]])  # CMake looks for ninja and nvcc on PATH
    env.setdefault("CCACHE_BASEDIR", run.root)
    env.setdefault("CCACHE_NOHASHDIR", "1")
    fresh = not os.path.exists(os.path.join(build_dir, "CMakeCache.txt"))
    cmds = cmake_commands(run.root, build_dir, architectures=archs, python=sys.executable, pybind11_dir=pybind11_dir,
                          jobs=os.cpu_count() or 1, ninja=bool(tools["ninja"]), ccache=bool(tools["ccache"]),
                          fresh=fresh)
    for name, cmd in zip(("configure", "compile"), cmds):
        rc, _ = run.command(name, [tools["cmake"], *cmd[1:]], "build",
                            STEP_LIMITS["build"] - (time.monotonic() - start), env=env)
        if rc != 0:
            return fail(f"{name} " + ("timed out" if rc is None else f"exit {rc}"))
    try:
        pkg_root = assemble_package(run.root, build_dir)
    except (OSError, RuntimeError) as exc:
        return fail(f"assembling the package: {exc}")
    run.env["PYTHONPATH"] = os.pathsep.join([pkg_root] + ([run.env["PYTHONPATH"]] if run.env.get("PYTHONPATH") else []))
    rc, _ = run.command("probe", [sys.executable, "-c", PROBE], "build", 120)
    probe = _probe(_read(log))
    if rc != 0 or probe is None:
        return fail("the built package does not import")
    run.note("probe: " + json.dumps(probe))
    nk = probe.get("nnkernels", {})
    if not str(nk.get("file", "")).startswith(pkg_root):
        return fail(f"imported nnkernels from {nk.get('file') or nk.get('error')}, not {pkg_root}")
    if not nk.get("cuda_compiled"):
        return fail("the module was built without CUDA")
    run.record("build", f"exit 0 after {time.monotonic() - start:.0f} s", failed=False)
    return pkg_root


def _sanitizer_library(probe: dict) -> Optional[str]:
    chosen = os.environ.get("NNKERNELS_GPU_CHECK_SANITIZER_LIB")
    if chosen:
        return chosen
    cupy, torch = probe.get("cupy") or {}, probe.get("torch") or {}
    if cupy.get("devices"):
        return "cupy"
    if torch.get("cuda_available"):
        return "torch"
    return None


def repo_root() -> Optional[str]:
    """The repository this file belongs to (bench/ of a clone), else the current folder if it is one."""
    for candidate in (os.path.dirname(os.path.dirname(os.path.realpath(__file__))), os.getcwd()):
        if os.path.isfile(os.path.join(candidate, "CMakeLists.txt")) and os.path.isdir(os.path.join(candidate, "csrc")):
            return candidate
    return None


def run(out: str) -> int:
    root = repo_root()
    if root is None:
        print("run: not in a clone of nnkernels (no CMakeLists.txt and csrc/ here): run it from the repository root",
              file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    for name in FILES.values():  # a fresh run: nothing of an earlier one is mistaken for this one's
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    budget = float(os.environ.get("NNKERNELS_GPU_CHECK_BUDGET_S") or DEFAULT_BUDGET_S)
    before = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a terminated run stops its step too
    try:
        return _run(root, out, budget)
    finally:
        signal.signal(signal.SIGTERM, before)


def _run(root: str, out: str, budget: float) -> int:
    r = Run(root, out, budget)
    tools = _environment(r)
    py = sys.executable

    if _build(r, tools) is None:
        for step in ("tests", "bench", *SANITIZER_TOOLS):
            r.note(f"step {step}: skipped (no build)")
    else:
        probe = _probe(_read(r.path("log"))) or {}
        if not _has_module("pytest"):
            r.record("tests", "skipped (pytest is not installed)", failed=True)
        else:
            r.step("tests", [py, "-m", "pytest", "-m", "gpu", "-q", "--junitxml", r.path("tests_xml"),
                             "tests"], "tests")
        bench_args = shlex.split(os.environ.get("NNKERNELS_GPU_CHECK_BENCH_ARGS", ""))
        r.step("bench", [py, "-m", "nnkernels", "bench", "--json", r.path("bench_json"), *bench_args], "bench")
        sanitizers(r, tools, probe)
    text = r.write_summary()
    print()
    print(text, flush=True)
    r.log.close()
    return 1 if r.failed else 0


def sanitizers(r: Run, tools: dict, probe: dict) -> None:
    """Step 4: each compute-sanitizer tool over SANITIZER_TESTS with one array library, appended to
    sanitizers.log; a tool that reports anything (or exits non-zero) fails the run."""
    lib = _sanitizer_library(probe)
    gpus = (probe.get("nnkernels") or {}).get("gpu_count") or 0
    why = ("no compute-sanitizer" if not tools["compute-sanitizer"] else
           "nnkernels sees no GPU" if not gpus else
           "neither CuPy nor PyTorch sees a device" if not lib else
           "pytest is not installed" if not _has_module("pytest") else None)
    env = dict(r.env, PYTORCH_NO_CUDA_MEMORY_CACHING="1")  # plain cudaMalloc per tensor (see SANITIZER_TESTS)
    for tool in SANITIZER_TOOLS:
        if why:
            r.record(tool, f"skipped ({why})", failed=False)
            continue
        if r.remaining() < MIN_STEP_S:
            r.record(tool, "skipped (the time budget is spent)", failed=True)
            continue
        cmd = [tools["compute-sanitizer"], "--tool", tool, sys.executable, "-m", "pytest", "-q", SANITIZER_TESTS,
               "-k", lib]
        rc, seconds = r.command(tool, cmd, "sanitizers", STEP_LIMITS[tool], env=env)
        found = sanitizer_reports(_read(r.path("sanitizers"))).get(tool, {})
        status = f"exit {rc} after {seconds:.0f} s" if rc is not None else f"timed out after {seconds:.0f} s"
        r.record(tool, status, failed=rc != 0 or found.get("errors") != 0)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -------------------------------------------------------------------------------------- the summary

def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _probe(text: str) -> Optional[dict]:
    found = re.findall(r"^probe: (\{.*\})\s*$", text, re.M)
    try:
        return json.loads(found[-1]) if found else None
    except json.JSONDecodeError:
        return None


def steps(log_text: str) -> dict:
    """{step: status} from gpu_check.log (the last line of each step wins)."""
    return dict(re.findall(r"^step (\S+): (.*)$", log_text, re.M))


def junit_counts(path: str) -> Optional[dict]:
    """{"tests", "passed", "failed", "errors", "skipped", "failures": [(test id, first message line)]}
    of a JUnit XML file (pytest --junitxml), or None if it is missing or unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                key = {"failure": "failed", "error": "errors", "skipped": "skipped"}[child.tag]
                counts[key] += 1
                if child.tag != "skipped":
                    msg = [ln.strip() for ln in (child.get("message") or child.text or "").splitlines() if ln.strip()]
                    name = f"{case.get('classname', '')}::{case.get('name', '')}"
                    counts["failures"].append((name, " ".join(msg[:2])[:120] if msg else child.tag))
                break
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return counts


_SUMMARY = re.compile(r"ERROR SUMMARY: (\d+) errors?")
_RACE = re.compile(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)")
# compute-sanitizer prefixes its lines with exactly nine '=' and a space (pytest's rules are longer)
_REPORT = re.compile(r"^========= (?!ERROR SUMMARY|RACECHECK SUMMARY|COMPUTE-SANITIZER|LEAK SUMMARY)(\S.*)$", re.M)
_PYTEST = re.compile(r"^(?:=+ )?((?:\d+ (?:passed|failed|skipped|errors?|deselected|xfailed|xpassed|warnings?)"
                     r"(?:, )?)+) in [\d.]+s", re.M)


def sanitizer_reports(text: str) -> dict:
    """{tool: report} from sanitizers.log. A report has "errors" (int; None when the log holds no
    summary line: the tool did not run to the end), "hazards" (racecheck: (errors, warnings)),
    "api_errors" (reports of failing CUDA API calls, counted in "errors" too), "first" (the first
    report line), "pytest" (its result line) and "end" (the runner's closing line)."""
    out = {}
    sections = re.split(r"^---- (\w+): \$ .*$", text, flags=re.M)
    for tool, body in zip(sections[1::2], sections[2::2]):
        rep = {"errors": None, "hazards": None, "api_errors": 0, "first": None, "pytest": None, "end": None}
        counts = [int(n) for n in _SUMMARY.findall(body)]
        races = [tuple(int(v) for v in m) for m in _RACE.findall(body)]
        if counts:
            rep["errors"] = sum(counts)
        if races:  # racecheck: every hazard counts, warnings too
            rep["hazards"] = (sum(r[1] for r in races), sum(r[2] for r in races))
            rep["errors"] = max(rep["errors"] or 0, sum(rep["hazards"]))
        reports = [m for m in _REPORT.findall(body) if not m.startswith("Target application returned")]
        rep["api_errors"] = sum(1 for m in reports if m.startswith("Program hit"))
        rep["first"] = reports[0][:140] if reports else None
        results = _PYTEST.findall(body)
        rep["pytest"] = results[-1] if results else None
        end = re.findall(rf"^---- {tool}: (.*)$", body, re.M)
        rep["end"] = end[-1] if end else None
        if "Device not supported" in body:
            rep["first"] = "compute-sanitizer: Device not supported"
        out[tool] = rep
    return out


def _bench(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "rows" in data else None


def _time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def _gpu_rows(data: dict, op: str) -> list:
    return [r for r in data["rows"] if r["op"] == op and "nnkernels-cuda" in r["impls"]]


def _bandwidth_line(data: dict, op: str) -> str:
    """The largest nnkernels CUDA row of `op`: GB/s and % of the D2D copy of both, nnkernels/PyTorch."""
    rows = _gpu_rows(data, op)
    if not rows:
        return f"  {op}: no nnkernels CUDA row"
    r = max(rows, key=lambda r: r["bytes"])
    ours, theirs = r["impls"]["nnkernels-cuda"], r["impls"].get("torch-cuda", {})

    def bw(im):
        if "GBps" not in im:
            return "-"
        pct = im.get("pct_gpu_copy_bw")
        return f"{im['GBps']:.0f} GB/s" + (f" = {pct:.0f}% of copy" if pct is not None else "")

    pct = ours.get("pct_gpu_copy_bw")
    ratio = r.get("cuda_speedup_vs_torch_cuda")
    verdict = []
    if pct is not None:
        verdict.append(f">= {TARGET_PCT_COPY:.0f}% copy " + ("met" if pct >= TARGET_PCT_COPY else "MISSED"))
    if ratio is not None:
        verdict.append(f">= {TARGET_VS_TORCH:.1f}x PyTorch " + ("met" if ratio >= TARGET_VS_TORCH else "MISSED"))
    return (f"  {op} {r['shape']}: nnkernels {_time(ours['median_s'])} ({bw(ours)}), PyTorch "
            f"{_time(theirs.get('median_s'))} ({bw(theirs)}), " + (f"{ratio:.2f}x PyTorch's speed" if ratio else "no ratio")
            + (f"  [{'; '.join(verdict)}]" if verdict else ""))


def _overhead_line(data: dict) -> str:
    rows = [r for r in _gpu_rows(data, "layernorm_forward") if "torch-cuda" in r["impls"]]
    if not rows:
        return "  small-op call overhead: no layernorm_forward row with both GPU impls"
    r = min(rows, key=lambda r: r["bytes"])
    ours, theirs = r["impls"]["nnkernels-cuda"]["median_s"], r["impls"]["torch-cuda"]["median_s"]
    times = ours / theirs
    return (f"  call overhead, layernorm_forward {r['shape']}: nnkernels {_time(ours)}, PyTorch {_time(theirs)} per "
            f"call: {times:.2f}x PyTorch's time  [<= {TARGET_OVERHEAD_VS_TORCH:.0f}x "
            + ("met" if times <= TARGET_OVERHEAD_VS_TORCH else "MISSED") + "]")


def summary(out: str) -> str:
    """One screen about the run in `out`, from its files alone (any of them may be missing)."""
    log = _read(os.path.join(out, FILES["log"]))
    st = steps(log)
    probe = _probe(log) or {}
    lines = []
    nk = probe.get("nnkernels") or {}
    head = f"GPU check ({out})"
    if nk.get("cuda_compiled"):
        gpus = ", ".join(nk.get("gpu_names") or []) or "no GPU visible"
        head += f": nnkernels CUDA {nk.get('cuda_version')} for {nk.get('cuda_architectures')}, {gpus}"
    extras = []
    for lib in ("torch", "cupy"):
        info = probe.get(lib)
        if isinstance(info, dict) and info.get("version"):
            dev = info.get("cuda_available") if lib == "torch" else bool(info.get("devices"))
            extras.append(f"{lib} {info['version']}" + ("" if dev else " (no device)"))
    lines.append(head + (f"; {', '.join(extras)}" if extras else ""))
    order = ("build", "tests", "bench", *SANITIZER_TOOLS)
    lines.append("steps: " + (" | ".join(f"{s} {st[s]}" for s in order if s in st) or "none recorded"))
    missing = re.findall(r"^missing Python packages: (.*)$", log, re.M)
    if missing and missing[-1] != "none":
        lines.append(f"missing Python packages: {missing[-1]}")

    tests = junit_counts(os.path.join(out, FILES["tests_xml"]))
    if tests is None:
        lines.append("tests (pytest -m gpu): no results" + (f" ({st['tests']})" if "tests" in st else ""))
    else:
        lines.append(f"tests (pytest -m gpu): {tests['passed']} passed, {tests['failed']} failed, {tests['errors']} "
                     f"errors, {tests['skipped']} skipped of {tests['tests']}")
        for name, msg in tests["failures"][:5]:
            lines.append(f"  FAILED {name}: {msg}")
        if len(tests["failures"]) > 5:
            lines.append(f"  ... and {len(tests['failures']) - 5} more (see {FILES['tests']})")

    reports = sanitizer_reports(_read(os.path.join(out, FILES["sanitizers"])))
    lines.append(f"sanitizers ({SANITIZER_TESTS}):")
    for tool in SANITIZER_TOOLS:
        rep = reports.get(tool)
        if rep is None:
            status = st.get(tool, "")
            lines.append(f"  {tool:<9} " + (status if status.startswith("skipped") else
                                             f"{status}, no report" if status else "no report"))
            continue
        if rep["errors"] is None:
            what = f"no summary line ({rep['end'] or 'interrupted'}): did not run to the end"
        elif rep["hazards"] is not None:
            what = f"{sum(rep['hazards'])} hazards ({rep['hazards'][0]} errors, {rep['hazards'][1]} warnings)"
        else:
            what = f"{rep['errors']} errors" + (f" ({rep['api_errors']} failing CUDA API calls)" if rep["api_errors"]
                                                 else "")
        what += f"; pytest: {rep['pytest']}" if rep["pytest"] else ""
        lines.append(f"  {tool:<9} {what}")
        if rep["first"] and rep["errors"] != 0:
            lines.append(f"            first: {rep['first']}")

    data = _bench(os.path.join(out, FILES["bench_json"]))
    if data is None:
        lines.append("bench: no results" + (f" ({st['bench']})" if "bench" in st else ""))
        return "\n".join(lines)
    copy = data.get("gpu_stream") or {}
    gpu_rows = [r for r in data["rows"] if any(im.get("device") == "cuda" for im in r["impls"].values())]
    lines.append(f"bench ({FILES['bench_json']}, {data.get('mode')}): {len(data['rows'])} rows, {len(gpu_rows)} with GPU "
                 "impls" + (f"; device-to-device copy {copy['copy_GBps']:.0f} GB/s (read + write, "
                            f"{copy.get('array_bytes', 0) / (1 << 20):.0f} MB arrays)" if copy.get("copy_GBps") else
                            "; no device-to-device copy measured"))
    if not gpu_rows:
        lines.append("  no GPU rows (no GPU, or neither nnkernels CUDA nor PyTorch CUDA usable)")
        return "\n".join(lines)
    for op in ("layernorm_forward", "batchnorm_forward", "adam"):
        lines.append(_bandwidth_line(data, op))
    lines.append(_overhead_line(data))
    sp = [(r["cuda_speedup_vs_torch_cuda"], r) for r in data["rows"] if "cuda_speedup_vs_torch_cuda" in r]
    if sp:
        vals = [v for v, _ in sp]
        slow = sorted(sp, key=lambda t: t[0])[:3]
        lines.append(f"  nnkernels CUDA speed / PyTorch CUDA speed: median {statistics.median(vals):.2f}x, range {min(vals):.2f}x-"
                     f"{max(vals):.2f}x over {len(vals)} rows (faster in {sum(v > 1 for v in vals)}); slowest: "
                     + ", ".join(f"{r['op']} {r['shape']} {v:.2f}x" for v, r in slow))
    pct = [r["impls"]["nnkernels-cuda"]["pct_gpu_copy_bw"] for r in data["rows"]
           if "pct_gpu_copy_bw" in r["impls"].get("nnkernels-cuda", {})]
    if pct:
        lines.append(f"  nnkernels CUDA rows above 4x L2: median {statistics.median(pct):.0f}% of the copy "
                     f"({min(pct):.0f}-{max(pct):.0f}%, {len(pct)} rows)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if len(argv) != 2 or argv[0] not in ("run", "summary") or argv[1].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    out = os.path.abspath(argv[1])
    if argv[0] == "summary":
        if not os.path.isdir(out):
            print(f"summary: {argv[1]!r} is not a folder", file=sys.stderr)
            return 2
        print(summary(out))
        return 0
    if os.path.exists(out) and not os.path.isdir(out):
        print(f"run: OUTDIR {argv[1]!r} exists and is not a folder", file=sys.stderr)
        return 2
    return run(out)


if __name__ == "__main__":
    sys.exit(main())
