"""Reports of saved benchmark runs: Markdown tables, plots, and run-to-run comparison.

    python -m nnkernels bench --json run.json --markdown --plot run.png
    python -m nnkernels bench compare before.json after.json
"""
from __future__ import annotations

import json
import math
import sys
from typing import Optional

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema", "machine", "threads", "stream", "gpu_stream", "rows", "quick", "time")
PEERS = ("numpy", "torch", "sklearn")
# Why a row can show more than 100 % of the copy bandwidth (printed under the CLI's and the Markdown table).
PCT_COPY_NOTE = ("%copy (DRAM-bound rows only): the op's GB/s as a percentage of a stream copy of the same number "
                 "of bytes, timed interleaved in the same row. A copy is one read and one write stream (non-temporal "
                 "stores); memory gives more bytes per second when reads outnumber writes, so read-heavy ops "
                 "(optimizers read 4 streams and write 3, backward passes read 2 or 3 per write) can exceed 100 %.")

GPU_PCT_NOTE = ("%d2d (GPU rows moving at least 4x the GPU's L2): nnkernels CUDA's GB/s as a percentage of the "
                "device-to-device copy measured at the start of the run (bytes read + written).")


def load(path: str) -> dict:
    with open(path) as f:
        data = json.load(f)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: not an nnkernels benchmark file (missing {', '.join(missing)})")
    return data


