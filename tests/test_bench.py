"""The benchmark CLI itself (a fast --quick run): output, JSON schema. No timing thresholds."""
from __future__ import annotations

import json

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
    import pytest

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
    assert "fused activation:" in out
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
