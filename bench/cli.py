"""``python -m nnkernels bench``: measure bandwidth, then every op against its peers.

    python -m nnkernels bench                      # the main job (~1 min): every op small, one or two per family large
    python -m nnkernels bench --full               # the full suite: every op at every size (~6 min, ~5 GB)
    python -m nnkernels bench --ops relu tanh --sizes small large --json out.json
    python -m nnkernels bench --quick              # small arrays, few repeats (smoke test)
    python -m nnkernels bench --full --markdown --plot bench.png
    python -m nnkernels bench compare A.json B.json
    python -m nnkernels bench report run.json --plot run.png --readme README.md

Timing: 2 untimed warm-up calls, then at least --repeats timed rounds in which every
implementation of the row is called once, in a shuffled order (interleaved, so drifts of the machine affect all
of them alike); median reported with min and interquartile range. Rounds stop early once a row
has used its time budget (the main job: ~1 s per implementation, at least 3 rounds; --full and
explicit --ops/--sizes: 10 s). Rows whose data exceed half the L3 cache have the caches flushed
(a 64 MB write) before every timed call. GPU rows (only when a GPU is present: nnkernels CUDA on
PyTorch CUDA tensors, or CuPy arrays without PyTorch CUDA, and PyTorch CUDA) are timed with CUDA
events on the current stream, in batches of back-to-back calls of about 1 ms; rows moving at
least 4x the GPU's L2 report % of a device-to-device copy measured at the start. The thread count (--threads, default: nk.get_num_threads()) applies to
nnkernels, PyTorch and BLAS (threadpoolctl) alike.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import nnkernels as nk
from nnkernels._cli import HelpFormatter, output_path_problem

from . import _harness as H
from .report import GPU_PCT_NOTE, PCT_COPY_NOTE, _t

PEERS = ("numpy", "torch", "sklearn")
SIZE_LABELS = ("small", "medium", "large")
# Per-implementation time budget of one row (seconds; at least 3 rounds): the main job keeps
# to about a minute, --full and explicit selections give slow peers their 15 rounds.
MAIN_MAX_TIME = 1.0
FULL_MAX_TIME = 10.0


def row_names() -> dict:
    """{family: row names} declared by every bench module (``ROWS``), without building any data."""
    return {family: tuple(module.ROWS) for family, module in H.family_modules()}


def main_rows() -> set:
    """Rows that the main job also times at the large (DRAM-bound) size (``MAIN_ROWS``)."""
    return {name for _, module in H.family_modules() for name in module.MAIN_ROWS}


def valid_op_names() -> list:
    """What --ops accepts: family names, row names, and an op name without ``_backward``
    (which selects the op's forward and backward rows)."""
    names = set()
    for family, rows in row_names().items():
        names.add(family)
        names.update(rows)
        names.update(r[: -len("_backward")] for r in rows if r.endswith("_backward"))
    return sorted(names)


def _size(s: str):
    if s in SIZE_LABELS:
        return s
    if s.isdigit() and int(s) > 0:
        return int(s)
    raise argparse.ArgumentTypeError(f"expected {', '.join(SIZE_LABELS)} or a positive element count, got {s!r}")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m nnkernels bench", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--ops", nargs="+", default=None, metavar="OP|FAMILY",
                   help="op names or family names to run, e.g. relu tanh normalization (default: every op; "
                        "the main job times only each family's MAIN_ROWS at the large size)")
    p.add_argument("--sizes", nargs="+", type=_size, default=None, metavar="SIZE",
                   help="size labels (small, medium, large) or element counts (default: small large)")
    p.add_argument("--full", action="store_true",
                   help="the full suite: every op at every size, 15 rounds (~6 min and ~5 GB on 2 cores)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"],
                   help="element type (16-bit: the families that take it)")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write the results as JSON (a missing folder is created)")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke test)")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help="timed rounds per row (default: 15, with --quick 3)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for nnkernels, PyTorch and BLAS (default: nk.get_num_threads())")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch rows even if importable")
    p.add_argument("--no-stream", action="store_true", help="skip the bandwidth measurement")
    p.add_argument("--isa-levels", action="store_true",
                   help="also time nnkernels at every compiled instruction-set level (rows nnkernels[avx2], ...)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table of the run (README-ready)")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="draw speed-ups and %% of bandwidth per op (a missing folder is created)")
    args = p.parse_args(argv)
    # every name is checked before anything is measured: a typo must not cost a run
    if args.ops:
        valid = valid_op_names()
        unknown = [o for o in args.ops if o not in valid]
        if unknown:
            hints = []
            for o in unknown:
                close = [v for v in valid if v.startswith(o)] or difflib.get_close_matches(o, valid, n=3, cutoff=0.6)
                if close:
                    hints.append(f"for {o!r} did you mean {', '.join(close)}?")
            families = sorted(row_names())
            ops = [v for v in valid if v not in families]
            p.error(f"argument --ops: unknown op or family {', '.join(map(repr, unknown))}"
                    + (f" ({'; '.join(hints)})" if hints else "")
                    + f"; valid families: {', '.join(families)}; valid ops: {', '.join(ops)}")
    if args.quick and args.full:
        p.error("argument --full: not allowed with argument --quick")
    for name in ("json", "plot"):
        path = getattr(args, name)
        problem = output_path_problem(path) if path else None
        if problem:
            p.error(f"argument --{name}: {problem}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            p.error("argument --plot: needs matplotlib (pip install matplotlib)")
    return args


def mode(args) -> str:
    """"quick", "full", "selected" (explicit --ops or --sizes) or "main" (the default run)."""
    if args.quick:
        return "quick"
    if args.full:
        return "full"
    return "selected" if (args.ops or args.sizes) else "main"


def _selector(args):
    """The (op, size label) predicate handed to the bench modules (``Context.select``)."""
    wanted = set(args.ops) if args.ops else None
    families = {row: family for family, rows in row_names().items() for row in rows}
    main = main_rows() if mode(args) == "main" else None

    def select(op, label):
        if wanted is not None and not (op in wanted or families.get(op) in wanted
                                       or op.replace("_backward", "") in wanted):
            return False
        # the main job: every row at the small size, the MAIN_ROWS also at the DRAM-bound ones
        return main is None or label == "small" or op in main

    return select


def _peers(args):
    torch = None
    torch_cuda = False
    if not args.no_torch:
        try:
            import torch as _torch

            torch = _torch
            torch_cuda = bool(torch.cuda.is_available())
        except ImportError:
            torch = None
    cupy = None
    try:
        import cupy as _cupy

        if _cupy.cuda.runtime.getDeviceCount() > 0:
            cupy = _cupy
    except Exception:  # noqa: BLE001 - no CuPy or no device
        cupy = None
    return torch, torch_cuda, cupy


def _gpu_info(torch, cupy) -> dict:
    info = {"gpus": [], "cuda_driver": None, "cuda_runtime": None, "gpu_l2_bytes": None}
    try:
        if cupy is not None:
            rt = cupy.cuda.runtime
            info["gpus"] = [rt.getDeviceProperties(i)["name"].decode() for i in range(rt.getDeviceCount())]
            info["cuda_driver"] = rt.driverGetVersion()
            info["cuda_runtime"] = rt.runtimeGetVersion()
            info["gpu_l2_bytes"] = int(rt.getDeviceProperties(0)["l2CacheSize"])
        elif torch is not None and torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda_runtime"] = torch.version.cuda
            info["gpu_l2_bytes"] = int(torch.cuda.get_device_properties(0).L2_cache_size)
    except Exception:  # noqa: BLE001 - informational only
        pass
    if not info["gpus"]:
        info["gpus"] = nk.build_info()["gpu_names"]
    return info


def machine_info(torch, cupy) -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nnkernels": nk.build_info(),
        "torch": getattr(torch, "__version__", None),
        "cupy": getattr(cupy, "__version__", None),
    }
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ImportError:
        info["sklearn"] = None
    info.update(_gpu_info(torch, cupy))
    return info


