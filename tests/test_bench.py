"""The benchmark CLI itself (a fast --quick run): output, JSON schema. No timing thresholds."""
from __future__ import annotations

import json

from nnkernels.bench import _harness as H
from nnkernels.bench import cli


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
