"""benchmarks/fashion_recipe.py: the Fashion-MNIST recipe's report.

Its runs here are two tiny `keras-snn train` runs on the embedded digits
(a few seconds each); the committed Fashion-MNIST record is checked
against its page and the docs.
"""

import json

import numpy as np
import pytest
from test_benchmarks_peers import BENCHMARKS
from test_benchmarks_peers import ROOT
from test_benchmarks_peers import load_script

from keras_snn import callbacks as snn_callbacks
from keras_snn import cli
from keras_snn import datasets

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny_run(out, seed):
    argv = ["train", "--model", "8C3-AP2-16FC-Decoding", "--timesteps", "2"]
    argv += ["--epochs", "2", "--batch-size", "128", "--verbose", "0"]
    argv += ["--trainable-decay", "channel", "--seed", str(seed)]
    assert cli.main([*argv, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fashion_recipe")
    return [tiny_run(root / f"seed{seed}", seed) for seed in (0, 1)]


@pytest.fixture(scope="module")
def script():
    return load_script("fashion_recipe")


def test_report_of_two_runs(runs, script, tmp_path):
    json_path, page, plot = (tmp_path / n for n in ("r.json", "r.md", "r.png"))
    record = script.main(
        [*map(str, runs), "--json", str(json_path), "--page", str(page)]
        + ["--plot", str(plot)]
    )
    (_, _), (_, y_test) = datasets.load_arrays("digits")
    assert record["test_images"] == len(y_test)
    for folder, run in zip(runs, record["runs"], strict=True):
        metrics = json.loads((folder / "metrics.json").read_text())
        assert run["test_accuracy"] == metrics["test_accuracy"]
        history = snn_callbacks.read_history_csv(folder / "history.csv")
        minutes = np.cumsum(history["epoch_seconds"]) / 60
        assert run["curve"]["minutes"] == pytest.approx(minutes, abs=1e-3)
        assert run["curve"]["accuracy"] == history["val_accuracy"]
        assert run["minutes"] == pytest.approx(minutes[-1], abs=0.01)
        # An accuracy over the test split, close to the float model's.
        correct = run["int8_accuracy"] * len(y_test)
        assert correct == pytest.approx(round(correct), abs=1e-6)
        assert abs(run["int8_accuracy"] - run["test_accuracy"]) < 0.05
    accuracy = [r["test_accuracy"] for r in record["runs"]]
    summary = record["summary"]
    assert summary["mean"] == pytest.approx(np.mean(accuracy))
    assert summary["std"] == pytest.approx(np.std(accuracy, ddof=1))
    assert summary["every_seed_reaches_target"] == (min(accuracy) >= 0.94)
    stored = json.loads(json_path.read_text())
    assert page.read_text() == script.render(stored)
    assert "| 0 | 2 |" in page.read_text() and "| 1 | 2 |" in page.read_text()
    assert plot.read_bytes().startswith(PNG_MAGIC)
    again = tmp_path / "again.md"
    script.main(["--render", str(json_path), "--page", str(again)])
    assert again.read_text() == page.read_text()


def test_keep_carries_an_earlier_records_runs(runs, script, tmp_path, capsys):
    first, both = tmp_path / "first.json", tmp_path / "both.json"
    old = script.main([str(runs[0]), "--json", str(first)])
    # An older record stamps its runs once, at the top.
    stored = json.loads(first.read_text())
    for run in stored["runs"]:
        del run["date"], run["commit"]
    stored["date"], stored["commit"] = "2026-01-01 00:00 UTC", "abc"
    first.write_text(json.dumps(stored))
    page = tmp_path / "both.md"
    record = script.main(
        [str(runs[1]), "--keep", str(first), "--json", str(both)]
        + ["--page", str(page)]
    )
    assert [r["arguments"]["seed"] for r in record["runs"]] == [0, 1]
    kept, new = record["runs"]
    assert kept["int8_accuracy"] == old["runs"][0]["int8_accuracy"]
    assert (kept["date"], kept["commit"]) == ("2026-01-01 00:00 UTC", "abc")
    assert (new["date"], new["commit"]) == (record["date"], record["commit"])
    assert record["summary"]["seeds"] == 2
    text = page.read_text()
    assert "seed 0 2026-01-01 00:00 UTC at commit abc" in text
    assert f"seed 1 {record['date']}" in text
    # The same seed twice, a kept record of another split, a broken one.
    with pytest.raises(SystemExit):
        script.main([str(runs[0]), "--keep", str(both)])
    assert "seed(s) [0]" in capsys.readouterr().err
    stored["test_images"] = 3
    first.write_text(json.dumps(stored))
    with pytest.raises(SystemExit):
        script.main([str(runs[1]), "--keep", str(first)])
    assert "scored on 3 test images" in capsys.readouterr().err
    first.write_text(json.dumps({"runs": [{}]}))
    with pytest.raises(SystemExit):
        script.main([str(runs[1]), "--keep", str(first)])
    assert "not one of this script's" in capsys.readouterr().err
    first.write_text("{")
    with pytest.raises(SystemExit):
        script.main([str(runs[1]), "--keep", str(first)])
    assert "--keep" in capsys.readouterr().err


def test_refusals_name_the_folder(runs, script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "metrics.json" in err
    with pytest.raises(SystemExit):
        script.main([])
    assert "give run folders" in capsys.readouterr().err
    # A history written before EpochSeconds existed has no times.
    old = tmp_path / "old"
    old.mkdir()
    for name in ("run.json", "metrics.json", "model.keras"):
        (old / name).write_bytes((runs[0] / name).read_bytes())
    (old / "history.csv").write_text("epoch,loss,val_accuracy\n0,1.0,0.5\n")
    with pytest.raises(SystemExit):
        script.main([str(old)])
    assert "epoch_seconds" in capsys.readouterr().err


def test_committed_record_is_its_page_and_in_the_docs(script):
    results = BENCHMARKS / "results"
    record = json.loads((results / "fashion_mnist.json").read_text())
    assert (results / "fashion_mnist.md").read_text() == script.render(record)
    seeds = [r["arguments"]["seed"] for r in record["runs"]]
    assert len(set(seeds)) == len(seeds) >= 2
    # One recipe: the runs differ in their seed only.
    recipes = [
        {k: v for k, v in r["arguments"].items() if k != "seed"}
        for r in record["runs"]
    ]
    assert all(recipe == recipes[0] for recipe in recipes)
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert '--8<-- "benchmarks/results/fashion_mnist.md"' in docs
    assert "](fashion_mnist_accuracy.png)" in docs
    plot = ROOT / "docs" / "fashion_mnist_accuracy.png"
    assert plot.read_bytes().startswith(PNG_MAGIC)