def run(args) -> dict:
    t_start = time.perf_counter()
    if args.threads:
        nk.set_num_threads(args.threads)
    threads = nk.get_num_threads()
    torch, torch_cuda, cupy = _peers(args)
    if torch is not None:
        torch.set_num_threads(threads)
    run_mode = mode(args)
    ctx = H.Context(sizes=list(args.sizes or ["small", "large"]), quick=args.quick, dtype=args.dtype, torch=torch,
                    torch_cuda=torch_cuda, cupy=cupy,
                    gpu=nk.build_info()["gpu_count"] > 0 and (cupy is not None or torch_cuda),
                    select=_selector(args))
    repeats = args.repeats or (3 if args.quick else 15)
    max_time = MAIN_MAX_TIME if run_mode == "main" else FULL_MAX_TIME
    result = {"schema": 1, "machine": machine_info(torch, cupy), "threads": threads, "quick": args.quick,
              "mode": run_mode, "torch_skipped": "--no-torch" if args.no_torch else None,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stream": None, "gpu_stream": None, "rows": []}
    try:
        import threadpoolctl

        limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        limiter = None

    if not args.no_stream:
        _progress("measuring streaming bandwidth (copy, triad)...")
        # arrays far above the 32 MB L3 (the main job: 256 MB, 8x; --full: 512 MB)
        mb = 16 if args.quick else (256 if run_mode == "main" else 512)
        result["stream"] = H.measure_stream_bandwidth(n_bytes=mb * H.MB, repeats=3 if args.quick else 7)
        s = result["stream"]
        print(f"stream: copy {s['copy_GBps']:.1f} GB/s, triad {s['triad_GBps']:.1f} GB/s "
              f"({s['array_bytes'] / H.MB:.0f} MB arrays, {threads} threads)", flush=True)
    copy_bw = result["stream"]["copy_GBps"] if result["stream"] else None
    if ctx.gpu and not args.no_stream:
        result["gpu_stream"] = H.measure_gpu_copy_bandwidth(torch, cupy, n_bytes=(16 if args.quick else 1024) * H.MB)
        if result["gpu_stream"]:
            print(f"GPU device-to-device copy {result['gpu_stream']['copy_GBps']:.0f} GB/s", flush=True)
    gpu_bw = result["gpu_stream"]["copy_GBps"] if result["gpu_stream"] else None
    gpu_dram_bytes = 4 * (result["machine"].get("gpu_l2_bytes") or H.GPU_L2_BYTES)
    levels = _isa_levels() if args.isa_levels else []

    for family, module in H.family_modules():
        if ctx.dtype not in getattr(module, "DTYPES", H.DEFAULT_DTYPES):
            continue
        for case in module.cases(ctx):
            if levels:
                case.impls += _isa_impls(case, levels)
            _progress(f"[{len(result['rows']) + 1}] {case.op} {case.shape}...")
            row = _run_case(case, repeats, copy_bw, gpu_bw, max_time=max_time, gpu_dram_bytes=gpu_dram_bytes)
            result["rows"].append(row)
            _progress(f"[{len(result['rows'])}] {_row_progress(row)}")
    if limiter is not None:
        limiter.restore_original_limits()
    result["seconds"] = time.perf_counter() - t_start
    return result


def _isa_levels():
    info = nk.build_info()
    order = ["baseline", "avx2", "avx512"]
    return [lvl for lvl in info["isa_compiled"] if order.index(lvl) <= order.index(info["isa_cpu"])]


def _isa_impls(case, levels):
    """Copies of the nnkernels CPU row pinned to each instruction-set level."""
    ours = next((i for i in case.impls if i.name == "nnkernels"), None)
    if ours is None:
        return []

    def pinned(fn, level):
        def call():
            with nk.isa(level):
                return fn()
        return call

    return [H.Impl(f"nnkernels[{lvl}]", pinned(ours.fn, lvl), "cpu", None, ours.setup) for lvl in levels]


def _run_case(case, repeats, copy_bw, gpu_bw=None, max_time=FULL_MAX_TIME, gpu_dram_bytes=4 * H.GPU_L2_BYTES) -> dict:
    row = {"family": case.family, "op": case.op, "shape": case.shape, "dtype": case.dtype, "kind": case.kind,
           "bytes": case.bytes_moved, "elements": case.elements, "note": case.note, "impls": {}}
    flush = case.bytes_moved >= H.L3_BYTES // 2
    row["cache_flushed"] = flush
    gpu_dram = case.kind == "memory" and case.bytes_moved >= gpu_dram_bytes
    if any(i.device == "cuda" for i in case.impls):
        row["gpu_dram"] = gpu_dram  # GPU rows only: the bytes are DRAM-bound on the device too
    impls = list(case.impls)
    if flush and case.kind == "memory" and copy_bw:
        # The row's own roofline: a stream copy moving the same number of bytes, timed
        # interleaved with the implementations (the VM's bandwidth drifts during a run).
        impls.append(H.stream_copy_impl(case.bytes_moved))
    all_times = H.time_interleaved(impls, repeats=repeats, warmup=2, min_time=0.05, max_time=max_time,
                                   flush_caches=flush)
    row_copy_bw = None
    if impls[-1].name == "stream-copy":
        row_copy_bw = case.bytes_moved / H.summarize(all_times[-1])["median_s"] / 1e9
        row["copy_GBps"] = row_copy_bw
        impls, all_times = impls[:-1], all_times[:-1]
    copy_ref = row_copy_bw or copy_bw
    for impl, times in zip(impls, all_times):
        s = H.summarize(times)
        s["device"] = impl.device
        if case.bytes_moved:
            s["GBps"] = case.bytes_moved / s["median_s"] / 1e9
            if copy_ref and impl.device == "cpu":
                s["pct_copy_bw"] = 100.0 * s["GBps"] / copy_ref
            if gpu_bw and impl.device == "cuda" and gpu_dram:
                s["pct_gpu_copy_bw"] = 100.0 * s["GBps"] / gpu_bw
        if impl.device == "cuda":
            s["calls_per_sample"] = impl.calls_per_sample
        if case.elements:
            s["elements_per_s"] = case.elements / s["median_s"]
        row["impls"][impl.name] = s
    ours = row["impls"].get("nnkernels")
    if ours:
        for peer in PEERS:
            if peer in row["impls"]:
                row[f"speedup_vs_{peer}"] = row["impls"][peer]["median_s"] / ours["median_s"]
    if ours and H.NO_ACT in row["impls"]:
        row["time_vs_no_act"] = ours["median_s"] / row["impls"][H.NO_ACT]["median_s"]
    if ours and H.OUT in row["impls"]:
        row["fresh_vs_out"] = ours["median_s"] / row["impls"][H.OUT]["median_s"]
    if ours and H.NK_TORCH in row["impls"]:
        row["torch_interop_s"] = row["impls"][H.NK_TORCH]["median_s"] - ours["median_s"]
    gpu = row["impls"].get("nnkernels-cuda")
    if gpu and "torch-cuda" in row["impls"]:
        row["cuda_speedup_vs_torch_cuda"] = row["impls"]["torch-cuda"]["median_s"] / gpu["median_s"]
    return row


def _progress(msg):
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + msg)
        sys.stderr.flush()
    else:
        sys.stderr.write(msg + "\n")


