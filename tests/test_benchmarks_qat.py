"""benchmarks/qat_accuracy.py on a tiny configuration.

The digits quickstart network, trained 3 epochs, quantized at 16 and 8
state bits, QAT fine-tuned 1 epoch on 64 images and tested on 60: the
table has one line per state width, and the QAT model predicts the
classes of the integer reference of its own quantized graph on every
test image.
"""

import importlib.util
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "qat_accuracy.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("qat_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_layout():
    bench = load_benchmark()
    row = {
        "dataset": "digits",
        "state_bits": 8,
        "float": 0.95,
        "float_tuned": 0.96,
        "ptq": 0.9,
        "qat": 0.94,
        "agreement": 1.0,
        "qat_epoch_s": 2.25,
        "qat_train_images": 100,
    }
    lines = bench.table([row]).splitlines()
    assert len(lines) == 3
    assert [c.strip() for c in lines[0].strip("|").split("|")] == list(
        bench.COLUMNS
    )
    assert lines[2] == (
        "| digits | 8 | 0.9500 | 0.9600 | 0.9000 | 0.9400 | 1.0000 | 2.2 "
        "| 100 |"
    )


def test_tiny_run_agreement_and_table(tmp_path, capsys):
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
    assert len(table) == 2 + 2  # header, rule, state bits 16 and 8
    assert [line.split("|")[2].strip() for line in table[2:]] == ["16", "8"]
    assert "python benchmarks/qat_accuracy.py --datasets digits" in printed
    record = json.loads(out.read_text())
    assert record["rows"] == rows
    assert record["arguments"]["state_bits"] == [16, 8]
    for row in rows:
        assert row["agreement"] == 1.0
        assert row["test_images"] == 60 and row["qat_train_images"] == 64
        for key in ("float", "float_tuned", "ptq", "qat"):
            assert 0.0 <= row[key] <= 1.0
        assert len(row["qat_epoch_times"]) == 1
