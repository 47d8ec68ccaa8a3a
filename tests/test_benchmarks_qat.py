"""benchmarks/qat_accuracy.py (and qat_deployed.py) on a tiny configuration.

The digits quickstart network, trained 3 epochs, quantized at 16 and 8
state bits and for Loihi, QAT fine-tuned 1 epoch on 64 images and tested
on 60: the table has one line per arithmetic, and the QAT model predicts
the classes of the reference of its own quantized graph and of its
deployed program (the C runtime, host gcc; the NetX file in Lava) on every
test image, whose outputs equal the reference's bit for bit. The C and
Lava checks report one perturbed integer or spike as a mismatch.
"""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from edge_models import dense_model
from edge_models import images
from edge_models import require_programs
from test_edge_loihi import dense_net
from test_edge_loihi import lava  # noqa: F401 (fixture)

from edge import integer
from edge import qat
from edge.targets import c as c_target
from edge.targets import loihi

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "qat_accuracy.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("qat_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gcc():
    require_programs(("gcc",), "the benchmark's C check", "apt install gcc")


def test_table_layout():
    bench = load_benchmark()
    row = {
        "dataset": "digits",
        "filters": [32, 64],
        "profile": "int8",
        "state_bits": 8,
        "deployed": "C (host gcc)",
        "float": 0.95,
        "float_tuned": 0.96,
        "ptq": 0.9,
        "qat": 0.94,
        "agreement": 1.0,
        "deployed_bit_exact": 0.995,
        "deployed_agreement": 0.9975,
        "qat_epoch_s": 2.25,
        "qat_train_images": 100,
    }
    skipped = dict(
        row,
        profile="loihi",
        state_bits=24,
        deployed="Lava fixed_pt",
        deployed_bit_exact=None,
        deployed_agreement=None,
    )
    lines = bench.table([row, skipped]).splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(
        bench.COLUMNS
    )
    assert lines[1].count("|") == len(bench.COLUMNS) + 1
    assert lines[2] == (
        "| digits | 32-64 | int8, 8-bit state | 0.9500 | 0.9600 | 0.9000 "
        "| 0.9400 | 1.0000 | 0.9950 | 0.9975 | 2.2 | 100 | C (host gcc) |"
    )
    cells = lines[3].split(" | ")
    assert cells[2] == "Loihi, 24-bit state" and cells[8:10] == ["-", "-"]
    assert cells[-1] == "Lava fixed_pt |"


def test_arithmetics_order():
    bench = load_benchmark()
    assert bench.arithmetics(["int8", "loihi"], [16, 8]) == [
        ("int8", 16),
        ("int8", 8),
        ("loihi", 24),
    ]
    assert bench.arithmetics(["loihi"], [16, 8]) == [("loihi", 24)]


def _dense_qat():
    """A QAT model of a small dense network, at 8 state bits."""
    return qat.quantize_model(dense_model(), images(64, seed=1), state_bits=8)


def test_c_check_counts_each_differing_image(gcc):
    bench = load_benchmark().deployed
    qgraph = qat.to_qgraph(_dense_qat())
    x = images(7, seed=2)
    scores, int_raw = integer.run_integer(qgraph, x)
    assert np.count_nonzero(int_raw) > int_raw.size // 4  # not trivial
    np.testing.assert_array_equal(
        c_target.output_scores(qgraph, int_raw), scores
    )
    c_raw = bench.c_outputs(qgraph, x, chunk=3)  # 3 builds: 3 + 3 + 1
    np.testing.assert_array_equal(c_raw, int_raw)
    assert bench.c_figures(qgraph, scores, int_raw, c_raw) == (1.0, 1.0)
    one = c_raw.copy()
    one[4, 2, 1] += 1  # one integer of one image at one step
    bit_exact, agree = bench.c_figures(qgraph, scores, int_raw, one)
    assert bit_exact == 6 / 7 and agree == 1.0
    flipped = c_raw.copy()  # images 0 and 5 now predict another class
    for i in (0, 5):
        wrong = (np.argmax(scores[i]) + 1) % scores.shape[-1]
        flipped[i, :, wrong] = flipped[i].max() + 1000
    bit_exact, agree = bench.c_figures(qgraph, scores, int_raw, flipped)
    assert bit_exact == 5 / 7 and agree == 5 / 7
    with pytest.raises(ValueError, match="deployed_raw.shape=\\(6, 4, 10\\)"):
        bench.c_figures(qgraph, scores, int_raw, c_raw[:6])