def _row_progress(row) -> str:
    ours = row["impls"].get("nnkernels", {})
    vs = ", ".join(f"{row[f'speedup_vs_{p}']:.2f}x {p}" for p in PEERS if f"speedup_vs_{p}" in row)
    return f"{row['op']} {row['shape']}: nnkernels {_t(ours.get('median_s'))}" + (f" ({vs})" if vs else "")


def _gbps(row) -> str:
    ours = row["impls"].get("nnkernels", {})
    return f"{ours['GBps']:.1f}" if row.get("bytes") and "GBps" in ours else "-"


def _pct(row) -> str:
    ours = row["impls"].get("nnkernels", {})
    return f"{ours['pct_copy_bw']:.0f}%" if "pct_copy_bw" in ours and row.get("cache_flushed") else "-"


def _med(row, name) -> str:
    return _t(row["impls"].get(name, {}).get("median_s"))


def _cuda_gbps(row) -> str:
    ours = row["impls"].get("nnkernels-cuda", {})
    return f"{ours['GBps']:.0f}" if row.get("bytes") and "GBps" in ours else "-"


def _cuda_pct(row) -> str:
    ours = row["impls"].get("nnkernels-cuda", {})
    return f"{ours['pct_gpu_copy_bw']:.0f}%" if "pct_gpu_copy_bw" in ours else "-"


