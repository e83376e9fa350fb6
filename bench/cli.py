"""``python -m nnkernels bench``: measure bandwidth, then every op against its peers.

    python -m nnkernels bench                      # all families, default sizes
    python -m nnkernels bench --ops relu tanh --sizes small large --json out.json
    python -m nnkernels bench --quick              # small arrays, few repeats (CI)
    python -m nnkernels bench --markdown --plot bench.png
    python -m nnkernels bench compare A.json B.json
    python -m nnkernels bench report run.json --plot run.png --readme README.md

Timing: 2 untimed warm-up calls, then at least --repeats timed rounds in which every
implementation of the row is called once, in a shuffled order (interleaved, so drifts of the machine affect all
of them alike); median reported with min and interquartile range. Rows whose
data exceed half the L3 cache have the caches flushed (a 64 MB write) before every timed
call. GPU rows are timed with CUDA events on the current stream and synchronised. The
thread count (--threads, default: nk.get_num_threads()) applies to nnkernels, PyTorch and
BLAS (threadpoolctl) alike.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import nnkernels as nk

from . import _harness as H
from .report import _t

PEERS = ("numpy", "torch", "sklearn")


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m nnkernels bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", nargs="+", default=None,
                   help="op names or family names to run (default: all), e.g. relu tanh normalization")
    p.add_argument("--sizes", nargs="+", default=None,
                   help="size labels (small, medium, large) or element counts (default: small large)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--json", metavar="FILE", default=None, help="write the results as JSON")
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 15, quick 3)")
    p.add_argument("--threads", type=int, default=None, help="threads for nnkernels, PyTorch and BLAS")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch rows even if importable")
    p.add_argument("--no-stream", action="store_true", help="skip the bandwidth measurement")
    p.add_argument("--isa-levels", action="store_true",
                   help="also time nnkernels at every compiled instruction-set level (rows nnkernels[avx2], ...)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table of the run (README-ready)")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="draw speed-ups and %% of bandwidth per op")
    return p.parse_args(argv)


def _sizes(args):
    if not args.sizes:
        return ["small", "large"]
    out = []
    for s in args.sizes:
        out.append(int(s) if s.isdigit() else s)
        if isinstance(out[-1], str) and out[-1] not in ("small", "medium", "large"):
            raise SystemExit(f"--sizes: expected small, medium, large or an integer, got {s!r}")
    return out


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
    info = {"gpus": [], "cuda_driver": None, "cuda_runtime": None}
    try:
        if cupy is not None:
            rt = cupy.cuda.runtime
            info["gpus"] = [rt.getDeviceProperties(i)["name"].decode() for i in range(rt.getDeviceCount())]
            info["cuda_driver"] = rt.driverGetVersion()
            info["cuda_runtime"] = rt.runtimeGetVersion()
        elif torch is not None and torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda_runtime"] = torch.version.cuda
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


def _selected(case, wanted):
    return wanted is None or case.op in wanted or case.family in wanted or case.op.replace("_backward", "") in wanted


def run(args) -> dict:
    if args.threads:
        nk.set_num_threads(args.threads)
    threads = nk.get_num_threads()
    torch, torch_cuda, cupy = _peers(args)
    if torch is not None:
        torch.set_num_threads(threads)
    ctx = H.Context(sizes=_sizes(args), quick=args.quick, dtype=args.dtype, torch=torch, torch_cuda=torch_cuda,
                    cupy=cupy, gpu=nk.build_info()["gpu_count"] > 0 and (cupy is not None or torch_cuda))
    repeats = args.repeats or (3 if args.quick else 15)
    result = {"schema": 1, "machine": machine_info(torch, cupy), "threads": threads, "quick": args.quick,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stream": None, "gpu_stream": None, "rows": []}
    try:
        import threadpoolctl

        limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        limiter = None

    if not args.no_stream:
        _progress("measuring streaming bandwidth (copy, triad)...")
        result["stream"] = H.measure_stream_bandwidth(n_bytes=(16 if args.quick else 512) * H.MB,
                                                      repeats=3 if args.quick else 7)
        s = result["stream"]
        print(f"stream: copy {s['copy_GBps']:.1f} GB/s, triad {s['triad_GBps']:.1f} GB/s "
              f"({s['array_bytes'] / H.MB:.0f} MB arrays, {threads} threads)", flush=True)
    copy_bw = result["stream"]["copy_GBps"] if result["stream"] else None
    if ctx.gpu and not args.no_stream:
        result["gpu_stream"] = H.measure_gpu_copy_bandwidth(torch, cupy, n_bytes=(16 if args.quick else 1024) * H.MB)
        if result["gpu_stream"]:
            print(f"GPU device-to-device copy {result['gpu_stream']['copy_GBps']:.0f} GB/s", flush=True)
    gpu_bw = result["gpu_stream"]["copy_GBps"] if result["gpu_stream"] else None
    levels = _isa_levels() if args.isa_levels else []

    wanted = set(args.ops) if args.ops else None
    _print_header()
    for family, module in H.family_modules():
        for case in module.cases(ctx):
            if not _selected(case, wanted):
                continue
            if levels:
                case.impls += _isa_impls(case, levels)
            row = _run_case(case, repeats, copy_bw, gpu_bw)
            result["rows"].append(row)
            _print_row(row)
    if limiter is not None:
        limiter.restore_original_limits()
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


def _run_case(case, repeats, copy_bw, gpu_bw=None) -> dict:
    row = {"family": case.family, "op": case.op, "shape": case.shape, "dtype": case.dtype, "kind": case.kind,
           "bytes": case.bytes_moved, "elements": case.elements, "note": case.note, "impls": {}}
    _progress(f"{case.op} {case.shape}...")
    flush = case.bytes_moved >= H.L3_BYTES // 2
    row["cache_flushed"] = flush
    impls = list(case.impls)
    if flush and case.kind == "memory" and copy_bw:
        # The row's own roofline: a stream copy moving the same number of bytes, timed
        # interleaved with the implementations (the VM's bandwidth drifts during a run).
        impls.append(H.stream_copy_impl(case.bytes_moved))
    all_times = H.time_interleaved(impls, repeats=repeats, warmup=2, min_time=0.05, flush_caches=flush)
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
            if gpu_bw and impl.device == "cuda":
                s["pct_gpu_copy_bw"] = 100.0 * s["GBps"] / gpu_bw
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


def _print_header():
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    print(f"{'op':<28}{'shape':>12}{'numpy':>11}{'nnkernels':>11}{'GB/s':>9}{'%copy':>7}{'torch':>11}{'sklearn':>11}"
          f"{'x numpy':>9}{'x torch':>9}{'x sklearn':>10}{'nk-cuda':>11}{'torch-cuda':>11}", flush=True)


def _print_row(row):
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    im = row["impls"]
    ours = im.get("nnkernels", {})
    gbs = f"{ours['GBps']:.1f}" if "GBps" in ours else (f"{ours['elements_per_s'] / 1e9:.2f}G/s" if "elements_per_s" in ours else "-")
    pct = f"{ours['pct_copy_bw']:.0f}%" if "pct_copy_bw" in ours and row.get("cache_flushed") else "-"
    sx = lambda k: f"{row[k]:.2f}x" if k in row else "-"  # noqa: E731
    print(f"{row['op']:<28}{row['shape']:>12}{_t(im.get('numpy', {}).get('median_s')):>11}"
          f"{_t(ours.get('median_s')):>11}{gbs:>9}{pct:>7}{_t(im.get('torch', {}).get('median_s')):>11}"
          f"{_t(im.get('sklearn', {}).get('median_s')):>11}"
          f"{sx('speedup_vs_numpy'):>9}{sx('speedup_vs_torch'):>9}{sx('speedup_vs_sklearn'):>10}"
          f"{_t(im.get('nnkernels-cuda', {}).get('median_s')):>11}{_t(im.get('torch-cuda', {}).get('median_s')):>11}",
          flush=True)
    if "time_vs_no_act" in row:
        print(f"  fused activation: {row['time_vs_no_act']:.2f}x the time of the same call without it "
              f"({_t(im[H.NO_ACT]['median_s'])}, interleaved in this row)", flush=True)
    if "fresh_vs_out" in row:
        out = im[H.OUT]
        gbs_out = f", {out['GBps']:.1f} GB/s" if "GBps" in out else ""
        print(f"  fresh result {row['fresh_vs_out']:.2f}x the time of out= ({_t(out['median_s'])}{gbs_out}); "
              f"slowest round {ours['max_s'] / ours['median_s']:.1f}x the median", flush=True)


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