def test_qat_figures_report_a_perturbed_c_output(gcc, monkeypatch):
    bench = load_benchmark().deployed
    qat_model = _dense_qat()
    x, y = images(5, seed=4), np.arange(5)
    figures = bench.qat_figures(qat_model, x, y, chunk=2)
    assert figures["agreement"] == 1.0
    assert figures["deployed_bit_exact"] == 1.0
    assert figures["deployed_agreement"] == 1.0
    c_outputs = bench.c_outputs

    def perturbed(qgraph, x, chunk):
        raw = c_outputs(qgraph, x, chunk)
        raw[-1, -1, -1] -= 1
        return raw

    monkeypatch.setattr(bench, "c_outputs", perturbed)
    figures = bench.qat_figures(qat_model, x, y, chunk=2)
    assert figures["deployed_bit_exact"] == 4 / 5
    skipped = bench.qat_figures(qat_model, x, y, chunk=0)
    assert skipped["deployed_bit_exact"] is None
    assert skipped["deployed_s"] is None


def test_lava_check_counts_each_differing_image(lava):  # noqa: F811
    bench = load_benchmark().deployed
    qat_model = qat.quantize_model(dense_net(), profile="loihi")
    x = np.random.default_rng(5).uniform(0, 1, (7, 6, 6, 1))
    lgraph = qat.to_lgraph(qat_model)
    scores, window = loihi.run_loihi(lgraph, x)
    assert 0.01 < window.mean() < 0.9  # the chip's output is active
    got, expected = bench.lava_outputs(lgraph, x, chunk=3)  # 3 Lava runs
    np.testing.assert_array_equal(expected, window)  # a stream = one by one
    np.testing.assert_array_equal(got, window)
    keras_scores = qat_model.predict(x, verbose=0)
    assert bench.lava_figures(lgraph, keras_scores, expected, got) == (
        1.0,
        1.0,
    )
    one = got.copy()
    one[3, 1, 0] = 1 - one[3, 1, 0]  # one spike of one image
    bit_exact, _ = bench.lava_figures(lgraph, keras_scores, expected, one)
    assert bit_exact == 6 / 7
    figures = bench.qat_figures(qat_model, x, np.arange(7), 4, profile="loihi")
    assert figures["agreement"] == 1.0
    assert figures["deployed_bit_exact"] == 1.0
    assert figures["deployed_agreement"] == 1.0


def test_tiny_run_agreement_and_table(gcc, lava, tmp_path, capsys):  # noqa: F811
    bench = load_benchmark()
    out = tmp_path / "qat.json"
    argv = [
        "--datasets",
        "digits",
        "--digits-epochs",
        "3",
        "--qat-epochs",
        "1",
        "--digits-qat-train",
        "64",
        "--test-limit",
        "60",
        "--json",
        str(out),
    ]
    rows = bench.main(argv)
    printed = capsys.readouterr().out
    header = "| " + " | ".join(bench.COLUMNS) + " |"
    table = printed[printed.index(header) :].strip().splitlines()
    assert len(table) == 2 + 3  # header, rule, int8 16 and 8 bits, Loihi
    assert [line.split("|")[3].strip() for line in table[2:]] == [
        "int8, 16-bit state",
        "int8, 8-bit state",
        "Loihi, 24-bit state",
    ]
    assert "python benchmarks/qat_accuracy.py --datasets digits" in printed
    record = json.loads(out.read_text())
    assert record["rows"] == rows
    assert record["arguments"]["state_bits"] == [16, 8]
    assert [r["deployed"] for r in rows] == ["C (host gcc)"] * 2 + [
        "Lava fixed_pt"
    ]
    for row in rows:
        assert row["agreement"] == 1.0
        assert row["deployed_bit_exact"] == 1.0
        assert row["deployed_agreement"] == 1.0
        assert row["filters"] == [32, 64]
        assert row["test_images"] == 60 and row["qat_train_images"] == 64
        for key in ("float", "float_tuned", "ptq", "qat"):
            assert 0.0 <= row[key] <= 1.0
        assert len(row["qat_epoch_times"]) == 1