def _ratio(row, key) -> str:
    return f"{row[key]:.2f}x" if key in row else "-"


# (header, cell of a row); a column that is "-" in every row is left out (no GPU, no PyTorch...)
COLUMNS = (
    ("op", lambda r: r["op"]), ("shape", lambda r: r["shape"]),
    ("numpy", lambda r: _med(r, "numpy")), ("nnkernels", lambda r: _med(r, "nnkernels")),
    ("GB/s", _gbps), ("%copy", _pct),
    ("torch", lambda r: _med(r, "torch")), ("sklearn", lambda r: _med(r, "sklearn")),
    ("x numpy", lambda r: _ratio(r, "speedup_vs_numpy")), ("x torch", lambda r: _ratio(r, "speedup_vs_torch")),
    ("x sklearn", lambda r: _ratio(r, "speedup_vs_sklearn")),
    ("nk-cuda", lambda r: _med(r, "nnkernels-cuda")), ("cuda GB/s", _cuda_gbps), ("%d2d", _cuda_pct),
    ("torch-cuda", lambda r: _med(r, "torch-cuda")),
    ("x torch-cuda", lambda r: _ratio(r, "cuda_speedup_vs_torch_cuda")),
)
_ALWAYS = ("op", "shape", "numpy", "nnkernels")


