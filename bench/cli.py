"""``python -m nnkernels bench``: measure bandwidth, then every op against its peers.

    python -m nnkernels bench                      # all families, default sizes
    python -m nnkernels bench --ops relu tanh --sizes small large --json out.json
    python -m nnkernels bench --quick              # small arrays, few repeats (CI)
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
    result = {"machine": machine_info(torch, cupy), "threads": threads, "quick": args.quick,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "stream": None, "rows": []}

    if not args.no_stream:
        _progress("measuring streaming bandwidth (copy, triad)...")
        result["stream"] = H.measure_stream_bandwidth(n_bytes=(16 if args.quick else 512) * H.MB,
                                                      repeats=3 if args.quick else 7)
        s = result["stream"]
        print(f"stream: copy {s['copy_GBps']:.1f} GB/s, triad {s['triad_GBps']:.1f} GB/s "
              f"({s['array_bytes'] / H.MB:.0f} MB arrays, {threads} threads)", flush=True)
    copy_bw = result["stream"]["copy_GBps"] if result["stream"] else None

    wanted = set(args.ops) if args.ops else None
    _print_header()
    for family, module in H.family_modules():
        for case in module.cases(ctx):
            if not _selected(case, wanted):
                continue
            row = _run_case(case, repeats, copy_bw)
            result["rows"].append(row)
            _print_row(row)
    return result


def _run_case(case, repeats, copy_bw) -> dict:
    row = {"family": case.family, "op": case.op, "shape": case.shape, "dtype": case.dtype, "kind": case.kind,
           "bytes": case.bytes_moved, "elements": case.elements, "note": case.note, "impls": {}}
    _progress(f"{case.op} {case.shape}...")
    for impl in case.impls:
        times = H.time_calls(impl, repeats=repeats, warmup=2, min_time=0.05)
        s = H.summarize(times)
        s["device"] = impl.device
        if case.bytes_moved:
            s["GBps"] = case.bytes_moved / s["median_s"] / 1e9
            if copy_bw and impl.device == "cpu":
                s["pct_copy_bw"] = 100.0 * s["GBps"] / copy_bw
        if case.elements:
            s["elements_per_s"] = case.elements / s["median_s"]
        row["impls"][impl.name] = s
    ours = row["impls"].get("nnkernels")
    if ours:
        for peer in PEERS:
            if peer in row["impls"]:
                row[f"speedup_vs_{peer}"] = row["impls"][peer]["median_s"] / ours["median_s"]
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


def _fmt_t(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f}us"
    if s < 1:
        return f"{s * 1e3:.2f}ms"
    return f"{s:.2f}s"


_COLS = ("op", "shape", "numpy", "nnkernels", "GB/s", "%copy", "torch", "x numpy", "x torch", "nk-cuda", "torch-cuda")


def _print_header():
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    print(f"{'op':<28}{'shape':>10}{'numpy':>11}{'nnkernels':>11}{'GB/s':>8}{'%copy':>7}{'torch':>11}"
          f"{'x numpy':>9}{'x torch':>9}{'nk-cuda':>11}{'torch-cuda':>11}", flush=True)


def _print_row(row):
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    im = row["impls"]
    ours = im.get("nnkernels", {})
    gbs = f"{ours['GBps']:.1f}" if "GBps" in ours else (f"{ours['elements_per_s'] / 1e9:.2f}G/s" if "elements_per_s" in ours else "-")
    pct = f"{ours['pct_copy_bw']:.0f}%" if "pct_copy_bw" in ours else "-"
    sx = lambda k: f"{row[k]:.2f}x" if k in row else "-"  # noqa: E731
    print(f"{row['op']:<28}{row['shape']:>10}{_fmt_t(im.get('numpy', {}).get('median_s')):>11}"
          f"{_fmt_t(ours.get('median_s')):>11}{gbs:>8}{pct:>7}{_fmt_t(im.get('torch', {}).get('median_s')):>11}"
          f"{sx('speedup_vs_numpy'):>9}{sx('speedup_vs_torch'):>9}"
          f"{_fmt_t(im.get('nnkernels-cuda', {}).get('median_s')):>11}{_fmt_t(im.get('torch-cuda', {}).get('median_s')):>11}",
          flush=True)


def main(argv=None) -> int:
    args = _parse(argv)
    result = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, default=float)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
