"""Every script in examples/ runs: a smoke run each, with small sizes.

The Python examples run in this process through their `main(argv)` (no
second TensorFlow start-up per script); the shell recipe runs in bash on a
tiny synthetic Fashion-MNIST written here as IDX files. The README's main
job, the full quickstart with its export, is the slow test at the end.
"""

import gzip
import importlib.util
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Each Python example: the arguments of a small run, and a pattern its
# output must contain.
SMOKE_RUNS = {
    "asf_vs_bptt.py": (
        ["--timesteps", "2", "--epochs", "1", "--train-subset", "64"],
        r"BPTT/ASF time ratio",
    ),
    "convert_ann_digits.py": (
        [
            "--epochs",
            "1",
            "--timesteps",
            "4",
            "--calibration",
            "64",
            "--calibration-timesteps",
            "4",
            "--test-samples",
            "64",
        ],
        r"\| percentile \|",
    ),
    "energy_digits.py": (
        ["--epochs", "1", "--timesteps", "2"],
        r"ANN / SNN energy",
    ),
    "export_neuron_models.py": (
        ["--epochs", "1", "--timesteps", "2", "--targets", "tflite-int16x8"],
        r"\| cuba \| Keras \|.*\n(.*\n)*\| alif-recurrent \| tflite-int16x8",
    ),
    "neuromorphic_digits.py": (
        ["--frames", "2", "--epochs", "1", "--limit", "32"],
        r"event digits, 2 frames .* test accuracy",
    ),
    "quickstart_digits.py": (
        ["--epochs", "1", "--timesteps", "2", "--no-export"],
        r"digits SNN, T=2: test accuracy",
    ),
    "stdp_digits.py": (
        [
            "--filters",
            "4",
            "--timesteps",
            "4",
            "--stdp-samples",
            "32",
            "--train-subset",
            "64",
            "--stdp-epochs",
            "1",
            "--epochs",
            "1",
            "--draws",
            "1",
        ],
        r"stochastic STDP",
    ),
    "tune_surrogate_width.py": (
        ["--timesteps", "2", "--batches", "1", "--compare", "1"],
        r"gamma found",
    ),
}


def test_every_example_has_a_smoke_run():
    scripts = {path.name for path in EXAMPLES.iterdir() if path.is_file()}
    assert scripts == set(SMOKE_RUNS) | {"fashion_mnist.sh"}


def load_example(name):
    spec = importlib.util.spec_from_file_location(
        f"example_{pathlib.Path(name).stem}", EXAMPLES / name
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(SMOKE_RUNS))
def test_example_smoke_run(name, tmp_path, monkeypatch, capsys):
    argv, pattern = SMOKE_RUNS[name]
    if name == "quickstart_digits.py":
        argv = [*argv, "--out", str(tmp_path / "digits.keras")]
    monkeypatch.chdir(tmp_path)  # anything an example writes lands here
    monkeypatch.setattr(sys, "path", list(sys.path))  # energy_digits adds one
    load_example(name).main(argv)
    assert re.search(pattern, capsys.readouterr().out)


def test_neuromorphic_recurrent_alif_smoke_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["--frames", "2", "--epochs", "1", "--limit", "32"]
    load_example("neuromorphic_digits.py").main(
        [*argv, "--neuron", "alif-recurrent"]
    )
    assert re.search(
        r"event digits, 2 frames .* test accuracy .*alif-recurrent network",
        capsys.readouterr().out,
    )


def write_idx(path, array):
    """Writes `array` (uint8) as a gzipped IDX file."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_recipe_smoke_run(tmp_path):
    keras_snn_cli = pathlib.Path(sys.executable).parent / "keras-snn"
    if not keras_snn_cli.exists() and not shutil.which("keras-snn"):
        pytest.skip("the keras-snn command is not installed")
    rng = np.random.default_rng(0)
    data = tmp_path / "data" / "fashion_mnist"
    data.mkdir(parents=True)
    for prefix, count in (("train", 64), ("t10k", 32)):
        images = rng.integers(0, 256, (count, 28, 28))
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz", images)
        labels = np.arange(count) % 10
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", labels)
    env = dict(
        os.environ,
        KERAS_SNN_DATA_DIR=str(tmp_path / "data"),
        PATH=f"{keras_snn_cli.parent}{os.pathsep}{os.environ['PATH']}",
    )
    script = EXAMPLES / "fashion_mnist.sh"
    result = subprocess.run(
        ["bash", str(script), str(tmp_path / "run"), "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "model.keras").stat().st_size > 0


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