def table(result) -> str:
    """The run as a plain-text table, column widths from the content, with its legend."""
    rows = result["rows"]
    cols = []
    for head, cell in COLUMNS:
        cells = [cell(r) for r in rows]
        if head in _ALWAYS or any(c != "-" for c in cells):
            cols.append((head, cells))
    widths = [max([len(h)] + [len(c) for c in cells]) for h, cells in cols]

    def line(values):
        first = f"{values[0]:<{widths[0]}}"
        return (first + "".join(f"  {v:>{w}}" for v, w in zip(values[1:], widths[1:]))).rstrip()

    out = [line([h for h, _ in cols]), line(["-" * w for w in widths])]
    out += [line([cells[i] for _, cells in cols]) for i in range(len(rows))]
    for r in rows:
        if "time_vs_no_act" in r:
            out.append(f"fused activation, {r['op']} {r['shape']}: {r['time_vs_no_act']:.2f}x the time of the same "
                       f"call without it ({_med(r, H.NO_ACT)}, interleaved in this row)")
    for r in rows:
        if "fresh_vs_out" in r:
            o, ours = r["impls"][H.OUT], r["impls"]["nnkernels"]
            gbs = f", {o['GBps']:.1f} GB/s" if "GBps" in o else ""
            out.append(f"fresh result, {r['op']} {r['shape']}: {r['fresh_vs_out']:.2f}x the time of out= "
                       f"({_t(o['median_s'])}{gbs}); slowest round {ours['max_s'] / ours['median_s']:.1f}x the median")
    for r in rows:
        if "torch_interop_s" in r:
            t = r["impls"][H.NK_TORCH]
            out.append(f"torch tensors, {r['op']} {r['shape']}: {_t(t['median_s'])} per call, "
                       f"{r['torch_interop_s'] * 1e6:+.2f} µs against the same call on NumPy arrays")
    heads = {h for h, _ in cols}
    out.append("")
    out.append("times: median per call; x PEER: the peer's time / nnkernels' time (above 1: nnkernels is faster).")
    if "GB/s" in heads:
        out.append("GB/s: bytes the op must read and write per second of nnkernels ('-': not a bandwidth row, "
                   "e.g. the training step, timed in samples).")
    if "%copy" in heads:
        out.append(PCT_COPY_NOTE)
    if "nk-cuda" in heads or "torch-cuda" in heads:
        out.append("GPU: nk-cuda nnkernels' CUDA kernels, torch-cuda PyTorch CUDA (median per call, timed with CUDA "
                   "events over batches of back-to-back calls); x torch-cuda: torch-cuda's time / nk-cuda's.")
    if "%d2d" in heads:
        out.append(GPU_PCT_NOTE)
    return "\n".join(out)


