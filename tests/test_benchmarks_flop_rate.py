"""benchmarks/flop_rate.py: the operation count, a tiny run, the page.

The count of conv-small's convolutions and matmuls equals the count by
hand, with the first convolution (time-invariant input, run once per
sample by `TimeFolded`) once and the others T times; a tiny run gives
rates above zero and a page that is its rendering; the committed page is
its record's rendering and in the docs. Rates are not asserted beyond
being measured.
"""

import json
import pathlib

import pytest
from test_benchmarks_peers import load_script

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def load_flop_rate():
    return load_script("flop_rate")


@pytest.mark.parametrize("timesteps", [1, 3])
def test_conv_small_count_by_hand(timesteps):
    flop_rate = load_flop_rate()
    model = flop_rate.peers.keras_model("keras-snn", timesteps, "conv-small")
    total, dense = flop_rate.count_flops(model, (28, 28, 1))
    conv1 = 2 * 28 * 28 * 32 * (3 * 3 * 1)  # once per sample
    conv2 = 2 * 14 * 14 * 64 * (3 * 3 * 32)
    fc = 2 * (7 * 7 * 64) * 256 + 2 * 256 * 10
    assert dense == conv1 + timesteps * (conv2 + fc)
    assert dense < total < 1.1 * dense  # neurons, BN, biases: the rest


def test_tiny_run_renders_to_its_page(tmp_path, capsys):
    flop_rate = load_flop_rate()
    record_path, page = tmp_path / "rate.json", tmp_path / "rate.md"
    argv = ["--runs", "conv-small:2", "--batches", "4", "8", "--warmup", "1"]
    argv += ["--repeats", "1", "--matmul", "64", "--json", str(record_path)]
    record = flop_rate.main([*argv, "--page", str(page)])
    (row,) = record["rows"]
    assert row["train_flops"] == row["infer_flops"] + 2 * row["dense_flops"]
    assert row["infer_samples_per_s"] > 0 and row["train_samples_per_s"] > 0
    assert record["matmul_gflops"] > 0
    assert json.loads(record_path.read_text()) == record
    text = page.read_text()
    assert text == capsys.readouterr().out[:-1]
    assert "| conv-small (infer) | 2 | 8 |" in text
    again = tmp_path / "again.md"
    flop_rate.main(["--render", str(record_path), "--page", str(again)])
    assert again.read_text() == text
    for bad in (["--runs", "conv-big:4"], ["--matmul", "0"]):
        with pytest.raises(SystemExit):
            flop_rate.main(bad)
    err = capsys.readouterr().err
    assert "WORKLOAD:T" in err and "--matmul" in err


def test_the_docs_page_is_the_rendering_of_its_record():
    flop_rate = load_flop_rate()
    record = json.loads((RESULTS / "flop_rate.json").read_text())
    assert (RESULTS / "flop_rate.md").read_text() == flop_rate.render(record)
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    assert '--8<-- "benchmarks/results/flop_rate.md"' in docs
