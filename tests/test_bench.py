"""The benchmark CLI itself (a fast --quick run): output, JSON schema. No timing thresholds."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import nnkernels as nk
from nnkernels.bench import _harness as H
from nnkernels.bench import cli, report


def test_quick_bench_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert cli.main(["--quick", "--ops", "relu", "tanh_backward", "--sizes", "small", "--json", str(path),
                     "--repeats", "2", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "stream: copy" in out and "relu" in out
    data = json.loads(path.read_text())
    assert set(data) >= {"machine", "threads", "stream", "rows", "quick"}
    assert data["stream"]["copy_GBps"] > 0
    ops = {r["op"] for r in data["rows"]}
    assert ops == {"relu", "relu_backward", "tanh_backward"}  # an op name selects its backward too
    for row in data["rows"]:
        assert row["bytes"] > 0
        nkrow = row["impls"]["nnkernels"]
        assert nkrow["runs"] >= 2 and nkrow["median_s"] > 0 and nkrow["GBps"] > 0
        assert row["speedup_vs_numpy"] > 0
        assert "torch" not in row["impls"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_quick_bench_16bit_rows(tmp_path, capsys, dtype):
    """--dtype bfloat16/float16: rows of the families that take 16-bit storage (PyTorch on the same
    memory as a peer); the others are skipped."""
    pytest.importorskip("torch")
    path = tmp_path / "b.json"
    assert cli.main(["--quick", "--ops", "relu", "--sizes", "small", "--json", str(path), "--repeats", "2",
                     "--no-stream", "--dtype", dtype]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert {r["op"] for r in rows} == {"relu", "relu_backward"}
    for row in rows:
        assert row["dtype"] == dtype and row["bytes"] == {"relu": 2, "relu_backward": 3}[row["op"]] * 1000 * 2
        assert {"nnkernels", "torch", "numpy"} <= set(row["impls"])


def test_size_labels():
    assert H.size_label(64 << 20) == "64M"
    assert H.size_label(1000) == "1000"
    ctx = H.Context(sizes=["small"], quick=True)
    assert ctx.elements("small") == 1000 and ctx.elements(12345) == 12345


def test_summarize():
    s = H.summarize([3.0, 1.0, 2.0, 4.0, 5.0])
    assert s["median_s"] == 3.0 and s["min_s"] == 1.0 and s["runs"] == 5


def _run_to_json(tmp_path, name, extra=()):
    path = tmp_path / name
    assert cli.main(["--quick", "--ops", "relu", "--sizes", "small", "--repeats", "3", "--no-torch",
                     "--json", str(path), *extra]) == 0
    return path


def test_markdown_and_plot(tmp_path, capsys):
    png = tmp_path / "b.png"
    path = _run_to_json(tmp_path, "a.json", ["--markdown", "--plot", str(png), "--isa-levels"])
    out = capsys.readouterr().out
    assert "| op | shape | NumPy | nnkernels |" in out
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = report.load(str(path))
    assert data["schema"] == 1
    assert any(k.startswith("nnkernels[") for k in data["rows"][0]["impls"])


def test_compare_flags_regressions(tmp_path, capsys):
    path = _run_to_json(tmp_path, "a.json")
    a = report.load(str(path))
    b = json.loads(json.dumps(a))
    for row in b["rows"]:
        im = row["impls"]["nnkernels"]
        for k in ("median_s", "min_s", "q1_s", "q3_s"):
            im[k] *= 3.0  # three times slower, far beyond any measured noise
    rows, regressions = report.compare(a, b)
    assert regressions == len(a["rows"])
    assert all(r[-1] == "REGRESSION" for r in rows if r[2] == "nnkernels")
    same_rows, same_reg = report.compare(a, a)
    assert same_reg == 0 and all(r[5] == 1.0 for r in same_rows)
    bpath = tmp_path / "b.json"
    bpath.write_text(json.dumps(b))
    assert cli.main(["compare", str(path), str(bpath), "--fail-on-regression"]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert cli.main(["compare", str(path), str(path)]) == 0


def test_load_rejects_foreign_json(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(ValueError, match="not an nnkernels benchmark file"):
        report.load(str(p))


def test_report_rewrites_readme_section(tmp_path):
    path = _run_to_json(tmp_path, "a.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_START}\nold\n{report.README_END}\nouttro\n")
    png = tmp_path / "r.png"
    assert cli.main(["report", str(path), "--plot", str(png), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outtro\n") and "old" not in text
    assert "| relu | 1000 |" in text and "![speed-ups and bandwidth](r.png)" in text
    assert png.exists()


def test_fused_activation_row_times_the_unfused_call(tmp_path, capsys):
    path = tmp_path / "n.json"
    assert cli.main(["--quick", "--ops", "batchnorm_relu_forward", "--sizes", "small", "--repeats", "2",
                     "--no-torch", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fused activation, batchnorm_relu_forward 32x256: " in out
    row = json.loads(path.read_text())["rows"][0]
    assert row["op"] == "batchnorm_relu_forward" and H.NO_ACT in row["impls"]
    assert row["time_vs_no_act"] == row["impls"]["nnkernels"]["median_s"] / row["impls"][H.NO_ACT]["median_s"]
    assert "Fused activation, batchnorm_relu_forward" in report.markdown(report.load(str(path)))


def test_rows_time_fresh_results_and_out_and_the_growth_set(tmp_path, capsys):
    """Every nnkernels row of these families times the fresh-result call ("nnkernels") and the
    out= call interleaved; layernorm_growth has one row per size (--quick: 1 to 4Ki rows)."""
    path = tmp_path / "g.json"
    assert cli.main(["--quick", "--ops", "layernorm_growth", "relu", "layernorm_forward", "softmax_cross_entropy",
                     "--sizes", "small", "--repeats", "2", "--no-torch", "--no-stream", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fresh result" in out and "x the time of out=" in out
    rows = json.loads(path.read_text())["rows"]
    growth = [r for r in rows if r["op"] == "layernorm_growth"]
    assert [r["shape"] for r in growth] == ["1x1024", "8x1024", "64x1024", "512x1024", "4096x1024"]
    assert [r["bytes"] for r in growth] == [2 * 4 * 1024 * n for n in (1, 8, 64, 512, 4096)]
    assert {r["op"] for r in rows} == {"layernorm_growth", "relu", "relu_backward", "layernorm_forward",
                                       "softmax_cross_entropy"}
    for r in rows:
        ours, into_out = r["impls"]["nnkernels"], r["impls"][H.OUT]
        assert ours["GBps"] > 0 and into_out["GBps"] > 0 and ours["max_s"] >= ours["median_s"]
        assert r["fresh_vs_out"] == ours["median_s"] / into_out["median_s"]
    assert "| nnkernels out= |" in report.markdown(report.load(str(path)))


# ----------------------------------------------------------------------------- names checked first (issue 13, 14)

@pytest.fixture
def no_measuring(monkeypatch):
    """Any measurement fails the test: argument errors must come before the first one."""
    def refuse(*a, **k):
        raise AssertionError("measured before the arguments were checked")
    monkeypatch.setattr(H, "measure_stream_bandwidth", refuse)
    monkeypatch.setattr(H, "time_interleaved", refuse)
    monkeypatch.setattr(cli, "run", refuse)


@pytest.mark.parametrize("argv, expected", [
    (["--ops", "layernorm"], "'layernorm' did you mean layernorm_forward, layernorm_fwd_bwd, layernorm_growth?"),
    (["--ops", "relu", "optimisers"], "'optimisers' did you mean optimizers"),
    (["--ops", "frobnicate"], "unknown op or family 'frobnicate'; valid families: activations, init"),
    (["--sizes", "huge"], "argument --sizes: expected small, medium, large or a positive element count, got 'huge'"),
    (["--sizes", "0"], "got '0'"),
    (["--repeats", "0"], "argument --repeats: expected a positive integer"),
    (["--quick", "--full"], "not allowed with argument --quick"),
    (["--json", "{blocker}/x.json"], "argument --json: cannot create the folder"),
    (["--plot", "{blocker}/sub/x.png"], "argument --plot: cannot create the folder"),
    (["--json", "{tmp}"], "is a folder, expected a file name"),
])
def test_bad_arguments_exit_2_before_measuring(no_measuring, capsys, tmp_path, argv, expected):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        cli.main([a.format(blocker=blocker, tmp=tmp_path) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m nnkernels bench") and expected in err


def test_missing_output_folder_is_created_while_parsing(tmp_path):
    args = cli._parse(["--json", str(tmp_path / "a" / "b.json"), "--plot", str(tmp_path / "c" / "d.png")])
    assert (tmp_path / "a").is_dir() and (tmp_path / "c").is_dir() and args.json.endswith("b.json")


def test_error_lists_every_valid_name(no_measuring, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--ops", "layernorm"])
    err = capsys.readouterr().err
    for family, rows in cli.row_names().items():
        assert family in err and all(r in err for r in rows)


def test_declared_rows_are_what_the_modules_yield():
    """ROWS (what --ops is checked against) and MAIN_ROWS agree with what cases() yields, and a module
    yields only what Context.select asks for."""
    try:
        import torch
    except ImportError:
        torch = None
    for family, module in H.family_modules():
        if getattr(module, "NEEDS_TORCH", False):  # such a family yields nothing without PyTorch
            assert list(module.cases(H.Context(sizes=["small"], quick=True))) == [], family
            if torch is None:
                continue
        ctx = H.Context(sizes=["small"], quick=True, torch=torch)
        assert {c.op for c in module.cases(ctx)} == set(module.ROWS), family
        assert set(module.MAIN_ROWS) <= set(module.ROWS) and module.MAIN_ROWS, family
        first = module.ROWS[-1]
        ctx = H.Context(sizes=["small"], quick=True, torch=torch, select=lambda op, label, first=first: op == first)
        assert {c.op for c in module.cases(ctx)} == {first}, family  # (layernorm_growth: one row per size)
        ctx = H.Context(sizes=["small"], quick=True, torch=torch, select=lambda op, label: False)
        assert list(module.cases(ctx)) == [], family


def test_main_job_selects_every_row_small_and_main_rows_large():
    select = cli._selector(cli._parse([]))
    rows = [r for rs in cli.row_names().values() for r in rs]
    assert all(select(r, "small") for r in rows)
    assert {r for r in rows if select(r, "large")} == cli.main_rows()
    full = cli._selector(cli._parse(["--full"]))
    assert all(full(r, "large") for r in rows)
    only = cli._selector(cli._parse(["--ops", "relu", "normalization"]))
    assert {r for r in rows if only(r, "large")} == {"relu", "relu_backward", *cli.row_names()["normalization"]}


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "(default: float32)" in out and "--full" in out


# ----------------------------------------------------------------------------- the printed table (issue 13, 16)

def _row(op, shape, median, *, bytes_=0, pct=None, flushed=False, numpy=None):
    ours = {"median_s": median}
    if bytes_:
        ours["GBps"] = bytes_ / median / 1e9
    else:
        ours["elements_per_s"] = 256 / median
    if pct is not None:
        ours["pct_copy_bw"] = pct
    r = {"op": op, "shape": shape, "bytes": bytes_, "cache_flushed": flushed, "impls": {"nnkernels": ours}}
    if numpy:
        r["impls"]["numpy"] = {"median_s": numpy}
        r["speedup_vs_numpy"] = numpy / median
    return r


def _result(rows, torch=None, run_mode="main"):
    return {"schema": 1, "machine": {"torch": torch}, "threads": 2, "quick": False, "mode": run_mode,
            "time": "", "stream": None, "gpu_stream": None, "rows": rows, "seconds": 3.0}


def test_table_columns_align_and_non_bandwidth_rows_show_a_dash():
    rows = [_row("relu", "64M", 0.012, bytes_=512 << 20, pct=104.0, flushed=True, numpy=0.026),
            _row("mlp_bn_relu_adam_step", "784-1024-1024-10/b256", 0.0206, numpy=0.035)]
    text = cli.table(_result(rows))
    lines = text.splitlines()
    head, sep = lines[0], lines[1]
    spans = [m.span() for m in re.finditer(r"-+", sep)]
    assert [head[a:b].strip() for a, b in spans] == ["op", "shape", "numpy", "nnkernels", "GB/s", "%copy",
                                                     "x numpy"]  # empty columns (torch, sklearn, GPU) left out
    for line in lines[2:4]:
        cells = [line[a:b].strip() for a, b in spans]
        assert all(cells), line  # every cell inside its column
        gaps = "".join(line[b:a] for (_, b), (a, _) in zip(spans, spans[1:]))
        assert gaps.strip() == "", line  # nothing between the columns
    mlp = [lines[3][a:b].strip() for a, b in spans]
    assert mlp[0] == "mlp_bn_relu_adam_step" and mlp[4] == "-" and "G/s" not in lines[3]
    assert "104%" in lines[2]
    assert "can exceed 100 %" in text and "%copy (DRAM-bound rows only)" in text


def test_markdown_throughput_of_a_non_bandwidth_row_is_a_dash():
    rows = [_row("relu", "64M", 0.012, bytes_=512 << 20, pct=104.0, flushed=True, numpy=0.026),
            _row("mlp_bn_relu_adam_step", "784-1024-1024-10/b256", 0.0206, numpy=0.035)]
    md = report.markdown(_result(rows))
    mlp = next(line for line in md.splitlines() if line.startswith("| mlp_bn_relu_adam_step"))
    assert mlp.split(" | ")[4] == "-" and "G/s" not in md
    assert "(104%)" in md and "can exceed 100 %" in md


def test_summary_ranges_and_how_to_get_torch():
    rows = [_row("relu", "64M", 0.012, bytes_=512 << 20, pct=104.0, flushed=True, numpy=0.026),
            _row("uniform", "1000", 2e-6, bytes_=4000, numpy=1e-6)]
    text = cli.summary(_result(rows))
    assert text.startswith("summary: 2 rows in 3 s (the main job")
    assert "nnkernels vs NumPy" in text and "range 0.50x-2.17x over 2 rows (faster in 1)" in text
    assert "104% of a same-size stream copy" in text and "slower than a peer: uniform 1000 (0.50x NumPy)" in text
    assert 'PyTorch is not installed' in text and "pip install" in text
    assert "python -m nnkernels bench --full" in text
    with_torch = cli.summary(_result(rows, torch="2.13.0", run_mode="full"))
    assert "PyTorch is not installed" not in with_torch and "--full" not in with_torch


# ----------------------------------------------------------------------------- GPU rows (issue 19)
# Rows chosen so that every family's GPU impls are built: the sized rows of each family module.
GPU_OPS = ["relu", "layernorm_forward", "batchnorm_fwd_bwd", "softmax_cross_entropy", "adam", "normal",
           "StandardScaler"]


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def test_no_gpu_rows_without_a_gpu(tmp_path, monkeypatch, capsys):
    """With no GPU (forced here, so that the test means the same on a GPU machine) a run has no GPU
    impl, no GPU field and no GPU column, and the CPU rows are all there."""
    torch = _torch_or_none()
    monkeypatch.setattr(cli, "_peers", lambda args: (None if args.no_torch else torch, False, None))
    path = tmp_path / "cpu.json"
    ops = ["relu", "layernorm_forward", "softmax_cross_entropy", "adam", "normal"]  # the families with PyTorch rows
    assert cli.main(["--quick", "--ops", *ops, "--sizes", "small", "--repeats", "2", "--no-stream",
                     "--json", str(path)]) == 0
    out = capsys.readouterr().out
    data = report.load(str(path))
    assert data["gpu_stream"] is None
    assert {r["op"] for r in data["rows"]} == set(ops) | {"relu_backward"}
    for row in data["rows"]:
        assert "gpu_dram" not in row and "cuda_speedup_vs_torch_cuda" not in row, row["op"]
        assert all(im["device"] == "cpu" and "calls_per_sample" not in im for im in row["impls"].values()), row["op"]
    assert "nk-cuda" not in out and "torch-cuda" not in out and "GPU" not in cli.summary(data)
    assert "CUDA" not in report.markdown(data)


def test_gpu_rows_of_every_family_with_stand_in_devices(tmp_path, monkeypatch, capsys):
    """The GPU code paths of every family on stand-ins (no GPU here): NumPy arrays for nnkernels' CUDA
    rows, PyTorch CPU tensors for PyTorch's, timed on the host. Checks what each row records: a
    nnkernels-cuda and a torch-cuda impl (preprocessing: no GPU peer), calls per sample, the ratio,
    and % of the device-to-device copy (here a stand-in 1000 GB/s) for rows above 4x the L2."""
    torch = pytest.importorskip("torch")
    real = nk.build_info
    monkeypatch.setattr(nk, "build_info", lambda: {**real(), "gpu_count": 1})
    monkeypatch.setattr(cli, "_peers", lambda args: (torch, True, None))
    monkeypatch.setattr(H, "_torch_cuda_arrays", lambda t: H.DeviceArrays(
        "torch", lambda a: torch.from_numpy(np.array(a)),
        lambda shape, dt: torch.empty(shape, dtype=getattr(torch, np.dtype(dt).name)), lambda: None))
    monkeypatch.setattr(H.Context, "device_arrays", lambda self: H.DeviceArrays(
        "numpy", np.array, np.empty, lambda: None) if self.gpu else None)
    monkeypatch.setattr(H, "measure_gpu_copy_bandwidth", lambda torch, cupy, n_bytes: {
        "array_bytes": n_bytes, "copy_GBps": 1000.0, "copy": {}, "library": "torch"})
    monkeypatch.setattr(H, "GPU_L2_BYTES", 2048)  # rows of >= 8 KB count as DRAM-bound
    path = tmp_path / "gpu.json"
    assert cli.main(["--quick", "--ops", *GPU_OPS, "--sizes", "small", "--repeats", "2", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    data = report.load(str(path))
    assert data["gpu_stream"]["copy_GBps"] == 1000.0 and "GPU device-to-device copy 1000 GB/s" in out
    rows = data["rows"]
    assert {r["family"] for r in rows} == {"activations", "normalization", "losses", "optimizers", "init",
                                            "preprocessing"}
    for row in rows:
        names = {"nnkernels-cuda"} if row["family"] == "preprocessing" else {"nnkernels-cuda", "torch-cuda"}
        gpu = {n: im for n, im in row["impls"].items() if im["device"] == "cuda"}
        assert set(gpu) == names, row["op"]
        for im in gpu.values():
            assert isinstance(im["calls_per_sample"], int) and 1 <= im["calls_per_sample"] <= H.GPU_MAX_CALLS
        assert row["gpu_dram"] == (row["bytes"] >= 4 * 2048 and row["kind"] == "memory"), row["op"]
        ours = gpu["nnkernels-cuda"]
        if row["gpu_dram"]:
            assert ours["pct_gpu_copy_bw"] == pytest.approx(100 * ours["GBps"] / 1000.0)
        else:
            assert "pct_gpu_copy_bw" not in ours
        if "torch-cuda" in gpu:
            assert row["cuda_speedup_vs_torch_cuda"] == gpu["torch-cuda"]["median_s"] / ours["median_s"]
        assert all(im["device"] == "cpu" for n, im in row["impls"].items() if n not in gpu)
    adam = next(r for r in rows if r["op"] == "adam")
    assert re.search(r"torch-cuda: (fused|foreach)=True", adam["note"])
    assert any(r["gpu_dram"] for r in rows) and not all(r["gpu_dram"] for r in rows)
    assert "nk-cuda" in out and "%d2d" in out and "x torch-cuda" in out
    assert "nnkernels CUDA vs PyTorch CUDA median" in out and "of the device-to-device copy (1000 GB/s" in out
    md = report.markdown(data)
    assert "| nnkernels CUDA |" in md and "GPU throughput: %d2d" in md


def test_gpu_calls_per_sample():
    assert H.gpu_calls_per_sample(1e-5) == 100  # 10 us calls: 100 to a 1 ms sample
    assert H.gpu_calls_per_sample(3e-4) == 4
    assert H.gpu_calls_per_sample(2e-3) == 1  # longer than a sample: one call each
    assert H.gpu_calls_per_sample(1e-9) == H.GPU_MAX_CALLS
    assert H.gpu_calls_per_sample(0.0) == H.GPU_MAX_CALLS


def test_paired_steps_reports_each_pair_and_an_interval(capsys):
    """bench/torch_modules.paired_steps (the training-step comparison of issue 16): one ratio per pair, the
    median and a 95% interval that contains the geometric mean, and the printed summary line."""
    pytest.importorskip("torch")
    from nnkernels.bench import torch_modules

    r = torch_modules.paired_steps("mlp", pairs=3, quick=True)
    assert len(r["ratios"]) == 3 and all(v > 0 for v in r["ratios"])
    gmean = float(np.exp(np.mean(np.log(r["ratios"]))))
    assert r["ci95"][0] <= gmean <= r["ci95"][1]
    assert 0 <= r["faster_in"] <= 3 and r["median"] == float(np.median(r["ratios"]))
    out = capsys.readouterr().out
    assert out.count("pair ") == 3 and "mlp step, 3 pairs: speedup median" in out
