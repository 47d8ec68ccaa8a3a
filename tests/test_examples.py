"""The README's main job: the digits quickstart reaches its accuracy."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_digits_reaches_95_percent_and_exports(tmp_path):
    model_path = tmp_path / "digits.keras"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "quickstart_digits.py"),
            "--timesteps",
            "4",
            "--out",
            str(model_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"test accuracy (\d\.\d+)", result.stdout)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) >= 0.95
    assert model_path.stat().st_size > 0
    # The main job also exports every target and prints each accuracy.
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ("keras", "tflite-int16x8", "onnx"):
            rows.setdefault(parts[0], []).append(line)
    accuracies = {
        name: [float(re.findall(r"\s(\d\.\d{4})\s", line)[0]) for line in lines]
        for name, lines in rows.items()
    }
    float_accuracy = accuracies["keras"][0]
    # LiteRT, LiteRT with reference kernels and TFLite-Micro.
    assert len(accuracies["tflite-int16x8"]) == 3
    for accuracy in accuracies["tflite-int16x8"] + accuracies["onnx"]:
        assert abs(accuracy - float_accuracy) <= 0.01
    export_dir = tmp_path / "export"
    assert (export_dir / "model_int16x8.tflite").stat().st_size > 0
    assert (export_dir / "report.json").exists()
