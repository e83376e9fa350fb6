"""``python -m nnkernels train``: argument parsing, datasets, end-to-end accuracy targets on digits,
snapshot ensembles, reproducibility from the seed, plot and JSON outputs, and the experiments."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nnkernels import train
from nnkernels.__main__ import main as cli_main



@pytest.fixture(autouse=True)
def _one_thread(threads):
    """Tiny matrices: one thread for the kernels and BLAS (a busy 2-core machine makes spinning threads
    wait far longer than the work takes)."""
    from threadpoolctl import threadpool_limits

    threads(1)
    with threadpool_limits(1):
        yield


def test_parse_defaults_and_values():
    cfg = train.parse_args([])
    assert (cfg.dataset, cfg.hidden, cfg.activation, cfg.norm, cfg.init, cfg.optimizer, cfg.schedule) == \
        ("digits", (256, 256), "relu", "batch", "kaiming", "adam", "constant")
    assert cfg.learning_rate() == 1e-3 and cfg.snapshots == 0 and cfg.seed == 0
    cfg = train.parse_args(["--dataset", "spiral", "--hidden", "100,50,25", "--activation", "leaky_relu",
                            "--norm", "layer", "--init", "xavier", "--optimizer", "nesterov", "--lr", "0.3",
                            "--schedule", "cosine", "--epochs", "3", "--snapshots", "4", "--seed", "9",
                            "--plot", "a.png", "--json", "a.json"])
    assert cfg.hidden == (100, 50, 25) and cfg.optimizer == "nesterov" and cfg.learning_rate() == 0.3
    assert (cfg.snapshots, cfg.seed, cfg.plot, cfg.json, cfg.epochs) == (4, 9, "a.png", "a.json", 3)


@pytest.mark.parametrize("argv", [["--hidden", "10,x"], ["--hidden", "0"], ["--activation", "gelu"],
                                  ["--norm", "group"], ["--optimizer", "lbfgs"], ["--lr", "-1"], ["--lr", "nan"],
                                  ["--epochs", "0"], ["--snapshots", "-1"], ["--schedule", "linear"],
                                  ["--init", "orthogonal"], ["--ema", "1.5"]])
def test_parse_rejects(argv, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(argv)
    assert e.value.code == 2


def test_cli_dispatch_help(capsys):
    assert cli_main([]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "experiments" in out
    assert cli_main(["nonsense"]) == 2


def test_spiral_is_seeded():
    X, y = train.make_spiral(50, 3, seed=1)
    assert X.shape == (150, 2) and np.bincount(y).tolist() == [50, 50, 50]
    X2, _ = train.make_spiral(50, 3, seed=1)
    X3, _ = train.make_spiral(50, 3, seed=2)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, X3)
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1 + 1e-12)


def test_datasets(tmp_path):
    d = train.load_dataset("digits")
    assert d["X_train"].shape == (1438, 64) and d["X_val"].shape == (359, 64) and d["classes"] == 10
    assert d["X_train"].dtype == np.float32
    np.testing.assert_allclose(d["X_train"].mean(0), 0, atol=1e-5)
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, X_train=rng.standard_normal((40, 3, 2)), y_train=rng.integers(0, 4, 40),
             X_val=rng.standard_normal((10, 3, 2)), y_val=rng.integers(0, 4, 10))
    d = train.load_dataset(str(path), dtype=np.float64)
    assert d["X_train"].shape == (40, 6) and d["X_val"].shape == (10, 6) and d["X_train"].dtype == np.float64
    bad = tmp_path / "bad.npz"
    np.savez(bad, X_train=np.zeros((3, 2)), y_train=np.zeros(3, int))
    with pytest.raises(ValueError, match="^dataset.*lacks"):
        train.load_dataset(str(bad))
    bad2 = tmp_path / "bad2.npz"
    np.savez(bad2, X_train=np.zeros((3, 2)), y_train=np.zeros(3), X_val=np.zeros((1, 2)), y_val=np.zeros(1, int))
    with pytest.raises(ValueError, match="^dataset.*integer"):
        train.load_dataset(str(bad2))
    with pytest.raises(ValueError, match="^dataset"):
        train.load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="^dataset"):
        train.load_dataset("mnist")


def test_digits_reaches_97_percent():
    cfg = train.TrainConfig(dataset="digits", hidden=(256, 256), norm="batch", activation="relu",
                            optimizer="adam", epochs=10, seed=0, quiet=True)
    res = train.run(cfg)
    assert res["final"]["val_acc"] >= 0.97, res["final"]
    assert res["history"][-1]["train_loss"] < res["history"][0]["train_loss"]


def test_snapshot_ensemble_beats_best_snapshot():
    cfg = train.TrainConfig(dataset="digits", hidden=(256, 256), optimizer="adam", lr=3e-3, epochs=20,
                            snapshots=4, seed=0, quiet=True)
    res = train.run(cfg)
    s = res["snapshots"]
    assert len(s["val_acc"]) == 4 and len(s["val_loss"]) == 4
    steps_per_epoch = -(-1438 // 64)
    assert s["steps"] == [5 * steps_per_epoch * (k + 1) for k in range(4)]
    assert s["ensemble_val_acc"] >= s["best_single_val_acc"], s


def _strip_times(res):
    res = json.loads(json.dumps(res))
    res.pop("seconds", None)
    res.pop("config", None)  # holds the --json path
    for h in res["history"]:
        h.pop("seconds", None)
    return res


@pytest.mark.parametrize("argv", [["--norm", "batch", "--optimizer", "adam"],
                                  ["--norm", "layer", "--activation", "tanh", "--optimizer", "rmsprop",
                                   "--schedule", "step", "--ema", "0.9"],
                                  ["--norm", "none", "--activation", "sigmoid", "--optimizer", "adagrad",
                                   "--init", "xavier", "--schedule", "cosine"]])
def test_seed_reproducible_bitwise(tmp_path, argv):
    base = ["--dataset", "spiral", "--hidden", "32,32", "--epochs", "3", "--quiet"]
    paths = [tmp_path / f"{i}.json" for i in range(3)]
    for p, seed in zip(paths, ("3", "3", "4")):
        assert cli_main(["train", *base, *argv, "--seed", seed, "--json", str(p)]) == 0
    a, b, c = (_strip_times(json.loads(p.read_text())) for p in paths)
    assert a == b
    assert a["history"] != c["history"]


def test_cli_outputs(tmp_path, capsys):
    png, js = tmp_path / "c.png", tmp_path / "c.json"
    assert cli_main(["train", "--dataset", "spiral", "--hidden", "64", "--epochs", "4", "--snapshots", "2",
                     "--optimizer", "nesterov", "--plot", str(png), "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") == 4 and "val acc" in out and "snapshot ensemble of 2" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert {"history", "final", "config", "snapshots", "model", "steps"} <= set(data)
    assert len(data["history"]) == 4 and data["config"]["optimizer"] == "nesterov"
    assert data["model"]["sizes"] == [2, 64, 3]
    # bad dataset: clean error, exit code 2
    assert cli_main(["train", "--dataset", str(tmp_path / "none.npz"), "--quiet"]) == 2
    assert "error: dataset" in capsys.readouterr().err


def test_every_optimizer_learns_spiral():
    for name in train.OPTIMIZERS:
        res = train.run(train.TrainConfig(dataset="spiral", hidden=(64, 64), norm="batch", optimizer=name,
                                          epochs=15, seed=1, quiet=True))
        assert res["final"]["train_loss"] < 0.5 * res["history"][0]["train_loss"], name
        assert res["final"]["val_acc"] > 0.9, (name, res["final"])  # chance: 1/3


def test_experiments_quick(tmp_path):
    from nnkernels import experiments

    res = experiments.run_all(str(tmp_path), quick=True)
    for name in ("optimizers", "activations", "initialization", "batchnorm", "snapshots"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "SUMMARY.md").read_text()
    assert "Snapshot ensemble" in md and "Optimizers" in md
    init = res["initialization"]
    # the lecture's observations: small init collapses, He keeps ReLU's scale, Xavier keeps tanh alive
    assert init["tanh/small"]["std"][9] < 1e-6
    assert init["relu/kaiming"]["std"][9] > 0.2
    assert init["relu/xavier"]["std"][9] < 0.2 * init["relu/kaiming"]["std"][9]
    assert init["tanh/xavier"]["std"][9] > 0.05


def test_schedules():
    f, ends = train.make_schedule("constant", 0.5, 100, 10)
    assert f(0) == f(99) == 0.5 and ends == [100]
    f, _ = train.make_schedule("step", 1.0, 90, 10)
    assert f(0) == 1.0 and f(29) == 1.0 and f(30) == pytest.approx(0.1) and f(89) == pytest.approx(0.01)
    f, _ = train.make_schedule("cosine", 1.0, 100, 10)
    assert f(0) == 1.0 and f(50) == pytest.approx(0.5) and f(99) < 1e-3
    f, ends = train.make_schedule("restarts", 1.0, 100, 10, cycles=4)
    assert ends == [25, 50, 75, 100]
    assert f(0) == f(25) == f(50) == 1.0 and f(24) < 0.01
    with pytest.raises(ValueError, match="^schedule"):
        train.make_schedule("linear", 1.0, 10, 1)
    with pytest.raises(ValueError, match="^optimizer"):
        train.make_optimizer("lbfgs", [np.zeros(3)], 0.1)


def test_training_bench_row(tmp_path):
    from nnkernels.bench import cli

    path = tmp_path / "b.json"
    assert cli.main(["--quick", "--ops", "training", "--no-stream", "--repeats", "2", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [r["op"] for r in rows] == ["mlp_bn_relu_adam_step"]
    impls = rows[0]["impls"]
    assert {"numpy", "nnkernels"} <= set(impls) and impls["nnkernels"]["elements_per_s"] > 0


def test_cli_thread_defaults_and_restore():
    """CLI runs: the kernels get this process's share of the cores and BLAS one thread unless
    --threads N sets both (issue 13, item 6); the previous counts come back afterwards."""
    import nnkernels as nk
    from nnkernels import distributed
    from threadpoolctl import threadpool_info

    def blas():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before_nk, before_blas = nk.get_num_threads(), blas()
    with train.cli_threads(None, False):
        assert nk.get_num_threads() == distributed.threads_per_rank(1)
        assert blas() <= {1}
    with train.cli_threads(3, False):
        assert nk.get_num_threads() == 3
        assert blas() <= {3}
    assert nk.get_num_threads() == before_nk and blas() == before_blas
    assert train.parse_args(["--threads", "2"]).threads == 2 and train.parse_args([]).threads is None


# ----------------------------------------------------------------------------- plain-text usability (issue 13, 16)

def test_quiet_prints_only_the_result_line(capsys):
    assert cli_main(["train", "--dataset", "spiral", "--hidden", "16", "--epochs", "2", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("done: ") and "val loss" in lines[0] and "acc" in lines[0]


def test_output_paths_are_checked_before_training(tmp_path, monkeypatch, capsys):
    def no_training(*a, **k):
        raise AssertionError("trained before the output paths were checked")

    monkeypatch.setattr(train, "train_model", no_training)
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    for flag in ("--plot", "--json"):
        with pytest.raises(SystemExit) as e:  # a folder that cannot be created
            train.parse_args([flag, str(blocker / "sub" / "out.png")])
        assert e.value.code == 2 and f"{flag}: cannot create the folder" in capsys.readouterr().err
        with pytest.raises(SystemExit) as e:  # a folder given as the file
            train.parse_args([flag, str(tmp_path)])
        assert e.value.code == 2 and "is a folder" in capsys.readouterr().err
    # a missing folder is created at parsing time, so the run can write into it at the end
    cfg = train.parse_args(["--plot", str(tmp_path / "new" / "deeper" / "c.png"), "--json",
                            str(tmp_path / "other" / "c.json")])
    assert (tmp_path / "new" / "deeper").is_dir() and (tmp_path / "other").is_dir()
    assert cfg.plot.endswith("c.png")


def test_plot_into_a_new_folder_end_to_end(tmp_path, capsys):
    png = tmp_path / "plots" / "run.png"
    assert cli_main(["train", "--dataset", "spiral", "--hidden", "16", "--epochs", "2", "--quiet",
                     "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for default in ("(default: digits)", "(default: 256,256)", "(default: relu)", "(default: batch)",
                    "(default: kaiming)", "(default: adam)", "(default: constant)", "(default: 20)",
                    "(default: 64)", "(default: 0)", "(default: float32)", "(default: per optimizer, sgd 0.1"):
        assert default in out, default