def _t(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _ratio(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}x"


def _med(row, name):
    im = row["impls"].get(name)
    return im["median_s"] if im else None


def _throughput(row, name):
    im = row["impls"].get(name)
    if not im:
        return "-"
    if "GBps" in im and row.get("bytes"):
        # % of the streaming bandwidth only means something for DRAM-bound rows
        pct = im.get("pct_copy_bw") if row.get("cache_flushed") else None
        return f"{im['GBps']:.1f} GB/s" + (f" ({pct:.0f}%)" if pct is not None else "")
    # rows that are not bandwidth rows (the training step: samples, not bytes) show a dash
    return "-"


def machine_line(data: dict) -> str:
    m = data["machine"]
    nk = m.get("nnkernels", {})
    parts = [f"{m.get('cpu') or 'CPU'} ({m.get('cores')} cores, {data['threads']} threads, ISA {nk.get('isa_selected')})"]
    if data.get("stream"):
        parts.append(f"copy {data['stream']['copy_GBps']:.1f} GB/s, triad {data['stream']['triad_GBps']:.1f} GB/s")
    if m.get("gpus"):
        parts.append("GPU " + ", ".join(m["gpus"]))
    if data.get("gpu_stream"):
        parts.append(f"GPU copy {data['gpu_stream']['copy_GBps']:.0f} GB/s")
    peers = [f"{k} {m[k]}" for k in ("numpy", "torch", "sklearn", "cupy") if m.get(k)]
    return "; ".join(parts) + ("; " + ", ".join(peers) if peers else "")


def markdown(data: dict) -> str:
    """A README-ready table of one run."""
    has_gpu = any("nnkernels-cuda" in r["impls"] for r in data["rows"])
    has_sklearn = any("sklearn" in r["impls"] for r in data["rows"])
    has_out = any("nnkernels-out" in r["impls"] for r in data["rows"])
    head = ["op", "shape", "NumPy", "nnkernels", "throughput (% copy)"] + (["nnkernels out="] if has_out else [])
    head += ["PyTorch"]
    if has_sklearn:
        head.append("sklearn")
    head += ["vs NumPy", "vs PyTorch"]
    if has_sklearn:
        head.append("vs sklearn")
    if has_gpu:
        head += ["nnkernels CUDA", "GPU throughput (% d2d copy)", "PyTorch CUDA", "CUDA vs PyTorch CUDA"]
    lines = [f"Machine: {machine_line(data)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in data["rows"]:
        cells = [r["op"], r["shape"], _t(_med(r, "numpy")), _t(_med(r, "nnkernels")), _throughput(r, "nnkernels")]
        if has_out:
            cells.append(_t(_med(r, "nnkernels-out")))
        cells.append(_t(_med(r, "torch")))
        if has_sklearn:
            cells.append(_t(_med(r, "sklearn")))
        cells += [_ratio(r.get("speedup_vs_numpy")), _ratio(r.get("speedup_vs_torch"))]
        if has_sklearn:
            cells.append(_ratio(r.get("speedup_vs_sklearn")))
        if has_gpu:
            g = r["impls"].get("nnkernels-cuda", {})
            gt = "-"
            if "GBps" in g and r.get("bytes"):
                gt = f"{g['GBps']:.0f} GB/s" + (f" ({g['pct_gpu_copy_bw']:.0f}%)" if "pct_gpu_copy_bw" in g else "")
            cells += [_t(_med(r, "nnkernels-cuda")), gt, _t(_med(r, "torch-cuda")),
                      _ratio(r.get("cuda_speedup_vs_torch_cuda"))]
        lines.append("| " + " | ".join(cells) + " |")
    if has_out:
        lines += ["", "nnkernels: fresh results (`y = nk.op(x)`, what a user calls); nnkernels out=: the same call "
                  "writing into a reused buffer (timed interleaved in the same row)."]
    fused = [r for r in data["rows"] if "time_vs_no_act" in r]
    if fused:
        lines.append("")
        lines += [f"Fused activation, {r['op']} {r['shape']}: {r['time_vs_no_act']:.2f}x the time of the same call "
                  "without the activation (timed interleaved in the same row)." for r in fused]
    if any(r.get("cache_flushed") and "pct_copy_bw" in r["impls"].get("nnkernels", {}) for r in data["rows"]):
        lines += ["", "Throughput: bytes the op must read and write per second ('-': not a bandwidth row). "
                  + PCT_COPY_NOTE]
    if any("pct_gpu_copy_bw" in r["impls"].get("nnkernels-cuda", {}) for r in data["rows"]):
        lines += ["", "GPU throughput: " + GPU_PCT_NOTE]
    return "\n".join(lines) + "\n"


def plot(data: dict, path: str) -> None:
    """Speed-up over the best CPU peer (log scale) and % of measured bandwidth, per op;
    CPU and GPU bars side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = data["rows"]
    labels = [f"{r['op']}\n{r['shape']}" for r in rows]
    x = list(range(len(rows)))
    w = 0.38

    def best_peer_speedup(r, ours):
        om = _med(r, ours)
        peers = [_med(r, p) for p in PEERS if _med(r, p)]
        if ours == "nnkernels-cuda":
            peers = [_med(r, "torch-cuda")] if _med(r, "torch-cuda") else []
        if not om or not peers:
            return math.nan
        return min(peers) / om

    cpu_sp = [best_peer_speedup(r, "nnkernels") for r in rows]
    gpu_sp = [best_peer_speedup(r, "nnkernels-cuda") for r in rows]
    # % of streaming bandwidth only means something for rows whose data live in DRAM.
    dram = [r.get("cache_flushed", False) for r in rows]
    cpu_bw = [r["impls"].get("nnkernels", {}).get("pct_copy_bw", math.nan) if d else math.nan for r, d in zip(rows, dram)]
    gpu_bw = [r["impls"].get("nnkernels-cuda", {}).get("pct_gpu_copy_bw", math.nan) for r in rows]  # GPU DRAM rows only
    has_gpu = any(not math.isnan(v) for v in gpu_sp + gpu_bw)

    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.55 * len(rows) + 2), 9), sharex=True)
    ax = axes[0]
    ax.bar([i - w / 2 if has_gpu else i for i in x], cpu_sp, w if has_gpu else 0.7, label="nnkernels CPU vs fastest CPU peer")
    if has_gpu:
        ax.bar([i + w / 2 for i in x], gpu_sp, w, label="nnkernels CUDA vs PyTorch CUDA")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylabel("speed-up (log scale)")
    ax.set_title("nnkernels speed-up over the fastest peer (higher is better)")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    ax.bar([i - w / 2 if has_gpu else i for i in x], cpu_bw, w if has_gpu else 0.7, label="CPU: % of measured copy bandwidth")
    if has_gpu:
        ax.bar([i + w / 2 for i in x], gpu_bw, w, label="GPU: % of device-to-device copy bandwidth")
    ax.axhline(100.0, color="k", lw=0.8, ls="--")
    ax.set_ylabel("% of streaming bandwidth")
    ax.set_title("DRAM-bound rows: achieved bandwidth (bytes the op must move / time)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    fig.text(0.01, 0.005, machine_line(data)[:200], fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _noise(im: dict) -> float:
    """Relative spread of one measurement: interquartile range over median."""
    med = im["median_s"]
    return max(0.0, (im.get("q3_s", med) - im.get("q1_s", med)) / med) if med > 0 else 0.0


def compare(a: dict, b: dict, threshold: float = 0.05) -> tuple:
    """Rows of (op, shape, impl, time A, time B, B/A speed ratio, flag). A row is flagged as a
    regression when B is slower than A by more than the noise of both measurements (their
    relative IQRs) plus `threshold`."""
    index = {(r["op"], r["shape"], r["dtype"]): r for r in a["rows"]}
    out, regressions = [], 0
    for rb in b["rows"]:
        ra = index.get((rb["op"], rb["shape"], rb["dtype"]))
        if ra is None:
            continue
        for name, ib in rb["impls"].items():
            ia = ra["impls"].get(name)
            if ia is None:
                continue
            speed = ia["median_s"] / ib["median_s"]  # > 1: B faster
            tol = threshold + _noise(ia) + _noise(ib)
            flag = ""
            if name.startswith("nnkernels"):
                if speed < 1 / (1 + tol):
                    flag = "REGRESSION"
                    regressions += 1
                elif speed > 1 + tol:
                    flag = "faster"
            out.append((rb["op"], rb["shape"], name, ia["median_s"], ib["median_s"], speed, flag))
    return out, regressions


def compare_main(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m nnkernels bench compare",
                                description="Compare two saved runs (A = baseline, B = new).")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="relative slow-down beyond the measurement noise that counts as a regression")
    p.add_argument("--all", action="store_true", help="list peers' rows too, not only nnkernels'")
    p.add_argument("--fail-on-regression", action="store_true", help="exit with status 1 if any row regressed")
    args = p.parse_args(argv)
    a, b = load(args.a), load(args.b)
    rows, regressions = compare(a, b, args.threshold)
    print(f"A: {args.a}: {machine_line(a)}")
    print(f"B: {args.b}: {machine_line(b)}")
    print(f"{'op':<26}{'shape':>11}  {'impl':<18}{'A':>11}{'B':>11}{'A/B':>8}  flag")
    for op, shape, name, ta, tb, speed, flag in rows:
        if not args.all and not name.startswith("nnkernels"):
            continue
        print(f"{op:<26}{shape:>11}  {name:<18}{_t(ta):>11}{_t(tb):>11}{speed:>7.2f}x  {flag}")
    print(f"{regressions} regression(s) beyond noise + {args.threshold:.0%}")
    return 1 if (regressions and args.fail_on_regression) else 0


README_START = "<!-- bench-report:start -->"
README_END = "<!-- bench-report:end -->"


def update_readme(readme_path: str, data: dict, json_path: str, image_path: Optional[str]) -> None:
    """Replace the generated section of the README (between the two markers) with the
    Markdown table of a saved run, naming the file it came from."""
    with open(readme_path) as f:
        text = f.read()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme_path}: markers {README_START} / {README_END} not found")
    plot_arg = f" --plot {image_path}" if image_path else ""
    body = [README_START, "", f"Generated by `python -m nnkernels bench report {json_path}{plot_arg} --readme "
            f"{readme_path}` from a run made {data['time']}.", ""]
    if image_path:
        body += [f"![speed-ups and bandwidth]({image_path})", ""]
    body += [markdown(data), README_END]
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    with open(readme_path, "w") as f:
        f.write(head + "\n".join(body) + tail)


def report_main(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m nnkernels bench report", description="Render a saved run.")
    p.add_argument("run", help="JSON file written by `python -m nnkernels bench --json`")
    p.add_argument("--plot", metavar="FILE.png", default=None)
    p.add_argument("--readme", metavar="README.md", default=None,
                   help="rewrite the generated benchmark section of this README")
    args = p.parse_args(argv)
    data = load(args.run)
    if args.plot:
        plot(data, args.plot)
    if args.readme:
        import os

        image = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.readme))) if args.plot else None
        update_readme(args.readme, data, args.run, image)
    else:
        print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(compare_main(sys.argv[1:]))
