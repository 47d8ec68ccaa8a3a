"""benchmarks/temporal_fmnist.py: parameter counts and a smoke run.

The smoke run trains the four models for one epoch on tiny sizes, in one
process, on scikit-learn's digits fed row by row (8 steps of 8 pixels), a
stand-in that needs no Fashion-MNIST files.
"""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "temporal_fmnist.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("temporal_fmnist", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameter_formulas():
    bench = load_benchmark()
    # Dense(28 -> 128) + W_rec 128x128 + MembraneReadout(128 -> 10).
    assert bench.spiking_parameters(28, 128, True) == (
        28 * 128 + 128 + 128 * 128 + 128 * 10 + 10
    )
    assert bench.spiking_parameters(28, 128, False) == (
        28 * 128 + 128 + 128 * 10 + 10
    )
    # Keras' LSTM: four gates, each with input, recurrent and bias weights.
    assert bench.lstm_parameters(28, 59) == 4 * 59 * (28 + 59 + 1) + 600
    target = bench.spiking_parameters(28, 128, True)
    units = bench.lstm_units_for(target, 28)
    assert units == 59
    for other in (units - 1, units + 1):
        assert abs(bench.lstm_parameters(28, other) - target) >= abs(
            bench.lstm_parameters(28, units) - target
        )


def test_smoke_run_rows_and_parameters(tmp_path):
    out = tmp_path / "results.json"
    hidden = 8
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--hidden",
            str(hidden),
            "--limit",
            "128",
            "--batch",
            "64",
            "--in-process",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    bench = load_benchmark()
    rows = {}
    for line in result.stdout.splitlines():
        match = re.match(
            r"\| (\S+) \(.*?\) \| (\d+) \| ([\d,]+) \| ([0-9.]+)% \| "
            r"([0-9.]+)% \| \d+ \| \d+ \| (yes|no) \| ([0-9.]+|-) \|$",
            line,
        )
        if match:
            rows[match.group(1)] = match.groups()[1:]
    assert set(rows) == set(bench.MODELS), result.stdout
    lstm_units = bench.lstm_units_for(
        bench.spiking_parameters(8, hidden, True), 8
    )
    expected = {
        "alif-rec": bench.spiking_parameters(8, hidden, True),
        "lif-rec": bench.spiking_parameters(8, hidden, True),
        "lif-ff": bench.spiking_parameters(8, hidden, False),
        "lstm": bench.lstm_parameters(8, lstm_units),
    }
    for name, (width, params, accuracy, _, _, rate) in rows.items():
        assert int(params.replace(",", "")) == expected[name], name
        assert int(width) == (lstm_units if name == "lstm" else hidden)
        assert 0.0 <= float(accuracy) <= 100.0
        assert (rate == "-") == (name == "lstm")
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["results"]] == list(bench.MODELS)
    for r in data["results"]:
        assert r["parameters"] == expected[r["model"]]
        assert r["train_samples"] == 128 and r["steps"] == 8
        assert len(r["epoch_times"]) == 1