def summary(result) -> str:
    """A few lines at the end of a run: the speed-up ranges, the bandwidth reached, what to run next."""
    rows = result["rows"]
    run_mode = result.get("mode")
    what = {"main": "the main job: every op at the small size, " + ", ".join(sorted(main_rows())) +
                    " also at the large (DRAM-bound) size",
            "full": "the full suite", "quick": "quick smoke run", "selected": "selected rows"}.get(run_mode, "")
    seconds = result.get("seconds")
    out = [f"summary: {len(rows)} rows" + (f" in {seconds:.0f} s" if seconds is not None else "")
           + (f" ({what})" if what else "")]
    names = {"numpy": "NumPy", "torch": "PyTorch", "sklearn": "scikit-learn"}
    slower = []
    for peer in PEERS:
        key = f"speedup_vs_{peer}"
        sp = [r[key] for r in rows if key in r]
        if not sp:
            continue
        faster = sum(v > 1 for v in sp)
        out.append(f"  nnkernels vs {names[peer]:<12} median {statistics.median(sp):.2f}x, range {min(sp):.2f}x-"
                   f"{max(sp):.2f}x over {len(sp)} rows (faster in {faster})")
        slower += [f"{r['op']} {r['shape']} ({r[key]:.2f}x {names[peer]})" for r in rows if r.get(key, 2) < 1]
    pct = [r["impls"]["nnkernels"]["pct_copy_bw"] for r in rows
           if r.get("cache_flushed") and "pct_copy_bw" in r["impls"].get("nnkernels", {})]
    if pct:
        out.append(f"  DRAM-bound rows: nnkernels at median {statistics.median(pct):.0f}% of a same-size stream copy "
                   f"({min(pct):.0f}-{max(pct):.0f}%, {len(pct)} rows)")
    sp = [r["cuda_speedup_vs_torch_cuda"] for r in rows if "cuda_speedup_vs_torch_cuda" in r]
    if sp:
        out.append(f"  nnkernels CUDA vs PyTorch CUDA median {statistics.median(sp):.2f}x, range {min(sp):.2f}x-"
                   f"{max(sp):.2f}x over {len(sp)} rows (faster in {sum(v > 1 for v in sp)})")
        slower += [f"{r['op']} {r['shape']} ({r['cuda_speedup_vs_torch_cuda']:.2f}x PyTorch CUDA)" for r in rows
                   if r.get("cuda_speedup_vs_torch_cuda", 2) < 1]
    gpct = [r["impls"]["nnkernels-cuda"]["pct_gpu_copy_bw"] for r in rows
            if "pct_gpu_copy_bw" in r["impls"].get("nnkernels-cuda", {})]
    if gpct:
        copy = result.get("gpu_stream") or {}
        out.append(f"  GPU DRAM-bound rows: nnkernels CUDA at median {statistics.median(gpct):.0f}% of the "
                   f"device-to-device copy ({copy.get('copy_GBps', 0):.0f} GB/s; {min(gpct):.0f}-{max(gpct):.0f}%, "
                   f"{len(gpct)} rows)")
    if slower:
        more = f" and {len(slower) - 6} more" if len(slower) > 6 else ""
        out.append("  slower than a peer: " + ", ".join(slower[:6]) + more)
    m = result.get("machine", {})
    if m.get("torch") is None and not result.get("torch_skipped"):
        out.append('  PyTorch is not installed, so there is no PyTorch comparison: pip install ".[all]" '
                   "(or torch==2.13.0) adds it")
    if run_mode == "main":
        out.append("  the full suite (every op at every size, ~6 min, ~5 GB): python -m nnkernels bench --full")
    return "\n".join(out)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        from .report import compare_main

        return compare_main(argv[1:])
    if argv and argv[0] == "report":
        from .report import report_main

        return report_main(argv[1:])
    args = _parse(argv)
    result = run(args)
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    print()
    print(table(result))
    print()
    print(summary(result), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
        print(f"wrote {args.json}")
    if args.markdown:
        from .report import markdown

        print()
        print(markdown(result))
    if args.plot:
        from .report import plot

        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
